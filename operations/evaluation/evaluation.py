"""Retrieval evaluation in Chinese-CLIP's own terms: top-k predictions files in its format and recall@1/5/10
plus mean recall computed exactly as its ``eval/evaluation.py`` (text→image) and ``evaluation_tr.py``
(image→text) do, so numbers compare directly with its published tables."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from adapters.encoders.encoder_base import EncoderBase
from operations.collections import collections
from operations.errors import InvalidInput, NotFound
from operations.ingest.flickr_format import iter_jsonl, text_features_jsonl, texts_jsonl
from operations.jobs.job_progress import JobOutcome, JobProgress
from operations.services import Services

logger = logging.getLogger(__name__)
TOP_K = 10
QUERY_BATCH = 64


@dataclass(frozen=True)
class Recall:
    r1: float
    r5: float
    r10: float
    mean_recall: float


def recall(reference: Mapping[int, Sequence[int]], predictions: Mapping[int, Sequence[int]]) -> Recall:
    """Percentages, as Chinese-CLIP computes them: a query counts at k if any ground truth is in its top k."""
    hits = {1: 0, 5: 0, 10: 0}
    for query, truth in reference.items():
        ranked = predictions.get(query)
        if ranked is None:
            raise InvalidInput(f"no prediction for {query}")
        for k in hits:
            hits[k] += any(item in ranked[:k] for item in set(truth))
    r1, r5, r10 = (hits[k] / len(reference) for k in (1, 5, 10))
    return Recall(r1 * 100, r5 * 100, r10 * 100, (r1 + r5 + r10) / 3 * 100)


def _as_int(value: object) -> int:
    try:
        return int(str(value))
    except ValueError as exc:
        raise InvalidInput(f"Chinese-CLIP's evaluation needs integer ids, got {value!r}") from exc


def _write(path: Path, key: str, values_key: str, rows: Iterable[tuple[int, list[int]]]) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as out:
        for query, ranked in rows:
            out.write(json.dumps({key: query, values_key: ranked}) + "\n")
    tmp.replace(path)


def _text_vectors(
    encoder: EncoderBase, directory: Path, split: str, texts: list[dict], use_features: bool
) -> np.ndarray:
    """The collection's model encodes the texts, or ``{split}_texts.txt_feat.jsonl`` supplies them."""
    if use_features:
        path = text_features_jsonl(directory, split)
        if not path.is_file():
            raise NotFound(f"{path.name} not found in {directory}")
        by_id = {int(row["text_id"]): row["feature"] for row in iter_jsonl(path)}
        missing = [t["text_id"] for t in texts if int(t["text_id"]) not in by_id]
        if missing:
            raise InvalidInput(f"{path.name} lacks {len(missing)} text(s), e.g. {missing[0]}")
        matrix = np.asarray([by_id[int(t["text_id"])] for t in texts], dtype=np.float32)
        if matrix.shape[1] != encoder.info.dim:
            raise InvalidInput(
                f"{path.name} holds {matrix.shape[1]}-d features; the collection is {encoder.info.dim}-d"
            )
        return matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
    batches = [texts[i : i + QUERY_BATCH] for i in range(0, len(texts), QUERY_BATCH)]
    return np.concatenate([encoder.encode_text([t["text"] for t in batch]) for batch in batches])


@dataclass(frozen=True)
class EvaluationReport:
    texts: int
    images: int
    text_to_image: Recall
    image_to_text: Recall
    predictions: str
    tr_predictions: str


def evaluate(
    services: Services,
    collection: str,
    directory: Path,
    split: str,
    use_text_features: bool = False,
    progress: JobProgress | None = None,
    out_dir: Path | None = None,
) -> EvaluationReport:
    """Search every text of ``{split}_texts.jsonl`` in the collection (and every image among the texts) and
    score the top-10s; writes ``{split}_predictions.jsonl`` and ``{split}_tr_predictions.jsonl`` into
    ``out_dir`` (default: next to the texts)."""
    progress = progress or JobProgress()
    record = collections.require(services, collection)
    encoder = collections.encoder_for(services, record)
    if not encoder.has_text:
        raise InvalidInput(f"collection {collection!r} uses an image-only model: nothing to evaluate with text")
    source = texts_jsonl(directory, split)
    if not source.is_file():
        raise NotFound(f"{source.name} not found in {directory}")
    texts = list(iter_jsonl(source))
    if not texts:
        raise InvalidInput(f"{source.name} has no texts")
    progress.total = len(texts)
    text_ids = [_as_int(t["text_id"]) for t in texts]
    reference = {tid: [_as_int(i) for i in t["image_ids"]] for tid, t in zip(text_ids, texts, strict=True)}
    vectors = _text_vectors(encoder, directory, split, texts, use_text_features)

    predictions: dict[int, list[int]] = {}
    for start in range(0, len(texts), QUERY_BATCH):
        found = services.vectors.search(record.vector_collection, vectors[start : start + QUERY_BATCH], TOP_K)
        rows = services.metadata.fetch(collection, sorted({i for hits in found for i, _ in hits}))
        for tid, hits in zip(text_ids[start : start + QUERY_BATCH], found, strict=True):
            predictions[tid] = [_as_int(rows[i].image_id) for i, _ in hits if i in rows]
        progress.done = min(start + QUERY_BATCH, len(texts))
        progress.flush()

    # image→text, as Chinese-CLIP's make_topk_predictions_tr: every image that has texts, against all texts
    image_to_texts: dict[int, list[int]] = {}
    for tid, images in reference.items():
        for image_id in images:
            image_to_texts.setdefault(image_id, []).append(tid)
    stored = services.metadata.lookup(collection, [str(i) for i in image_to_texts])
    image_vectors = services.vectors.get(record.vector_collection, [e.id for e in stored.values()])
    tr_predictions = {}
    for image_id in image_to_texts:
        existing = stored.get(str(image_id))
        if existing is None or existing.id not in image_vectors:
            raise NotFound(f"image {image_id} of {source.name} is not in collection {collection!r}")
        scores = vectors @ image_vectors[existing.id]
        tr_predictions[image_id] = [text_ids[j] for j in np.argsort(-scores, kind="stable")[:TOP_K]]

    out_dir = out_dir or directory
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{split}_predictions.jsonl"
    tr_out = out_dir / f"{split}_tr_predictions.jsonl"
    _write(out, "text_id", "image_ids", predictions.items())
    _write(tr_out, "image_id", "text_ids", tr_predictions.items())
    report = EvaluationReport(
        len(texts),
        len(image_to_texts),
        recall(reference, predictions),
        recall(image_to_texts, tr_predictions),
        str(out),
        str(tr_out),
    )
    logger.info("evaluated %s on %s/%s: %s", collection, directory, split, report)
    return report


def plan_job(services: Services, collection: str, path: str, split: str) -> Path:
    """For the API: checks now (4xx) what the job will read; it may only read under the data root."""
    from operations.ingest.file_sources import resolve_under_root

    collections.require(services, collection)
    directory = resolve_under_root(Path(str(services.settings.data_root)), path)
    if not texts_jsonl(directory, split).is_file():
        raise NotFound(f"{split}_texts.jsonl not found under {path!r}")
    return directory


def run_job(
    services: Services, collection: str, directory: Path, split: str, use_text_features: bool, progress: JobProgress
) -> JobOutcome:
    """Writes predictions under <data_dir>/evaluations/<collection>/: the data root is only read."""
    out_dir = Path(services.settings.data_dir) / "evaluations" / collection
    report = evaluate(services, collection, directory, split, use_text_features, progress, out_dir)
    t2i = report.text_to_image
    message = f"text→image R@1 {t2i.r1:.2f} R@5 {t2i.r5:.2f} R@10 {t2i.r10:.2f} (mean {t2i.mean_recall:.2f})"
    return JobOutcome(message, asdict(report))
