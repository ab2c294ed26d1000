"""Load, search and fetch images."""

from __future__ import annotations

import base64
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from app.deps import JobsDep, ServicesDep
from app.errors import ErrorResponse
from app.schemas import CollectionName, CountResponse, HitOut, JobAccepted, LoadRequest, SearchRequest, SearchResponse
from operations import collections, load, search
from operations.collections import NAME_PATTERN
from operations.errors import NotFound

router = APIRouter(prefix="/img", tags=["images"])
ERRORS = {code: {"model": ErrorResponse} for code in (404, 409, 422, 503)}
CollectionPath = Annotated[str, Path(pattern=NAME_PATTERN)]


@router.post("/load", status_code=202, response_model=JobAccepted, responses=ERRORS)
async def load_split(body: LoadRequest, services: ServicesDep, jobs: JobsDep, request: Request) -> JobAccepted:
    """Bulk-load ``{split}_imgs.tsv`` (+ ``{split}_imgs.img_feat.jsonl`` when present) as a background job.

    Re-running the same load adds nothing: images already loaded are counted as skipped.
    """
    plan = await run_in_threadpool(load.plan, services, body.collection, body.path, body.split)
    await run_in_threadpool(collections.ensure, services, plan.collection)
    record = await run_in_threadpool(
        jobs.submit, "load", plan.collection, body.model_dump(), lambda progress: load.run(services, plan, progress)
    )
    return JobAccepted(job_id=record.id, status_url=str(request.url_for("get_job", job_id=record.id)))


@router.post("/search", response_model=SearchResponse, responses=ERRORS)
async def search_by_text(body: SearchRequest, services: ServicesDep, request: Request) -> SearchResponse:
    """以文搜图: the top_k images closest to a Chinese sentence, best first."""
    result = await run_in_threadpool(
        search.search_text, services, body.collection, body.text, body.top_k, body.include_image
    )
    hits = [
        HitOut(
            id=hit.id,
            image_id=hit.image.image_id,
            score=hit.score,
            url=str(request.url_for("get_image", collection=result.collection, image_id=hit.image.image_id)),
            mime=hit.image.mime,
            width=hit.image.width,
            height=hit.image.height,
            image=base64.b64encode(hit.image.data).decode("ascii") if body.include_image and hit.image.data else None,
        )
        for hit in result.hits
    ]
    return SearchResponse(collection=result.collection, model=result.model, hits=hits, timings_ms=result.timings_ms)


@router.get("/count", response_model=CountResponse, responses=ERRORS)
async def count_images(collection: Annotated[CollectionName, Query()], services: ServicesDep) -> CountResponse:
    summary = await run_in_threadpool(collections.summarise, services, collection)
    return CountResponse(collection=collection, count=summary.count)


@router.get(
    "/{collection}/{image_id}",
    name="get_image",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}, **ERRORS},
)
async def get_image(collection: CollectionPath, image_id: str, services: ServicesDep) -> Response:
    """The stored image bytes with their content type."""
    await run_in_threadpool(collections.require, services, collection)
    record = await run_in_threadpool(services.metadata.get_image, collection, image_id)
    if record is None or record.data is None:
        raise NotFound(f"image {image_id!r} not found in collection {collection!r}")
    return Response(content=record.data, media_type=record.mime, headers={"Cache-Control": "private, max-age=3600"})
