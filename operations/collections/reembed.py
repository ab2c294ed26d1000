"""Re-embed a collection with another model without downtime: the new model's vectors are built in a Milvus
collection of their own (a new generation) from the stored images (an upload's original, a source image's
preview), while searches keep using the serving generation and every write reaches both
(``operations.collections.generations``). At 100% one conditional update of the collection's row switches it:
every process reads the model and its Milvus collection from that one row at the start of each search, so no
search mixes the two. The old generation stays, still receiving writes, until ``finalize`` drops it;
``rollback`` switches back (or, before the switch, abandons the new one).

The job is resumable: vectors already in the new generation are skipped, and a switch happens once (it is
conditional on the state it leaves)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from adapters.stores.sql.generation_store import BUILDING, PREVIOUS, READY
from adapters.stores.sql.metadata_store import CollectionRecord, ImageRecord
from operations.collections import collections
from operations.errors import Conflict
from operations.ingest.encode_stage import EncodeTask, encode_stream
from operations.ingest.streams import batched
from operations.ingest.vector_fields import fields_for_ids
from operations.jobs.job_progress import JobOutcome, JobProgress
from operations.services import Services

logger = logging.getLogger(__name__)

PAGE = 256  # rows checked against the new generation at a time
MAX_PASSES = 3  # writes keep coming: a pass that finds nothing missing ends the build


def start(services: Services, collection: str, model: str, switch: bool = True) -> dict[str, Any]:
    """Registers the new generation (its Milvus collection is created now, so a write from now on reaches it)
    and returns the job's parameters; 409 while another re-embed is unfinished or for the serving model."""
    record = collections.require(services, collection)
    model = services.models.validate(model)
    if model == record.model:
        raise Conflict(f"collection {collection!r} is already encoded with {model}")
    if record.next_state == BUILDING and record.next_model == model and record.next_vectors:  # resume it
        return {"collection": collection, "model": model, "vectors": record.next_vectors, "switch": switch}
    if record.next_state is not None:
        raise Conflict(
            f"collection {collection!r} already has a {record.next_state} generation for {record.next_model}: "
            "finalize or roll it back first"
        )
    dim = services.models.get(model).info.dim
    vectors = f"{collection}__{uuid.uuid4().hex[:10]}"
    services.vectors.ensure_collection(vectors, dim)
    if not services.generations.begin(collection, model, dim, vectors):
        services.vectors.drop_collection(vectors)
        raise Conflict(f"collection {collection!r}: another re-embed started at the same time")
    logger.info("re-embed of %s: %s -> %s into %s", collection, record.model, model, vectors)
    return {"collection": collection, "model": model, "vectors": vectors, "switch": switch}


def run_job(services: Services, params: dict[str, Any], progress: JobProgress) -> JobOutcome:
    collection, model, target = params["collection"], params["model"], params["vectors"]
    record = collections.require(services, collection)
    if record.vector_collection == target:  # a resumed job whose switch had happened
        return JobOutcome(f"{collection} is served by {model} (switched earlier)")
    if record.next_vectors != target or record.next_state not in (BUILDING, READY):
        raise Conflict(f"the re-embed of {collection!r} to {model} was rolled back or finalized: start it again")
    services.models.get(model)  # a model that cannot load fails the job before anything is written
    progress.total = services.metadata.count(collection, include_pending=True)
    progress.flush()
    for attempt in range(MAX_PASSES):
        encoded = _build_pass(services, collection, target, model, progress, first=attempt == 0)
        removed = _drop_orphans(services, collection, target)
        if progress.should_stop():
            return JobOutcome(f"stopped at {progress.done} of {progress.total}; run it again to resume")
        if encoded == 0 and removed == 0:
            break
    services.vectors.flush(target)
    services.vectors.warm(target)  # loaded (and in memory on Lite) before the first search reaches it
    services.generations.mark_ready(collection, target)
    if not params.get("switch", True):
        return JobOutcome(f"{progress.loaded} images encoded with {model}; ready to switch")
    switched = services.generations.swap(collection, READY, PREVIOUS, serving=record.vector_collection)
    logger.info("re-embed of %s: switched to %s (%s)", collection, model, "now" if switched else "already")
    return JobOutcome(f"{progress.loaded} images encoded with {model}; {collection} now searches with {model}")


def _build_pass(
    services: Services, collection: str, target: str, model: str, progress: JobProgress, first: bool
) -> int:
    """Encodes every row (searchable or pending) whose vector the new generation lacks, through the encode stage
    (here or on Ray). Later passes catch up with what writes added meanwhile. Returns how many were encoded."""
    encoded = 0
    rows = _missing_rows(services, collection, target, progress, first)
    stream = encode_stream(services, model, rows, lambda row: EncodeTask(data=row.data or b""), progress)
    for batch in batched(stream, services.settings.encode_batch_size):
        for row, result in batch:
            if result.vector is None:
                progress.error(f"cannot decode the stored image: {result.error}", image_id=row.image_id)
        good = [(row.id, result.vector) for row, result in batch if result.vector is not None]
        if good:
            ids = [row_id for row_id, _ in good]
            fields = fields_for_ids(services.metadata, collection, ids)
            kept = [(row_id, vector) for row_id, vector in good if row_id in fields]  # deleted meanwhile: left out
            if kept:
                matrix = np.stack([vector for _, vector in kept])
                services.vectors.upsert(target, [i for i, _ in kept], matrix, [fields[i] for i, _ in kept])
            encoded += len(kept)
            progress.loaded += len(kept)
            progress.done += len(good)
            progress.total = max(progress.total or 0, progress.done)
        progress.flush()
        if progress.should_stop():
            break
    return encoded


def _missing_rows(
    services: Services, collection: str, target: str, progress: JobProgress, first: bool
) -> Iterator[ImageRecord]:
    for page in services.metadata.iter_id_pages(collection, PAGE):
        if progress.should_stop():
            return
        ids = [row_id for row_id, _ in page]
        present = services.vectors.existing_ids(target, ids)
        if first:  # vectors a killed or cancelled attempt made already: done, not made again
            progress.skipped += len(present)
            progress.done += len(present)
        missing = [row_id for row_id in ids if row_id not in present]
        if missing:
            rows = services.metadata.fetch(collection, missing, with_data=True, include_pending=True)
            yield from (rows[i] for i in missing if i in rows)


def _drop_orphans(services: Services, collection: str, target: str) -> int:
    """Vectors of images deleted while their new vector was being made."""
    removed = 0
    for batch in services.vectors.iter_ids(target, 1000):
        known = services.metadata.existing_ids(collection, batch)
        orphans = [vector_id for vector_id in batch if vector_id not in known]
        if orphans:
            services.vectors.delete(target, orphans)
            removed += len(orphans)
    return removed


def switch(services: Services, collection: str) -> CollectionRecord:
    """Serve the other generation (built by a finished re-embed, or the previous one after a rollback)."""
    record = collections.require(services, collection)
    if record.next_state != READY or record.next_vectors is None:
        raise Conflict(_nothing_to(record, "switch to"))
    services.vectors.warm(record.next_vectors)
    if not services.generations.swap(collection, READY, PREVIOUS, serving=record.vector_collection):
        raise Conflict(f"collection {collection!r} changed meanwhile; look again")
    logger.info("collection %s switched to %s", collection, record.next_model)
    return collections.require(services, collection)


def rollback(services: Services, collection: str, cancel_job: Callable[[], None] | None = None) -> CollectionRecord:
    """After a switch: serve the previous generation again (the new one stays, ready to switch to). Before it:
    abandon the re-embed (``cancel_job`` stops its job), dropping what it built."""
    record = collections.require(services, collection)
    if record.next_state == PREVIOUS and record.next_vectors is not None:
        services.vectors.warm(record.next_vectors)
        if not services.generations.swap(collection, PREVIOUS, READY, serving=record.vector_collection):
            raise Conflict(f"collection {collection!r} changed meanwhile; look again")
        logger.info("collection %s rolled back to %s", collection, record.next_model)
    elif record.next_state in (BUILDING, READY):
        if cancel_job is not None:
            cancel_job()
        dropped = services.generations.clear(collection, (BUILDING, READY))
        if dropped:
            services.vectors.drop_collection(dropped)
            logger.info("re-embed of %s to %s abandoned", collection, record.next_model)
    else:
        raise Conflict(_nothing_to(record, "roll back"))
    return collections.require(services, collection)


def finalize(services: Services, collection: str) -> CollectionRecord:
    """Keep the serving generation and drop the other one (the previous model's vectors after a switch)."""
    record = collections.require(services, collection)
    if record.next_state not in (PREVIOUS, READY):
        raise Conflict(_nothing_to(record, "finalize"))
    dropped = services.generations.clear(collection, (PREVIOUS, READY))
    if dropped:
        services.vectors.drop_collection(dropped)
        logger.info("collection %s finalized on %s; dropped %s", collection, record.model, dropped)
    return collections.require(services, collection)


def _nothing_to(record: CollectionRecord, verb: str) -> str:
    if record.next_state is None:
        return f"collection {record.name!r} has no re-embed to {verb}"
    if record.next_state == BUILDING:
        return f"the re-embed of {record.name!r} to {record.next_model} is still building: nothing to {verb} yet"
    return f"collection {record.name!r} has a {record.next_state} generation ({record.next_model}): cannot {verb}"
