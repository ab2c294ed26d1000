"""Text-to-image search (以文搜图) and text embedding with the service's own model."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from adapters.metadata_store import ImageRecord
from operations import collections
from operations.errors import InvalidInput
from operations.services import Services

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Hit:
    id: int
    score: float
    image: ImageRecord


@dataclass
class SearchResult:
    collection: str
    model: str
    hits: list[Hit]
    timings_ms: dict[str, float] = field(default_factory=dict)


def validate_text(text: str, max_chars: int) -> str:
    stripped = text.strip()
    if not stripped:
        raise InvalidInput("text must not be empty")
    if len(stripped) > max_chars:
        raise InvalidInput(f"text is {len(stripped)} characters, over the limit of {max_chars}")
    try:
        stripped.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput("text is not valid Unicode (lone surrogate)") from exc
    return stripped


def validate_top_k(top_k: int, max_top_k: int) -> int:
    if top_k < 1 or top_k > max_top_k:
        raise InvalidInput(f"top_k must be between 1 and {max_top_k}, got {top_k}")
    return top_k


def search_text(services: Services, collection: str, text: str, top_k: int, with_data: bool = False) -> SearchResult:
    settings = services.settings
    text = validate_text(text, settings.max_text_chars)
    validate_top_k(top_k, settings.max_top_k)
    record = collections.require(services, collection)
    collections.require_compatible(services, record)

    timings: dict[str, float] = {}
    started = time.perf_counter()
    query = services.encoder.encode_text([text])
    timings["encode"] = (time.perf_counter() - started) * 1000
    return _search_vectors(services, record.name, record.model, query, top_k, with_data, timings)


def _search_vectors(
    services: Services,
    collection: str,
    model: str,
    query: np.ndarray,
    top_k: int,
    with_data: bool,
    timings: dict[str, float],
) -> SearchResult:
    started = time.perf_counter()
    found = services.vectors.search(collection, query, top_k)[0]
    timings["vector_search"] = (time.perf_counter() - started) * 1000
    started = time.perf_counter()
    rows = services.metadata.fetch(collection, [vector_id for vector_id, _ in found], with_data=with_data)
    timings["metadata_fetch"] = (time.perf_counter() - started) * 1000
    # A vector whose row is pending or gone (a load in flight, a half-dropped collection) is not shown.
    hits = [Hit(vector_id, score, rows[vector_id]) for vector_id, score in found if vector_id in rows]
    return SearchResult(collection, model, hits, timings)


def embed_texts(services: Services, texts: list[str]) -> np.ndarray:
    settings = services.settings
    if not texts:
        raise InvalidInput("texts must not be empty")
    if len(texts) > settings.max_embed_texts:
        raise InvalidInput(f"at most {settings.max_embed_texts} texts per request, got {len(texts)}")
    cleaned = [validate_text(text, settings.max_text_chars) for text in texts]
    return services.encoder.encode_text(cleaned)
