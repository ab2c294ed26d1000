"""Folders (and zips) a collection follows: registered once (kept in the metadata DB), then synced by jobs and,
when watched, by file-system events. A source is a folder or a .zip under the data root; nothing outside it is
ever read."""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from adapters import file_names
from adapters.stores.sql.metadata_store import ImageRecord
from adapters.stores.sql.source_store import SourceRecord
from operations.collections import collections
from operations.errors import Conflict, InvalidInput, NotFound
from operations.ingest.file_sources import resolve_under_root
from operations.ingest.source_scan import DEFAULT_EXCLUDES, SourceFiles, is_zip
from operations.ingest.writes import delete_images
from operations.services import Services

MAX_EXCLUDES = 64
MAX_PATTERN_CHARS = 256


@dataclass(frozen=True)
class SourceSummary:
    record: SourceRecord
    files: int


def _root(services: Services) -> Path:
    return Path(str(services.settings.data_root)).resolve()


def source_folder(services: Services, source: SourceRecord) -> Path:
    """The source's folder or zip now (it may have been removed or replaced since it was added)."""
    folder = resolve_under_root(_root(services), source.path)
    if not (folder.is_dir() or is_zip(folder)):
        raise NotFound(f"source {source.path!r} no longer exists under the data root")
    return folder


def _clean_excludes(excludes: Sequence[str] | None) -> list[str]:
    patterns = list(DEFAULT_EXCLUDES) if excludes is None else [p.strip() for p in excludes if p.strip()]
    if len(patterns) > MAX_EXCLUDES:
        raise InvalidInput(f"at most {MAX_EXCLUDES} exclude patterns, got {len(patterns)}")
    for pattern in patterns:
        if len(pattern) > MAX_PATTERN_CHARS or "\x00" in pattern:
            raise InvalidInput(f"exclude pattern {pattern[:40]!r}… is over {MAX_PATTERN_CHARS} characters or has NUL")
    return list(dict.fromkeys(patterns))


def add(
    services: Services,
    collection: str,
    path: str,
    excludes: Sequence[str] | None = None,
    watched: bool = False,
    model: str | None = None,
) -> SourceRecord:
    """Registers a folder or a .zip under the data root (the collection is created if new). Syncing is a separate
    step."""
    root = _root(services)
    folder = resolve_under_root(root, path)
    if not folder.exists():
        raise NotFound(f"folder {path!r} does not exist under the data root")
    if is_zip(folder):
        try:
            zipfile.ZipFile(folder).close()
        except (zipfile.BadZipFile, OSError) as exc:
            raise InvalidInput(f"{path!r} is not a valid zip file: {exc}") from None
    elif not folder.is_dir():
        raise InvalidInput(f"{path!r} is neither a folder nor a .zip file")
    relative = folder.relative_to(root).as_posix()
    if relative == ".":
        raise InvalidInput("the data root itself cannot be a source: name a folder inside it")
    cleaned = _clean_excludes(excludes)
    for other in services.sources.list(collection):
        if Path(other.path) in Path(relative).parents or Path(relative) in Path(other.path).parents:
            raise Conflict(f"{relative!r} overlaps source {other.id} ({other.path!r}) of collection {collection!r}")
    collections.ensure(services, collection, model)
    record = services.sources.add(collection, relative, cleaned, watched)
    if record is None:
        raise Conflict(f"{relative!r} is already a source of collection {collection!r}")
    return record


def require(services: Services, collection: str, source_id: int) -> SourceRecord:
    record = services.sources.get(source_id)
    if record is None or record.collection != collection:
        collections.require(services, collection)
        raise NotFound(f"source {source_id} not found in collection {collection!r}")
    return record


def summaries(services: Services, collection: str) -> list[SourceSummary]:
    collections.require(services, collection)
    records = services.sources.list(collection)
    counts = services.sources.file_counts([r.id for r in records])
    return [SourceSummary(r, counts.get(r.id, 0)) for r in records]


def remove(services: Services, collection: str, source_id: int, keep_images: bool = False) -> int:
    """Forgets the source; its images that no other source holds are removed from both stores unless kept (they
    then stay searchable from their previews). Returns how many images were removed."""
    record = require(services, collection, source_id)
    files = services.sources.files(record.id)
    image_ids = sorted({f.image for f in files.values()})
    services.sources.remove(record.id)
    return 0 if keep_images else remove_orphans(services, collection, image_ids)


def remove_orphans(services: Services, collection: str, image_ids: Sequence[int]) -> int:
    """Images of source files that no file holds any more are removed from both stores (one that came in by upload
    or load and was only linked to a file keeps its bytes and stays). Returns how many were removed."""
    if not image_ids:
        return 0
    still_placed = services.sources.images_with_files(image_ids)
    orphans = [i for i in image_ids if i not in still_placed]
    records = services.metadata.fetch(collection, orphans, include_pending=True)
    removable = [i for i in orphans if i in records and records[i].preview]
    delete_images(services, collection, removable)
    return len(removable)


def original_bytes(services: Services, image: ImageRecord) -> bytes:
    """An image's bytes as a user gave them: its file for an image of a source (404 naming the path when no file
    of it is left), the stored bytes for an upload or a load."""
    if not image.preview:
        return image.data or b""
    root = _root(services)
    tried = []
    for source, path in services.sources.paths_of([image.id]).get(image.id, []):
        tried.append(f"{source.path}/{file_names.readable(path)}")
        try:
            with SourceFiles(resolve_under_root(root, source.path)) as files:
                # A folder's file may link elsewhere: it must resolve under the root too.
                if files.archive is None and not files.file(path).resolve().is_relative_to(root.resolve()):
                    continue
                return files.read(path, services.settings.max_image_bytes + 1)
        except (OSError, InvalidInput, zipfile.BadZipFile):
            continue
    raise NotFound(f"the original of {image.image_id!r} is gone from its source: {', '.join(tried) or 'no path known'}")


def original_file(services: Services, image: ImageRecord) -> Path:
    """The file of an image or video of a folder source (a video is streamed from it, never read whole); 404
    naming the paths tried when none is left."""
    root = _root(services)
    tried = []
    for source, path in services.sources.paths_of([image.id]).get(image.id, []):
        tried.append(f"{source.path}/{file_names.readable(path)}")
        try:
            folder = resolve_under_root(root, source.path)
        except InvalidInput:
            continue
        if is_zip(folder):
            continue
        location = folder / file_names.file_system(path)
        if location.is_file() and location.resolve().is_relative_to(root.resolve()):
            return location
    kept = services.video_store.find(image.collection, image.sha256)  # an uploaded or ingested video
    if kept is not None:
        return kept
    raise NotFound(f"the original of {image.image_id!r} is gone from its source: {', '.join(tried) or 'no path known'}")


def validate_under(under: str | None) -> str | None:
    """A sub-path of a sync: relative, inside the source."""
    if under is None or not under.strip("/"):
        return None
    parts = Path(under.strip("/")).parts
    if Path(under).is_absolute() or ".." in parts or "\x00" in under:
        raise InvalidInput("path must be relative to the source, without '..'")
    return "/".join(parts)
