"""List and drop collections."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from starlette.concurrency import run_in_threadpool

from app.deps import ServicesDep
from app.errors import ErrorResponse
from app.schemas import CollectionOut, DropResponse
from operations import collections
from operations.collections import NAME_PATTERN, CollectionSummary

router = APIRouter(prefix="/collections", tags=["collections"])
ERRORS = {code: {"model": ErrorResponse} for code in (404, 422, 503)}


def _out(summary: CollectionSummary) -> CollectionOut:
    r = summary.record
    return CollectionOut(
        name=r.name, model=r.model, dim=r.dim, metric=r.metric, count=summary.count, created_at=r.created_at
    )


@router.get("", response_model=list[CollectionOut], responses=ERRORS)
async def list_collections(services: ServicesDep) -> list[CollectionOut]:
    return [_out(s) for s in await run_in_threadpool(collections.list_all, services)]


@router.delete("/{name}", response_model=DropResponse, responses=ERRORS)
async def drop_collection(name: Annotated[str, Path(pattern=NAME_PATTERN)], services: ServicesDep) -> DropResponse:
    """Drop the collection from both stores (vectors and image rows)."""
    removed = await run_in_threadpool(collections.drop, services, name)
    return DropResponse(collection=name, removed=removed)
