"""Collections and image rows on SQLAlchemy Core: one implementation for SQLite and MySQL/MariaDB.

Every statement is built by SQLAlchemy with bound parameters; no request string becomes SQL.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from sqlalchemy import Engine, delete, func, insert, or_, select, text, update
from sqlalchemy.exc import IntegrityError

from adapters.images import ImageFacts
from adapters.stores.sql.sql_health import watch_engine
from adapters.stores.sql.sql_schema import chunks, collections, create_metadata_engine, images, utc_now

VIDEO, FRAME = "video", "frame"
VIDEOS_SEEN_SECONDS = 30.0  # another process's first video in a collection is folded within this long
_NOT_FRAME = or_(images.c.kind.is_(None), images.c.kind != FRAME)


@dataclass(frozen=True)
class CollectionRecord:
    name: str
    model: str
    dim: int
    metric: str
    created_at: dt.datetime
    vectors: str | None = None
    next_model: str | None = None
    next_dim: int | None = None
    next_vectors: str | None = None
    next_state: str | None = None
    search_mode: str | None = None  # the ranking of a search that names none (None: semantic)

    @property
    def vector_collection(self) -> str:
        """The Milvus collection that answers this collection's searches now."""
        return self.vectors or self.name


@dataclass(frozen=True)
class NewImage:
    image_id: str
    data: bytes
    mime: str
    width: int
    height: int
    sha256: str
    source: str | None = None
    origin: str | None = None  # what brought it in: "upload", "ingest:<folder or zip>", "load:<path>/<split>"
    preview: bool = False  # ``data`` is a preview; the original stays in its source file
    taken_at: dt.datetime | None = None  # EXIF (adapters/images.py)
    taken_offset: str | None = None
    camera: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    kind: str | None = None  # None: a photo; "video", or "frame" (a sample of the video ``parent``)
    parent: int | None = None
    at_ms: int | None = None  # a frame's time; a video's poster time
    duration_ms: int | None = None  # a video's length; a frame's span (how long its picture lasted)
    seq: int | None = None  # a frame's place among its video's samples


@dataclass(frozen=True)
class ImageRecord:
    id: int
    collection: str
    image_id: str
    mime: str
    width: int
    height: int
    sha256: str
    indexed: bool
    source: str | None = None
    data: bytes | None = None
    origin: str | None = None
    created_at: dt.datetime | None = None
    preview: bool = False
    taken_at: dt.datetime | None = None
    taken_offset: str | None = None
    camera: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    kind: str | None = None
    parent: int | None = None
    at_ms: int | None = None
    duration_ms: int | None = None
    seq: int | None = None

    @property
    def is_video(self) -> bool:
        return self.kind == VIDEO

    @property
    def served_mime(self) -> str:
        """What ``data`` is: a frame row keeps its video's container type (for filters) but holds a JPEG."""
        return "image/jpeg" if self.kind == FRAME else self.mime


class SampleFacts(NamedTuple):
    """What a search needs of a row to fold video samples into moments (read for a deep list, no bytes; a tuple:
    made a hundred times per search)."""

    kind: str | None
    parent: int | None
    at_ms: int | None
    duration_ms: int | None
    seq: int | None

    @staticmethod
    def of(record: ImageRecord) -> SampleFacts:
        return SampleFacts(record.kind, record.parent, record.at_ms, record.duration_ms, record.seq)


@dataclass(frozen=True)
class ExistingImage:
    id: int
    indexed: bool
    image_id: str
    sha256: str


class MetadataStore:
    def __init__(self, url: str, engine: Engine | None = None) -> None:
        self.engine = engine or create_metadata_engine(url)
        self._videos_seen: dict[str, tuple[float, bool]] = {}  # collection: (when asked, has videos)
        self.dialect = self.engine.dialect.name
        self.health = watch_engine(self.engine, f"metadata store ({self.engine.url.render_as_string()})")

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def close(self) -> None:
        self.engine.dispose()

    # --- collections -------------------------------------------------------------------------------
    def create_collection(
        self, name: str, model: str, dim: int, metric: str, search_mode: str | None = None
    ) -> CollectionRecord:
        """Create or return the existing record; the caller compares model and dim."""
        try:
            with self.engine.begin() as conn:
                values = {"name": name, "model": model, "dim": dim, "metric": metric, "search_mode": search_mode}
                conn.execute(insert(collections).values(**values, created_at=utc_now()))
        except IntegrityError:
            pass
        record = self.get_collection(name)
        assert record is not None
        return record

    def get_collection(self, name: str) -> CollectionRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(collections).where(collections.c.name == name)).first()
        return CollectionRecord(**row._mapping) if row else None

    def set_search_mode(self, name: str, mode: str | None) -> bool:
        """False when the collection does not exist."""
        with self.engine.begin() as conn:
            changed = conn.execute(update(collections).where(collections.c.name == name).values(search_mode=mode))
        return bool(changed.rowcount)

    def collection_names(self) -> list[str]:
        with self.engine.connect() as conn:
            return list(conn.execute(select(collections.c.name).order_by(collections.c.name)).scalars())

    def list_collections(self) -> list[CollectionRecord]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(collections).order_by(collections.c.name)).all()
        return [CollectionRecord(**row._mapping) for row in rows]

    def delete_collection(self, name: str) -> int:
        """Remove the collection and all its rows in one transaction; returns the rows removed."""
        with self.engine.begin() as conn:
            removed = conn.execute(delete(images).where(images.c.collection == name)).rowcount
            conn.execute(delete(collections).where(collections.c.name == name))
        return int(removed or 0)

    # --- images ------------------------------------------------------------------------------------
    def lookup(self, collection: str, image_ids: Sequence[str]) -> dict[str, ExistingImage]:
        found: dict[str, ExistingImage] = {}
        with self.engine.connect() as conn:
            for chunk in chunks(list(image_ids)):
                query = select(images.c.image_id, images.c.id, images.c.indexed, images.c.sha256).where(
                    images.c.collection == collection, images.c.image_id.in_(chunk)
                )
                for image_id, row_id, indexed, sha in conn.execute(query):
                    found[image_id] = ExistingImage(int(row_id), bool(indexed), image_id, sha)
        return found

    def shas(self, collection: str) -> set[str]:
        """The content hashes of a collection's searchable images (a sync tells moved files from new ones by them)."""
        query = select(images.c.sha256).where(images.c.collection == collection, images.c.indexed.is_(True))
        with self.engine.connect() as conn:
            return set(conn.execute(query).scalars())

    def lookup_sha(self, collection: str, shas: Sequence[str]) -> dict[str, ExistingImage]:
        """Images already stored with this content (any one of them per hash)."""
        found: dict[str, ExistingImage] = {}
        with self.engine.connect() as conn:
            for chunk in chunks(sorted(set(shas))):
                query = select(images.c.sha256, images.c.id, images.c.indexed, images.c.image_id).where(
                    images.c.collection == collection, images.c.sha256.in_(chunk)
                )
                for sha, row_id, indexed, image_id in conn.execute(query):
                    if indexed or sha not in found:  # prefer a searchable copy
                        found[sha] = ExistingImage(int(row_id), bool(indexed), image_id, sha)
        return found

    def insert_pending(self, collection: str, rows: Sequence[NewImage]) -> dict[str, int]:
        """Insert rows not yet searchable and return their ids (the vector ids) by image_id.

        A row inserted concurrently by someone else keeps its id; the ids of all requested image_ids
        are returned either way.
        """
        if rows:
            now = utc_now()
            values = [_pending_values(collection, r, now) for r in rows]
            try:
                with self.engine.begin() as conn:
                    conn.execute(insert(images), values)
            except IntegrityError:
                existing = self.lookup(collection, [r.image_id for r in rows])
                missing = [v for v in values if v["image_id"] not in existing]
                if missing:
                    with self.engine.begin() as conn:
                        conn.execute(insert(images), missing)
        return {k: v.id for k, v in self.lookup(collection, [r.image_id for r in rows]).items()}

    def mark_indexed(self, ids: Sequence[int], indexed: bool = True) -> None:
        """indexed=False hides rows from search and counts (the first step of a delete)."""
        with self.engine.begin() as conn:
            for chunk in chunks(list(ids)):
                conn.execute(update(images).where(images.c.id.in_(chunk)).values(indexed=indexed))

    def delete_rows(self, ids: Sequence[int]) -> None:
        with self.engine.begin() as conn:
            for chunk in chunks(list(ids)):
                conn.execute(delete(images).where(images.c.id.in_(chunk)))

    def fetch(
        self, collection: str, ids: Sequence[int], with_data: bool = False, include_pending: bool = False
    ) -> dict[int, ImageRecord]:
        """Rows by id; by default only searchable ones (rows whose vector is not yet written are left out)."""
        columns = [c for c in images.c if with_data or c.name != "data"]
        result: dict[int, ImageRecord] = {}
        with self.engine.connect() as conn:
            for chunk in chunks(list(ids)):
                # By primary key alone: with "collection = ?" as well, SQLite's planner walks the collection's
                # index instead (2.7 ms instead of 0.5 for 10 ids of 30k); the collection is checked here.
                for row in conn.execute(select(*columns).where(images.c.id.in_(chunk))):
                    if row.collection == collection and (include_pending or row.indexed):
                        result[int(row.id)] = _record(row._mapping)
        return result

    def update_content(self, row_id: int, data: bytes, facts: ImageFacts) -> None:
        """An image edited in its file: same row (same id, vector id and tags), new content."""
        with self.engine.begin() as conn:
            conn.execute(
                update(images)
                .where(images.c.id == row_id)
                .values(
                    data=data,
                    preview=True,
                    mime=facts.mime,
                    width=facts.width,
                    height=facts.height,
                    sha256=facts.sha256,
                    taken_at=facts.taken_at,
                    taken_offset=facts.taken_offset,
                    camera=facts.camera,
                    latitude=facts.latitude,
                    longitude=facts.longitude,
                )
            )

    def get_image(self, collection: str, image_id: str, include_pending: bool = False) -> ImageRecord | None:
        query = select(images).where(images.c.collection == collection, images.c.image_id == image_id)
        if not include_pending:
            query = query.where(images.c.indexed.is_(True))
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return _record(row._mapping) if row else None

    def iter_id_pages(self, collection: str, page: int = 1000) -> Iterator[list[tuple[int, bool]]]:
        """(id, indexed) of every row, in id order, a page at a time (keyset pagination: no big OFFSETs)."""
        last = -1
        while True:
            query = (
                select(images.c.id, images.c.indexed)
                .where(images.c.collection == collection, images.c.id > last)
                .order_by(images.c.id)
                .limit(page)
            )
            with self.engine.connect() as conn:
                rows = [(int(i), bool(x)) for i, x in conn.execute(query)]
            if not rows:
                return
            yield rows
            last = rows[-1][0]

    def existing_ids(self, collection: str, ids: Sequence[int]) -> set[int]:
        """Which of these ids have a row (in any state)."""
        found: set[int] = set()
        with self.engine.connect() as conn:
            for chunk in chunks(list(ids)):  # by primary key alone, as in fetch
                query = select(images.c.id, images.c.collection).where(images.c.id.in_(chunk))
                found.update(int(i) for i, owner in conn.execute(query) if owner == collection)
        return found

    def count(self, collection: str, include_pending: bool = False) -> int:
        """Photos and videos (a video's sample frames are part of it, not items)."""
        query = select(func.count()).select_from(images).where(images.c.collection == collection, _NOT_FRAME)
        if not include_pending:
            query = query.where(images.c.indexed.is_(True))
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    # --- videos (operations/ingest/videos.py) -------------------------------------------------------
    def frames_of(self, videos: Sequence[int]) -> dict[int, list[tuple[int, int]]]:
        """(frame row id, time in ms) of each video's samples, in time order (pending ones too)."""
        found: dict[int, list[tuple[int, int]]] = {}
        with self.engine.connect() as conn:
            for chunk in chunks(sorted({int(v) for v in videos})):
                query = select(images.c.parent, images.c.id, images.c.at_ms).where(images.c.parent.in_(chunk))
                for parent, row_id, at_ms in conn.execute(query):
                    found.setdefault(int(parent), []).append((int(row_id), int(at_ms or 0)))
        return {video: sorted(frames, key=lambda f: f[1]) for video, frames in found.items()}

    def sample_facts(self, collection: str, ids: Sequence[int]) -> dict[int, SampleFacts]:
        """Of searchable rows: kind, video, time, span and place (one narrow query for a search's deep list, on
        every search over videos: a plain statement, which the driver runs in a fifth of the time SQLAlchemy's
        expanding ``IN`` takes to compile and run)."""
        mark = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
        found: dict[int, SampleFacts] = {}
        with self.engine.connect() as conn:
            for chunk in chunks([int(i) for i in ids]):  # by primary key alone, as in fetch
                statement = (
                    "SELECT id, collection, indexed, kind, parent, at_ms, duration_ms, seq FROM images "
                    f"WHERE id IN ({', '.join([mark] * len(chunk))})"
                )
                for row_id, owner, indexed, kind, parent, at_ms, duration_ms, seq in conn.exec_driver_sql(
                    statement, tuple(chunk)
                ).fetchall():  # all at once: row by row costs the driver more than the lookups
                    if owner == collection and indexed:
                        found[int(row_id)] = SampleFacts(kind, parent, at_ms, duration_ms, seq)
        return found

    def video_rows(self, collection: str) -> set[int]:
        """Ids of the collection's videos and their frames (what a photo-only job leaves alone)."""
        query = select(images.c.id).where(images.c.collection == collection, images.c.kind.is_not(None))
        with self.engine.connect() as conn:
            return {int(i) for (i,) in conn.execute(query)}

    def has_videos(self, collection: str) -> bool:
        """Whether searches of ``collection`` fold moments (asked on every search: remembered for a while here,
        and at once after this process wrote a video)."""
        now = time.monotonic()
        known = self._videos_seen.get(collection)
        if known is not None and now - known[0] < VIDEOS_SEEN_SECONDS:
            return known[1]
        query = select(images.c.id).where(images.c.collection == collection, images.c.kind == VIDEO).limit(1)
        with self.engine.connect() as conn:
            found = conn.execute(query).first() is not None
        self._videos_seen[collection] = (now, found)
        return found

    def note_video(self, collection: str) -> None:
        self._videos_seen[collection] = (time.monotonic(), True)

    def update_video(self, row_id: int, data: bytes, facts: ImageFacts, at_ms: int, duration_ms: int) -> None:
        """A video edited in its file: same row, new content and poster (its frames are written again)."""
        self.update_content(row_id, data, facts)
        with self.engine.begin() as conn:
            conn.execute(update(images).where(images.c.id == row_id).values(at_ms=at_ms, duration_ms=duration_ms))

    # --- copies and exports (new methods; the writers above are unchanged) --------------------------
    def iter_image_pages(
        self, collection: str, page: int = 500, with_data: bool = True, include_pending: bool = False
    ) -> Iterator[list[ImageRecord]]:
        """Whole rows (bytes included unless with_data=False), in id order, a page at a time: keyset pagination,
        so a page costs the same at the end of a big collection as at its start. Only searchable rows unless
        include_pending."""
        columns = [c for c in images.c if with_data or c.name != "data"]
        last = -1
        while True:
            query = select(*columns).where(images.c.collection == collection, images.c.id > last)
            if not include_pending:
                query = query.where(images.c.indexed.is_(True))
            with self.engine.connect() as conn:
                rows = [_record(row._mapping) for row in conn.execute(query.order_by(images.c.id).limit(page))]
            if not rows:
                return
            yield rows
            last = rows[-1].id

    def ids_in_use(self, ids: Sequence[int]) -> set[int]:
        """Which of these ids a row holds, in any collection (a row id is unique in the whole table)."""
        found: set[int] = set()
        with self.engine.connect() as conn:
            for chunk in chunks(sorted({int(i) for i in ids})):
                found.update(int(i) for (i,) in conn.execute(select(images.c.id).where(images.c.id.in_(chunk))))
        return found

    def insert_pending_with_ids(self, collection: str, rows: Sequence[tuple[NewImage, int | None]]) -> dict[str, int]:
        """insert_pending, except that a row paired with an id gets that id (the caller found it free with
        ids_in_use); rows paired with None get new ones. If an id or an image_id was taken in the meantime, the
        whole batch falls back to insert_pending (new ids). Returns the id of each image_id, as insert_pending."""
        if not rows:
            return {}
        now = utc_now()
        chosen, fresh = [], []
        for row, wanted in rows:
            values = _pending_values(collection, row, now)
            if wanted is None:
                fresh.append(values)
            else:
                chosen.append({"id": int(wanted), **values})
        try:
            with self.engine.begin() as conn:
                if chosen:
                    conn.execute(insert(images), chosen)
                if fresh:
                    conn.execute(insert(images), fresh)
        except IntegrityError:
            return self.insert_pending(collection, [row for row, _ in rows])
        return {k: v.id for k, v in self.lookup(collection, [row.image_id for row, _ in rows]).items()}


def _pending_values(collection: str, row: NewImage, now: dt.datetime) -> dict:
    return {
        "collection": collection,
        "image_id": row.image_id,
        "data": row.data,
        "mime": row.mime,
        "width": row.width,
        "height": row.height,
        "sha256": row.sha256,
        "source": row.source,
        "origin": row.origin,
        "preview": row.preview,
        "taken_at": row.taken_at,
        "taken_offset": row.taken_offset,
        "camera": row.camera,
        "latitude": row.latitude,
        "longitude": row.longitude,
        "kind": row.kind,
        "parent": row.parent,
        "at_ms": row.at_ms,
        "duration_ms": row.duration_ms,
        "seq": row.seq,
        "indexed": False,
        "created_at": now,
    }


def _record(mapping) -> ImageRecord:  # type: ignore[no-untyped-def]
    fields = {k: mapping[k] for k in ImageRecord.__dataclass_fields__ if k in mapping}
    fields["indexed"] = bool(fields["indexed"])
    if "preview" in fields:
        fields["preview"] = bool(fields["preview"])
    return ImageRecord(**fields)
