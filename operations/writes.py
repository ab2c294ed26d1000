"""The one write order that keeps Milvus and the metadata DB consistent, used by every writer.

Add: rows inserted *pending* (the row id becomes the vector id) → vectors upserted → rows marked indexed.
Delete: row hidden (not indexed) → vector deleted → row deleted.
Only indexed rows are counted or returned, so a failure between two steps never shows a row without its
vector; what it leaves behind (pending rows, orphan vectors) is completed by re-running the same
operation or repaired by ``reconcile``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from adapters.images import ImageFacts
from adapters.metadata_store import NewImage
from operations.errors import NotFound
from operations.services import Services

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageToWrite:
    image_id: str
    data: bytes
    facts: ImageFacts
    vector: np.ndarray
    source: str | None = None


def write_batch(services: Services, collection: str, items: Sequence[ImageToWrite]) -> dict[str, int]:
    """Store a batch in both stores; returns the vector id of each image_id written."""
    if not items:
        return {}
    ids = services.metadata.insert_pending(
        collection,
        [
            NewImage(i.image_id, i.data, i.facts.mime, i.facts.width, i.facts.height, i.facts.sha256, i.source)
            for i in items
        ],
    )
    written = [i for i in items if i.image_id in ids]
    vector_ids = [ids[i.image_id] for i in written]
    services.vectors.upsert(collection, vector_ids, np.stack([i.vector for i in written]))
    services.metadata.mark_indexed(vector_ids)
    return {i.image_id: ids[i.image_id] for i in written}


def delete_image(services: Services, collection: str, image_id: str) -> int:
    record = services.metadata.get_image(collection, image_id, include_pending=True)
    if record is None:
        raise NotFound(f"image {image_id!r} not found in collection {collection!r}")
    services.metadata.mark_indexed([record.id], indexed=False)
    services.vectors.delete(collection, [record.id])
    services.metadata.delete_rows([record.id])
    logger.info("deleted image %s/%s (id %d)", collection, image_id, record.id)
    return record.id
