"""Ingest people's own image files (uploads, folders, zips) into a collection.

Reader → decoder → encoder → writer, like clip-retrieval: files are read, type-checked and hashed on a
small thread pool, duplicates (same content) are dropped, the new ones are decoded and preprocessed on the
pool while the previous batch is being encoded, and each batch is written in the consistent order of
``operations.ingest.writes``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from adapters import images
from adapters.encoders.encoder_base import EncoderBase
from operations.collections import collections
from operations.ingest.streams import batched, bounded_map
from operations.ingest.writes import ImageToWrite, write_batch
from operations.jobs.job_progress import JobProgress
from operations.services import Services
from operations.words import ocr

logger = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")

IMAGE_ID_PATTERN = r"^[^/\x00-\x1f]{1,255}$"
_IMAGE_ID = re.compile(IMAGE_ID_PATTERN)


@dataclass(frozen=True)
class Candidate:
    """One file to ingest; ``read(limit)`` returns at most ``limit`` bytes."""

    name: str
    read: Callable[[int], bytes]
    image_id: str | None = None
    refusal: str | None = None  # listed, not read: why (a hidden file, an unsafe zip name)


@dataclass(frozen=True)
class Outcome:
    name: str
    status: Literal["stored", "duplicate", "rejected"]
    image_id: str | None = None
    id: int | None = None
    reason: str | None = None
    too_large: bool = False


@dataclass(frozen=True)
class _Probed:
    candidate: Candidate
    data: bytes
    facts: images.ImageFacts
    image_id: str


def content_image_id(sha256: str) -> str:
    """Images without an external id are named by their content: the same file always gets the same id."""
    return sha256[:24]


def _read_and_probe(candidate: Candidate, max_bytes: int, max_pixels: int) -> _Probed | Outcome:
    if candidate.refusal is not None:
        return Outcome(candidate.name, "rejected", reason=candidate.refusal)
    if candidate.image_id is not None and not _IMAGE_ID.match(candidate.image_id):
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


def _decode(probed: _Probed, encoder: EncoderBase, max_pixels: int) -> Any:
    return encoder.preprocess(images.decode_rgb(probed.data, max_pixels))


def _encode_and_write(
    services: Services, collection: str, model: str, decoding: list[tuple[_Probed, Future[Any]]], origin: str
) -> list[Outcome]:
    outcomes: list[Outcome] = []
    ready: list[tuple[_Probed, Any]] = []
    for probed, future in decoding:
        try:
            ready.append((probed, future.result()))
        except images.InvalidImage as exc:
            outcomes.append(Outcome(probed.candidate.name, "rejected", probed.image_id, reason=str(exc)))
    if ready:
        collections.ensure(services, collection, model)  # created with its first image: rejects change nothing
        vectors = services.models.get(model).encode_pixels([pixels for _, pixels in ready])
        items = [
            ImageToWrite(p.image_id, p.data, p.facts, vector, p.candidate.name, origin)
            for (p, _), vector in zip(ready, vectors, strict=True)
        ]
        ids = write_batch(services, collection, items, model)
        ocr.after_write(services, collection, list(ids.values()))
        outcomes.extend(Outcome(p.candidate.name, "stored", p.image_id, ids.get(p.image_id)) for p, _ in ready)
    return outcomes


def ingest(
    services: Services,
    collection: str,
    candidates: Iterable[Candidate],
    progress: JobProgress | None = None,
    model: str | None = None,
    origin: str = "upload",
) -> Iterator[Outcome]:
    """Yields one outcome per candidate, in batches; the collection is created when the first image is written.
    ``origin`` is what a filtered search calls the images' source: "upload", or "ingest:<folder or zip>"."""
    settings = services.settings
    model = collections.model_for_writes(services, collection, model)
    encoder = services.models.get(model)
    progress = progress or JobProgress()
    pool = services.decode_pool
    seen: dict[str, str] = {}
    size = settings.encode_batch_size
    probe = lambda c: _read_and_probe(c, settings.max_image_bytes, settings.max_image_pixels)  # noqa: E731
    in_flight: list[tuple[_Probed, Future[Any]]] | None = None

    def report(outcomes: list[Outcome]) -> Iterator[Outcome]:
        for outcome in outcomes:
            if outcome.status == "rejected":
                progress.error(outcome.reason or "rejected", file=outcome.name)  # counts it as done
            else:
                progress.done += 1
                progress.loaded += outcome.status == "stored"
                progress.skipped += outcome.status == "duplicate"
            yield outcome

    for batch in batched(bounded_map(pool, probe, candidates, lookahead=2 * size + 2), size):
        if progress.should_stop():
            return
        rejected = [item for item in batch if isinstance(item, Outcome)]
        probed = [item for item in batch if isinstance(item, _Probed)]
        skipped, fresh = _split_duplicates(services, collection, probed, seen) if probed else ([], [])
        yield from report(rejected + skipped)
        decoding = [(p, pool.submit(_decode, p, encoder, settings.max_image_pixels)) for p in fresh]
        if in_flight:  # encode the previous batch while this one decodes
            yield from report(_encode_and_write(services, collection, model, in_flight, origin))
            progress.flush()
        in_flight = decoding
    if in_flight:
        yield from report(_encode_and_write(services, collection, model, in_flight, origin))
    progress.flush()
