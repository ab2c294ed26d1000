"""Watching a moment: a video's file to stream, the frame at an instant, and a clip of a range, each checked
against what the video is (its duration, the clip limit) so a bad request is a clear 4xx."""

from __future__ import annotations

import logging
from pathlib import Path

from adapters import video, video_clips
from adapters.stores.sql.metadata_store import ImageRecord
from operations.collections import collections
from operations.errors import InvalidInput, NotFound
from operations.ingest.sources import original_file
from operations.services import Services

logger = logging.getLogger(__name__)

FRAME_SIDE = 1280
CLIP_SIDE = 1280


def require_video(services: Services, collection: str, image_id: str) -> ImageRecord:
    record = collections.require_image(services, collection, image_id)
    if not record.is_video:
        raise NotFound(f"{image_id!r} of {collection!r} is not a video")
    return record


def video_file(services: Services, record: ImageRecord) -> Path:
    return original_file(services, record)


def frame(services: Services, collection: str, image_id: str, ms: int) -> bytes:
    record = require_video(services, collection, image_id)
    duration = record.duration_ms or 0
    if not 0 <= ms <= duration:
        raise InvalidInput(f"t must be between 0 and the video's {duration} ms, got {ms}")
    try:
        return video_clips.frame_jpeg(video_file(services, record), ms, FRAME_SIDE)
    except video.VideoError as exc:
        raise InvalidInput(str(exc)) from exc


def clip(services: Services, collection: str, image_id: str, start_ms: int, end_ms: int) -> bytes:
    record = require_video(services, collection, image_id)
    duration = record.duration_ms or 0
    limit_ms = int(services.settings.video_max_clip_seconds * 1000)
    if not 0 <= start_ms < end_ms:
        raise InvalidInput(f"a clip needs 0 <= start_ms < end_ms, got {start_ms} and {end_ms}")
    if start_ms >= duration:
        raise InvalidInput(f"start_ms {start_ms} is past the video's end ({duration} ms)")
    end_ms = min(end_ms, duration)
    if end_ms - start_ms > limit_ms:
        raise InvalidInput(
            f"a clip is at most {limit_ms} ms (IMGSEARCH_VIDEO_MAX_CLIP_SECONDS), asked {end_ms - start_ms} ms"
        )
    try:
        return video_clips.clip_mp4(video_file(services, record), start_ms, end_ms, CLIP_SIDE)
    except video.VideoError as exc:
        raise InvalidInput(str(exc)) from exc
