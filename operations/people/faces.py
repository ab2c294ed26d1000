"""Faces of a collection's photos, found and embedded as a job (`POST /collections/{name}/faces`, `imgsearch faces`)
and, with IMGSEARCH_FACES=on, right after upload, ingest and sync; persons follow (``cluster_job``).

Faces are found on the stored picture (a source folder's 1280-pixel preview, an upload's original), scaled to
IMGSEARCH_FACE_MAX_SIDE; boxes are kept in the original's pixels. An image already read is skipped unless
``redo``, so a stopped or killed job resumes where it was. Videos and their samples are left alone. With a Ray
cluster the pictures are read by face actors there (the cluster's cores, not this process's)."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence

import numpy as np

from adapters import faces, images
from adapters.stores.sql.face_store import FaceBox
from adapters.stores.sql.metadata_store import ImageRecord
from operations.collections import collections
from operations.errors import Conflict
from operations.ingest.streams import batched
from operations.jobs.job_progress import JobProgress
from operations.people import cluster_job, face_vectors
from operations.services import Services

logger = logging.getLogger(__name__)

BATCH = 16


def require_available() -> None:
    if not faces.available():
        raise Conflict(faces.MISSING)


def run_job(services: Services, collection: str, progress: JobProgress, redo: bool = False) -> str:
    require_available()
    collections.require(services, collection)
    progress.total = services.metadata.count(collection)
    progress.flush()
    counts = {"read": 0, "faces": 0}

    def todo() -> Iterator[int]:
        """The photos to read, page after page; videos, and images read before, count as done at once."""
        for page in services.metadata.iter_image_pages(collection, page=BATCH, with_data=False):
            if progress.should_stop():
                return
            photos = [row.id for row in page if row.kind is None]
            videos = sum(1 for row in page if row.kind == "video")
            ids = photos if redo else sorted(set(photos) - services.face_store.scanned(photos))
            progress.done += videos + len(photos) - len(ids)
            progress.skipped += videos + len(photos) - len(ids)
            if not ids:
                progress.flush()
            yield from ids

    for ids in batched(todo(), BATCH):
        failed = progress.failed
        found = read_into(services, collection, ids, progress)
        counts["read"] += len(found)
        counts["faces"] += sum(len(f) for f in found.values())
        progress.done += len(ids) - (progress.failed - failed)  # a picture that failed was counted as done then
        progress.loaded = counts["read"]
        progress.flush()
    stopped = progress.should_stop()
    persons = "" if stopped else f"; {cluster_job.run(services, collection)}"
    summary = f"{counts['read']} images read, {counts['faces']} faces found, {progress.skipped} skipped{persons}"
    return f"stopped: {summary}" if stopped else summary


def read_into(
    services: Services, collection: str, ids: Sequence[int], progress: JobProgress | None = None
) -> dict[int, list[faces.FoundFace]]:
    """Reads the images' faces here (or on the Ray cluster) and stores them; an image that cannot be decoded is
    reported on ``progress`` and left unread."""
    if not ids:
        return {}
    rows = services.metadata.fetch(collection, list(ids), with_data=True, include_pending=True)
    photos = [rows[i] for i in ids if i in rows and rows[i].kind is None]
    if services.ray is not None:
        found, errors = services.ray.find_faces(photos, services.settings)
    else:
        found, errors = _read_here(services, photos)
    for row, error in errors:
        if progress is not None:
            progress.error(error, image_id=row.image_id)
        else:
            logger.warning("faces of %s/%s not read: %s", collection, row.image_id, error)
    store(services, collection, found)
    return found


def _read_here(
    services: Services, rows: Sequence[ImageRecord]
) -> tuple[dict[int, list[faces.FoundFace]], list[tuple[ImageRecord, str]]]:
    settings = services.settings
    decode = lambda row: (row, picture(row, settings.max_image_pixels, settings.face_max_side))  # noqa: E731
    found: dict[int, list[faces.FoundFace]] = {}
    errors: list[tuple[ImageRecord, str]] = []
    for row, read in services.decode_pool.map(decode, rows):
        if isinstance(read, str):
            errors.append((row, read))
            continue
        found[row.id] = in_original(services.faces.find(read), row, read.size)
    return found, errors


def picture(row: ImageRecord, max_pixels: int, max_side: int) -> images.Image.Image | str:
    """The stored picture, upright, at most ``max_side``; or why it cannot be read."""
    try:
        return images.picture_for_ocr(row.data or b"", max_pixels, max_side)
    except images.InvalidImage as exc:
        return str(exc)


def in_original(found: Sequence[faces.FoundFace], row: ImageRecord, size: tuple[int, int]) -> list[faces.FoundFace]:
    """Boxes from the picture read into the original's pixels (the row's size is before EXIF rotation: the longer
    sides match)."""
    scale = max(row.width, row.height) / max(size)
    width, height = (
        (row.width, row.height) if (row.width >= row.height) == (size[0] >= size[1]) else (row.height, row.width)
    )
    return [face.scaled(scale, width, height) for face in found]


def store(services: Services, collection: str, found: Mapping[int, Sequence[faces.FoundFace]]) -> None:
    """Each image's faces replace those it had: rows, then vectors (a crash between leaves rows whose vectors a
    redo writes; a search never sees a vector without its row)."""
    if not found:
        return
    boxes = {image: [FaceBox(*face.box, face.score) for face in items] for image, items in found.items()}
    new, removed = services.face_store.replace(collection, services.faces.name, boxes)
    face_vectors.delete(services, collection, removed)
    ids = [face for image in found for face in new[image]]
    if ids:
        matrix = np.stack([face.vector for image in found for face in found[image]]).astype(np.float32)
        face_vectors.put(services, collection, ids, matrix)


def after_write(services: Services, collection: str, ids: Sequence[int]) -> None:
    """With IMGSEARCH_FACES=on, new and changed photos are read as they are stored, and their faces placed."""
    if ids and faces.reads_at_write(services.settings):
        found = read_into(services, collection, ids)
        if any(found.values()):
            cluster_job.run(services, collection)
