"""Text-to-image search (以文搜图) and text embedding with the service's own model."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from adapters import images
from adapters.encoders.encoder_base import EncoderBase
from adapters.stores.sql.metadata_store import CollectionRecord
from operations.collections import collections
from operations.errors import Conflict, InvalidInput
from operations.search import search_filters
from operations.search.search_batch import Hit, Query, SearchResult, search_vectors
from operations.search.search_filters import SearchFilters
from operations.services import Services

__all__ = ["Hit", "SearchResult", "search_images", "search_text", "similar"]

logger = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class Page:
    """Which results: the filter (a Milvus expression, or None), how many of the best to skip, and the Milvus
    collection searched: the one serving the collection when the request began, read with its model, so a search
    never mixes a query of one model with vectors of another (operations/collections/reembed.py)."""

    filter: str | None = None
    offset: int = 0
    vectors: str | None = None


def page_for(
    services: Services, record: CollectionRecord, filters: SearchFilters | None, offset: int, top_k: int
) -> Page:
    return Page(
        search_filters.expression(services, record, filters),
        search_filters.validate_offset(services, record.name, offset, top_k),
        record.vector_collection,
    )


def search_text(
    services: Services,
    collection: str,
    text: str,
    top_k: int,
    with_data: bool = False,
    filters: SearchFilters | None = None,
    offset: int = 0,
) -> SearchResult:
    settings = services.settings
    text = validate_text(text, settings.max_text_chars)
    validate_top_k(top_k, settings.max_top_k)
    record = collections.require(services, collection)
    encoder = collections.encoder_for(services, record)
    if not encoder.has_text:
        raise Conflict(f"collection {collection!r} uses the image-only model {record.model}: search it by image")
    page = page_for(services, record, filters, offset, top_k)
    vector = encoder.remembered_query(text)  # a text searched lately needs no encoder pass (a page turn)
    timings = {"encode": 0.0} if vector is not None else {}
    query = Query(
        record.name, record.model, top_k, with_data, encoder, text, vector=vector, timings=timings, **vars(page)
    )
    result = run_query(services, query)
    result.notice = truncation_notice(services, text)
    return result


def run_query(services: Services, query: Query) -> SearchResult:
    """Through the query batcher (concurrent queries share encoder passes and vector searches), or alone when
    micro-batching is off (IMGSEARCH_MICROBATCH_MAX_SIZE=1)."""
    if services.queries is not None:
        return services.queries.search(query)
    timings = dict(query.timings)
    vector = query.vector
    if vector is None:
        started = time.perf_counter()
        vector = _encode_alone(query)
        timings["encode"] = (time.perf_counter() - started) * 1000
    return search_vectors(
        services.vectors,
        services.metadata,
        query.collection,
        query.model,
        vector[None, :],
        query.top_k,
        query.with_data,
        timings,
        query.filter,
        query.offset,
        query.vectors,
    )[0]


def _encode_alone(query: Query) -> np.ndarray:
    encoder: EncoderBase | None = query.encoder
    assert encoder is not None
    if query.text is not None:
        return encoder.encode_queries([query.text])[0]
    return encoder.encode_pixels([query.pixels])[0]


def truncation_notice(services: Services, text: str) -> str | None:
    """Chinese-CLIP reads at most 50 tokens of text (a 52-token context with [CLS] and [SEP]); a longer query
    is searched by its beginning, and the user is told rather than left wondering why the end is ignored."""
    tokenizer = services.tokenizer
    count = tokenizer.token_count(text)
    if count <= tokenizer.max_text_tokens:
        return None
    return (
        f"the text has {count} tokens; Chinese-CLIP reads the first {tokenizer.max_text_tokens} "
        "(a 52-token context), so the rest was not used in this search"
    )


def search_images(
    services: Services,
    collection: str,
    queries: list[tuple[str, bytes]],
    top_k: int,
    with_data: bool = False,
    filters: SearchFilters | None = None,
    offset: int = 0,
) -> list[SearchResult]:
    """以图搜图: one ranked list per query image. A bad image fails the request, naming the file."""
    settings = services.settings
    validate_top_k(top_k, settings.max_top_k)
    record = collections.require(services, collection)
    encoder = collections.encoder_for(services, record)
    page = page_for(services, record, filters, offset, top_k)
    if not queries:
        raise InvalidInput("send at least one image")
    pixels, problems = [], []
    started = time.perf_counter()
    for name, data in queries:
        try:
            images.probe(data, settings.max_image_bytes, settings.max_image_pixels)
            pixels.append(encoder.preprocess(images.decode_rgb(data, settings.max_image_pixels)))
        except images.InvalidImage as exc:
            problems.append({"file": name, "reason": str(exc)})
    if problems:
        raise InvalidInput(f"{problems[0]['file']}: {problems[0]['reason']}", details=problems)
    if len(pixels) == 1:  # one query image rides the batcher with concurrent ones
        query = Query(record.name, record.model, top_k, with_data, encoder=encoder, pixels=pixels[0], **vars(page))
        query.submitted = started  # its encode time counts its decoding, as for several images
        return [run_query(services, query)]
    vectors = encoder.encode_pixels(pixels)  # several images are a batch already
    timings = {"encode": (time.perf_counter() - started) * 1000}
    if services.queries is not None:
        queries = [
            Query(record.name, record.model, top_k, with_data, vector=v, timings=dict(timings), **vars(page))
            for v in vectors
        ]
        return services.queries.search_many(queries)
    return search_vectors(
        services.vectors,
        services.metadata,
        record.name,
        record.model,
        vectors,
        top_k,
        with_data,
        timings,
        page.filter,
        page.offset,
        page.vectors,
    )


def similar(
    services: Services,
    collection: str,
    image_id: str,
    top_k: int,
    with_data: bool = False,
    filters: SearchFilters | None = None,
    offset: int = 0,
) -> SearchResult:
    """More like this: searches with the stored vector (no re-encoding) and leaves the image itself out. A later
    page is cut from the first ``offset + top_k + 1`` results, so leaving the image out never shifts it."""
    validate_top_k(top_k, services.settings.max_top_k)
    record = collections.require(services, collection)
    page = page_for(services, record, filters, offset, top_k)
    image = collections.require_image(services, collection, image_id)
    started = time.perf_counter()
    vector = services.vectors.get(record.vector_collection, [image.id]).get(image.id)
    if vector is None:
        raise Conflict(f"image {image_id!r} has no vector; run reconcile on {collection!r}")
    query = Query(
        collection,
        record.model,
        page.offset + top_k + 1,
        with_data,
        vector=vector,
        filter=page.filter,
        vectors=page.vectors,
    )
    query.timings["vector_fetch"] = (time.perf_counter() - started) * 1000
    result = run_query(services, query)
    result.hits = [hit for hit in result.hits if hit.id != image.id][page.offset : page.offset + top_k]
    return result


@dataclass(frozen=True)
class Overlap:
    a: str
    b: str
    common: int
    jaccard: float


def compare(
    services: Services, names: list[str], top_k: int, text: str | None = None, image: tuple[str, bytes] | None = None
) -> tuple[list[SearchResult], list[Overlap]]:
    """The same query on several collections (each with its own model), side by side, with the overlap of
    their top-k by image_id: the source document's model comparison as a feature."""
    if (text is None) == (image is None):
        raise InvalidInput("give a text or an image, not both")
    unique = list(dict.fromkeys(names))
    if not 2 <= len(unique) <= 8:
        raise InvalidInput("compare 2 to 8 different collections")
    results = [
        search_text(services, name, text, top_k)
        if text is not None
        else search_images(services, name, [image], top_k)[0]
        for name in unique
    ]
    overlaps = []
    for i, first in enumerate(results):
        for second in results[i + 1 :]:
            a = {hit.image.image_id for hit in first.hits}
            b = {hit.image.image_id for hit in second.hits}
            union = len(a | b)
            overlaps.append(
                Overlap(first.collection, second.collection, len(a & b), len(a & b) / union if union else 0)
            )
    return results, overlaps


def embed_texts(services: Services, texts: list[str], model: str | None = None) -> np.ndarray:
    settings = services.settings
    if not texts:
        raise InvalidInput("texts must not be empty")
    if len(texts) > settings.max_embed_texts:
        raise InvalidInput(f"at most {settings.max_embed_texts} texts per request, got {len(texts)}")
    cleaned = [validate_text(text, settings.max_text_chars) for text in texts]
    encoder = services.models.get(model)
    if not encoder.has_text:
        raise InvalidInput(f"{encoder.model_name} is an image-only model: it cannot embed text")
    return encoder.encode_text(cleaned)
