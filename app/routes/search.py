"""Search: by Chinese text (以文搜图), by image (以图搜图), more like this, and a picture of the results."""

from __future__ import annotations

import base64
import datetime as dt
import math
from dataclasses import replace
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, File, Form, Query, Request, Response, UploadFile
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from adapters.file_names import upload_name
from app.deps import ServicesDep
from app.errors import documented
from app.schemas import (
    CollectionHits,
    CollectionName,
    CollectionPath,
    CompareResponse,
    FiltersIn,
    HitOut,
    ImageQueryResult,
    ImageSearchResponse,
    MatchOut,
    MomentOut,
    OverlapOut,
    PersonRefOut,
    QueryOut,
    QueryPartOut,
    SearchRequest,
    SearchResponse,
    SnippetOut,
)
from operations.errors import InvalidInput, TooLarge
from operations.people import people_query
from operations.search import combined_query, hybrid, search
from operations.search.combined_query import QueryImage, QueryPart
from operations.search.results_picture import RANDOM_NOTE, PictureHit, render
from operations.search.search import SearchResult
from operations.search.search_batch import Hit, Match
from operations.search.search_filters import SearchFilters

router = APIRouter(prefix="/img", tags=["search"])
ERRORS = documented(401, 403, 404, 409, 413, 422, 503)
TopK = Annotated[int, Query(description="1 to IMGSEARCH_MAX_TOP_K")]


def hits_out(result: SearchResult, request: Request, include_image: bool) -> list[HitOut]:
    # Route lookup scans every route, so it is done once per result list, not once per hit.
    url_prefix = str(request.url_for("get_image", collection=result.collection, image_id="_"))[:-1]
    return [
        HitOut(
            id=hit.id,
            kind="video" if hit.moment is not None else "photo",
            video=moment_out(hit, url_prefix),
            image_id=hit.image.image_id,
            score=None if math.isnan(hit.score) else hit.score,
            url=url_prefix + hit.image.image_id,
            mime=hit.image.mime,
            width=hit.image.width,
            height=hit.image.height,
            tags=list(hit.tags),
            paths=list(hit.paths),
            taken_at=hit.image.taken_at,
            taken_offset=hit.image.taken_offset,
            camera=hit.image.camera,
            latitude=hit.image.latitude,
            longitude=hit.image.longitude,
            image=base64.b64encode(hit.image.data).decode("ascii") if include_image and hit.image.data else None,
            caption=hit.words[0],
            description=hit.words[1],
            ocr=hit.words[2],
            match=match_out(hit.match),
        )
        for hit in result.hits
    ]


def moment_out(hit: Hit, url_prefix: str) -> MomentOut | None:
    moment = hit.moment
    if moment is None:
        return None
    url = url_prefix + quote(hit.image.image_id, safe="")
    return MomentOut(
        start_ms=moment.start_ms,
        end_ms=moment.end_ms,
        best_ms=moment.best_ms,
        duration_ms=hit.image.duration_ms,
        samples=moment.samples,
        frame_url=url_prefix + quote(hit.frame or hit.image.image_id, safe=""),
        frame_image_id=hit.frame or hit.image.image_id,
        clip_url=f"{url}/clip?start_ms={moment.start_ms}&end_ms={moment.end_ms}",
    )


def match_out(match: Match | None) -> MatchOut | None:
    if match is None:
        return None
    return MatchOut(
        semantic_rank=match.semantic_rank,
        semantic_score=match.semantic_score,
        keyword_rank=match.keyword_rank,
        keyword_score=match.keyword_score,
        fused_score=match.fused_score,
        snippets=[SnippetOut(field=s.field, text=s.text, highlights=s.highlights) for s in match.snippets],
    )


def observed(request: Request, timings_ms: dict[str, float]) -> dict[str, float]:
    """Feeds the stage histograms of /metrics with what the response reports."""
    request.app.state.metrics.observe_stages(timings_ms)
    return timings_ms


def query_out(parts: list[QueryPart]) -> QueryOut:
    return QueryOut(
        parts=[
            QueryPartOut(kind=p.kind, weight=p.weight, text=p.text, image_id=p.image_id, file=p.file) for p in parts
        ],
        combined=len(parts) > 1,
    )


def filters_of(body: FiltersIn | None) -> SearchFilters | None:
    if body is None:
        return None
    return SearchFilters(
        tuple(body.tags_any),
        tuple(body.tags_all),
        body.added_after,
        body.added_before,
        tuple(body.source),
        tuple(body.mime),
        body.min_width,
        body.min_height,
        body.taken_after,
        body.taken_before,
        tuple(body.camera),
        (body.near.lat, body.near.lon, body.near.km) if body.near else None,
        tuple(body.kinds),
        tuple(body.people),
        tuple(body.people_any),
    )


def filters_from_form(value: str | None) -> SearchFilters | None:
    """Multipart forms and query strings carry the filters as one JSON object, as /img/search takes them."""
    if not value:
        return None
    try:
        return filters_of(FiltersIn.model_validate_json(value))
    except ValidationError as exc:
        raise InvalidInput(f"filters is not a valid filter object: {exc.errors()[0]['msg']}") from exc


FiltersForm = Annotated[str | None, Form(description='JSON, as in /img/search, e.g. {"tags_any": ["海边"]}')]
OffsetForm = Annotated[int, Form(description="Skip this many of the best: the next page.")]


def search_response(
    result: SearchResult,
    parts: list[QueryPart] | None,
    request: Request,
    include: bool,
    offset: int = 0,
    sort: str = "score",
    outcome: hybrid.Outcome | None = None,
) -> SearchResponse:
    hits = hits_out(result, request, include)
    if sort == "taken":  # the same best top_k, in capture-time order; photos without one last
        hits = sorted(hits, key=lambda hit: (hit.taken_at is None, hit.taken_at or dt.datetime.min))
    return SearchResponse(
        collection=result.collection,
        model=result.model,
        hits=hits,
        cut_by_min_score=outcome.cut_by_min_score if outcome else 0,
        cut_by_relative_cutoff=outcome.cut_by_relative_cutoff if outcome else 0,
        mode=outcome.mode if outcome else "semantic",
        timings_ms=observed(request, result.timings_ms),
        truncated=result.notice is not None,
        notice=result.notice,
        query=query_out(parts) if parts else None,
        offset=offset,
        filter=result.filter,
    )


@router.post("/search", response_model=SearchResponse, responses=ERRORS)
async def search_by_text(body: SearchRequest, services: ServicesDep, request: Request) -> SearchResponse:
    """以文搜图 and keyword search in one box: the top_k images for a Chinese sentence or words, best first.
    ``mode`` picks semantic (Chinese-CLIP), keyword (captions, descriptions, file names, OCR, tags) or hybrid
    (both, fused; the default when the collection has words). Add ``image_id`` (a stored image) and/or
    ``negative_text`` with weights for a combined query; ``min_score`` / ``relative_cutoff`` drop weak hits."""
    image = QueryImage(image_id=body.image_id) if body.image_id is not None else None
    text, filters = body.text, filters_of(body.filters)
    named = await run_in_threadpool(people_query.extract, services, body.collection, text) if text else None
    if named is not None and named.people:  # 妈妈 在海边: the photos 妈妈 is in, searched for 在海边
        base = filters or SearchFilters()
        filters = replace(base, people=(*base.people, *(person for person, _ in named.people)))
        text = named.text or text  # names alone: the photos they are in, ranked by the names' own vector
    outcome = await run_in_threadpool(
        lambda: hybrid.search(
            services,
            body.collection,
            body.top_k,
            body.mode,
            text=text,
            image=image,
            negative_text=body.negative_text,
            weights=(body.text_weight, body.image_weight, body.negative_weight),
            with_data=body.include_image,
            filters=filters,
            offset=body.offset,
            cutoffs=hybrid.Cutoffs(body.min_score, body.relative_cutoff),
        )
    )
    response = search_response(
        outcome.result, outcome.parts, request, body.include_image, body.offset, body.sort, outcome
    )
    if named is not None and named.people and response.query is not None:
        response.query.people = [PersonRefOut(id=person, name=name) for person, name in named.people]
    return response


@router.post("/search/combined", response_model=SearchResponse, responses=ERRORS)
async def search_combined(
    services: ServicesDep,
    request: Request,
    collection: Annotated[CollectionName, Form(examples=["photos"])],
    file: Annotated[UploadFile | None, File(description="A query image (or give image_id).")] = None,
    image_id: Annotated[str | None, Form(description="A stored image of the collection, instead of a file.")] = None,
    text: Annotated[str | None, Form(examples=["海边"])] = None,
    negative_text: Annotated[str | None, Form(examples=["人物"])] = None,
    text_weight: Annotated[float, Form()] = 1.0,
    image_weight: Annotated[float, Form()] = 1.0,
    negative_weight: Annotated[float, Form()] = 1.0,
    top_k: Annotated[int, Form()] = 10,
    include_image: Annotated[bool, Form()] = False,
    filters: FiltersForm = None,
    offset: OffsetForm = 0,
) -> SearchResponse:
    """A text and an uploaded (or stored) image in one query, with an optional negative text: the query vector
    is the normalised weighted sum of the parts (clip-retrieval's combined query)."""
    image = None
    if file is not None and file.filename:
        name, data = (await run_in_threadpool(_read_query_images, [file], services.settings.max_image_bytes))[0]
        image = QueryImage(data=data, name=name)
        if image_id:
            raise InvalidInput("give an image file or an image_id, not both")
    elif image_id:
        image = QueryImage(image_id=image_id)
    result, parts = await run_in_threadpool(
        lambda: combined_query.search(
            services,
            collection,
            top_k,
            text=text or None,
            image=image,
            negative_text=negative_text or None,
            text_weight=text_weight,
            image_weight=image_weight,
            negative_weight=negative_weight,
            with_data=include_image,
            filters=filters_from_form(filters),
            offset=offset,
        )
    )
    return search_response(result, parts, request, include_image, offset)


def _read_query_images(files: list[UploadFile], max_bytes: int) -> list[tuple[str, bytes]]:
    queries = []
    for index, upload in enumerate(files):
        name = upload_name(upload.filename or f"file{index + 1}")
        data = upload.file.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise TooLarge(f"{name}: file is over the limit of {max_bytes} bytes")
        queries.append((name, data))
    return queries


@router.post("/search/image", response_model=ImageSearchResponse, responses=ERRORS)
async def search_by_image(
    services: ServicesDep,
    request: Request,
    collection: Annotated[CollectionName, Form(examples=["photos"])],
    files: Annotated[list[UploadFile], File(description="One or more query images.")],
    top_k: Annotated[int, Form()] = 10,
    include_image: Annotated[bool, Form()] = False,
    filters: FiltersForm = None,
    offset: OffsetForm = 0,
) -> ImageSearchResponse:
    """以图搜图: for each uploaded image, the top_k most similar stored images."""
    settings = services.settings
    if len(files) > settings.max_upload_files:
        raise TooLarge(f"at most {settings.max_upload_files} files per request, got {len(files)}")
    wanted = filters_from_form(filters)
    queries = await run_in_threadpool(_read_query_images, files, settings.max_image_bytes)
    results = await run_in_threadpool(
        search.search_images, services, collection, queries, top_k, include_image, wanted, offset
    )
    return ImageSearchResponse(
        collection=collection,
        model=results[0].model,
        results=[
            ImageQueryResult(file=name, hits=hits_out(result, request, include_image))
            for (name, _), result in zip(queries, results, strict=True)
        ],
        timings_ms=observed(request, results[0].timings_ms),
    )


@router.post("/search/compare", response_model=CompareResponse, responses=ERRORS)
async def compare_collections(
    services: ServicesDep,
    request: Request,
    collections: Annotated[list[CollectionName], Form(description="2 to 8 collections, e.g. one per model.")],
    text: Annotated[str | None, Form(examples=["海边的日落"])] = None,
    file: Annotated[UploadFile | None, File(description="A query image, instead of text.")] = None,
    top_k: Annotated[int, Form()] = 10,
) -> CompareResponse:
    """Compare models: one query (text or image) on several collections side by side, with the overlap of their
    top-k. Each collection answers with its own model."""
    image = None
    if file is not None and file.filename:
        image = (await run_in_threadpool(_read_query_images, [file], services.settings.max_image_bytes))[0]
    results, overlaps = await run_in_threadpool(
        search.compare, services, collections, top_k, text if image is None else None, image
    )
    return CompareResponse(
        results=[
            CollectionHits(collection=r.collection, model=r.model, hits=hits_out(r, request, False)) for r in results
        ],
        overlap=[OverlapOut(a=o.a, b=o.b, common=o.common, jaccard=round(o.jaccard, 4)) for o in overlaps],
    )


@router.get(
    "/search.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}, **ERRORS},
)
async def search_picture(
    services: ServicesDep,
    collection: Annotated[CollectionName, Query()],
    text: Annotated[str, Query(min_length=1)],
    top_k: TopK = 10,
) -> Response:
    """A picture of a text search: the query and the top_k thumbnails with their scores."""
    result = await run_in_threadpool(search.search_text, services, collection, text, top_k, True)
    hits = [PictureHit(h.image.data or b"", h.score, h.image.image_id) for h in result.hits]
    font = str(services.settings.font_path) if services.settings.font_path else None
    note = RANDOM_NOTE if services.encoder.info.weights == "random" else None
    png = await run_in_threadpool(
        render, f"以文搜图: {text.strip()}", hits, None, 5, font, services.settings.max_image_pixels, note
    )
    return Response(content=png, media_type="image/png")


@router.get("/{collection}/{image_id}/similar", response_model=SearchResponse, responses=ERRORS)
async def more_like_this(
    collection: CollectionPath,
    image_id: str,
    services: ServicesDep,
    request: Request,
    top_k: TopK = 10,
    include_image: bool = False,
    filters: Annotated[str | None, Query(description='JSON, e.g. {"tags_any": ["海边"]}')] = None,
    offset: Annotated[int, Query(description="Skip this many of the best: the next page.")] = 0,
) -> SearchResponse:
    """Images most like a stored one, found with its stored vector; the image itself is left out."""
    wanted = filters_from_form(filters)
    result = await run_in_threadpool(
        search.similar, services, collection, image_id, top_k, include_image, wanted, offset
    )
    return search_response(result, None, request, include_image, offset)
