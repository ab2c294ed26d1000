"""Source folders of a collection: register once, sync (a job) whenever the folder changed."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from app.deps import JobsDep, ServicesDep
from app.errors import documented
from app.routes.jobs import job_accepted
from app.schemas import MODEL_HELP, CollectionPath, JobAccepted
from operations.ingest import sources
from operations.ingest.source_scan import DEFAULT_EXCLUDES

router = APIRouter(tags=["sources"])
ERRORS = documented(401, 403, 404, 409, 422, 429, 503)


class SourceRequest(BaseModel):
    path: str = Field(
        min_length=1, max_length=512, examples=["photos/phone"], description="A folder, relative to the data root."
    )
    excludes: list[str] | None = Field(
        None,
        description=f"Glob patterns of paths (relative to the folder) never read; default {list(DEFAULT_EXCLUDES)}.",
        examples=[["**/@eaDir/**", "*.tmp"]],
    )
    watched: bool = Field(False, description="Follow file-system events (see the README: watching).")
    model: str | None = Field(None, description=MODEL_HELP, examples=[None])


class SourceOut(BaseModel):
    id: int
    collection: str
    path: str
    excludes: list[str]
    watched: bool
    files: int = Field(description="Files of the folder stored as images (or as paths of one) by the last syncs.")
    created_at: dt.datetime
    last_sync_at: dt.datetime | None
    last_sync_job: str | None


class SyncRequest(BaseModel):
    path: str | None = Field(
        None, max_length=1024, description="Only this sub-folder or file (relative to the source)."
    )


class SourceRemoved(BaseModel):
    collection: str
    id: int
    images_removed: int


def _out(summary: sources.SourceSummary) -> SourceOut:
    record = summary.record
    return SourceOut(
        id=record.id,
        collection=record.collection,
        path=record.path,
        excludes=record.excludes,
        watched=record.watched,
        files=summary.files,
        created_at=record.created_at,
        last_sync_at=record.last_sync_at,
        last_sync_job=record.last_sync_job,
    )


@router.post(
    "/collections/{name}/sources",
    status_code=201,
    response_model=SourceOut,
    responses=ERRORS,
)
async def add_source(name: CollectionPath, body: SourceRequest, services: ServicesDep, request: Request) -> SourceOut:
    """Register a folder under the data root as a source of the collection (created if new). Its images are
    referenced in place: the originals stay in the folder, the database keeps a preview. Then sync it; a watched
    source is synced by the service itself, at once and whenever the folder changes."""
    record = await run_in_threadpool(sources.add, services, name, body.path, body.excludes, body.watched, body.model)
    if record.watched and request.app.state.watcher is not None:
        request.app.state.watcher.refresh()
    return _out(sources.SourceSummary(record, 0))


@router.get("/collections/{name}/sources", response_model=list[SourceOut], responses=ERRORS)
async def list_sources(name: CollectionPath, services: ServicesDep) -> list[SourceOut]:
    return [_out(s) for s in await run_in_threadpool(sources.summaries, services, name)]


@router.delete(
    "/collections/{name}/sources/{source_id}",
    response_model=SourceRemoved,
    responses=ERRORS,
)
async def remove_source(
    name: CollectionPath,
    source_id: int,
    services: ServicesDep,
    keep_images: Annotated[bool, Query(description="Keep its images (searchable from their previews).")] = False,
) -> SourceRemoved:
    """Forget the source; its images that no other source holds are removed from both stores unless kept. The
    files themselves are never touched."""
    removed = await run_in_threadpool(sources.remove, services, name, source_id, keep_images)
    return SourceRemoved(collection=name, id=source_id, images_removed=removed)


@router.post(
    "/collections/{name}/sources/{source_id}/sync",
    status_code=202,
    response_model=JobAccepted,
    responses=ERRORS,
)
async def sync_source(
    name: CollectionPath,
    source_id: int,
    services: ServicesDep,
    jobs: JobsDep,
    request: Request,
    body: SyncRequest | None = None,
) -> JobAccepted:
    """A job that makes the collection equal to the folder: new files added, edited ones re-encoded (same id and
    tags), moved ones re-pathed (not re-encoded), deleted ones removed. Unchanged files are not opened."""
    jobs.ensure_capacity()
    record = await run_in_threadpool(sources.require, services, name, source_id)
    await run_in_threadpool(sources.source_folder, services, record)
    under = sources.validate_under(body.path if body else None)
    job = await run_in_threadpool(jobs.submit, "sync", name, {"collection": name, "source": source_id, "path": under})
    return job_accepted(request, job.id)
