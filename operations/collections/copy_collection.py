"""Move a collection between store pairs (e.g. Milvus Lite + SQLite → a Milvus server + MySQL) without the model.

Rows (bytes, ids, external ids) are read from the source in id order, a page at a time, and their vectors fetched
from the source Milvus: nothing is re-encoded, so no encoder is loaded. Each page is written to the destination in
the one write order every writer uses (rows pending → vectors upserted → rows marked indexed, see writes.py), so an
interruption leaves nothing searchable without its vector, and running the same copy again completes it: rows the
destination already holds (same image_id) are skipped, its pending rows are completed. A row keeps its source id
where that id is free in the destination's table; otherwise it gets a new one (counted in the report).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy.engine import make_url

from adapters.stores.milvus.vector_store import MilvusVectorStore, VectorStore
from adapters.stores.sql.metadata_store import CollectionRecord, ImageRecord, MetadataStore, NewImage
from adapters.stores.sql.tag_store import TagStore
from adapters.stores.sql.text_store import TextStore
from config import Settings
from config.index_choice import index_choice
from operations.collections.collections import validate_name
from operations.errors import Conflict, InvalidInput, NotFound
from operations.ingest.vector_fields import fields_for_ids
from operations.people.copy_people import copy_people

logger = logging.getLogger(__name__)

BATCH_SIZE = 500  # rows per page read and per write batch (Milvus Lite's fast insert size)
_SERVER_SCHEMES = ("http://", "https://", "tcp://", "grpc://")

Progress = Callable[[int, int], None]  # (source rows handled, source rows in all)


def is_milvus_server(uri: str) -> bool:
    return uri.startswith(_SERVER_SCHEMES)


@dataclass
class Stores:
    """One metadata DB and one Milvus, opened directly: no model, no job runner."""

    metadata: MetadataStore
    vectors: VectorStore
    metadata_url: str
    milvus_uri: str
    milvus_db: str = "default"

    @property
    def where(self) -> str:
        milvus = self.milvus_uri + (f" (database {self.milvus_db})" if is_milvus_server(self.milvus_uri) else "")
        return f"{milvus} + {make_url(self.metadata_url).render_as_string(hide_password=True)}"

    def close(self) -> None:
        for resource in (self.vectors, self.metadata):
            try:
                resource.close()
            except Exception:  # closing must go on for the other
                logger.exception("error while closing %s", type(resource).__name__)


def refuse_same_stores(source: Stores, metadata_url: str, milvus_uri: str, milvus_db: str = "default") -> None:
    """A copy goes to other stores: the same metadata DB or the same Milvus database is refused."""
    if _metadata_key(source.metadata_url) == _metadata_key(metadata_url):
        raise InvalidInput("the destination's metadata DB is the source's: copy to other stores")
    if _milvus_key(source.milvus_uri, source.milvus_db) == _milvus_key(milvus_uri, milvus_db):
        raise InvalidInput("the destination's Milvus database is the source's: copy to other stores")


def source_collection(stores: Stores, name: str) -> CollectionRecord:
    record = stores.metadata.get_collection(validate_name(name))
    if record is None:
        raise NotFound(f"collection {name!r} does not exist in {stores.where}")
    return record


def _metadata_key(url: str) -> str:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        return "sqlite:" + str(Path(parsed.database).resolve())
    return parsed.set(query={}).render_as_string(hide_password=True)


def _milvus_key(uri: str, db: str) -> str:
    return f"{uri.rstrip('/')}#{db}" if is_milvus_server(uri) else "lite:" + str(Path(uri).resolve())


def open_stores(
    metadata_url: str,
    milvus_uri: str,
    milvus_db: str = "default",
    milvus_token: str | None = None,
    index_type: str | None = None,
    index_params: dict | None = None,
) -> Stores:
    """Both stores at these addresses; a new Milvus collection gets ``index_type`` or the backend's default
    (exact FLAT on Milvus Lite, HNSW on a server), checked as the service checks it at start-up."""
    chosen, params = index_choice(index_type, index_params, lite=not is_milvus_server(milvus_uri))
    metadata = MetadataStore(metadata_url)
    try:
        vectors = MilvusVectorStore(
            milvus_uri, token=milvus_token, index_type=chosen, index_params=params, db_name=milvus_db
        )
    except Exception:
        metadata.close()
        raise
    return Stores(metadata, vectors, metadata_url, milvus_uri, milvus_db if is_milvus_server(milvus_uri) else "default")


def configured_stores(settings: Settings) -> Stores:
    """The stores the service's settings name (IMGSEARCH_METADATA_URL, IMGSEARCH_MILVUS_URI, …)."""
    return open_stores(
        str(settings.metadata_url),
        str(settings.milvus_uri),
        settings.milvus_db,
        settings.milvus_token.get_secret_value() if settings.milvus_token else None,
        str(settings.index_type),
        settings.index_params,
    )


@dataclass
class CopyReport:
    collection: str
    model: str
    dim: int
    destination: str
    source_rows: int = 0  # searchable rows in the source when the copy started
    copied: int = 0  # new rows written to the destination
    completed: int = 0  # rows an earlier, interrupted copy left pending in the destination, now searchable
    present: int = 0  # already searchable in the destination (same image_id): skipped
    differing: int = 0  # ... of which the destination holds other bytes under that image_id (left as they are)
    new_ids: int = 0  # rows whose source id was taken in the destination
    without_vector: int = 0  # source rows whose vector is missing from the source Milvus (run reconcile there)
    faces: int = 0  # faces of the copied images, with their vectors and persons
    destination_rows: int = 0
    destination_vectors: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        rate = (self.copied + self.completed) / self.seconds if self.seconds > 0 else 0.0
        parts = [
            f"{self.copied} copied",
            f"{self.completed} completed",
            f"{self.present} already there"
            + (f" ({self.differing} with other bytes, left as they are)" if self.differing else ""),
            f"{self.new_ids} with new ids (their source id was taken)",
        ]
        if self.faces:
            parts.append(f"{self.faces} faces")
        if self.without_vector:
            parts.append(f"{self.without_vector} skipped: no vector in the source (run reconcile on the source)")
        return (
            f"copied {self.collection} ({self.model}, {self.dim}-d) to {self.destination}: {', '.join(parts)}; "
            f"the destination holds {self.destination_rows} rows and {self.destination_vectors} vectors "
            f"({self.seconds:.1f} s, {rate:.0f} images/s)"
        )


def prepare_destination(source: CollectionRecord, destination: Stores) -> CollectionRecord:
    """Create the collection in the destination bound to the source's model and dim, or accept an existing one
    bound to the same; one bound to another model or dim is refused before anything is written."""
    existing = destination.metadata.get_collection(source.name)
    if existing is not None and (existing.model, existing.dim) != (source.model, source.dim):
        raise Conflict(
            f"collection {source.name!r} exists in the destination bound to {existing.model} ({existing.dim}-d); "
            f"the source's is {source.model} ({source.dim}-d)"
        )
    try:
        destination.vectors.ensure_collection(existing.vector_collection if existing else source.name, source.dim)
    except ValueError as exc:  # a Milvus collection of that name with another dim
        raise Conflict(f"destination Milvus: {exc}") from exc
    record = destination.metadata.create_collection(source.name, source.model, source.dim, source.metric)
    if (record.model, record.dim) != (source.model, source.dim):  # created concurrently with another model
        raise Conflict(f"collection {source.name!r} in the destination is bound to {record.model} ({record.dim}-d)")
    return record


def copy_collection(
    source: Stores,
    destination: Stores,
    name: str,
    batch_size: int = BATCH_SIZE,
    progress: Progress | None = None,
) -> CopyReport:
    """Copy every searchable row of ``name`` with its vector; idempotent, and completes an interrupted copy.

    Rows whose id is taken in the destination are written last, with new ids: by then every kept id is in the
    destination's table, so a new id (the table's next one) can never take the id of a row still to come."""
    refuse_same_stores(source, destination.metadata_url, destination.milvus_uri, destination.milvus_db)
    record = source_collection(source, name)
    # From the Milvus collection serving the source to the one serving the destination (see reembed.py).
    served = (record.vector_collection, prepare_destination(record, destination).vector_collection)
    report = CopyReport(name, record.model, record.dim, destination.where)
    report.source_rows = source.metadata.count(name)
    started = time.monotonic()
    done = 0
    if progress is not None:
        progress(0, report.source_rows)
    deferred: list[int] = []
    images: dict[int, int] = {}  # source id -> destination id of the images this copy wrote (their faces follow)
    for page in source.metadata.iter_image_pages(name, page=batch_size):
        later = _copy_page(source, destination, name, served, page, report, keep_ids=True, images=images)
        deferred += later
        done += len(page) - len(later)
        if progress is not None:
            progress(done, max(report.source_rows, done))
    for start in range(0, len(deferred), batch_size):
        chunk = deferred[start : start + batch_size]
        found = source.metadata.fetch(name, chunk, with_data=True)  # a row deleted meanwhile is left out
        kept = [found[i] for i in chunk if i in found]
        _copy_page(source, destination, name, served, kept, report, keep_ids=False, images=images)
        done += len(chunk)
        if progress is not None:
            progress(done, max(report.source_rows, done))
    report.faces = copy_people(source, destination, name, images)
    destination.vectors.flush(served[1])  # once: a server seals the segments and builds its index on them
    report.destination_rows = destination.metadata.count(name)
    report.destination_vectors = destination.vectors.count(served[1])
    report.seconds = time.monotonic() - started
    logger.info("%s", report.summary())
    return report


def _copy_page(
    source: Stores,
    destination: Stores,
    name: str,
    served: tuple[str, str],
    page: list[ImageRecord],
    report: CopyReport,
    keep_ids: bool,
    images: dict[int, int],
) -> list[int]:
    """Write one page in the write order; with keep_ids, rows whose id is taken are left for later: their source
    ids are returned."""
    existing = destination.metadata.lookup(name, [row.image_id for row in page])
    new: list[ImageRecord] = []
    pending: list[tuple[int, ImageRecord]] = []  # (destination id, source row)
    for row in page:
        known = existing.get(row.image_id)
        if known is None:
            new.append(row)
        elif known.sha256 != row.sha256:  # another image under this image_id: never overwritten
            report.present += 1
            report.differing += 1
            logger.warning("%s/%s holds other bytes in the destination: left as it is", name, row.image_id)
        elif known.indexed:
            report.present += 1
        else:
            pending.append((known.id, row))
    later: list[int] = []
    if keep_ids and new:
        taken = destination.metadata.ids_in_use([row.id for row in new])
        later = [row.id for row in new if row.id in taken]
        new = [row for row in new if row.id not in taken]
    vectors = source.vectors.get(served[0], [row.id for row in new] + [row.id for _, row in pending])
    for row in [*new, *(row for _, row in pending)]:
        if row.id not in vectors:
            report.without_vector += 1
            logger.warning("%s/%s (id %d) has no vector in the source: not copied", name, row.image_id, row.id)
    new = [row for row in new if row.id in vectors]
    pending = [(vector_id, row) for vector_id, row in pending if row.id in vectors]
    ids = destination.metadata.insert_pending_with_ids(
        name, [(_new_image(row), row.id if keep_ids else None) for row in new]
    )
    written = [(ids[row.image_id], row) for row in new if row.image_id in ids] + pending
    if written:
        vector_ids = [vector_id for vector_id, _ in written]
        _copy_tags(source, destination, name, written)
        _copy_words(source, destination, name, written)
        fields = fields_for_ids(destination.metadata, name, vector_ids)
        destination.vectors.upsert(
            served[1], vector_ids, np.stack([vectors[row.id] for _, row in written]), [fields[i] for i in vector_ids]
        )
        destination.metadata.mark_indexed(vector_ids)
        images.update((row.id, vector_id) for vector_id, row in written)
        report.copied += len(written) - len(pending)
        report.completed += len(pending)
        report.new_ids += sum(vector_id != row.id for vector_id, row in written)
    return later


def _new_image(row: ImageRecord) -> NewImage:
    assert row.data is not None
    return NewImage(
        row.image_id,
        row.data,
        row.mime,
        row.width,
        row.height,
        row.sha256,
        row.source,
        row.origin,
        row.preview,
        row.taken_at,
        row.taken_offset,
        row.camera,
        row.latitude,
        row.longitude,
        row.kind,
        row.parent,  # a frame names its video by id: kept, as row ids are unless taken in the destination
        row.at_ms,
        row.duration_ms,
        row.seq,
    )


def _copy_tags(source: Stores, destination: Stores, name: str, written: list[tuple[int, ImageRecord]]) -> None:
    """Each image's tags, automatic and manual, under its id in the destination."""
    found = TagStore(source.metadata.engine).tags_of([row.id for _, row in written])
    target = TagStore(destination.metadata.engine)
    for kind in ("auto", "manual"):
        target.replace(
            name, kind, {new: [t for t in found.get(row.id, []) if t.source == kind] for new, row in written}
        )


def _copy_words(source: Stores, destination: Stores, name: str, written: list[tuple[int, ImageRecord]]) -> None:
    """Captions, descriptions and OCR text under each image's id in the destination (its index rebuilt there)."""
    found = TextStore(source.metadata.engine).texts([row.id for _, row in written])
    values = {new: found[row.id].writable for new, row in written if row.id in found}
    TextStore(destination.metadata.engine).set_fields(name, values, also=[new for new, _ in written])
