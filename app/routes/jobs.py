"""Background job status (kept in the metadata DB: any replica can answer, a restart keeps it)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from adapters.stores.sql.job_store import JobRecord
from adapters.stores.sql.sql_schema import utc_now
from app.access import visible_collections
from app.deps import JobsDep
from app.errors import documented
from app.schemas import CollectionName, JobAccepted, JobOut

router = APIRouter(prefix="/jobs", tags=["jobs"])


def job_accepted(request: Request, job_id: str) -> JobAccepted:
    return JobAccepted(job_id=job_id, status_url=str(request.url_for("get_job", job_id=job_id)))


def _rate(record: JobRecord) -> float | None:
    if record.started_at is None:
        return None
    end = record.finished_at or utc_now()
    seconds = (end - record.started_at).total_seconds()
    return round(record.done / seconds, 1) if seconds > 0 else None


@router.get("", response_model=list[JobOut], responses=documented(422))
async def list_jobs(
    jobs: JobsDep,
    request: Request,
    collection: Annotated[CollectionName | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> list[JobOut]:
    """The newest jobs first, optionally of one collection (only those of its collections for a limited key)."""
    visible = visible_collections(request)
    if visible is None or collection is not None:
        return [_out(record) for record in await run_in_threadpool(jobs.store.recent, limit, collection)]
    listed = [await run_in_threadpool(jobs.store.recent, limit, name) for name in sorted(visible)]
    newest = sorted((r for records in listed for r in records), key=lambda r: r.created_at or utc_now(), reverse=True)
    return [_out(record) for record in newest[:limit]]


@router.get("/{job_id}", name="get_job", response_model=JobOut, responses=documented(404))
async def get_job(job_id: str, jobs: JobsDep) -> JobOut:
    return _out(await run_in_threadpool(jobs.get, job_id))


@router.post("/{job_id}/cancel", response_model=JobOut, responses=documented(401, 403, 404, 409))
async def cancel_job(job_id: str, jobs: JobsDep) -> JobOut:
    """A queued job is cancelled at once; a running one stops at its next batch, whichever service process runs
    it (what it already stored stays, and running it again completes it). 409 if it already ended otherwise."""
    return _out(await run_in_threadpool(jobs.cancel, job_id))


def _out(record: JobRecord) -> JobOut:
    return JobOut(
        job_id=record.id,
        kind=record.kind,
        collection=record.collection,
        state=record.state,
        params=record.params,
        total=record.total,
        done=record.done,
        loaded=record.loaded,
        skipped=record.skipped,
        failed=record.failed,
        errors=record.errors,
        rate=_rate(record),
        message=record.message,
        result=record.result,
        created_at=record.created_at,
        started_at=record.started_at,
        finished_at=record.finished_at,
        owner=record.owner if record.state == "running" else None,
        attempts=record.attempts,
        max_attempts=record.max_attempts,
        cancel_requested=record.cancel_requested,
        runs=record.runs,
    )
