"""Source folders of collections and the files their images live in, in the metadata DB."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Engine, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from adapters.stores.sql.sql_schema import chunks, image_files, rejected_files, sources, utc_now


@dataclass(frozen=True)
class SourceRecord:
    id: int
    collection: str
    path: str
    excludes: list[str]
    watched: bool
    created_at: dt.datetime
    last_sync_at: dt.datetime | None = None
    last_sync_job: str | None = None


@dataclass(frozen=True)
class KnownFile:
    id: int
    image: int
    path: str
    size: int
    mtime_ns: int
    sha256: str


@dataclass(frozen=True)
class RejectedFile:
    path: str
    size: int
    mtime_ns: int
    reason: str


@dataclass(frozen=True)
class NewFile:
    image: int
    path: str
    size: int
    mtime_ns: int
    sha256: str


def path_key(path: str) -> str:
    return hashlib.sha1(path.encode("utf-8", "surrogatepass")).hexdigest()


def _source(row) -> SourceRecord:  # type: ignore[no-untyped-def]
    return SourceRecord(
        id=int(row.id),
        collection=row.collection,
        path=row.path,
        excludes=list(json.loads(row.excludes or "[]")),
        watched=bool(row.watched),
        created_at=row.created_at,
        last_sync_at=row.last_sync_at,
        last_sync_job=row.last_sync_job,
    )


def _under(path: str, prefix: str | None) -> bool:
    """Whether a source-relative path is ``prefix`` or inside it (everything is, without a prefix)."""
    return not prefix or path == prefix or path.startswith(prefix + "/")


class SourceStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # --- sources -----------------------------------------------------------------------------------
    def add(self, collection: str, path: str, excludes: Sequence[str], watched: bool) -> SourceRecord | None:
        """None when the collection already has this folder as a source."""
        try:
            with self.engine.begin() as conn:
                result = conn.execute(
                    insert(sources).values(
                        collection=collection,
                        path=path,
                        excludes=json.dumps(list(excludes), ensure_ascii=False),
                        watched=watched,
                        created_at=utc_now(),
                    )
                )
                new_id = int(result.inserted_primary_key[0])
        except IntegrityError:
            return None
        return self.get(new_id)

    def get(self, source_id: int) -> SourceRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(sources).where(sources.c.id == source_id)).first()
        return _source(row) if row else None

    def list(self, collection: str | None = None, watched_only: bool = False) -> list[SourceRecord]:
        query = select(sources).order_by(sources.c.id)
        if collection is not None:
            query = query.where(sources.c.collection == collection)
        if watched_only:
            query = query.where(sources.c.watched.is_(True))
        with self.engine.connect() as conn:
            return [_source(row) for row in conn.execute(query)]

    def remove(self, source_id: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(image_files).where(image_files.c.source_id == source_id))
            conn.execute(delete(rejected_files).where(rejected_files.c.source_id == source_id))
            conn.execute(delete(sources).where(sources.c.id == source_id))

    def mark_synced(self, source_id: int, job_id: str | None) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(sources).where(sources.c.id == source_id).values(last_sync_at=utc_now(), last_sync_job=job_id)
            )

    def hold_watch(self, source_id: int, owner: str, lease_s: float) -> bool:
        """Takes or renews the lease on watching a source; False while another live process holds it."""
        now = utc_now()
        with self.engine.begin() as conn:
            result = conn.execute(
                update(sources)
                .where(
                    sources.c.id == source_id,
                    sources.c.watched.is_(True),
                    (sources.c.watcher.is_(None)) | (sources.c.watcher == owner) | (sources.c.watch_lease_until < now),
                )
                .values(watcher=owner, watch_lease_until=now + dt.timedelta(seconds=lease_s))
            )
            return result.rowcount == 1

    def release_watch(self, source_id: int, owner: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(sources)
                .where(sources.c.id == source_id, sources.c.watcher == owner)
                .values(watcher=None, watch_lease_until=None)
            )

    def file_counts(self, source_ids: Sequence[int]) -> dict[int, int]:
        if not source_ids:
            return {}
        query = (
            select(image_files.c.source_id, func.count())
            .where(image_files.c.source_id.in_(list(source_ids)))
            .group_by(image_files.c.source_id)
        )
        with self.engine.connect() as conn:
            return {int(source): int(count) for source, count in conn.execute(query)}

    # --- files -------------------------------------------------------------------------------------
    def files(self, source_id: int, prefix: str | None = None) -> dict[str, KnownFile]:
        """The source's files by path (under ``prefix/`` when given)."""
        query = select(image_files).where(image_files.c.source_id == source_id)
        found: dict[str, KnownFile] = {}
        with self.engine.connect() as conn:
            for row in conn.execute(query):
                if not _under(row.path, prefix):
                    continue
                found[row.path] = KnownFile(
                    int(row.id), int(row.image), row.path, int(row.size), int(row.mtime_ns), row.sha256
                )
        return found

    def add_files(self, source_id: int, rows: Sequence[NewFile]) -> None:
        if not rows:
            return
        values = [
            {
                "image": r.image,
                "source_id": source_id,
                "path": r.path,
                "path_key": path_key(r.path),
                "size": r.size,
                "mtime_ns": r.mtime_ns,
                "sha256": r.sha256,
            }
            for r in rows
        ]
        with self.engine.begin() as conn:
            keys = [v["path_key"] for v in values]
            for chunk in chunks(keys):  # a file written by an interrupted run before: the new row replaces it
                conn.execute(
                    delete(image_files).where(image_files.c.source_id == source_id, image_files.c.path_key.in_(chunk))
                )
            conn.execute(insert(image_files), values)

    def update_file(self, file_id: int, path: str, size: int, mtime_ns: int, sha256: str) -> None:
        """A moved, renamed or touched file (same image), or an edited one once its image holds the new content."""
        with self.engine.begin() as conn:
            conn.execute(
                update(image_files)
                .where(image_files.c.id == file_id)
                .values(path=path, path_key=path_key(path), size=size, mtime_ns=mtime_ns, sha256=sha256)
            )

    def remove_files(self, file_ids: Sequence[int]) -> None:
        with self.engine.begin() as conn:
            for chunk in chunks(list(file_ids)):
                conn.execute(delete(image_files).where(image_files.c.id.in_(chunk)))

    def images_with_files(self, image_ids: Sequence[int]) -> set[int]:
        found: set[int] = set()
        with self.engine.connect() as conn:
            for chunk in chunks(list(image_ids)):
                query = select(image_files.c.image).where(image_files.c.image.in_(chunk)).distinct()
                found.update(int(i) for i in conn.execute(query).scalars())
        return found

    def paths_of(self, image_ids: Sequence[int]) -> dict[int, list[tuple[SourceRecord, str]]]:
        """Each image's files: (its source, path inside the source)."""
        found: dict[int, list[tuple[SourceRecord, str]]] = {}
        with self.engine.connect() as conn:
            for chunk in chunks(list(image_ids)):
                query = (
                    select(image_files.c.image, image_files.c.path.label("file_path"), sources)
                    .join(sources, sources.c.id == image_files.c.source_id)
                    .where(image_files.c.image.in_(chunk))
                    .order_by(image_files.c.id)
                )
                for row in conn.execute(query):
                    found.setdefault(int(row.image), []).append((_source(row), row.file_path))
        return found

    # --- files that are not images -------------------------------------------------------------------
    def rejected(self, source_id: int, prefix: str | None = None) -> dict[str, RejectedFile]:
        query = select(rejected_files).where(rejected_files.c.source_id == source_id)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return {
            row.path: RejectedFile(row.path, int(row.size), int(row.mtime_ns), row.reason)
            for row in rows
            if _under(row.path, prefix)
        }

    def set_rejected(self, source_id: int, files: Sequence[RejectedFile]) -> None:
        if not files:
            return
        self.clear_rejected(source_id, [f.path for f in files])
        values = [
            {
                "source_id": source_id,
                "path_key": path_key(f.path),
                "path": f.path,
                "size": f.size,
                "mtime_ns": f.mtime_ns,
                "reason": f.reason[:512],
            }
            for f in files
        ]
        with self.engine.begin() as conn:
            conn.execute(insert(rejected_files), values)

    def clear_rejected(self, source_id: int, paths: Sequence[str]) -> None:
        keys = [path_key(p) for p in paths]
        with self.engine.begin() as conn:
            for chunk in chunks(keys):
                conn.execute(
                    delete(rejected_files).where(
                        rejected_files.c.source_id == source_id, rejected_files.c.path_key.in_(chunk)
                    )
                )
