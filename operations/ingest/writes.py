"""The one write order that keeps Milvus and the metadata DB consistent, used by every writer.

Add: rows inserted *pending* (the row id becomes the vector id) → vectors upserted → rows marked indexed.
Delete: row hidden (not indexed) → vector deleted → row deleted.
Only indexed rows are counted or returned, so a failure between two steps never shows a row without its
vector; what it leaves behind (pending rows, orphan vectors) is completed by re-running the same
operation or repaired by ``reconcile``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from adapters.images import ImageFacts
from adapters.stores.sql.metadata_store import NewImage
from operations.collections import generations
from operations.errors import NotFound
from operations.ingest.vector_fields import photo_fields
from operations.people import face_vectors
from operations.services import Services

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageToWrite:
    image_id: str
    data: bytes
    facts: ImageFacts
    vector: np.ndarray
    source: str | None = None
    origin: str | None = None
    preview: bool = False  # ``data`` is a preview of an original that stays in its source file
    words: Mapping[str, Any] | None = None  # words about it that came with it: caption, description, ocr(_lines)
    kind: str | None = None  # a video or one of its frames (operations/ingest/videos.py); None: a photo
    parent: int | None = None
    at_ms: int | None = None
    duration_ms: int | None = None
    seq: int | None = None  # a frame's place among its video's samples


def write_batch(services: Services, collection: str, items: Sequence[ImageToWrite], model: str) -> dict[str, int]:
    """Store a batch (its vectors made by ``model``) in both stores; returns the vector id of each image_id written."""
    return store_vectors(services, collection, insert_rows(services, collection, items), model)


def insert_rows(services: Services, collection: str, items: Sequence[ImageToWrite]) -> list[tuple[ImageToWrite, int]]:
    """Step 1: the rows, pending; each item written with its row id (= its vector id). A bulk load runs this for
    one batch while ``store_vectors`` runs for the batch before (``operations.ingest.write_pipeline``)."""
    if not items:
        return []
    ids = services.metadata.insert_pending(
        collection,
        [
            NewImage(
                i.image_id,
                i.data,
                i.facts.mime,
                i.facts.width,
                i.facts.height,
                i.facts.sha256,
                i.source,
                i.origin,
                i.preview,
                i.facts.taken_at,
                i.facts.taken_offset,
                i.facts.camera,
                i.facts.latitude,
                i.facts.longitude,
                i.kind,
                i.parent,
                i.at_ms,
                i.duration_ms,
                i.seq,
            )
            for i in items
        ],
    )
    written = [(i, ids[i.image_id]) for i in items if i.image_id in ids]
    # Their words (file name, captions) are indexed while the rows are pending: keyword search sees them with
    # the vectors, when the rows become searchable. A source folder's image is named by its file's path, which
    # the sync records (and indexes) after this step.
    words = {row_id: i.words for i, row_id in written if i.words}
    named = [row_id for i, row_id in written if i.source and not i.preview and not i.words]
    services.texts.set_fields(collection, words, also=named)
    return written


def store_vectors(
    services: Services, collection: str, rows: Sequence[tuple[ImageToWrite, int]], model: str
) -> dict[str, int]:
    """Steps 2 and 3: the vectors (made by ``model``) under the rows' ids, in every generation of the collection
    (a re-embed's too), then the rows marked indexed (searchable)."""
    if not rows:
        return {}
    vector_ids = [row_id for _, row_id in rows]
    fields = [photo_fields(item.facts, item.origin) for item, _ in rows]
    matrix = np.stack([item.vector for item, _ in rows])
    generations.put_vectors(services, collection, vector_ids, matrix, fields, model, [item.data for item, _ in rows])
    services.metadata.mark_indexed(vector_ids)
    return {item.image_id: row_id for item, row_id in rows}


def delete_image(services: Services, collection: str, image_id: str) -> int:
    record = services.metadata.get_image(collection, image_id, include_pending=True)
    if record is None:
        raise NotFound(f"image {image_id!r} not found in collection {collection!r}")
    delete_images(services, collection, [record.id])
    logger.info("deleted image %s/%s (id %d)", collection, image_id, record.id)
    return record.id


def delete_images(services: Services, collection: str, ids: list[int]) -> None:
    """Hidden first, then the vectors, then the rows: a failure part-way leaves rows reconcile can finish. A
    video goes with its frames."""
    kept: list[str] = []  # videos the service keeps (uploads, ingests): their files go with their rows
    if ids and services.metadata.has_videos(collection):
        frames = services.metadata.frames_of(ids)
        ids = [*ids, *(frame for found in frames.values() for frame, _ in found if frame not in ids)]
        records = services.metadata.fetch(collection, list(frames) or ids, include_pending=True)
        kept = [r.sha256 for r in records.values() if r.is_video and not (r.origin or "").startswith("source:")]
    if ids:
        services.metadata.mark_indexed(ids, indexed=False)
        generations.delete_vectors(services, collection, ids)
        face_vectors.forget_images(services, collection, ids)
        services.metadata.delete_rows(ids)
    for sha in kept:
        services.video_store.remove(collection, sha)
