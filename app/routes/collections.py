"""List and drop collections."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from app.access import WriteAccess
from app.deps import JobsDep, ServicesDep
from app.errors import documented
from app.routes.jobs import job_accepted
from app.schemas import CollectionOut, CollectionPath, CreateCollectionRequest, DropResponse, IndexOut, JobAccepted
from operations.collections import collections
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
        index=IndexOut(**summary.index) if summary.index else None,
    )


@router.get("", response_model=list[CollectionOut], responses=ERRORS)
async def list_collections(services: ServicesDep) -> list[CollectionOut]:
    return [_out(s) for s in await run_in_threadpool(collections.list_all, services)]


@router.post(
    "",
    status_code=201,
    response_model=CollectionOut,
    responses=documented(404, 409, 422, 503),
    dependencies=[WriteAccess],
)
async def create_collection(body: CreateCollectionRequest, services: ServicesDep) -> CollectionOut:
    """Create an empty collection bound to a model (its name, dim and input resolution), e.g. one on RN50 and one
    on ViT-B-16 over the same images, to compare them. Creating it again with the same model is a no-op."""
    await run_in_threadpool(collections.ensure, services, body.name, body.model)
    return _out(await run_in_threadpool(collections.summarise, services, body.name))


@router.delete("/{name}", response_model=DropResponse, responses=ERRORS, dependencies=[WriteAccess])
async def drop_collection(name: CollectionPath, services: ServicesDep) -> DropResponse:
    """Drop the collection from both stores (vectors and image rows)."""
    removed = await run_in_threadpool(collections.drop, services, name)
    return DropResponse(collection=name, removed=removed)


@router.post(
    "/{name}/reconcile", status_code=202, response_model=JobAccepted, responses=ERRORS, dependencies=[WriteAccess]
)
async def reconcile_collection(
    name: CollectionPath, services: ServicesDep, jobs: JobsDep, request: Request
) -> JobAccepted:
    """Find and repair mismatches between the two stores (rows without vectors, vectors without rows).

    The job's ``result`` says what was checked and repaired; ``nothing to repair`` when they agree.
    """
    await run_in_threadpool(collections.require, services, name)
    record = await run_in_threadpool(jobs.submit, "reconcile", name, {"collection": name})
    return job_accepted(request, record.id)
