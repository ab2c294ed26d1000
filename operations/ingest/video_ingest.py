"""Videos that come by upload or by a folder or zip ingest: kept by the service (``adapters.video_store``, a file
per content: a database row cannot hold a phone video), sampled and encoded here, written as a video and its
frames (``operations.ingest.videos``). The file is in place before the rows become searchable, and a row's delete
removes it (``operations.ingest.writes.delete_images``)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from adapters import ocr, video
from adapters.video_store import TooLarge
from operations.collections import collections
from operations.ingest import videos
from operations.ingest.candidates import IMAGE_ID, Candidate, Outcome, content_image_id
from operations.jobs.job_progress import JobProgress
from operations.services import Services

logger = logging.getLogger(__name__)


def ingest_videos(
    services: Services,
    collection: str,
    model: str,
    candidates: Iterable[Candidate],
    origin: str,
    progress: JobProgress,
) -> Iterator[Outcome]:
    for candidate in candidates:
        if progress.should_stop():
            return
        yield _one(services, collection, model, candidate, origin)


def _one(services: Services, collection: str, model: str, candidate: Candidate, origin: str) -> Outcome:
    name, settings = candidate.name, services.settings
    if candidate.image_id is not None and not IMAGE_ID.match(candidate.image_id):
        return Outcome(name, "rejected", reason="image_id must be 1-255 characters without '/'")
    if not video.available():
        return Outcome(name, "rejected", reason="videos need the video extra (pip install 'imgsearch[video]')")
    suffix = Path(name).suffix
    try:
        source = _source(candidate, settings.max_video_bytes)
    except Exception as exc:  # an unreadable file, a broken zip member
        return Outcome(name, "rejected", reason=f"cannot read file: {exc}")
    try:
        with services.video_store.incoming(collection, suffix, source, settings.max_video_bytes) as (incoming, sha):
            known = services.metadata.lookup_sha(collection, [sha]).get(sha)
            if known is not None and known.indexed:
                return Outcome(name, "duplicate", known.image_id, known.id, "same content already stored")
            read = videos.read_facts(incoming, settings.max_video_bytes, sha256=sha)
            reader = services.ocr if ocr.reads_at_write(settings) else None
            encoded = videos.encode(incoming, services.models.get(model), settings, reader=reader)
            collections.ensure(services, collection, model)
            services.video_store.keep(incoming, collection, sha, suffix)  # the file first: a found video plays
            image_id = candidate.image_id or content_image_id(sha)
            row = videos.write(services, collection, model, image_id, read, encoded, name, origin, in_source=False)
    except TooLarge as exc:
        return Outcome(name, "rejected", reason=str(exc), too_large=True)
    except video.VideoError as exc:
        return Outcome(name, "rejected", reason=str(exc))
    except OSError as exc:
        return Outcome(name, "rejected", reason=f"cannot read file: {exc.strerror or exc}")
    note = f"indexed up to where sampling stopped: {encoded.damage}" if encoded.damage else None
    logger.info("video %s stored in %s as %s (%d samples)", name, collection, image_id, len(encoded.frames))
    return Outcome(name, "stored", image_id, row, note)


def _source(candidate: Candidate, max_bytes: int) -> Path | Callable[[int], bytes]:
    """A folder's file is copied a chunk at a time; an upload or a zip member is read as the candidate reads."""
    if candidate.path is not None:
        return Path(candidate.path)
    pending = [candidate.read(max_bytes + 1)]
    return lambda size: pending.pop() if pending else b""
