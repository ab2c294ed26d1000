"""Bulk ingest of a folder or zip as a background job (API) or with a progress bar (CLI)."""

from __future__ import annotations

from pathlib import Path

from operations.collections import collections, generations
from operations.ingest.file_sources import FileSource, resolve_under_root
from operations.ingest.ingest import ingest
from operations.jobs.job_progress import JobProgress
from operations.services import Services


def open_source(services: Services, collection: str, path: str, model: str | None = None) -> FileSource:
    """For the API: ``path`` is relative to the data root and may not leave it."""
    collections.model_for_writes(services, collection, model)  # 409 now, not in the job
    root = Path(str(services.settings.data_root)).resolve()
    return FileSource.open(resolve_under_root(root, path), confine_to=root)


def run(
    services: Services, collection: str, source: FileSource, progress: JobProgress, model: str | None = None
) -> str:
    progress.total = source.count
    progress.flush()
    try:
        origin = f"ingest:{source.path.name}"
        for _ in ingest(services, collection, source.candidates(), progress, model, origin, on_cluster=True):
            pass
        generations.flush(services, collection)  # a server indexes sealed data: once per ingest, not per batch
    finally:
        source.close()
    return f"{progress.loaded} stored, {progress.skipped} duplicates skipped, {progress.failed} rejected"
