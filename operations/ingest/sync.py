"""Make a collection equal to a source folder: new files encoded and added, edited ones re-encoded under the same
id (tags kept), moved or renamed ones (same content, old path gone) given their new path without re-encoding, the
same content at two paths one image with two paths, deleted ones removed from both stores.

Files whose size and mtime match what the last sync saw are not opened: an unchanged library costs a directory
walk. Originals stay where they are; the metadata DB keeps a preview JPEG. Every step is idempotent, so a sync
that was cancelled or killed is finished by running it again (a resumed job does exactly that).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from adapters import file_names, images, video
from adapters.ocr import OcrLine
from adapters.stores.sql.source_store import KnownFile, NewFile, RejectedFile, SourceRecord
from operations.collections import collections, generations
from operations.ingest import live_photos, videos
from operations.ingest.encode_stage import Encoded, EncodeTask, encode_stream
from operations.ingest.ingest import content_image_id
from operations.ingest.source_scan import FileStat, SourceFiles, scan
from operations.ingest.sources import remove_orphans, source_folder
from operations.ingest.streams import batched, bounded_map
from operations.ingest.vector_fields import fields_for_ids
from operations.ingest.writes import ImageToWrite, write_batch
from operations.jobs.job_progress import JobOutcome, JobProgress
from operations.people import face_vectors, faces
from operations.services import Services
from operations.words import ocr

logger = logging.getLogger(__name__)

MAX_SKIPPED_LISTED = 100
COUNTS = ("stored", "changed", "moved", "linked", "removed", "unchanged", "rejected")


@dataclass(frozen=True)
class _File:
    path: str
    stat: FileStat
    data: bytes = b""
    facts: images.ImageFacts | None = None
    refusal: str | None = None
    prepared: _Prepared | None = None  # new content, encoded by the encode stage
    video: videos.VideoRead | None = None  # a video: sampled and encoded when it is new (``_write_videos``)


@dataclass(frozen=True)
class _Prepared:
    preview: bytes
    vector: np.ndarray
    text: list[OcrLine] | None = None  # read on a Ray node on the same decode (IMGSEARCH_OCR=on)


@dataclass
class _Encode:
    file: _File
    edit_of: KnownFile | None = None  # re-encode this file's image in place


@dataclass
class _Run:
    services: Services
    source: SourceRecord
    folder: Path
    model: str
    progress: JobProgress
    known: dict[str, KnownFile]
    gone: dict[str, KnownFile] = field(default_factory=dict)
    # The gone paths by (image, content): a new path with the same pair is that file moved (found without a scan
    # of every gone path per new file).
    gone_by_content: dict[tuple[int, str], list[str]] = field(default_factory=dict)
    counts: Counter = field(default_factory=Counter)
    renamed: set[int] = field(default_factory=set)  # images whose paths changed: their names are indexed again
    archive: bool = False  # the source is a zip: its members have no path a Ray worker could read

    @property
    def collection(self) -> str:
        return self.source.collection

    def mark_gone(self, file: KnownFile) -> None:
        self.gone[file.path] = file
        self.gone_by_content.setdefault((file.image, file.sha256), []).append(file.path)

    def take_gone(self, image: int, sha256: str) -> KnownFile | None:
        """A gone path of this image and content (then no longer gone), or None."""
        paths = self.gone_by_content.get((image, sha256))
        while paths:
            file = self.gone.pop(paths.pop(), None)
            if file is not None:
                return file
        return None


def run(
    services: Services, source: SourceRecord, progress: JobProgress, under: str | None = None, job_id: str | None = None
) -> JobOutcome:
    folder = source_folder(services, source)
    model = collections.model_for_writes(services, source.collection)
    prefix = under.strip("/") if under else None
    scanned = scan(folder, source.excludes, prefix)
    if not services.settings.live_photo_videos:
        live_photos.set_aside(scanned, folder)
    known = services.sources.files(source.id, prefix)
    rejected = services.sources.rejected(source.id, prefix)
    state = _Run(services, source, folder, model, progress, known)
    for path, file in known.items():
        if path not in scanned.files:
            state.mark_gone(file)
    progress.total = len(scanned.files) + len(state.gone)
    changed = []
    for path, stat in scanned.files.items():
        seen = known.get(path) or rejected.get(path)
        if seen is None or (seen.size, seen.mtime_ns) != (stat.size, stat.mtime_ns):
            changed.append(path)
        elif path in rejected:  # still the file refused last time: listed again, not read again
            progress.error(f"{rejected[path].reason} (unchanged since the last sync)", file=path)
            state.counts["rejected"] += 1
        else:
            state.counts["unchanged"] += 1
    progress.done += state.counts["unchanged"]
    progress.skipped = state.counts["unchanged"]
    services.sources.clear_rejected(source.id, [p for p in rejected if p not in scanned.files or p in changed])
    progress.flush()

    size = services.settings.encode_batch_size
    # Reading threads read and hash the changed files; new content goes on to the encode stage (here or on Ray)
    # at once, so encoding overlaps reading. Content the collection has already (a move) is not encoded.
    known_shas = services.metadata.shas(source.collection)
    with SourceFiles(folder) as files:
        # Ray workers that read the files themselves need only their paths: the bytes read here for the hash are
        # not kept (a window of 1024 phone photos would hold 4 GB).
        state.archive = files.archive is not None
        keep = services.ray is None or not services.settings.ray_shared_paths or state.archive
        read = lambda path: _read(files, path, scanned.files[path], services.settings, keep)  # noqa: E731
        task = _new_content_task(state, known_shas)
        read_files = bounded_map(services.decode_pool, read, changed, lookahead=2 * size + 2)
        for batch in batched(encode_stream(services, model, read_files, task, progress, read_text=True), size):
            if progress.should_stop():
                return JobOutcome(f"stopped: {_summary(state.counts)}", _result(state, scanned.skipped))
            _sync_batch(state, [_with_encoded(file, encoded) for file, encoded in batch])
            progress.flush()
    _remove_gone(state)
    faces.after_job(services, source.collection)
    generations.flush(services, source.collection)
    services.sources.mark_synced(source.id, job_id)
    progress.flush()
    message = _summary(state.counts)
    logger.info("sync of %s (source %d, %s): %s", source.collection, source.id, source.path, message)
    return JobOutcome(message, _result(state, scanned.skipped))


def _encode_task(state: _Run, file: _File) -> EncodeTask:
    """A file encoded with a preview (decoded once: ``encode_stage.prepare``); a file a Ray worker can read itself (a
    folder's, not a zip member) is named by its path too, and its bytes may not have been kept (see ``run``)."""
    path = None if state.archive else str(state.folder / file_names.file_system(file.path))
    return EncodeTask(data=file.data or None, path=path, preview_size=state.services.settings.preview_size)


def _new_content_task(state: _Run, known_shas: set[str]) -> Callable[[_File], EncodeTask | None]:
    """Only new content goes to the encode stage on the way; content already in the collection is a move."""

    def task(file: _File) -> EncodeTask | None:
        if file.facts is None or file.video is not None or file.facts.sha256 in known_shas:
            return None
        return _encode_task(state, file)

    return task


def _with_encoded(file: _File, encoded: Encoded) -> _File:
    """The file with its preview and vector, or refused when its pixels could not be decoded."""
    if encoded.error is not None:
        return _File(file.path, file.stat, refusal=encoded.error)
    if encoded.vector is None:
        return file
    return replace(file, prepared=_Prepared(encoded.preview or b"", encoded.vector, encoded.text))


def _read(files: SourceFiles, path: str, stat: FileStat, settings: Any, keep: bool = True) -> _File:
    """Reads and checks one new or changed file (the only files a sync opens); ``keep``: its bytes stay with it
    for the encoder."""
    if videos.is_video(path):
        return _read_video(files, path, stat, settings)
    max_bytes, max_pixels = settings.max_image_bytes, settings.max_image_pixels
    try:
        data = files.read(path, max_bytes + 1)
    except OSError as exc:
        return _File(path, stat, refusal=f"cannot read file: {exc.strerror or exc}")
    if len(data) > max_bytes:
        return _File(path, stat, refusal=f"file is over the limit of {max_bytes} bytes")
    try:
        facts = images.probe(data, max_bytes, max_pixels)
    except images.InvalidImage as exc:
        return _File(path, stat, refusal=str(exc))
    return _File(path, stat, data if keep else b"", facts)


def _read_video(files: SourceFiles, path: str, stat: FileStat, settings: Any) -> _File:
    """A video's container facts and hash; its frames are decoded only if its content is new."""
    if files.archive is not None:
        return _File(path, stat, refusal="a video inside a zip is not indexed: unzip it into a folder source")
    try:
        read = videos.read_facts(files.file(path), settings.max_video_bytes)
    except OSError as exc:
        return _File(path, stat, refusal=f"cannot read file: {exc.strerror or exc}")
    except video.VideoError as exc:
        return _File(path, stat, refusal=str(exc))
    return _File(path, stat, facts=read.facts, video=read)


def _sync_batch(state: _Run, batch: list[_File]) -> None:
    services = state.services
    good = [f for f in batch if f.facts is not None]
    by_sha = services.metadata.lookup_sha(state.collection, [f.facts.sha256 for f in good if f.facts])
    encode: list[_Encode] = []
    links: list[_File] = []  # same content as an image this batch stores: linked once it is written
    queued: set[str] = set()
    for file in batch:
        old = state.known.get(file.path)
        if file.facts is None:
            _reject(state, file)
            if old is not None:  # it was an image; what is there now is not: its path goes
                state.mark_gone(old)
            continue
        sha = file.facts.sha256
        if old is not None and old.sha256 == sha:  # touched, not changed
            services.sources.update_file(old.id, file.path, file.stat.size, file.stat.mtime_ns, sha)
            _count(state, "unchanged")
            continue
        if old is not None:
            if len(services.sources.paths_of([old.image]).get(old.image, [])) <= 1:
                encode.append(_Encode(file, edit_of=old))
                continue
            services.sources.remove_files([old.id])  # the other paths keep the old content
            state.renamed.add(old.image)
        existing = by_sha.get(sha)
        if existing is not None and existing.indexed:
            _place(state, file, existing.id)
        elif sha in queued:
            links.append(file)
        else:
            queued.add(sha)
            encode.append(_Encode(file))
    if encode:
        _encode_and_write(state, encode)
    if links:
        written = services.metadata.lookup_sha(state.collection, [f.facts.sha256 for f in links if f.facts])
        for file in links:
            _place(state, file, written[file.facts.sha256].id)  # type: ignore[union-attr]
    _index_names(state)


def _index_names(state: _Run) -> None:
    if state.renamed:
        state.services.texts.refresh(sorted(state.renamed))
        state.renamed.clear()


def _reject(state: _Run, file: _File) -> None:
    reason = file.refusal or "rejected"
    state.progress.error(reason, file=file.path)
    state.counts["rejected"] += 1
    rejected = RejectedFile(file.path, file.stat.size, file.stat.mtime_ns, reason)
    state.services.sources.set_rejected(state.source.id, [rejected])


def _place(state: _Run, file: _File, image: int) -> None:
    """A new path of a stored image: the same file moved or renamed (its old path is gone), or a second copy."""
    sha = file.facts.sha256  # type: ignore[union-attr]
    moved_from = state.take_gone(image, sha)
    state.renamed.add(image)
    if moved_from is not None:
        state.progress.total = (state.progress.total or 1) - 1  # its old path was counted as an entry too
        state.services.sources.update_file(moved_from.id, file.path, file.stat.size, file.stat.mtime_ns, sha)
        _count(state, "moved")
    else:
        state.services.sources.add_files(
            state.source.id, [NewFile(image, file.path, file.stat.size, file.stat.mtime_ns, sha)]
        )
        _count(state, "linked")


def _encode_and_write(state: _Run, batch: list[_Encode]) -> None:
    services = state.services
    moving = [item for item in batch if item.file.video is not None]
    if moving:
        _write_videos(state, moving)
        batch = [item for item in batch if item.file.video is None]
    # Content not encoded on the way: its hash was in the collection when the sync began (a pending row left by
    # an interrupted run).
    late = [item for item in batch if item.file.prepared is None]
    if late:
        task = lambda item: _encode_task(state, item.file)  # noqa: E731
        redone = {
            id(item): _Encode(_with_encoded(item.file, result), item.edit_of)
            for item, result in encode_stream(services, state.model, late, task, state.progress, read_text=True)
        }
        batch = [redone.get(id(item), item) for item in batch]
    for item in batch:
        if item.file.prepared is None:
            _reject(state, item.file)
    ready = [item for item in batch if item.file.prepared is not None]
    if not ready:
        return
    new = [(item, item.file.prepared.preview, item.file.prepared.vector) for item in ready]  # type: ignore[union-attr]
    fresh = [(item, preview, vector) for item, preview, vector in new if item.edit_of is None]
    origin = f"source:{state.source.path}"
    ids: dict[str, int] = {}
    if fresh:
        ids = write_batch(
            services,
            state.collection,
            [
                ImageToWrite(
                    content_image_id(item.file.facts.sha256),  # type: ignore[union-attr]
                    preview,
                    item.file.facts,  # type: ignore[arg-type]
                    vector,
                    item.file.path,
                    origin,
                    preview=True,
                )
                for item, preview, vector in fresh
            ],
            state.model,
        )
        shas = [item.file.facts.sha256 for item, _, _ in fresh]  # type: ignore[union-attr]
        files = [
            NewFile(ids[content_image_id(sha)], item.file.path, item.file.stat.size, item.file.stat.mtime_ns, sha)
            for (item, _, _), sha in zip(fresh, shas, strict=True)
        ]
        services.sources.add_files(state.source.id, files)
        state.renamed.update(file.image for file in files)
        for _ in fresh:
            _count(state, "stored")
    for item, preview, vector in new:
        if item.edit_of is not None:
            _rewrite(state, item, preview, vector)

    def image_of(item: _Encode) -> int:
        return item.edit_of.image if item.edit_of else ids[content_image_id(item.file.facts.sha256)]  # type: ignore[union-attr]

    read = {image_of(item): item.file.prepared.text for item in ready if item.file.prepared.text is not None}  # type: ignore[union-attr]
    ocr.after_write(services, state.collection, [image_of(item) for item in ready], read)
    faces.after_write(services, state.collection, [image_of(item) for item in ready])


def _rewrite(state: _Run, item: _Encode, preview: bytes, vector: Any) -> None:
    """An edited file: its image keeps its id, vector id and tags; the content, vector and preview are new. The
    file's row is updated last, so an interrupted rewrite is done again by the next sync."""
    services, old, facts = state.services, item.edit_of, item.file.facts
    assert old is not None and facts is not None
    services.metadata.update_content(old.image, preview, facts)
    services.texts.set_fields(state.collection, {old.image: {"ocr": None, "ocr_lines": None}})  # read the new one
    face_vectors.forget_images(services, state.collection, [old.image])  # its faces too
    fields = fields_for_ids(services.metadata, state.collection, [old.image])
    generations.put_vectors(
        services, state.collection, [old.image], vector[None, :], [fields[old.image]], state.model, [preview]
    )
    services.sources.update_file(old.id, item.file.path, item.file.stat.size, item.file.stat.mtime_ns, facts.sha256)
    _count(state, "changed")


def _write_videos(state: _Run, batch: list[_Encode]) -> None:
    """New and edited videos: sampled and encoded on the decode threads (on the cluster's actors with Ray), one
    video at a time written with its frames; a video that yields no frame is refused with the reason."""
    services = state.services
    origin = f"source:{state.source.path}"

    def location(item: _Encode) -> Path:
        return state.folder / file_names.file_system(item.file.path)

    def duration(item: _Encode) -> int:
        return item.file.video.video.duration_ms if item.file.video else 0

    for item, encoded in videos.encode_all(services, state.model, batch, location, duration):
        file, read = item.file, item.file.video
        assert read is not None
        if isinstance(encoded, str):
            _reject(state, replace(file, refusal=encoded))
            continue
        if encoded.damage:
            state.progress.warn(f"indexed up to where sampling stopped: {encoded.damage}", file=file.path)
        for node in encoded.nodes:
            state.progress.encoded_by[node] += len(encoded.frames) // len(encoded.nodes)  # samples, per node
        if item.edit_of is not None:
            videos.rewrite(services, state.collection, state.model, item.edit_of.image, read, encoded)
            stat, sha = file.stat, read.facts.sha256
            services.sources.update_file(item.edit_of.id, file.path, stat.size, stat.mtime_ns, sha)
            _count(state, "changed")
            continue
        image = videos.write(
            services, state.collection, state.model, content_image_id(read.facts.sha256), read, encoded, None, origin
        )
        services.sources.add_files(
            state.source.id, [NewFile(image, file.path, file.stat.size, file.stat.mtime_ns, read.facts.sha256)]
        )
        state.renamed.add(image)
        _count(state, "stored")


def _remove_gone(state: _Run) -> None:
    """Paths that are gone lose their rows, and images left with no file go (see sources.remove_orphans)."""
    if not state.gone:
        return
    state.services.sources.remove_files([f.id for f in state.gone.values()])
    state.renamed.update(f.image for f in state.gone.values())
    remove_orphans(state.services, state.collection, sorted({f.image for f in state.gone.values()}))
    _index_names(state)
    for _ in state.gone:
        _count(state, "removed")


def _count(state: _Run, what: str) -> None:
    state.counts[what] += 1
    state.progress.done += 1
    if what in ("stored", "changed"):
        state.progress.loaded += 1
    else:
        state.progress.skipped += 1


def _summary(counts: Counter) -> str:
    return ", ".join(f"{counts[name]} {name}" for name in COUNTS)


def _result(state: _Run, skipped: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "source": state.source.id,
        "counts": {name: int(state.counts[name]) for name in COUNTS},
        "skipped": len(skipped),
        "skipped_sample": [{"path": p, "reason": r} for p, r in skipped[:MAX_SKIPPED_LISTED]],
    }
