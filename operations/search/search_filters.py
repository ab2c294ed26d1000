"""Filters for a search (immich's filtered smart search), checked and turned into one Milvus expression over the
scalar fields each vector carries, so the top-k is the true top-k of the filtered set."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from adapters.stores.milvus_schema import ADDED, HEIGHT, MIME, SOURCE, TAGS, WIDTH
from adapters.stores.tag_store import TagStore
from operations.errors import Conflict, InvalidInput
from operations.ingest.vector_fields import unix_seconds
from operations.services import Services

MAX_VALUES = 64


@dataclass(frozen=True)
class SearchFilters:
    tags_any: Sequence[str] = field(default_factory=tuple)  # at least one of these tags
    tags_all: Sequence[str] = field(default_factory=tuple)  # every one of these tags
    added_after: dt.datetime | None = None
    added_before: dt.datetime | None = None
    sources: Sequence[str] = field(default_factory=tuple)  # "upload", "ingest:<folder or zip>", "load:<path>/<split>"
    mimes: Sequence[str] = field(default_factory=tuple)
    min_width: int | None = None
    min_height: int | None = None

    @property
    def empty(self) -> bool:
        return self == SearchFilters()


def _literal(value: str) -> str:
    """A Milvus string literal: JSON's double-quoted escaping is what its expression parser reads."""
    return json.dumps(value, ensure_ascii=False)


def _naive_utc(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(dt.UTC).replace(tzinfo=None) if moment.tzinfo else moment


def expression(services: Services, collection: str, filters: SearchFilters | None) -> str | None:
    """The Milvus filter for ``filters`` (None when there is nothing to filter); refuses contradictions, unknown
    tags, and collections made before the filter fields until they are upgraded."""
    if filters is None or filters.empty:
        return None
    for name in ("tags_any", "tags_all", "sources", "mimes"):
        values = getattr(filters, name)
        if len(values) > MAX_VALUES or any(not isinstance(v, str) or not v.strip() for v in values):
            raise InvalidInput(f"{name}: at most {MAX_VALUES} non-empty strings")
    tags = {*filters.tags_any, *filters.tags_all}
    if tags:
        unknown = sorted(tags - TagStore(services.metadata.engine).known(collection, sorted(tags)))
        if unknown:
            raise InvalidInput(f"no image of {collection!r} has the tag(s) {', '.join(unknown[:5])}")
    after = _naive_utc(filters.added_after) if filters.added_after else None
    before = _naive_utc(filters.added_before) if filters.added_before else None
    if after and before and after > before:
        raise InvalidInput("added_after is later than added_before: no image can match")
    for name in ("min_width", "min_height"):
        value = getattr(filters, name)
        if value is not None and not 0 <= value <= 1_000_000:
            raise InvalidInput(f"{name} must be between 0 and 1000000, got {value}")
    if not services.vectors.has_scalar_fields(collection):
        raise Conflict(f"collection {collection!r} predates filters: restart the service to upgrade it")
    parts = []
    if filters.tags_any:
        parts.append(f"ARRAY_CONTAINS_ANY({TAGS}, [{', '.join(map(_literal, filters.tags_any))}])")
    if filters.tags_all:
        parts.append(f"ARRAY_CONTAINS_ALL({TAGS}, [{', '.join(map(_literal, filters.tags_all))}])")
    if after:
        parts.append(f"{ADDED} >= {unix_seconds(after)}")
    if before:
        parts.append(f"{ADDED} <= {unix_seconds(before)}")
    if filters.sources:
        parts.append(f"{SOURCE} in [{', '.join(map(_literal, filters.sources))}]")
    if filters.mimes:
        parts.append(f"{MIME} in [{', '.join(map(_literal, filters.mimes))}]")
    if filters.min_width:
        parts.append(f"{WIDTH} >= {int(filters.min_width)}")
    if filters.min_height:
        parts.append(f"{HEIGHT} >= {int(filters.min_height)}")
    return " and ".join(parts) or None


def validate_offset(services: Services, collection: str, offset: int, top_k: int) -> int:
    """The next page: bounded by IMGSEARCH_MAX_OFFSET, and never past the collection's last image."""
    limit = services.settings.max_offset
    if not 0 <= offset <= limit:
        raise InvalidInput(f"offset must be between 0 and {limit} (IMGSEARCH_MAX_OFFSET), got {offset}")
    if offset + top_k > 16384:
        raise InvalidInput("offset + top_k must be at most 16384 (Milvus's limit)")
    if offset:
        count = services.metadata.count(collection)
        if offset >= count:
            raise InvalidInput(f"offset {offset} is past the end: {collection!r} holds {count} images")
    return offset
