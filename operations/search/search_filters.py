"""Filters for a search (immich's filtered smart search), checked and turned into one Milvus expression over the
scalar fields each vector carries, so the top-k is the true top-k of the filtered set."""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from adapters.stores.milvus.milvus_schema import (
    ADDED,
    CAMERA,
    HEIGHT,
    ID_FIELD,
    LATITUDE,
    LONGITUDE,
    MIME,
    SOURCE,
    TAGS,
    TAKEN,
    UNKNOWN_TAKEN,
    WIDTH,
)
from adapters.stores.sql.metadata_store import CollectionRecord
from adapters.stores.sql.tag_store import TagStore
from operations.errors import Conflict, InvalidInput
from operations.ingest.vector_fields import unix_seconds
from operations.ingest.videos import MIMES as VIDEO_MIMES
from operations.services import Services

MAX_VALUES = 64
KINDS = ("photo", "video")
EARTH_RADIUS_KM = 6371.0  # mean radius
KM_PER_DEGREE = math.radians(EARTH_RADIUS_KM)  # of latitude: 111.195 km
MAX_CORNER_IDS = 100_000  # photos a near filter may exclude by id (the expression grows ~8 bytes a photo)
MAX_PEOPLE_IDS = 200_000  # photos a people filter may name by id


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
    taken_after: dt.datetime | None = None  # EXIF capture time
    taken_before: dt.datetime | None = None
    cameras: Sequence[str] = field(default_factory=tuple)
    near: tuple[float, float, float] | None = None  # (latitude, longitude, km)
    kinds: Sequence[str] = field(default_factory=tuple)  # "photo", "video" (a video's moments); empty: both
    people: Sequence[int] = field(default_factory=tuple)  # persons who are all in the photo
    people_any: Sequence[int] = field(default_factory=tuple)  # at least one of these persons is

    @property
    def empty(self) -> bool:
        return self == SearchFilters()


def _literal(value: str) -> str:
    """A Milvus string literal: JSON's double-quoted escaping is what its expression parser reads."""
    return json.dumps(value, ensure_ascii=False)


def _naive_utc(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(dt.UTC).replace(tzinfo=None) if moment.tzinfo else moment


def expression(services: Services, record: CollectionRecord, filters: SearchFilters | None) -> str | None:
    """The Milvus filter for ``filters`` (None when there is nothing to filter); refuses contradictions, unknown
    tags, and collections made before the filter fields until they are upgraded."""
    if filters is None or filters.empty:
        return None
    collection, vector_collection = record.name, record.vector_collection
    for name in ("tags_any", "tags_all", "sources", "mimes", "cameras"):
        values = getattr(filters, name)
        if len(values) > MAX_VALUES or any(not isinstance(v, str) or not v.strip() for v in values):
            raise InvalidInput(f"{name}: at most {MAX_VALUES} non-empty strings")
    unknown_kinds = sorted(set(filters.kinds) - set(KINDS))
    if unknown_kinds:
        raise InvalidInput(f"kinds: each of {', '.join(KINDS)}, got {', '.join(map(str, unknown_kinds))}")
    tags = {*filters.tags_any, *filters.tags_all}
    if tags:
        unknown = sorted(tags - TagStore(services.metadata.engine).known(collection, sorted(tags)))
        if unknown:
            raise InvalidInput(f"no image of {collection!r} has the tag(s) {', '.join(unknown[:5])}")
    after = _naive_utc(filters.added_after) if filters.added_after else None
    before = _naive_utc(filters.added_before) if filters.added_before else None
    if after and before and after > before:
        raise InvalidInput("added_after is later than added_before: no image can match")
    taken_after = _naive_utc(filters.taken_after) if filters.taken_after else None
    taken_before = _naive_utc(filters.taken_before) if filters.taken_before else None
    if taken_after and taken_before and taken_after > taken_before:
        raise InvalidInput("taken_after is later than taken_before: no image can match")
    for name in ("min_width", "min_height"):
        value = getattr(filters, name)
        if value is not None and not 0 <= value <= 1_000_000:
            raise InvalidInput(f"{name} must be between 0 and 1000000, got {value}")
    if not services.vectors.has_scalar_fields(vector_collection):
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
    if taken_after:
        parts.append(f"{TAKEN} >= {unix_seconds(taken_after)}")
    if taken_before:  # photos without a capture time are left out: theirs is UNKNOWN_TAKEN
        parts.append(f"{TAKEN} <= {unix_seconds(taken_before)} and {TAKEN} > {UNKNOWN_TAKEN}")
    if filters.cameras:
        parts.append(f"{CAMERA} in [{', '.join(map(_literal, filters.cameras))}]")
    if filters.near is not None:
        parts.append(_near(services, vector_collection, *filters.near))
    if filters.people or filters.people_any:
        parts.append(_people(services, collection, filters.people, filters.people_any))
    # A video's frames carry its container's type (operations/ingest/videos.py); Milvus Lite has no "like".
    video_types = ", ".join(map(_literal, sorted(set(VIDEO_MIMES.values()))))
    if set(filters.kinds) == {"video"}:
        parts.append(f"{MIME} in [{video_types}]")
    elif set(filters.kinds) == {"photo"}:
        parts.append(f"{MIME} not in [{video_types}]")
    return " and ".join(parts) or None


def _near(services: Services, vector_collection: str, latitude: float, longitude: float, km: float) -> str:
    """Within ``km`` of the point on a sphere of the Earth's mean radius, in the vector search: a box that holds
    the circle, less the photos in its corners (their great-circle distance, from the very values Milvus
    compares, is over ``km``). Photos without a position (UNKNOWN_POSITION) are never in the box."""
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180 and 0 < km <= 20_000):
        raise InvalidInput("near: lat -90..90, lon -180..180, km above 0 and at most 20000")
    box = _box(latitude, longitude, km)
    corners = [
        vector_id
        for vector_id, lat, lon in services.vectors.positions(vector_collection, box)
        if great_circle_km(latitude, longitude, lat, lon) > km
    ]
    if len(corners) > MAX_CORNER_IDS:
        raise InvalidInput(
            f"near: {len(corners)} photos lie in the corners of the {km} km box around the point (at most "
            f"{MAX_CORNER_IDS}): search a smaller radius"
        )
    return f"({box} and {ID_FIELD} not in {corners})" if corners else box


def _people(services: Services, collection: str, every: Sequence[int], some: Sequence[int]) -> str:
    """The photos the persons are in, by id, in the vector search (exact under paging like every filter)."""
    asked = [*every, *some]
    if len(asked) > MAX_VALUES or any(not isinstance(p, int) or isinstance(p, bool) for p in asked):
        raise InvalidInput(f"people, people_any: at most {MAX_VALUES} person ids")
    known = services.face_store.existing(collection, asked)
    unknown = sorted(set(asked) - known)
    if unknown:
        raise InvalidInput(f"no person {', '.join(map(str, unknown[:5]))} in collection {collection!r}")
    photos: set[int] | None = None
    for persons, all_of in ((every, True), (some, False)):
        if persons:
            found = set(services.face_store.images_with(collection, persons, all_of))
            photos = found if photos is None else photos & found
    ids = sorted(photos or ())
    if len(ids) > MAX_PEOPLE_IDS:
        raise InvalidInput(f"the persons are in {len(ids)} photos (at most {MAX_PEOPLE_IDS}): add another filter")
    return f"{ID_FIELD} in {ids or [-1]}"


def great_circle_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Haversine distance on a sphere of the Earth's mean radius."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    a = (
        math.sin((phi2 - phi1) / 2) ** 2
        + math.cos(phi1) * math.cos(phi2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def _box(latitude: float, longitude: float, km: float) -> str:
    """A box of ``km`` north, south, east and west of the point: it holds the whole circle."""
    dlat = km / KM_PER_DEGREE
    south, north = max(-90.0, latitude - dlat), min(90.0, latitude + dlat)
    parts = [f"{LATITUDE} >= {south:.6f}", f"{LATITUDE} <= {north:.6f}"]
    widest = min(89.9, max(abs(south), abs(north)))  # the box is as wide as it must be at its poleward edge
    cosine = math.cos(math.radians(widest))
    dlon = km / (KM_PER_DEGREE * max(cosine, 1e-6))
    if dlon < 180:
        west, east = longitude - dlon, longitude + dlon
        if west < -180:  # the box crosses the antimeridian: two ranges
            parts.append(f"({LONGITUDE} >= {west + 360:.6f} or {LONGITUDE} <= {east:.6f})")
        elif east > 180:
            parts.append(f"({LONGITUDE} >= {west:.6f} or {LONGITUDE} <= {east - 360:.6f})")
        else:
            parts.append(f"{LONGITUDE} >= {west:.6f} and {LONGITUDE} <= {east:.6f}")
    else:
        parts.append(f"{LONGITUDE} <= 180")
    return "(" + " and ".join(parts) + ")"


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
