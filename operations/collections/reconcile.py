"""Find and repair every disagreement between the metadata rows and the Milvus vectors of a collection.

- a row (searchable or pending) without its vector: re-encoded from the stored image bytes and written;
- a pending row whose vector exists (a write cut short before its last step): marked searchable;
- a vector without a row (a delete or drop cut short): deleted.
The image bytes live in the metadata DB, so nothing is lost that can be rebuilt.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field

from adapters import images
from adapters.encoders.encoder_base import EncoderBase
from operations.collections import collections
from operations.ingest.vector_fields import fields_for_ids
from operations.jobs.job_progress import JobOutcome, JobProgress
from operations.services import Services

logger = logging.getLogger(__name__)
PAGE = 1000
SAMPLE = 20


@dataclass
class ReconcileReport:
    rows_checked: int = 0
    vectors_checked: int = 0
    vectors_rebuilt: int = 0
    pending_completed: int = 0
    orphan_vectors_deleted: int = 0
    unreadable_rows_deleted: int = 0
    examples: dict[str, list[int]] = field(default_factory=dict)

    @property
    def repaired(self) -> int:
        return sum(
            (self.vectors_rebuilt, self.pending_completed, self.orphan_vectors_deleted, self.unreadable_rows_deleted)
        )

    def note(self, kind: str, ids: list[int]) -> None:
        if ids:
            self.examples.setdefault(kind, []).extend(ids[: SAMPLE - len(self.examples.get(kind, []))])


def _rebuild(
    services: Services,
    encoder: EncoderBase,
    collection: str,
    ids: list[int],
    report: ReconcileReport,
    collection_vectors: str,
) -> None:
    settings = services.settings
    rows = services.metadata.fetch(collection, ids, with_data=True, include_pending=True)
    good, pixels, bad = [], [], []
    for row_id, row in rows.items():
        try:
            image = images.decode_rgb(row.data or b"", settings.max_image_pixels)
            pixels.append(encoder.preprocess(image))
            good.append(row_id)
        except images.InvalidImage:
            bad.append(row_id)
    for start in range(0, len(good), settings.encode_batch_size):
        chunk = good[start : start + settings.encode_batch_size]
        vectors = encoder.encode_pixels(pixels[start : start + settings.encode_batch_size])
        fields = fields_for_ids(services.metadata, collection, chunk)
        services.vectors.upsert(collection_vectors, chunk, vectors, [fields[i] for i in chunk])
        services.metadata.mark_indexed(chunk)
    if bad:  # cannot be searched and cannot be rebuilt: remove rather than keep a broken row
        services.metadata.delete_rows(bad)
    report.vectors_rebuilt += len(good)
    report.unreadable_rows_deleted += len(bad)
    report.note("vectors_rebuilt", good)
    report.note("unreadable_rows_deleted", bad)


def reconcile(services: Services, collection: str, progress: JobProgress | None = None) -> ReconcileReport:
    record = collections.require(services, collection)
    encoder = collections.encoder_for(services, record)
    collection_vectors = record.vector_collection  # the serving generation (a re-embed completes its own)
    services.vectors.ensure_collection(collection_vectors, record.dim)  # recreated if it was lost: rows rebuild it
    progress = progress or JobProgress()
    rows = services.metadata.count(collection, include_pending=True)
    progress.total = rows + services.vectors.count(collection_vectors)
    report = ReconcileReport()
    for page in services.metadata.iter_id_pages(collection, PAGE):
        ids = [row_id for row_id, _ in page]
        present = services.vectors.existing_ids(collection_vectors, ids)
        missing = [row_id for row_id in ids if row_id not in present]
        pending_ok = [row_id for row_id, indexed in page if not indexed and row_id in present]
        if pending_ok:
            services.metadata.mark_indexed(pending_ok)
            report.pending_completed += len(pending_ok)
            report.note("pending_completed", pending_ok)
        if missing:
            _rebuild(services, encoder, collection, missing, report, collection_vectors)
        report.rows_checked += len(page)
        progress.done += len(page)
        progress.flush()
    for batch in services.vectors.iter_ids(collection_vectors, PAGE):
        known = services.metadata.existing_ids(collection, batch)
        orphans = [vector_id for vector_id in batch if vector_id not in known]
        if orphans:
            services.vectors.delete(collection_vectors, orphans)
            report.orphan_vectors_deleted += len(orphans)
            report.note("orphan_vectors_deleted", orphans)
        report.vectors_checked += len(batch)
        progress.done += len(batch)
        progress.flush()
    progress.loaded = report.repaired
    logger.info("reconciled %s: %s", collection, report)
    return report


def run_job(services: Services, collection: str, progress: JobProgress) -> JobOutcome:
    report = reconcile(services, collection, progress)
    message = "nothing to repair" if report.repaired == 0 else f"repaired {report.repaired}"
    checked = f"{report.rows_checked} rows, {report.vectors_checked} vectors checked"
    return JobOutcome(f"{message} ({checked})", asdict(report))
