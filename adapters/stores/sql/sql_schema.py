"""Fixed relational schema shared by SQLite and MySQL/MariaDB, and the engine that reaches it."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Iterator, Sequence

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    event,
    insert,
    inspect,
    make_url,
    select,
    text,
)
from sqlalchemy.dialects import mysql

from adapters import text_grams as text_grams_rules

logger = logging.getLogger(__name__)

metadata = MetaData()


def utc_now() -> dt.datetime:
    """Naive UTC, as both SQLite and MySQL DATETIME columns store it."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


# BIGINT AUTO_INCREMENT on MySQL; SQLite only auto-increments "INTEGER PRIMARY KEY" (which is 64-bit).
_Id = BigInteger().with_variant(Integer(), "sqlite")
# MySQL's BLOB stops at 64 KiB; MEDIUMBLOB holds 16 MiB (the service caps images below that).
_Blob = LargeBinary().with_variant(mysql.MEDIUMBLOB(), "mysql", "mariadb")
# MySQL's DATETIME drops fractions of a second unless asked; job rates need them.
_Time = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")

collections = Table(
    "collections",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("model", String(64), nullable=False),
    Column("dim", Integer, nullable=False),
    Column("metric", String(16), nullable=False),
    Column("created_at", DateTime, nullable=False),
    # The Milvus collection that serves the name (NULL: the name itself). A re-embed builds another one for
    # next_model; a switch swaps the two, and the one that stops serving stays as "previous" until finalized.
    Column("vectors", String(80), nullable=True),
    Column("next_model", String(64), nullable=True),
    Column("next_dim", Integer, nullable=True),
    Column("next_vectors", String(80), nullable=True),
    Column("next_state", String(16), nullable=True),  # building, ready, previous (NULL: no other generation)
    # How /img/search ranks a request that names no mode: semantic (NULL), hybrid or keyword, as set by a person.
    Column("search_mode", String(16), nullable=True),
)

images = Table(
    "images",
    metadata,
    # The metadata row defines the id; the vector is written to Milvus under the same id.
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("collection", String(64), ForeignKey("collections.name"), nullable=False),
    Column("image_id", String(255), nullable=False),
    Column("data", _Blob, nullable=False),
    Column("mime", String(32), nullable=False),
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("source", String(1024), nullable=True),  # file name or path it came from, for people
    Column("origin", String(512), nullable=True),  # "upload", "ingest:<folder or zip>", "load:<path>/<split>"
    # False until the vector is written: a row is searchable and counted only once its vector exists.
    Column("indexed", Boolean, nullable=False, default=False),
    # True for an image of a source folder: ``data`` is a preview JPEG, the original stays in its file
    # (image_files says where); uploads and loads keep their bytes here (False).
    Column("preview", Boolean, nullable=False, default=False),
    # From the photo's EXIF, when its camera wrote them.
    Column("taken_at", DateTime, nullable=True),  # UTC when taken_offset is known, else the camera's clock
    Column("taken_offset", String(8), nullable=True),
    Column("camera", String(128), nullable=True),
    Column("latitude", Float, nullable=True),
    Column("longitude", Float, nullable=True),
    Column("created_at", DateTime, nullable=False),
    # Videos (operations/ingest/videos.py): a video's row (kind "video", ``data`` its poster, ``at_ms`` the
    # poster's time) and one row per sample (kind "frame", ``parent`` the video, ``at_ms`` its time, ``seq`` its
    # place, ``data`` a small JPEG of it). Every row has its vector; NULL kind is a photo.
    Column("kind", String(8), nullable=True),
    Column("parent", BigInteger, nullable=True),
    Column("at_ms", BigInteger, nullable=True),
    Column("duration_ms", BigInteger, nullable=True),  # a video's length; a frame's span (its picture lasted)
    Column("seq", Integer, nullable=True),  # a frame's place among its video's samples (moments count samples)
    Index("uq_images_collection_image_id", "collection", "image_id", unique=True),
    Index("ix_images_parent", "parent"),
    Index("ix_images_collection_sha256", "collection", "sha256"),
    mysql_charset="utf8mb4",
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("collection", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("params", Text, nullable=False),
    Column("total", BigInteger, nullable=True),
    Column("done", BigInteger, nullable=False, default=0),
    Column("loaded", BigInteger, nullable=False, default=0),
    Column("skipped", BigInteger, nullable=False, default=0),
    Column("failed", BigInteger, nullable=False, default=0),
    Column("errors", Text, nullable=False, default="[]"),
    Column("message", Text, nullable=True),
    Column("result", Text, nullable=True),  # JSON report of what the job did (e.g. reconcile)
    Column("created_at", _Time, nullable=False),
    Column("started_at", _Time, nullable=True),
    Column("finished_at", _Time, nullable=True),
    Column("heartbeat_at", _Time, nullable=True),
    # The queue shared by every service process: a job is claimed by one owner (process) under a lease that
    # the owner renews; a lease that runs out means its process died, and the job is queued again.
    Column("owner", String(80), nullable=True),
    Column("lease_until", _Time, nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("max_attempts", Integer, nullable=False, default=1),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    Column("runs", Text, nullable=True),  # JSON: one entry per attempt, who ran it and how it ended
    Index("ix_jobs_state_created", "state", "created_at"),
    mysql_charset="utf8mb4",
)
# Tags per image: written by a tag job (source "auto", with the label's probability) or by hand ("manual").
image_tags = Table(
    "image_tags",
    metadata,
    Column("image", _Id, ForeignKey("images.id", ondelete="CASCADE"), primary_key=True),
    Column("tag", String(64), primary_key=True),
    Column("collection", String(64), nullable=False),
    Column("source", String(16), nullable=False),
    Column("probability", Float, nullable=True),
    Index("ix_image_tags_collection_tag", "collection", "tag"),
    mysql_charset="utf8mb4",
)

# Folders a collection follows (sync and watch); paths are relative to the data root.
sources = Table(
    "sources",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("collection", String(64), ForeignKey("collections.name", ondelete="CASCADE"), nullable=False),
    Column("path", String(512), nullable=False),
    Column("excludes", Text, nullable=False),  # JSON list of glob patterns
    Column("watched", Boolean, nullable=False, default=False),
    Column("created_at", _Time, nullable=False),
    Column("last_sync_at", _Time, nullable=True),
    Column("last_sync_job", String(32), nullable=True),
    # One process watches a watched source at a time: the one holding this lease (renewed while it runs).
    Column("watcher", String(80), nullable=True),
    Column("watch_lease_until", _Time, nullable=True),
    Index("uq_sources_collection_path", "collection", "path", unique=True),
    mysql_charset="utf8mb4",
)

# Where each image of a source lives: one row per file (the same content at two paths is one image, two rows).
# Size and mtime tell a changed file without reading it; the hash tells a moved one.
image_files = Table(
    "image_files",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("image", _Id, ForeignKey("images.id", ondelete="CASCADE"), nullable=False),
    Column("source_id", Integer, ForeignKey("sources.id", ondelete="CASCADE"), nullable=False),
    Column("path", String(1024), nullable=False),  # relative to the source folder, '/'-separated
    Column("path_key", String(40), nullable=False),  # sha1 of path: a unique index MySQL can hold
    Column("size", BigInteger, nullable=False),
    Column("mtime_ns", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Index("uq_image_files_source_path", "source_id", "path_key", unique=True),
    Index("ix_image_files_image", "image"),
    mysql_charset="utf8mb4",
)

# Files of a source that are not images the service takes (and why), remembered with their size and mtime so that
# the next sync does not read them again while they stay as they are.
rejected_files = Table(
    "rejected_files",
    metadata,
    Column("source_id", Integer, ForeignKey("sources.id", ondelete="CASCADE"), primary_key=True),
    Column("path_key", String(40), primary_key=True),
    Column("path", String(1024), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("mtime_ns", BigInteger, nullable=False),
    Column("reason", String(512), nullable=False),
    mysql_charset="utf8mb4",
)

# The near-duplicate groups a duplicates job found, per collection (the latest job's); a deleted image leaves
# its groups with it.
duplicate_groups = Table(
    "duplicate_groups",
    metadata,
    Column("image", _Id, ForeignKey("images.id", ondelete="CASCADE"), primary_key=True),
    Column("collection", String(64), nullable=False),
    Column("group_no", Integer, nullable=False),
    Column("keeper", Boolean, nullable=False),
    Column("cosine", Float, nullable=False),  # to the group's keeper (1 for the keeper itself)
    Column("job_id", String(32), nullable=False),
    Column("min_cosine", Float, nullable=False),
    Column("created_at", _Time, nullable=False),
    Index("ix_duplicate_groups_collection", "collection", "group_no"),
)
# Words about each image (the Flickr30k-CN captions of a load, a description set by hand, the text OCR read), and
# its normalised document: these fields with its file names and tags (adapters/text_grams.py says how it matches).
image_texts = Table(
    "image_texts",
    metadata,
    Column("image", _Id, ForeignKey("images.id", ondelete="CASCADE"), primary_key=True),
    Column("collection", String(64), nullable=False),
    Column("caption", Text, nullable=True),
    Column("description", Text, nullable=True),
    Column("ocr", Text, nullable=True),  # the recognised lines, one per line
    Column("ocr_lines", Text, nullable=True),  # JSON: [{"text", "box": [[x, y] * 4], "confidence"}]
    Column("document", Text, nullable=False),
    Column("updated_at", _Time, nullable=False),
    mysql_charset="utf8mb4",
)

# The keyword index: each image's character bigrams (and the last character of each piece of text), with the
# score the gram gets as a query term (an upper bound for longer terms; adapters/text_grams.py). Compared byte
# for byte on MySQL too: its default collation would call different grams equal. ix_text_grams_rank lists a
# gram's images best first, so a search reads the top of a common word's list, not all of it.
_Gram = String(2).with_variant(mysql.VARCHAR(2, collation="utf8mb4_bin"), "mysql", "mariadb")
text_grams = Table(
    "text_grams",
    metadata,
    Column("collection", String(64), primary_key=True),
    Column("gram", _Gram, primary_key=True),
    Column("image", _Id, ForeignKey("images.id", ondelete="CASCADE"), primary_key=True),
    Column("weight", Integer, nullable=False, default=0),
    Index("ix_text_grams_image", "image"),
    Index("ix_text_grams_rank", "collection", "gram", "weight", "image"),
    sqlite_with_rowid=False,
    mysql_charset="utf8mb4",
)


# People (adapters/stores/sql/face_store.py): the faces found in each image, with their box in the original's pixels
# (the vectors are in Milvus, in the collection's face collection, under the face's id), and the persons they are
# grouped into. ``by_user``: a person a user named or changed, a face a user placed; the machine never undoes those.
persons = Table(
    "persons",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("collection", String(64), ForeignKey("collections.name", ondelete="CASCADE"), nullable=False),
    Column("name", String(64), nullable=True),
    Column("hidden", Boolean, nullable=False, default=False),
    Column("by_user", Boolean, nullable=False, default=False),
    Column("cover_face", BigInteger, nullable=True),
    Column("created_at", _Time, nullable=False),
    Index("ix_persons_collection_name", "collection", "name"),
    mysql_charset="utf8mb4",
)
faces = Table(
    "faces",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("collection", String(64), nullable=False),
    Column("image", _Id, ForeignKey("images.id", ondelete="CASCADE"), nullable=False),
    Column("x", Integer, nullable=False),
    Column("y", Integer, nullable=False),
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("score", Float, nullable=False),
    Column("person", _Id, ForeignKey("persons.id", ondelete="SET NULL"), nullable=True),
    Column("by_user", Boolean, nullable=False, default=False),
    Column("clustered", Boolean, nullable=False, default=False),  # seen by clustering (unplaced: waits for more)
    Column("created_at", _Time, nullable=False),
    Index("ix_faces_image", "image"),
    Index("ix_faces_collection_person", "collection", "person"),
)
# Which images the face model has read (a job resumes after them; an image with no face has a row too).
face_scans = Table(
    "face_scans",
    metadata,
    Column("image", _Id, ForeignKey("images.id", ondelete="CASCADE"), primary_key=True),
    Column("collection", String(64), nullable=False),
    Column("model", String(32), nullable=False),
    Column("faces", Integer, nullable=False),
    Column("scanned_at", _Time, nullable=False),
    Index("ix_face_scans_collection", "collection"),
)

# API keys (issue 20): only a SHA-256 of each key is kept (keys are 256-bit random, so a fast hash is enough), with
# its first characters to tell keys apart in lists. A revoked key keeps its row: the audit trail names it.
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False),
    Column("prefix", String(16), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("scopes", String(32), nullable=False),  # comma-separated: read, write, admin
    Column("collections", Text, nullable=True),  # JSON list; NULL: every collection
    Column("rate_limit", Integer, nullable=True),  # requests per window; NULL: the setting of the route's scope
    Column("expires_at", _Time, nullable=True),
    Column("created_at", _Time, nullable=False),
    Column("last_used_at", _Time, nullable=True),
    Column("revoked_at", _Time, nullable=True),
    mysql_charset="utf8mb4",
)
# Who changed what: every data-changing request and every refused one (never the presented key).
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("at", _Time, nullable=False),
    Column("key_name", String(64), nullable=True),  # NULL: no valid key was presented
    Column("method", String(8), nullable=False),
    Column("route", String(128), nullable=False),
    Column("path", String(512), nullable=False),
    Column("collection", String(64), nullable=True),
    Column("target", String(512), nullable=True),  # the job, or the images, the request touched
    Column("status", Integer, nullable=False),
    Column("outcome", String(16), nullable=False),  # ok, refused, failed
    Column("client", String(64), nullable=True),
    Column("request_id", String(64), nullable=True),
    Index("ix_audit_log_at", "at"),
    Index("ix_audit_log_key", "key_name", "id"),
    Index("ix_audit_log_collection", "collection", "id"),
    mysql_charset="utf8mb4",
)
# Request counts per quota subject (a key, or an anonymous client address) and fixed window, shared by every
# service process on this database: each adds what it counted since its last flush.
rate_counts = Table(
    "rate_counts",
    metadata,
    Column("subject", String(96), primary_key=True),
    Column("window_no", BigInteger, primary_key=True),
    Column("count", Integer, nullable=False),
    mysql_charset="utf8mb4",
)


def gram_rows(collection: str, image: int, document: str) -> list[dict]:
    """The keyword index's rows of one image's normalised document."""
    return [
        {"collection": collection, "gram": gram, "image": image, "weight": weight}
        for gram, weight in text_grams_rules.gram_weights(document).items()
    ]


def chunks(items: Sequence, size: int = 500) -> Iterator[Sequence]:
    """``items`` in slices small enough for one ``IN (...)`` on both backends."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


# Added after the first release: databases made before then get them on start-up (see _add_missing_columns).
_LATER_JOB_COLUMNS = {
    "owner": "",
    "lease_until": "",
    "attempts": "0",
    "max_attempts": "1",
    "cancel_requested": "0",
    "runs": "",
}


_LATER_IMAGE_COLUMNS = {
    "origin": "",
    "preview": "0",
    "taken_at": "",
    "taken_offset": "",
    "camera": "",
    "latitude": "",
    "longitude": "",
    "kind": "",
    "parent": "",
    "at_ms": "",
    "duration_ms": "",
    "seq": "",
}


_LATER_COLLECTION_COLUMNS = ("vectors", "next_model", "next_dim", "next_vectors", "next_state", "search_mode")


def _create_mysql_database_if_missing(url: str) -> None:
    parsed = make_url(url)
    name = parsed.database
    if not name or not name.replace("_", "").isalnum():
        return
    server = create_engine(parsed.set(database=""), pool_pre_ping=True)
    try:
        with server.begin() as conn:
            conn.execute(text(f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4"))
    finally:
        server.dispose()


@contextlib.contextmanager
def schema_lock(engine: Engine, purpose: str = "schema") -> Iterator[None]:
    """Several service processes starting at once on a new MySQL database would each create the tables (and
    one would fail with "table already exists"): a server-wide named lock lets one do it while the others wait.
    SQLite serves one process."""
    if engine.dialect.name not in ("mysql", "mariadb"):
        yield
        return
    name = f"imgsearch_{purpose}:{engine.url.database}"[:64]  # per database: other databases do not wait
    with engine.connect() as conn:
        if conn.execute(text("SELECT GET_LOCK(:name, 60)"), {"name": name}).scalar() != 1:
            raise TimeoutError("the schema lock of the metadata database was not free within 60 s")
        try:
            yield
        finally:
            conn.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": name})


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _add_missing_columns(engine: Engine) -> None:
    """A metadata DB from an earlier version keeps its data and gains the columns added since (jobs' queue
    columns; images' origin, preview and EXIF facts; collections' re-embed generations)."""
    image_columns = {column["name"] for column in inspect(engine).get_columns("images")}
    with engine.begin() as conn:
        for name, default in _LATER_IMAGE_COLUMNS.items():
            if name not in image_columns:
                kind = images.c[name].type.compile(dialect=engine.dialect)
                required = f" NOT NULL DEFAULT {default}" if default else ""
                conn.execute(text(f"ALTER TABLE images ADD COLUMN {name} {kind}{required}"))
    for index in images.indexes:  # a later column's index (the frames of a video)
        index.create(engine, checkfirst=True)
    collection_columns = {column["name"] for column in inspect(engine).get_columns("collections")}
    with engine.begin() as conn:
        for name in _LATER_COLLECTION_COLUMNS:
            if name not in collection_columns:
                kind = collections.c[name].type.compile(dialect=engine.dialect)
                conn.execute(text(f"ALTER TABLE collections ADD COLUMN {name} {kind}"))
    present = {column["name"] for column in inspect(engine).get_columns("jobs")}
    missing = [name for name in _LATER_JOB_COLUMNS if name not in present]
    with engine.begin() as conn:
        for name in missing:
            kind = jobs.c[name].type.compile(dialect=engine.dialect)
            default = _LATER_JOB_COLUMNS[name]
            conn.execute(
                text(f"ALTER TABLE jobs ADD COLUMN {name} {kind}{f' NOT NULL DEFAULT {default}' if default else ''}")
            )
    for index in jobs.indexes:  # the claim query's index
        index.create(engine, checkfirst=True)
    if missing:
        logger.info("metadata store: added job-queue columns %s", ", ".join(missing))
    if "weight" not in {column["name"] for column in inspect(engine).get_columns("text_grams")}:
        _add_gram_weights(engine)


def _add_gram_weights(engine: Engine) -> None:
    """A keyword index from before ranked reads: each entry gains its weight, recomputed from the stored
    documents (the grams are a function of the document alone), and the index that lists them best first."""
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE text_grams ADD COLUMN weight INTEGER NOT NULL DEFAULT 0"))
    rebuilt = 0
    with engine.connect() as reader:
        rows = reader.execute(select(image_texts.c.image, image_texts.c.collection, image_texts.c.document))
        while part := rows.fetchmany(1000):
            with engine.begin() as conn:
                conn.execute(delete(text_grams).where(text_grams.c.image.in_([r.image for r in part])))
                entries = [row for r in part for row in gram_rows(r.collection, r.image, r.document)]
                for chunk in chunks(entries, 5000):
                    conn.execute(insert(text_grams), list(chunk))
            rebuilt += len(part)
    for index in text_grams.indexes:
        index.create(engine, checkfirst=True)
    logger.info("metadata store: keyword index weighted for ranked reads (%d images)", rebuilt)


def create_metadata_engine(url: str) -> Engine:
    """One pooled engine per process; tables are created when missing."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            from pathlib import Path

            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 10})
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        if parsed.get_backend_name() in ("mysql", "mariadb"):
            _create_mysql_database_if_missing(url)
        engine = create_engine(url, pool_pre_ping=True, pool_recycle=3600, pool_size=8, max_overflow=8)
    try:
        with schema_lock(engine):
            metadata.create_all(engine)
            _add_missing_columns(engine)
    except Exception:
        engine.dispose()  # the database may not be up yet: the caller retries with a new engine
        raise
    logger.info("metadata store ready: %s", parsed.render_as_string(hide_password=True))
    return engine
