"""The audit trail, newest first, paged by id (``before`` = the last ``id`` of the previous page)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from adapters.stores.audit_store import AuditFilter
from app.errors import documented

router = APIRouter(tags=["keys"])


class AuditOut(BaseModel):
    id: int
    at: dt.datetime
    key_name: str | None
    method: str
    route: str
    path: str
    collection: str | None
    target: str | None
    status: int
    outcome: str
    client: str | None
    request_id: str | None


class AuditPage(BaseModel):
    entries: list[AuditOut]
    next_before: int | None = None  # pass as ``before`` for the next page; null on the last one


@router.get("/audit", response_model=AuditPage, responses=documented(401, 403, 422, 429))
async def audit_trail(
    request: Request,
    key: Annotated[str | None, Query(description="A key's name.")] = None,
    collection: str | None = None,
    outcome: Literal["ok", "refused", "failed"] | None = None,
    route: Annotated[str | None, Query(description="A route as declared, e.g. /img/{collection}/{image_id}")] = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    before: Annotated[int | None, Query(ge=1)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> AuditPage:
    """Who changed what, and every refused request (401, 403, 429), with filters."""
    wanted = AuditFilter(key, collection, outcome, route, _naive_utc(since), _naive_utc(until), before)
    entries = await run_in_threadpool(request.app.state.access.page, wanted, limit)
    out = [AuditOut(**entry.__dict__) for entry in entries]
    return AuditPage(entries=out, next_before=out[-1].id if len(out) == limit else None)


def _naive_utc(value: dt.datetime | None) -> dt.datetime | None:
    if value is None or value.tzinfo is None:
        return value
    return value.astimezone(dt.UTC).replace(tzinfo=None)
