"""Export a collection in Chinese-CLIP's own format, which doubles as a backup that ``load`` restores.

- ``{split}_imgs.tsv``: ``image_id<TAB>base64`` of the stored bytes, exactly as stored;
- ``{split}_imgs.img_feat.jsonl``: ``{"image_id", "feature"}`` per image, the stored vector (no re-encoding);
- ``{split}_export.json``: a small manifest (collection, model, dim, metric, count, split, time);
- ``{split}_texts.jsonl``/``{split}_words.jsonl``: captions, descriptions and OCR text, where there are any;
- ``{split}_faces.jsonl``: the faces of images whose faces were read, with vectors, persons and names.

``imgsearch load DIR --split S --collection C --model M`` (or ``POST /img/load``) restores it: same bytes, same
vectors, same search results. Each file is written to a temporary name and renamed into place once complete
(manifest last), so an interrupted export never leaves a truncated file under the final names. Needs no model.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import itertools
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from adapters.stores.sql.text_store import ImageTexts, TextStore
from operations.collections.copy_collection import BATCH_SIZE, Stores, source_collection
from operations.errors import InvalidInput
from operations.ingest.flickr_format import (
    FeatureFile,
    faces_jsonl,
    feature_line,
    image_features_jsonl,
    images_tsv,
    texts_jsonl,
    words_jsonl,
)
from operations.people.copy_people import face_line, gather

logger = logging.getLogger(__name__)

_SPLIT = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_NAMED = 20  # ids named in a warning; the rest are counted

Progress = Callable[[int, int], None]


def manifest_json(directory: Path, split: str) -> Path:
    return directory / f"{split}_export.json"


@dataclass
class ExportReport:
    collection: str
    model: str
    dim: int
    split: str
    directory: Path
    count: int = 0
    without_vector: int = 0  # rows whose vector is missing from Milvus: not exported (run reconcile first)
    videos: int = 0  # videos left out: the Flickr format holds pictures (a sync or an upload brings them back)
    # Restored, but not exactly: the TSV loader strips spaces around an image_id; an id the feature file's index
    # does not find (checked after writing, with the loader's own index) would have its image re-encoded on load.
    renamed_on_load: list[str] = field(default_factory=list)
    re_encoded_on_load: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        line = (
            f"exported {self.count} images of {self.collection} ({self.model}, {self.dim}-d) to "
            f"{images_tsv(self.directory, self.split)} and {image_features_jsonl(self.directory, self.split).name} "
            f"({self.seconds:.1f} s)"
        )
        if self.without_vector:
            line += f"; {self.without_vector} skipped without a vector (run reconcile, then export again)"
        if self.videos:
            line += f"; {self.videos} videos left out (the format holds pictures: sync or upload them again)"
        return line

    def warnings(self) -> list[str]:
        out = []
        for ids, what in (
            (self.renamed_on_load, "with spaces around them (a load strips them)"),
            (self.re_encoded_on_load, "the feature file's index cannot key (a load re-encodes these images)"),
        ):
            if ids:
                named = ", ".join(repr(i) for i in ids[:_NAMED]) + (" …" if len(ids) > _NAMED else "")
                out.append(f"{len(ids)} image id(s) {what}: {named}")
        return out


def export_collection(
    stores: Stores,
    name: str,
    directory: Path,
    split: str = "valid",
    batch_size: int = BATCH_SIZE,
    progress: Progress | None = None,
) -> ExportReport:
    if not _SPLIT.match(split):
        raise InvalidInput(f"invalid split name {split!r}: use 1-64 letters, digits, _ or -")
    record = source_collection(stores, name)
    directory.mkdir(parents=True, exist_ok=True)
    report = ExportReport(name, record.model, record.dim, split, directory)
    total = stores.metadata.count(name)
    started = time.monotonic()
    targets = [
        images_tsv(directory, split),
        image_features_jsonl(directory, split),
        manifest_json(directory, split),
        texts_jsonl(directory, split),
        words_jsonl(directory, split),
        faces_jsonl(directory, split),
    ]
    temps = [path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp") for path in targets]
    try:
        with (
            temps[0].open("w", encoding="utf-8", newline="\n") as tsv,
            temps[1].open("w", encoding="utf-8", newline="\n") as features,
            temps[3].open("w", encoding="utf-8", newline="\n") as captions,
            temps[4].open("w", encoding="utf-8", newline="\n") as words,
            temps[5].open("w", encoding="utf-8", newline="\n") as faces,
        ):
            text_ids = itertools.count(1)
            done = 0
            if progress is not None:
                progress(0, total)
            for page in stores.metadata.iter_image_pages(name, page=batch_size):
                vectors = stores.vectors.get(record.vector_collection, [row.id for row in page])
                texts = TextStore(stores.metadata.engine).texts([row.id for row in page])
                people = gather(stores.metadata, stores.vectors, name, [row.id for row in page if row.kind is None])
                for row in page:
                    if row.kind is not None:  # a video or one of its samples
                        report.videos += row.is_video
                        continue
                    vector = vectors.get(row.id)
                    if vector is None:
                        report.without_vector += 1
                        logger.warning("%s/%s (id %d) has no vector: not exported", name, row.image_id, row.id)
                        continue
                    assert row.data is not None
                    tsv.write(f"{row.image_id}\t{base64.b64encode(row.data).decode('ascii')}\n")
                    features.write(feature_line("image_id", row.image_id, vector))
                    if row.id in texts:
                        _write_words(captions, words, row.image_id, texts[row.id], text_ids)
                    if row.id in people:
                        faces.write(face_line(row.image_id, people[row.id]))
                    report.count += 1
                    if row.image_id != row.image_id.strip():
                        report.renamed_on_load.append(row.image_id)
                done += len(page)
                if progress is not None:
                    progress(done, max(total, done))
            for handle in (tsv, features, captions, words, faces):
                _sync(handle)
        # A collection without words or faces gets no such files (and loses an older export's).
        empty = {target for target, temp in zip(targets[3:], temps[3:], strict=True) if temp.stat().st_size == 0}
        index = FeatureFile(temps[1], record.dim)  # the loader's own index: which ids will it find?
        try:
            with temps[0].open("rb") as tsv_in:
                for raw in tsv_in:
                    image_id = raw.split(b"\t", 1)[0].decode("utf-8")
                    if image_id.strip() not in index:
                        report.re_encoded_on_load.append(image_id)
        finally:
            index.close()
        manifest = {
            "format": "chinese-clip",
            "collection": name,
            "model": record.model,
            "dim": record.dim,
            "metric": record.metric,
            "count": report.count,
            "split": split,
            "files": [t.name for t in targets if t != targets[2] and t not in empty],
            "exported_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        with temps[2].open("w", encoding="utf-8") as handle:
            json.dump(manifest, handle, ensure_ascii=False, indent=2)
            handle.write("\n")
            _sync(handle)
        for temp, target in zip(temps, targets, strict=True):
            if target in empty:
                target.unlink(missing_ok=True)
                continue
            os.replace(temp, target)
    finally:
        for temp in temps:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
    report.seconds = time.monotonic() - started
    logger.info("%s", report.summary())
    return report


def _write_words(captions: IO[str], words: IO[str], image_id: str, texts: ImageTexts, text_ids: Iterator[int]) -> None:
    """Captions in the Flickr30k-CN texts file (a load keeps them, evaluation reads them); descriptions and OCR
    text beside it, in a file only this service reads."""
    for caption in (texts.caption or "").split("\n"):
        if caption.strip():
            record = {"text_id": next(text_ids), "text": caption, "image_ids": [image_id]}
            captions.write(json.dumps(record, ensure_ascii=False) + "\n")
    extra = {k: v for k, v in texts.writable.items() if k != "caption" and v}
    if extra:
        words.write(json.dumps({"image_id": image_id, **extra}, ensure_ascii=False) + "\n")


def _sync(handle: IO[str]) -> None:
    handle.flush()
    os.fsync(handle.fileno())
