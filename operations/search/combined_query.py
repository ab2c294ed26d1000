"""Combined queries (clip-retrieval's text + image): a text, an image (uploaded or stored) and a negative text
("不要人物"), with weights. The query vector is the normalised weighted sum, the negative text subtracted; a
query of one part is that part's own vector, so text-only and image-only searches give today's results exactly.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from adapters import images
from adapters.encoders.encoder_base import EncoderBase
from adapters.stores.sql.metadata_store import CollectionRecord
from operations.collections import collections
from operations.errors import Conflict, InvalidInput
from operations.search.search import (
    page_for,
    run_query,
    search_images,
    search_text,
    truncation_notice,
    validate_text,
    validate_top_k,
)
from operations.search.search_batch import Query, SearchResult
from operations.search.search_filters import SearchFilters
from operations.services import Services

MAX_WEIGHT = 100.0


@dataclass(frozen=True)
class QueryPart:
    kind: str  # "text" | "image" | "negative_text"
    weight: float  # as given; the negative text is subtracted with it
    text: str | None = None
    image_id: str | None = None
    file: str | None = None


@dataclass(frozen=True)
class QueryImage:
    """The image part: uploaded bytes (``data``) or a stored ``image_id`` of the searched collection."""

    data: bytes | None = None
    name: str | None = None
    image_id: str | None = None


def _weight(name: str, value: float) -> float:
    if not math.isfinite(value) or not 0 <= value <= MAX_WEIGHT:
        raise InvalidInput(f"{name} must be a number from 0 to {MAX_WEIGHT:g}, got {value}")
    return float(value)


def plan(
    text: str | None,
    image: QueryImage | None,
    negative_text: str | None,
    text_weight: float,
    image_weight: float,
    negative_weight: float,
    max_chars: int,
) -> list[QueryPart]:
    """The parts that count (weight above 0), checked; raises when nothing is left to search for."""
    parts = []
    if text is not None:
        parts.append(QueryPart("text", _weight("text_weight", text_weight), text=validate_text(text, max_chars)))
    if image is not None:
        weight = _weight("image_weight", image_weight)
        parts.append(QueryPart("image", weight, image_id=image.image_id, file=image.name))
    if negative_text is not None:
        weight = _weight("negative_weight", negative_weight)
        parts.append(QueryPart("negative_text", weight, text=validate_text(negative_text, max_chars)))
    positive = [p for p in parts if p.kind != "negative_text" and p.weight > 0]
    if not parts:
        raise InvalidInput("give a text, an image or both")
    if not positive:
        raise InvalidInput("the weights of the text and the image sum to zero: nothing to search for")
    return [p for p in parts if p.weight > 0]


def search(
    services: Services,
    collection: str,
    top_k: int,
    *,
    text: str | None = None,
    image: QueryImage | None = None,
    negative_text: str | None = None,
    text_weight: float = 1.0,
    image_weight: float = 1.0,
    negative_weight: float = 1.0,
    with_data: bool = False,
    filters: SearchFilters | None = None,
    offset: int = 0,
) -> tuple[SearchResult, list[QueryPart]]:
    settings = services.settings
    parts = plan(text, image, negative_text, text_weight, image_weight, negative_weight, settings.max_text_chars)
    validate_top_k(top_k, settings.max_top_k)
    if len(parts) == 1 and parts[0].kind == "text":
        return search_text(services, collection, parts[0].text or "", top_k, with_data, filters, offset), parts
    if len(parts) == 1 and image is not None and image.data is not None:
        found = search_images(
            services, collection, [(image.name or "image", image.data)], top_k, with_data, filters, offset
        )
        return found[0], parts
    record = collections.require(services, collection)
    page = page_for(services, record, filters, offset, top_k)
    started = time.perf_counter()
    query_vector = vector_of(services, record, parts, image)
    query = Query(record.name, record.model, top_k, with_data, vector=query_vector, **vars(page))
    query.timings["encode"] = (time.perf_counter() - started) * 1000
    result = run_query(services, query)
    notices = [n for p in parts if p.text is not None and (n := truncation_notice(services, p.text))]
    result.notice = notices[0] if notices else None
    return result, parts


def vector_of(
    services: Services, record: CollectionRecord, parts: list[QueryPart], image: QueryImage | None
) -> np.ndarray:
    """The query vector of planned parts, with the collection's model."""
    encoder = collections.encoder_for(services, record)
    texts = [p.text or "" for p in parts if p.text is not None]
    if texts and not encoder.has_text:
        raise Conflict(f"collection {record.name!r} uses the image-only model {record.model}: search it by image")
    vectors: dict[str, np.ndarray] = {}
    if texts:
        encoded = encoder.encode_queries(texts)
        vectors.update({p.kind: v for p, v in zip([p for p in parts if p.text is not None], encoded, strict=True)})
    if any(p.kind == "image" for p in parts):
        assert image is not None
        vectors["image"] = _image_vector(services, record, encoder, image)
    if len(parts) == 1:  # one part alone: its own vector
        return vectors[parts[0].kind]
    total = sum((-p.weight if p.kind == "negative_text" else p.weight) * vectors[p.kind] for p in parts)
    norm = float(np.linalg.norm(total))
    if norm < 1e-6:
        raise InvalidInput("the parts cancel each other out: change the weights or the texts")
    return (total / norm).astype(np.float32)


def _image_vector(services: Services, record: CollectionRecord, encoder: EncoderBase, image: QueryImage) -> np.ndarray:
    settings = services.settings
    if image.data is not None:
        try:
            images.probe(image.data, settings.max_image_bytes, settings.max_image_pixels)
            pixels = encoder.preprocess(images.decode_rgb(image.data, settings.max_image_pixels))
        except images.InvalidImage as exc:
            raise InvalidInput(f"{image.name or 'image'}: {exc}") from exc
        return encoder.encode_pixels([pixels])[0]
    stored = collections.require_image(services, record.name, image.image_id or "")
    vector = services.vectors.get(record.vector_collection, [stored.id]).get(stored.id)
    if vector is None:
        raise Conflict(f"image {image.image_id!r} has no vector; run reconcile on {record.name!r}")
    return vector
