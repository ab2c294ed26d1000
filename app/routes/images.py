"""Put images in (bulk load, folder/zip ingest, upload), get them out, delete them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Query, Request, Response, UploadFile
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from adapters import images
from adapters.file_names import upload_name
from adapters.stores.sql.metadata_store import FRAME
from app.deps import JobsDep, ServicesDep
from app.errors import documented, error_response
from app.routes import videos
from app.routes.jobs import job_accepted
from app.schemas import (
    MODEL_HELP,
    CollectionName,
    CollectionPath,
    CountResponse,
    DeleteImageResponse,
    EvaluateRequest,
    IngestRequest,
    JobAccepted,
    LoadRequest,
    UploadResponse,
    UploadResult,
)
from operations.collections import collections
from operations.errors import InvalidInput, TooLarge
from operations.evaluation import evaluation
from operations.ingest import ingest_job, load, sources, writes
from operations.ingest.ingest import Candidate, Outcome, ingest

router = APIRouter(prefix="/img", tags=["images"])
ERRORS = documented(401, 403, 404, 409, 413, 422, 429, 503)


@router.post("/load", status_code=202, response_model=JobAccepted, responses=ERRORS)
async def load_split(body: LoadRequest, services: ServicesDep, jobs: JobsDep, request: Request) -> JobAccepted:
    """Bulk-load ``{split}_imgs.tsv`` (+ ``{split}_imgs.img_feat.jsonl`` when present) as a background job.

    Re-running the same load adds nothing: images already loaded are counted as skipped.
    """
    jobs.ensure_capacity()
    plan = await run_in_threadpool(load.plan, services, body.collection, body.path, body.split, body.model)
    await run_in_threadpool(collections.ensure, services, plan.collection, plan.model)
    record = await run_in_threadpool(jobs.submit, "load", plan.collection, body.model_dump())
    return job_accepted(request, record.id)


@router.post("/ingest", status_code=202, response_model=JobAccepted, responses=ERRORS)
async def ingest_files(body: IngestRequest, services: ServicesDep, jobs: JobsDep, request: Request) -> JobAccepted:
    """Ingest every image of a folder (recursively) or a .zip under the data root, as a background job.

    Types are told by content, not extension; the same content is stored once per collection, so ingesting
    a folder again adds nothing. Files that are not good images are listed in the job's ``errors``.
    """
    jobs.ensure_capacity()
    source = await run_in_threadpool(ingest_job.open_source, services, body.collection, body.path, body.model)
    source.close()  # checked now (4xx); the process that claims the job opens it again
    record = await run_in_threadpool(jobs.submit, "ingest", body.collection, body.model_dump())
    return job_accepted(request, record.id)


@router.post("/evaluate", status_code=202, response_model=JobAccepted, responses=ERRORS)
async def evaluate_split(body: EvaluateRequest, services: ServicesDep, jobs: JobsDep, request: Request) -> JobAccepted:
    """Recall@1/5/10 and mean recall of a loaded split in both directions, exactly as Chinese-CLIP's evaluation
    scripts compute them; the job's ``result`` has the numbers and the paths of the predictions files."""
    await run_in_threadpool(evaluation.plan_job, services, body.collection, body.path, body.split)
    record = await run_in_threadpool(jobs.submit, "evaluate", body.collection, body.model_dump())
    return job_accepted(request, record.id)


@router.post(
    "/upload",
    response_model=UploadResponse,
    responses={**ERRORS, 200: {"model": UploadResponse}},
)
async def upload_images(
    services: ServicesDep,
    collection: Annotated[CollectionName, Form(examples=["photos"])],
    files: Annotated[
        list[UploadFile],
        File(description="One or more images (JPEG, PNG, WebP, BMP, GIF, HEIC) or videos (MP4, MOV, MKV, WebM, AVI)."),
    ],
    image_ids: Annotated[
        list[str] | None, Form(description="Optional external ids, one per file in order; else from content.")
    ] = None,
    model: Annotated[str | None, Form(description=MODEL_HELP)] = None,
) -> UploadResponse | JSONResponse:
    """Store uploaded images; each file gets its own result: stored, duplicate, or rejected with the reason.

    When every file is rejected the answer is a 4xx (413 if they were all too large) listing why.
    """
    settings = services.settings
    if len(files) > settings.max_upload_files:
        raise TooLarge(f"at most {settings.max_upload_files} files per request, got {len(files)}")
    if image_ids is not None and len(image_ids) != len(files):
        raise InvalidInput(f"got {len(image_ids)} image_ids for {len(files)} files: send one per file or none")
    await run_in_threadpool(collections.model_for_writes, services, collection, model)
    candidates = [
        Candidate(upload_name(upload.filename or f"file{i + 1}"), upload.file.read, image_ids[i] if image_ids else None)
        for i, upload in enumerate(files)
    ]
    outcomes = await run_in_threadpool(lambda: list(ingest(services, collection, candidates, None, model)))
    outcomes = _in_file_order(outcomes, [c.name for c in candidates])
    results = [
        UploadResult(file=o.name, status=o.status, image_id=o.image_id, id=o.id, reason=o.reason) for o in outcomes
    ]
    counts = {status: sum(o.status == status for o in outcomes) for status in ("stored", "duplicate", "rejected")}
    if counts["rejected"] == len(outcomes):
        status = 413 if all(o.too_large for o in outcomes) else 422
        summary = "; ".join(f"{o.name}: {o.reason}" for o in outcomes)
        return error_response(status, "rejected", summary, [r.model_dump() for r in results])
    return UploadResponse(
        collection=collection,
        stored=counts["stored"],
        duplicates=counts["duplicate"],
        rejected=counts["rejected"],
        results=results,
    )


def _in_file_order(outcomes: list[Outcome], names: list[str]) -> list[Outcome]:
    """One result per file, in the order the files came (videos are taken after the photos)."""
    by_name: dict[str, list[Outcome]] = {}
    for outcome in outcomes:
        by_name.setdefault(outcome.name, []).append(outcome)
    return [by_name[name].pop(0) for name in names if by_name.get(name)]


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
async def get_image(
    collection: CollectionPath,
    image_id: str,
    services: ServicesDep,
    request: Request,
    size: Annotated[
        int | None, Query(ge=32, le=4096, description="A JPEG of at most this many pixels on its longest side.")
    ] = None,
) -> Response:
    """The original image with its content type (``ETag``: a browser revalidates with a 304): for an image of a
    source folder, read from its file (404 naming the path when it is gone). With ``size``, a JPEG from the
    stored preview (images of a source) or the stored bytes."""
    record = await run_in_threadpool(collections.require_image, services, collection, image_id)
    etag = f'"{record.sha256[:32]}{f"-{size}" if size else ""}"'
    if _not_modified(request, etag):
        return Response(status_code=304, headers=_cache_headers(etag))
    if size is not None:
        data = await run_in_threadpool(images.thumbnail_jpeg, record.data, size, services.settings.max_image_pixels)
        return Response(content=data, media_type="image/jpeg", headers=_cache_headers(etag))
    if record.is_video:
        return await videos.stream(services, record)
    if record.kind == FRAME:  # a video's sample: its stored JPEG is all there is of it
        return Response(content=record.data, media_type=record.served_mime, headers=_cache_headers(etag))
    data = await run_in_threadpool(sources.original_bytes, services, record)
    return Response(content=data, media_type=record.mime, headers=_cache_headers(etag))


@router.get(
    "/{collection}/{image_id}/thumb",
    name="get_thumbnail",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}, **ERRORS},
)
async def get_thumbnail(
    collection: CollectionPath,
    image_id: str,
    services: ServicesDep,
    request: Request,
    size: Annotated[int, Query(ge=32, le=1024, description="Longest side in pixels.")] = 256,
) -> Response:
    """A resized JPEG for result grids, cached by the browser (``Cache-Control`` + ``ETag``)."""
    record = await run_in_threadpool(collections.require_image, services, collection, image_id)
    etag = f'"{record.sha256[:32]}-{size}"'
    if _not_modified(request, etag):
        return Response(status_code=304, headers=_cache_headers(etag))
    data = await run_in_threadpool(images.thumbnail_jpeg, record.data, size, services.settings.max_image_pixels)
    return Response(content=data, media_type="image/jpeg", headers=_cache_headers(etag))


def _cache_headers(etag: str) -> dict[str, str]:
    # private: with IMGSEARCH_READ_ACCESS=key a shared cache must not hand images to others.
    return {"ETag": etag, "Cache-Control": "private, max-age=3600"}


def _not_modified(request: Request, etag: str) -> bool:
    sent = request.headers.get("if-none-match", "")
    return etag in [tag.strip().removeprefix("W/") for tag in sent.split(",")]


@router.delete("/{collection}/{image_id}", response_model=DeleteImageResponse, responses=ERRORS)
async def delete_image(collection: CollectionPath, image_id: str, services: ServicesDep) -> DeleteImageResponse:
    """Remove the image's vector and row; it is never returned again."""
    await run_in_threadpool(collections.require, services, collection)
    vector_id = await run_in_threadpool(writes.delete_image, services, collection, image_id)
    return DeleteImageResponse(collection=collection, image_id=image_id, id=vector_id)
