"""Where a collection's face vectors live: a Milvus collection beside its image vectors, on Lite and on a server
alike, named after it (a re-embed of the images leaves it alone: faces do not depend on the image model)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from adapters.stores.milvus.vector_store import VectorStore
from operations.errors import Conflict
from operations.services import Services

SUFFIX = "__faces"


def collection_name(collection: str) -> str:
    return f"{collection}{SUFFIX}"


def put(store: VectorStore, collection: str, ids: Sequence[int], vectors: np.ndarray) -> None:
    if not len(ids):
        return
    name = collection_name(collection)
    try:
        store.ensure_collection(name, int(vectors.shape[1]))
    except ValueError as exc:  # another face model's vectors are there
        raise Conflict(
            f"the faces of {collection!r} were read by another face model ({exc}): remove them first "
            f"(DELETE /collections/{collection}/faces), then run the face job"
        ) from exc
    store.upsert(name, list(ids), vectors)


def delete(store: VectorStore, collection: str, ids: Sequence[int]) -> None:
    name = collection_name(collection)
    if ids and store.has_collection(name):
        store.delete(name, list(ids))


def forget_images(services: Services, collection: str, image_ids: Sequence[int]) -> None:
    """Images going: their faces (rows and vectors) go with them."""
    delete(services.vectors, collection, services.face_store.delete_faces_of(image_ids))


def drop(services: Services, collection: str) -> None:
    """The collection going: every face, person and face vector of it."""
    services.face_store.wipe(collection)
    services.vectors.drop_collection(collection_name(collection))
