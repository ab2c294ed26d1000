"""Watching a moment of a video: the frame at an instant and a clip of a range (the video itself streams from
``GET /img/{collection}/{image_id}`` with HTTP Range)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from adapters.stores.sql.metadata_store import ImageRecord
from app.deps import ServicesDep
from app.errors import documented
from app.schemas import CollectionPath
from operations.search import video_views
from operations.services import Services

router = APIRouter(prefix="/img", tags=["videos"])
ERRORS = documented(401, 403, 404, 422, 429, 503)
PRIVATE = {"Cache-Control": "private, max-age=3600"}


async def stream(services: Services, record: ImageRecord) -> FileResponse:
    """The original file, served in the ranges a player asks for (206, ``Accept-Ranges``, ``ETag``): memory does
    not grow with the file."""
    path = await run_in_threadpool(video_views.video_file, services, record)
    return FileResponse(path, media_type=record.mime, headers=PRIVATE, content_disposition_type="inline")


@router.get(
    "/{collection}/{image_id}/frame",
    name="get_video_frame",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}, **ERRORS},
)
async def get_frame(
    collection: CollectionPath,
    image_id: str,
    services: ServicesDep,
    t: Annotated[int, Query(ge=0, description="Milliseconds from the start: the frame shown then.")],
) -> Response:
    """A JPEG of the video at ``t`` ms (the first frame at or after it), upright, at most 1280 px."""
    data = await run_in_threadpool(video_views.frame, services, collection, image_id, t)
    return Response(content=data, media_type="image/jpeg", headers=PRIVATE)


@router.get(
    "/{collection}/{image_id}/clip",
    name="get_video_clip",
    response_class=Response,
    responses={200: {"content": {"video/mp4": {}}}, **ERRORS},
)
async def get_clip(
    collection: CollectionPath,
    image_id: str,
    services: ServicesDep,
    start_ms: Annotated[int, Query(ge=0)],
    end_ms: Annotated[int, Query(ge=1)],
    download: Annotated[bool, Query(description="Sent as an attachment (a file to save).")] = False,
) -> Response:
    """An MP4 of ``[start_ms, end_ms)`` that plays from its first frame (re-encoded H.264, at most 1280 px, at
    most IMGSEARCH_VIDEO_MAX_CLIP_SECONDS long)."""
    data = await run_in_threadpool(video_views.clip, services, collection, image_id, start_ms, end_ms)
    headers = dict(PRIVATE)
    if download:
        name = f"{image_id[:16]}_{start_ms}-{end_ms}.mp4"
        headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return Response(content=data, media_type="video/mp4", headers=headers)
