"""Ingest people's own image files (uploads, folders, zips) into a collection.

Reader → decoder → encoder → writer, like clip-retrieval: files are read, type-checked and hashed on a
small thread pool, duplicates (same content) are dropped, the new ones go through the encode stage
(``operations.ingest.encode_stage``: decoded on the pool while the previous batch is encoded, or on a Ray
cluster), and each batch is written in the consistent order of ``operations.ingest.writes``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from adapters import images
from operations.collections import collections
from operations.ingest import video_ingest, videos
from operations.ingest.candidates import (
    IMAGE_ID,
    IMAGE_ID_PATTERN,
    Candidate,
    Outcome,
    content_image_id,
    count,
)
from operations.ingest.encode_stage import Encoded, EncodeTask, encode_stream
from operations.ingest.streams import batched, bounded_map
from operations.ingest.writes import ImageToWrite, write_batch
from operations.jobs.job_progress import JobProgress
from operations.people import faces
from operations.services import Services
from operations.words import ocr

logger = logging.getLogger(__name__)
__all__ = ["IMAGE_ID_PATTERN", "Candidate", "Outcome", "content_image_id", "ingest"]


@dataclass(frozen=True)
class _Probed:
    candidate: Candidate
    data: bytes
    facts: images.ImageFacts
    image_id: str


def _read_and_probe(candidate: Candidate, max_bytes: int, max_pixels: int) -> _Probed | Outcome:
    if candidate.refusal is not None:
        return Outcome(candidate.name, "rejected", reason=candidate.refusal)
    if candidate.image_id is not None and not IMAGE_ID.match(candidate.image_id):
        return Outcome(candidate.name, "rejected", reason="image_id must be 1-255 characters without '/'")
    try:
        data = candidate.read(max_bytes + 1)
    except Exception as exc:  # unreadable file, broken zip member
        return Outcome(candidate.name, "rejected", reason=f"cannot read file: {exc}")
    if len(data) > max_bytes:
        return Outcome(
            candidate.name, "rejected", reason=f"file is over the limit of {max_bytes} bytes", too_large=True
        )
    if data.startswith(b"PK\x03\x04"):
        return Outcome(candidate.name, "rejected", reason="a zip archive inside the source: unpack it, or ingest it")
    try:
        facts = images.probe(data, max_bytes, max_pixels)
    except images.InvalidImage as exc:
        return Outcome(candidate.name, "rejected", reason=str(exc))
    return _Probed(candidate, data, facts, candidate.image_id or content_image_id(facts.sha256))


def _split_duplicates(
    services: Services, collection: str, batch: list[_Probed], seen: dict[str, str]
) -> tuple[list[Outcome], list[_Probed]]:
    """Same content as an image already stored (or earlier in this run) is a duplicate, not a new image."""
    by_sha = services.metadata.lookup_sha(collection, [p.facts.sha256 for p in batch])
    by_id = services.metadata.lookup(collection, [p.image_id for p in batch])
    outcomes: list[Outcome] = []
    fresh: list[_Probed] = []
    for p in batch:
        sha, name = p.facts.sha256, p.candidate.name
        stored = by_sha.get(sha)
        named = by_id.get(p.image_id)
        if sha in seen:
            outcomes.append(Outcome(name, "duplicate", seen[sha], reason="same content as an earlier file"))
        elif stored is not None and stored.indexed:
            outcomes.append(Outcome(name, "duplicate", stored.image_id, stored.id, "same content already stored"))
        elif named is not None and named.sha256 != sha:
            outcomes.append(Outcome(name, "rejected", p.image_id, reason="image_id is taken by another image"))
        else:
            fresh.append(p)
            seen[sha] = p.image_id
    return outcomes, fresh


def _write(
    services: Services, collection: str, model: str, batch: list[tuple[_Probed, Encoded]], origin: str
) -> list[Outcome]:
    outcomes = [
        Outcome(p.candidate.name, "rejected", p.image_id, reason=encoded.error or "cannot decode the image")
        for p, encoded in batch
        if encoded.vector is None
    ]
    ready = [(p, encoded.vector) for p, encoded in batch if encoded.vector is not None]
    if ready:
        collections.ensure(services, collection, model)  # created with its first image: rejects change nothing
        items = [ImageToWrite(p.image_id, p.data, p.facts, vector, p.candidate.name, origin) for p, vector in ready]
        ids = write_batch(services, collection, items, model)
        read = {ids[p.image_id]: encoded.text for p, encoded in batch if encoded.text is not None and p.image_id in ids}
        ocr.after_write(services, collection, list(ids.values()), read)
        faces.after_write(services, collection, list(ids.values()))
        outcomes.extend(Outcome(p.candidate.name, "stored", p.image_id, ids.get(p.image_id)) for p, _ in ready)
    return outcomes


def ingest(
    services: Services,
    collection: str,
    candidates: Iterable[Candidate],
    progress: JobProgress | None = None,
    model: str | None = None,
    origin: str = "upload",
    on_cluster: bool = False,
) -> Iterator[Outcome]:
    """Yields one outcome per candidate; the collection is created when the first image is written. ``origin``
    is what a filtered search calls the images' source: "upload", or "ingest:<folder or zip>". ``on_cluster``:
    a job's encode stage runs on the Ray cluster when one is configured (an upload, answered at once, never)."""
    settings = services.settings
    model = collections.model_for_writes(services, collection, model)
    progress = progress or JobProgress()
    seen: dict[str, str] = {}
    size = settings.encode_batch_size
    probe = lambda c: _read_and_probe(c, settings.max_image_bytes, settings.max_image_pixels)  # noqa: E731
    unreported: list[Outcome] = []  # refused and duplicate files, counted at once, yielded with the next batch

    held: list[Candidate] = []  # videos: taken one by one once the photos are in

    def photos() -> Iterator[Candidate]:
        for candidate in candidates:
            if candidate.refusal is None and videos.is_video(candidate.name):
                held.append(candidate)
            else:
                yield candidate

    def new_images() -> Iterator[_Probed]:
        for batch in batched(bounded_map(services.decode_pool, probe, photos(), lookahead=2 * size + 2), size):
            if progress.should_stop():
                return
            probed = [item for item in batch if isinstance(item, _Probed)]
            skipped, fresh = _split_duplicates(services, collection, probed, seen) if probed else ([], [])
            for outcome in [item for item in batch if isinstance(item, Outcome)] + skipped:
                count(progress, outcome)
                unreported.append(outcome)
            if not fresh:
                progress.flush()
            yield from fresh

    def task(probed: _Probed) -> EncodeTask:
        return EncodeTask(data=probed.data, path=probed.candidate.path)

    encoded = encode_stream(services, model, new_images(), task, progress, on_cluster=on_cluster, read_text=True)
    for batch in batched(encoded, size):
        written = _write(services, collection, model, batch, origin)
        for outcome in written:
            count(progress, outcome)
        waiting, unreported[:] = list(unreported), []
        yield from waiting + written
        progress.flush()
        if progress.should_stop():
            return
    yield from unreported
    progress.flush()
    faces.after_job(services, collection)
    for outcome in video_ingest.ingest_videos(services, collection, model, held, origin, progress):
        count(progress, outcome)
        progress.flush()
        yield outcome
