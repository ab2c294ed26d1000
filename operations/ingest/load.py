"""Bulk load of a Flickr30k-CN-format split into both stores.

Per batch, in this order, so that no failure leaves the stores disagreeing in a way a user can see:
1. metadata rows are inserted as *pending* (the row's id becomes the vector id);
2. vectors are upserted into Milvus under those ids;
3. the rows are marked indexed: only now are they counted and returned by search.
A crash between the steps leaves pending rows that the next run of the same load completes. Successive
batches overlap (reading one while the previous ones are stored; ``operations.ingest.write_pipeline``), each still
in this order.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from adapters import images
from adapters.encoders.encoder_base import EncoderBase
from operations.collections import collections, generations
from operations.errors import NotFound
from operations.ingest.encode_stage import EncodeTask, encode_stream
from operations.ingest.file_sources import resolve_under_root
from operations.ingest.flickr_format import (
    BadLine,
    FeatureFile,
    TsvRow,
    count_lines,
    faces_jsonl,
    image_features_jsonl,
    images_tsv,
    iter_tsv,
    read_words,
)
from operations.ingest.write_pipeline import OrderedStages
from operations.ingest.writes import ImageToWrite, insert_rows, store_vectors
from operations.jobs.job_progress import JobProgress
from operations.people.copy_people import load_people
from operations.services import Services

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadPlan:
    collection: str
    path: str
    split: str
    tsv: Path
    features: Path | None
    model: str | None = None


def plan(services: Services, collection: str, path: str, split: str, model: str | None = None) -> LoadPlan:
    """For the API: ``path`` is relative to the data root and may not leave it."""
    directory = resolve_under_root(Path(str(services.settings.data_root)), path)
    return plan_directory(collection, directory, split, shown_as=path, model=model)


def plan_directory(
    collection: str, directory: Path, split: str, shown_as: str | None = None, model: str | None = None
) -> LoadPlan:
    collections.validate_name(collection)
    tsv = images_tsv(directory, split)
    if not tsv.is_file():
        raise NotFound(f"{split}_imgs.tsv not found under {shown_as or str(directory)!r}")
    features = image_features_jsonl(directory, split)
    feature_file = features if features.is_file() else None
    return LoadPlan(collection, shown_as or str(directory), split, tsv, feature_file, model)


def run(services: Services, load: LoadPlan, progress: JobProgress) -> str:
    settings = services.settings
    record = collections.ensure(services, load.collection, load.model)
    encoder = collections.encoder_for(services, record)
    progress.total = count_lines(load.tsv)
    progress.flush()
    feature_file = FeatureFile(load.features, record.dim) if load.features else None
    words = read_words(load.tsv.parent, load.split)  # captions (and an export's descriptions, OCR): searchable
    started = time.monotonic()

    def stored(_ids: frozenset[str], written: dict[str, int]) -> None:
        progress.loaded += len(written)
        progress.done += len(written)

    # Reading and checking a batch (here), its rows (MySQL) and the previous batch's vectors (Milvus) overlap.
    origin = f"load:{load.path}/{load.split}"  # what a search can filter on (source)
    stages = (
        lambda items: insert_rows(services, load.collection, [replace(item, origin=origin) for item in items]),
        lambda rows: store_vectors(services, load.collection, rows, record.model),
    )
    try:
        with OrderedStages(stages, on_done=stored, name="load") as pipeline:
            batch: list[TsvRow] = []
            for item in iter_tsv(load.tsv):
                if progress.should_stop():
                    break
                if isinstance(item, BadLine):
                    progress.error(str(item))
                    continue
                batch.append(item)
                if len(batch) >= settings.load_batch_size:
                    _submit(services, encoder, load.collection, batch, feature_file, words, progress, pipeline)
                    batch = []
                    progress.flush()
            if batch and not progress.should_stop():
                _submit(services, encoder, load.collection, batch, feature_file, words, progress, pipeline)
        if progress.should_stop():
            return "stopped"
        generations.flush(services, load.collection)  # a server indexes sealed data: once per load, not per batch
        faces_file = faces_jsonl(load.tsv.parent, load.split)
        if faces_file.is_file():  # an export's faces, persons and names
            faces = load_people(services.metadata, services.vectors, load.collection, faces_file)
            logger.info("%d faces of %s restored from %s", faces, load.collection, faces_file.name)
    finally:
        if feature_file is not None:
            feature_file.close()
    elapsed = time.monotonic() - started
    rate = progress.done / elapsed if elapsed > 0 else 0.0
    source = "feature file" if feature_file else "image encoder"
    return f"{progress.loaded} loaded, {progress.skipped} skipped, {progress.failed} failed ({source}, {rate:.0f}/s)"


def _submit(
    services: Services,
    encoder: EncoderBase,
    collection: str,
    batch: list[TsvRow],
    features: FeatureFile | None,
    words: dict[str, dict[str, Any]],
    progress: JobProgress,
    pipeline: OrderedStages,
) -> None:
    """Check a batch and hand what is new to the write pipeline. An image_id of a batch still in flight counts
    as a duplicate, as it would once that batch is stored (the first occurrence in the file wins)."""
    settings = services.settings
    existing = services.metadata.lookup(collection, [row.image_id for row in batch])
    seen: set[str] = set().union(*pipeline.in_flight())
    todo: list[tuple[TsvRow, images.ImageFacts]] = []
    for row in batch:
        known = existing.get(row.image_id)
        if row.image_id in seen or (known is not None and known.indexed):
            progress.skipped += 1
            progress.done += 1
            continue
        seen.add(row.image_id)
        try:
            facts = images.probe(row.data, settings.max_image_bytes, settings.max_image_pixels)
        except images.InvalidImage as exc:
            progress.error(str(exc), line=row.line, image_id=row.image_id)
            continue
        todo.append((row, facts))
    if not todo:
        return

    vectors: dict[str, np.ndarray] = {}
    need_encoding: list[tuple[TsvRow, images.ImageFacts]] = []
    for row, facts in todo:
        if features is not None and row.image_id in features:
            try:
                vectors[row.image_id] = features.get(row.image_id)
            except BadLine as exc:
                progress.error(str(exc), line=row.line, image_id=row.image_id)
        else:
            need_encoding.append((row, facts))
    vectors.update(_encode(services, encoder.info.model, need_encoding, progress))
    items = [
        ImageToWrite(r.image_id, r.data, f, vectors[r.image_id], words=words.get(r.image_id))
        for r, f in todo
        if r.image_id in vectors
    ]
    if items:
        pipeline.submit(frozenset(item.image_id for item in items), items)


def _encode(
    services: Services, model: str, rows: list[tuple[TsvRow, images.ImageFacts]], progress: JobProgress
) -> dict[str, np.ndarray]:
    """Images without a precomputed feature go through the encode stage (here, or on the Ray cluster)."""
    out: dict[str, np.ndarray] = {}
    if not rows:
        return out
    task = lambda pair: EncodeTask(data=pair[0].data)  # noqa: E731
    for done, ((row, _), encoded) in enumerate(encode_stream(services, model, rows, task, progress), start=1):
        if encoded.vector is None:
            progress.error(encoded.error or "cannot decode the image", line=row.line, image_id=row.image_id)
        else:
            out[row.image_id] = encoded.vector
        if done % services.settings.encode_batch_size == 0:
            progress.flush()  # heartbeat: encoding is the slow part
    return out
