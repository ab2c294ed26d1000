"""Which Milvus index a new collection gets, checked at start-up: a setting the backend cannot honour is an error
when the service starts, not a surprise at the first load."""

from __future__ import annotations

from typing import Any

# Milvus Lite 2.5 builds these (HNSW by name is refused; AUTOINDEX is its own graph index, ``ef`` ignored).
LITE_INDEXES = ("FLAT", "IVF_FLAT", "AUTOINDEX")
SERVER_INDEXES = ("FLAT", "IVF_FLAT", "IVF_SQ8", "HNSW", "AUTOINDEX")

# Each index's build parameters: name -> (lowest, highest) accepted, as Milvus documents them.
PARAM_RANGES: dict[str, dict[str, tuple[int, int]]] = {
    "FLAT": {},
    "AUTOINDEX": {},
    "IVF_FLAT": {"nlist": (1, 65536)},
    "IVF_SQ8": {"nlist": (1, 65536)},
    "HNSW": {"M": (2, 2048), "efConstruction": (1, 2**31 - 1)},
}
DEFAULT_PARAMS: dict[str, dict[str, int]] = {
    "IVF_FLAT": {"nlist": 1024},
    "IVF_SQ8": {"nlist": 1024},
    "HNSW": {"M": 16, "efConstruction": 200},
}


def index_choice(index_type: str | None, params: dict[str, Any] | None, lite: bool) -> tuple[str, dict[str, Any]]:
    """The index type and build parameters for new collections; unset means exact FLAT on Milvus Lite (its
    approximate indexes cannot be tuned: see README) and HNSW on a server."""
    chosen = (index_type or ("FLAT" if lite else "HNSW")).upper()
    allowed = LITE_INDEXES if lite else SERVER_INDEXES
    if chosen not in allowed:
        where = "Milvus Lite" if lite else "a Milvus server"
        hint = " (HNSW needs a Milvus server: set IMGSEARCH_MILVUS_URI=http://host:19530)" if lite else ""
        raise ValueError(f"IMGSEARCH_INDEX_TYPE={chosen} is not available on {where}; use one of {allowed}{hint}")
    merged = {**DEFAULT_PARAMS.get(chosen, {}), **(params or {})}
    ranges = PARAM_RANGES[chosen]
    for key, value in merged.items():
        if key not in ranges:
            known = ", ".join(ranges) or "none"
            raise ValueError(f"IMGSEARCH_INDEX_PARAMS: {chosen} has no parameter {key!r} (it takes: {known})")
        low, high = ranges[key]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"IMGSEARCH_INDEX_PARAMS: {chosen} {key} must be an integer in {low}..{high}: {value!r}")
    return chosen, merged
