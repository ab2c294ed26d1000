"""The filter fields each vector carries in Milvus (adapters/milvus_schema.py), built from what the metadata DB
knows, and written again when an image's tags change."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from adapters.images import ImageFacts
from adapters.stores.milvus.milvus_schema import (
    ADDED,
    CAMERA,
    HEIGHT,
    LATITUDE,
    LONGITUDE,
    MAX_SOURCE_LENGTH,
    MIME,
    SOURCE,
    TAGS,
    TAKEN,
    UNKNOWN_POSITION,
    UNKNOWN_TAKEN,
    WIDTH,
)
from adapters.stores.sql.metadata_store import ImageRecord, MetadataStore
from adapters.stores.sql.tag_store import TagStore
from operations.services import Services


def unix_seconds(moment: dt.datetime | None) -> int:
    """The metadata DB keeps naive UTC."""
    if moment is None:
        return 0
    return int(moment.replace(tzinfo=dt.UTC).timestamp())


def new_image_fields(
    mime: str,
    width: int,
    height: int,
    origin: str | None,
    added: dt.datetime | None = None,
    tags: Sequence[str] = (),
    photo: ImageFacts | ImageRecord | None = None,
) -> dict[str, Any]:
    """``photo``: where the EXIF facts come from (a new image's facts, or its metadata row)."""
    moment = added or dt.datetime.now(dt.UTC).replace(tzinfo=None)
    taken = getattr(photo, "taken_at", None)
    latitude, longitude = getattr(photo, "latitude", None), getattr(photo, "longitude", None)
    placed = latitude is not None and longitude is not None
    return {
        ADDED: unix_seconds(moment),
        SOURCE: (origin or "")[:MAX_SOURCE_LENGTH],
        MIME: mime,
        WIDTH: int(width),
        HEIGHT: int(height),
        TAGS: list(tags),
        TAKEN: unix_seconds(taken) if taken is not None else UNKNOWN_TAKEN,
        CAMERA: (getattr(photo, "camera", None) or "")[:128],
        LATITUDE: float(latitude) if placed else UNKNOWN_POSITION,
        LONGITUDE: float(longitude) if placed else UNKNOWN_POSITION,
    }


def photo_fields(facts: ImageFacts, origin: str | None) -> dict[str, Any]:
    return new_image_fields(facts.mime, facts.width, facts.height, origin, photo=facts)


def fields_of(records: Mapping[int, ImageRecord], tags: Mapping[int, Sequence[str]]) -> dict[int, dict[str, Any]]:
    return {
        i: new_image_fields(r.mime, r.width, r.height, r.origin, r.created_at, tags.get(i, ()), photo=r)
        for i, r in records.items()
    }


def fields_for_ids(metadata: MetadataStore, collection: str, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Rows (searchable or pending) and tags from the metadata DB; ids without a row are absent."""
    records = metadata.fetch(collection, ids, include_pending=True)
    tags = {i: [t.tag for t in found] for i, found in TagStore(metadata.engine).tags_of(list(records)).items()}
    return fields_of(records, tags)


def refresh(services: Services, collection: str, ids: Sequence[int]) -> None:
    """Writes the images' vectors again with their current fields (after their tags changed), in every vector
    generation of the collection (a re-embed's too)."""
    if not ids:
        return
    record = services.generations.get(collection)
    names = [record.vector_collection, record.next_vectors] if record else [collection]
    for name in [n for n in names if n and services.vectors.has_scalar_fields(n)]:
        vectors = services.vectors.get(name, ids)
        fields = fields_for_ids(services.metadata, collection, [i for i in ids if i in vectors])
        present = [i for i in ids if i in vectors and i in fields]
        if present:
            services.vectors.upsert(
                name, present, np.stack([vectors[i] for i in present]), [fields[i] for i in present]
            )
