"""List and drop collections."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from app.access import visible_collections
from app.deps import JobsDep, ServicesDep
from app.errors import documented
from app.routes.jobs import job_accepted
from app.schemas import (
    CollectionOut,
    CollectionPath,
    CreateCollectionRequest,
    DropResponse,
    IndexOut,
    JobAccepted,
    ReembedOut,
    ReembedRequest,
    UpdateCollectionRequest,
)
from operations.collections import collections, reembed
from operations.collections.collections import CollectionSummary

router = APIRouter(prefix="/collections", tags=["collections"])
ERRORS = documented(401, 403, 404, 422, 503)


def _out(summary: CollectionSummary) -> CollectionOut:
    r = summary.record
    return CollectionOut(
        name=r.name,
        model=r.model,
        dim=r.dim,
        metric=r.metric,
        count=summary.count,
        created_at=r.created_at,
        search_mode=r.search_mode or collections.DEFAULT_SEARCH_MODE,
        index=IndexOut(**summary.index) if summary.index else None,
        reembed=ReembedOut(model=r.next_model, state=r.next_state) if r.next_state and r.next_model else None,
    )


@router.get("", response_model=list[CollectionOut], responses=ERRORS)
async def list_collections(services: ServicesDep, request: Request) -> list[CollectionOut]:
    visible = visible_collections(request)
    listed = await run_in_threadpool(collections.list_all, services)
    return [_out(s) for s in listed if visible is None or s.record.name in visible]


@router.post(
    "",
    status_code=201,
    response_model=CollectionOut,
    responses=documented(404, 409, 422, 503),
)
async def create_collection(body: CreateCollectionRequest, services: ServicesDep) -> CollectionOut:
    """Create an empty collection bound to a model (its name, dim and input resolution), e.g. one on RN50 and one
    on ViT-B-16 over the same images, to compare them. Creating it again with the same model is a no-op.
    ``search_mode`` makes hybrid (or keyword) the ranking of searches that name no mode."""
    await run_in_threadpool(collections.ensure, services, body.name, body.model, body.search_mode)
    return _out(await run_in_threadpool(collections.summarise, services, body.name))


@router.patch("/{name}", response_model=CollectionOut, responses=ERRORS)
async def update_collection(
    name: CollectionPath, body: UpdateCollectionRequest, services: ServicesDep
) -> CollectionOut:
    """Change how searches that name no mode are ranked (``search_mode``); a request's own mode always wins."""
    await run_in_threadpool(collections.set_search_mode, services.metadata, name, body.search_mode)
    return _out(await run_in_threadpool(collections.summarise, services, name))


@router.delete("/{name}", response_model=DropResponse, responses=ERRORS)
async def drop_collection(name: CollectionPath, services: ServicesDep) -> DropResponse:
    """Drop the collection from both stores (vectors and image rows)."""
    removed = await run_in_threadpool(collections.drop, services, name)
    return DropResponse(collection=name, removed=removed)


@router.post("/{name}/reconcile", status_code=202, response_model=JobAccepted, responses=ERRORS)
async def reconcile_collection(
    name: CollectionPath, services: ServicesDep, jobs: JobsDep, request: Request
) -> JobAccepted:
    """Find and repair mismatches between the two stores (rows without vectors, vectors without rows).

    The job's ``result`` says what was checked and repaired; ``nothing to repair`` when they agree.
    """
    await run_in_threadpool(collections.require, services, name)
    record = await run_in_threadpool(jobs.submit, "reconcile", name, {"collection": name})
    return job_accepted(request, record.id)


@router.post(
    "/{name}/reembed",
    status_code=202,
    response_model=JobAccepted,
    responses=documented(401, 403, 404, 409, 422, 429, 503),
)
async def reembed_collection(
    name: CollectionPath, body: ReembedRequest, services: ServicesDep, jobs: JobsDep, request: Request
) -> JobAccepted:
    """Re-encode every image of the collection with another model, in the background, while searches keep using
    the current one and every write reaches both. At 100% the collection switches to the new model at once (for
    every service process), unless ``switch`` is false; the old vectors stay until ``/reembed/finalize``, and
    ``/reembed/rollback`` switches back. Asking again for the same model resumes a stopped re-embed."""
    await run_in_threadpool(jobs.ensure_capacity)
    params = await run_in_threadpool(reembed.start, services, name, body.model, body.switch)
    record = await run_in_threadpool(jobs.submit, "reembed", name, params)
    return job_accepted(request, record.id)


@router.post(
    "/{name}/reembed/switch",
    response_model=CollectionOut,
    responses=documented(401, 403, 404, 409, 503),
)
async def switch_collection(name: CollectionPath, services: ServicesDep) -> CollectionOut:
    """Serve the other generation: a re-embed that finished with ``switch: false``, or the new model again after
    a rollback."""
    await run_in_threadpool(reembed.switch, services, name)
    return _out(await run_in_threadpool(collections.summarise, services, name))


@router.post(
    "/{name}/reembed/rollback",
    response_model=CollectionOut,
    responses=documented(401, 403, 404, 409, 503),
)
async def rollback_collection(name: CollectionPath, services: ServicesDep, jobs: JobsDep) -> CollectionOut:
    """After a switch: serve the previous model again (the new vectors stay, kept current, ready to switch to).
    Before the switch: stop the re-embed and drop what it built."""

    def cancel_running() -> None:
        for job in jobs.store.recent(100, name):
            if job.kind == "reembed" and job.state in ("queued", "running"):
                jobs.cancel(job.id)

    await run_in_threadpool(reembed.rollback, services, name, cancel_running)
    return _out(await run_in_threadpool(collections.summarise, services, name))


@router.post(
    "/{name}/reembed/finalize",
    response_model=CollectionOut,
    responses=documented(401, 403, 404, 409, 503),
)
async def finalize_collection(name: CollectionPath, services: ServicesDep) -> CollectionOut:
    """Keep the model that serves now and drop the other vectors (after a switch: the old model's)."""
    await run_in_threadpool(reembed.finalize, services, name)
    return _out(await run_in_threadpool(collections.summarise, services, name))
