"""Faces of a collection's photos, found and embedded as a job (`POST /collections/{name}/faces`, `imgsearch faces`)
and, with IMGSEARCH_FACES=on, right after upload, ingest and sync; persons follow (``cluster_job``).

Faces are found on the stored picture (a source folder's 1280-pixel preview, an upload's original), scaled to
IMGSEARCH_FACE_MAX_SIDE; boxes are kept in the original's pixels. An image already read is skipped unless
``redo``, so a stopped or killed job resumes where it was. Videos and their samples are left alone. With a Ray
cluster the pictures are read by face actors there (the cluster's cores, not this process's)."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from adapters import faces
from adapters.stores.sql.face_store import FaceBox
from adapters.stores.sql.metadata_store import ImageRecord
from config import Settings
from operations.collections import collections
from operations.errors import Conflict
from operations.ingest.streams import batched
from operations.jobs.job_progress import JobProgress
from operations.models.face_reads import FaceRead
from operations.people import cluster_job, face_vectors
from operations.services import Services

logger = logging.getLogger(__name__)

BATCH = 16


def require_available(settings: Settings) -> None:
    if not faces.available(settings):
        raise Conflict(faces.MISSING)


def run_job(services: Services, collection: str, progress: JobProgress, redo: bool = False) -> str:
    require_available(services.settings)
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

    # A batch is stored while the next one is read: the readers never wait for the database.
    with ThreadPoolExecutor(1, thread_name_prefix="face-store") as writer:
        stored: Future[None] | None = None
        for ids in batched(todo(), BATCH):
            failed = progress.failed
            found = read(services, collection, ids, progress)
            if stored is not None:
                stored.result()
            stored = writer.submit(store, services, collection, found)
            counts["read"] += len(found)
            counts["faces"] += sum(len(f) for f in found.values())
            progress.done += len(ids) - (progress.failed - failed)  # a picture that failed was counted as done then
            progress.loaded = counts["read"]
            progress.flush()
        if stored is not None:
            stored.result()
    stopped = progress.should_stop()
    persons = "" if stopped else f"; {cluster_job.run(services, collection)}"
    summary = f"{counts['read']} images read, {counts['faces']} faces found, {progress.skipped} skipped{persons}"
    return f"stopped: {summary}" if stopped else summary


def read_into(
    services: Services, collection: str, ids: Sequence[int], progress: JobProgress | None = None
) -> dict[int, list[faces.FoundFace]]:
    """Reads the photos' faces and stores them."""
    found = read(services, collection, ids, progress)
    store(services, collection, found)
    return found


def read(
    services: Services, collection: str, ids: Sequence[int], progress: JobProgress | None = None
) -> dict[int, list[faces.FoundFace]]:
    """The photos' faces, read here (or on the Ray cluster's face actors); a picture that cannot be decoded is
    reported on ``progress`` and left unread."""
    if not ids:
        return {}
    rows = services.metadata.fetch(collection, list(ids), with_data=True, include_pending=True)
    photos = [rows[i] for i in ids if i in rows and rows[i].kind is None]
    found: dict[int, list[faces.FoundFace]] = {}
    for row, result in _on_cluster(services, photos) if services.ray is not None else _here(services, photos):
        if result.error is not None:
            if progress is not None:
                progress.error(result.error, image_id=row.image_id)
            else:
                logger.warning("faces of %s/%s not read: %s", collection, row.image_id, result.error)
            continue
        if progress is not None and result.node:
            progress.encoded_by[result.node] += 1
        found[row.id] = result.faces
    return found


def _here(services: Services, rows: Sequence[ImageRecord]) -> Iterator[tuple[ImageRecord, FaceRead]]:
    """Here: on the face worker processes (one picture each at a time), or with one worker on the decode threads
    (dlib holds the GIL while it works: one picture at a time)."""
    settings = services.settings
    if services.face_pool is not None:
        pictures = ((row.data or b"", row.width, row.height) for row in rows)
        for row, (found, error) in zip(rows, services.face_pool.read(pictures), strict=True):
            yield row, FaceRead(found, error)
        return
    model = services.faces

    def read(row: ImageRecord) -> tuple[ImageRecord, FaceRead]:
        found, why = faces.read_or_why(
            row.data or b"", row.width, row.height, settings.max_image_pixels, settings.face_max_side, model
        )
        return row, FaceRead(found, why)

    yield from services.decode_pool.map(read, rows)


def _on_cluster(services: Services, rows: Sequence[ImageRecord]) -> Iterator[tuple[ImageRecord, FaceRead]]:
    """On the Ray cluster's face actors (the cluster cannot reach the metadata DB: the bytes travel)."""
    yield from services.ray.find_faces(rows)  # type: ignore[union-attr]


def store(services: Services, collection: str, found: Mapping[int, Sequence[faces.FoundFace]]) -> None:
    """Each image's faces replace those it had: rows, then vectors (a crash between leaves rows whose vectors a
    redo writes; a search never sees a vector without its row)."""
    if not found:
        return
    boxes = {image: [FaceBox(*face.box, face.score) for face in items] for image, items in found.items()}
    new, removed = services.face_store.replace(collection, faces.model_name(services.settings), boxes)
    face_vectors.delete(services.vectors, collection, removed)
    ids = [face for image in found for face in new[image]]
    if ids:
        matrix = np.stack([face.vector for image in found for face in found[image]]).astype(np.float32)
        face_vectors.put(services.vectors, collection, ids, matrix)


def after_write(services: Services, collection: str, ids: Sequence[int]) -> None:
    """With IMGSEARCH_FACES=on, new and changed photos are read as they are stored (a batch at a time)."""
    if ids and faces.reads_at_write(services.settings):
        read_into(services, collection, ids)


def after_job(services: Services, collection: str) -> None:
    """Once an upload, ingest or sync has stored its photos: their faces are placed (one clustering, not one per
    batch)."""
    if faces.reads_at_write(services.settings) and services.face_store.has_unplaced(collection):
        cluster_job.run(services, collection)
