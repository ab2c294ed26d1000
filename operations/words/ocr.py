"""OCR of a collection's images into their words (keyword search then finds 发票 or a shop's name), as a job
(`POST /collections/{name}/ocr`, `imgsearch ocr`) and, with IMGSEARCH_OCR=on, right after ingest and sync.

OCR reads the stored picture: the preview for an image of a source folder (1280 px, plenty for text a person can
read), the image itself otherwise, scaled to IMGSEARCH_OCR_MAX_SIDE; boxes are given in the original's pixels. An
image already read is skipped unless ``redo``, so a stopped or killed job resumes where it was."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from adapters import images, ocr
from adapters.stores.metadata_store import ImageRecord
from operations.collections import collections
from operations.errors import Conflict
from operations.jobs.job_progress import JobProgress
from operations.services import Services

logger = logging.getLogger(__name__)

BATCH = 16


def require_available() -> None:
    if not ocr.available():
        raise Conflict(ocr.MISSING)


def run_job(services: Services, collection: str, progress: JobProgress, redo: bool = False) -> str:
    require_available()
    collections.require(services, collection)
    progress.total = services.metadata.count(collection)
    progress.flush()
    read = with_text = 0
    for page in services.metadata.iter_image_pages(collection, page=BATCH, with_data=False):
        if progress.should_stop():
            return f"stopped: {read} images read, {with_text} with text"
        todo = [row.id for row in page] if redo else sorted(services.texts.without_ocr([row.id for row in page]))
        found = read_into(services, collection, todo, progress)
        read += len(found)
        with_text += sum(1 for lines in found.values() if lines)
        progress.done += len(page)
        progress.loaded = read
        progress.skipped += len(page) - len(todo)
        progress.flush()
    return f"{read} images read, {with_text} with text, {progress.skipped} read before"


def read_into(
    services: Services, collection: str, ids: Sequence[int], progress: JobProgress | None = None
) -> dict[int, list[ocr.OcrLine]]:
    """Reads the images and stores their lines (the keyword index follows); an image that cannot be decoded is
    reported on ``progress`` and left unread."""
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
    services.texts.set_fields(
        collection,
        {
            image: {"ocr": "\n".join(line.text for line in lines) or None, "ocr_lines": [x.as_dict() for x in lines]}
            for image, lines in found.items()
        },
    )
    return found


def _picture(row: ImageRecord, max_pixels: int, max_side: int) -> images.Image.Image | str:
    try:
        return images.fit(images.decode_rgb(row.data or b"", max_pixels, min_longest=max_side), max_side)
    except images.InvalidImage as exc:
        return str(exc)


def after_write(services: Services, collection: str, ids: Sequence[int]) -> None:
    """With IMGSEARCH_OCR=on, new and changed images are read as they are stored (ingest and sync)."""
    if services.settings.ocr == "on" and ids and ocr.available():
        read_into(services, collection, ids)
