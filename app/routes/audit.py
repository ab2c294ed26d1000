"""The audit trail, newest first, paged by id (``before`` = the last ``id`` of the previous page)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from adapters.stores.sql.audit_store import AuditEntry, AuditFilter
from app.errors import documented
from operations.access.keys import naive_utc

router = APIRouter(tags=["keys"])


class AuditPage(BaseModel):
    entries: list[AuditEntry]  # the stored rows as they are
    next_before: int | None = None  # pass as ``before`` for the next page; null on the last one


@router.get("/audit", response_model=AuditPage, responses=documented(401, 403, 422, 429))
async def audit_trail(
    request: Request,
    key: Annotated[str | None, Query(max_length=64, description="A key's name.")] = None,
    collection: Annotated[str | None, Query(max_length=64)] = None,
    outcome: Literal["ok", "refused", "failed"] | None = None,
    route: Annotated[
        str | None, Query(max_length=128, description="A route as declared, e.g. /img/{collection}/{image_id}")
    ] = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    before: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> AuditPage:
    """Who changed what, and every refused request (401, 403, 429), with filters."""
    wanted = AuditFilter(key, collection, outcome, route, _utc(since), _utc(until), before)
    entries = await run_in_threadpool(request.app.state.access.page, wanted, limit)
    return AuditPage(entries=entries, next_before=entries[-1].id if len(entries) == limit else None)


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    return naive_utc(value) if value is not None else None
