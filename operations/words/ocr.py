"""OCR of a collection's images into their words (keyword search then finds 发票 or a shop's name), as a job
(`POST /collections/{name}/ocr`, `imgsearch ocr`) and, with IMGSEARCH_OCR=on, right after ingest and sync.

OCR reads the stored picture: the preview for an image of a source folder (1280 px, plenty for text a person can
read), the image itself otherwise, scaled to IMGSEARCH_OCR_MAX_SIDE; boxes are given in the original's pixels. An
image already read is skipped unless ``redo``, so a stopped or killed job resumes where it was.

With a Ray cluster (IMGSEARCH_RAY_ADDRESS) the job's pictures are read by OCR actors on the cluster, and at ingest
and sync the encoder actors read them on the decode they make anyway (``Encoded.text``): the service only stores
the lines."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from adapters import images, ocr
from adapters.stores.sql.metadata_store import ImageRecord
from operations.collections import collections
from operations.errors import Conflict
from operations.ingest.streams import batched
from operations.jobs.job_progress import JobProgress
from operations.services import Services

logger = logging.getLogger(__name__)

BATCH = 16


@dataclass(frozen=True)
class _Picture:
    """A stored picture for an OCR actor: its bytes, and its original's longer side (the boxes are in its pixels)."""

    data: bytes
    longest: int

    @property
    def size(self) -> int:
        return len(self.data)


def require_available() -> None:
    if not ocr.available():
        raise Conflict(ocr.MISSING)


def run_job(services: Services, collection: str, progress: JobProgress, redo: bool = False) -> str:
    require_available()
    collections.require(services, collection)
    progress.total = services.metadata.count(collection)
    progress.flush()
    counts = {"read": 0, "with_text": 0}

    def todo() -> Iterator[int]:
        """The ids OCR reads, page after page; a page's images read before count as done at once."""
        for page in services.metadata.iter_image_pages(collection, page=BATCH, with_data=False):
            if progress.should_stop():
                return
            ids = [row.id for row in page] if redo else sorted(services.texts.without_ocr([row.id for row in page]))
            progress.done += len(page) - len(ids)
            progress.skipped += len(page) - len(ids)
            if not ids:
                progress.flush()
            yield from ids

    def stored(found: Mapping[int, list[ocr.OcrLine]], done: int) -> None:
        counts["read"] += len(found)
        counts["with_text"] += sum(1 for lines in found.values() if lines)
        progress.done += done
        progress.loaded = counts["read"]
        progress.flush()

    if services.ray is None:
        for ids in batched(todo(), BATCH):
            failed = progress.failed
            found = read_into(services, collection, ids, progress)
            stored(found, len(ids) - (progress.failed - failed))  # a picture that failed was counted as done then
    else:  # Ray Data streams ahead of these writes itself
        for batch in batched(_on_cluster(services, collection, todo(), progress), BATCH):
            found = dict(batch)
            store(services, collection, found)
            stored(found, len(found))
    summary = f"{counts['read']} images read, {counts['with_text']} with text, {progress.skipped} read before"
    return f"stopped: {summary}" if progress.should_stop() else summary


def _on_cluster(
    services: Services, collection: str, ids: Iterator[int], progress: JobProgress
) -> Iterator[tuple[int, list[ocr.OcrLine]]]:
    """The images read by OCR actors on the Ray cluster, with their lines, in order; the bytes are fetched here a
    batch at a time (the cluster cannot reach the metadata DB), and a picture that cannot be decoded is reported
    on ``progress``."""

    def pictures() -> Iterator[ImageRecord]:
        for batch in batched(ids, BATCH):
            rows = services.metadata.fetch(collection, batch, with_data=True, include_pending=True)
            yield from (rows[i] for i in batch if i in rows)

    task = lambda row: _Picture(row.data or b"", max(row.width, row.height))  # noqa: E731
    for row, read in services.ray.read_text(pictures(), task):  # type: ignore[union-attr]
        if read.error is not None:
            progress.error(read.error, image_id=row.image_id)
            continue
        progress.encoded_by[read.node] += 1
        yield row.id, read.lines


def read_into(
    services: Services, collection: str, ids: Sequence[int], progress: JobProgress | None = None
) -> dict[int, list[ocr.OcrLine]]:
    """Reads the images here and stores their lines (the keyword index follows); an image that cannot be decoded
    is reported on ``progress`` and left unread."""
    if not ids:
        return {}
    rows = services.metadata.fetch(collection, list(ids), with_data=True, include_pending=True)
    settings = services.settings
    decode = lambda row: (row, _picture(row, settings.max_image_pixels, settings.ocr_max_side))  # noqa: E731
    found: dict[int, list[ocr.OcrLine]] = {}
    for row, picture in services.decode_pool.map(decode, [rows[i] for i in ids if i in rows]):
        if isinstance(picture, str):
            if progress is not None:
                progress.error(picture, image_id=row.image_id)
            continue
        scale = max(row.width, row.height) / max(picture.size)  # sizes before EXIF rotation, so the longer sides
        found[row.id] = [line.scaled(scale) for line in services.ocr.read(picture)]
    store(services, collection, found)
    return found


def store(services: Services, collection: str, found: Mapping[int, list[ocr.OcrLine]]) -> None:
    """The lines of each image as its OCR text (the keyword index follows)."""
    services.texts.set_fields(
        collection,
        {
            image: {"ocr": "\n".join(line.text for line in lines) or None, "ocr_lines": [x.as_dict() for x in lines]}
            for image, lines in found.items()
        },
    )


def _picture(row: ImageRecord, max_pixels: int, max_side: int) -> images.Image.Image | str:
    try:
        return images.picture_for_ocr(row.data or b"", max_pixels, max_side)
    except images.InvalidImage as exc:
        return str(exc)


def after_write(
    services: Services, collection: str, ids: Sequence[int], read: Mapping[int, list[ocr.OcrLine]] | None = None
) -> None:
    """With IMGSEARCH_OCR=on, new and changed images are read as they are stored (ingest and sync); ``read``: the
    lines of those the encoder actors read already (on Ray), stored as they are."""
    if ids and ocr.reads_at_write(services.settings):
        wanted = set(ids)
        known = {image: lines for image, lines in (read or {}).items() if image in wanted}
        store(services, collection, known)
        read_into(services, collection, [image for image in ids if image not in known])
