"""Writes that reach every vector generation of a collection: the Milvus collection serving it and, while a
re-embed builds one for another model (or keeps the previous one after a switch, for a rollback), that one too,
each with its own model's vectors. The generations are read from the metadata DB at each write, never from a
cache, so a write that starts after a re-embed began always reaches the new generation."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from adapters import images
from operations.services import Services

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Generation:
    vectors: str  # the Milvus collection
    model: str
    dim: int
    serving: bool


def of(services: Services, collection: str) -> list[Generation]:
    """The serving generation first, then the other one if there is one; none for an unknown collection."""
    record = services.generations.get(collection)
    if record is None:
        return []
    found = [Generation(record.vector_collection, record.model, record.dim, True)]
    if record.next_state and record.next_vectors and record.next_model and record.next_dim:
        found.append(Generation(record.next_vectors, record.next_model, record.next_dim, False))
    return found


def put_vectors(
    services: Services,
    collection: str,
    ids: Sequence[int],
    vectors: np.ndarray,
    fields: Sequence[dict[str, Any]],
    model: str,
    data: Sequence[bytes],
) -> None:
    """``vectors`` (made by ``model`` from the images ``data``) into every generation: as they are where the
    generation's model is ``model``, encoded again from ``data`` with the other model where not."""
    targets = of(services, collection) or [Generation(collection, model, vectors.shape[1], True)]
    for target in targets:
        own = vectors if target.model == model else encode_bytes(services, target.model, data)
        services.vectors.upsert(target.vectors, ids, own, fields)


def delete_vectors(services: Services, collection: str, ids: Sequence[int]) -> None:
    for target in of(services, collection) or [Generation(collection, "", 0, True)]:
        services.vectors.delete(target.vectors, ids)


def flush(services: Services, collection: str) -> None:
    """Once after a bulk write: a server seals what was written and indexes it (Lite gains nothing)."""
    for target in of(services, collection):
        if services.vectors.has_collection(target.vectors):
            services.vectors.flush(target.vectors)


def encode_bytes(services: Services, model: str, data: Sequence[bytes]) -> np.ndarray:
    """Stored image bytes (an upload's original, a source's preview) through ``model``."""
    encoder = services.models.get(model)
    max_pixels = services.settings.max_image_pixels
    pixels = [encoder.preprocess(images.decode_rgb(item, max_pixels)) for item in data]
    return encoder.encode_pixels(pixels)
