"""What each kind of background job does, rebuilt from its stored parameters: any service process that claims a
job from the shared queue can run it, and a job whose process died is resumed elsewhere from the same record.
Every kind is idempotent (loads and ingests skip what is already stored), so a resumed job ends with exact counts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from adapters.stores.sql.job_store import JobRecord
from operations.collections import reconcile, reembed
from operations.evaluation import evaluation
from operations.ingest import ingest_job, load, sources, sync
from operations.jobs.job_progress import JobProgress
from operations.jobs.jobs import JobFn
from operations.labels import duplicates, tags
from operations.people import cluster_job, faces
from operations.services import Services
from operations.words import ocr


def _load(services: Services, p: dict[str, Any]) -> JobFn:
    plan = load.plan(services, p["collection"], p["path"], p["split"], p.get("model"))
    return lambda progress: load.run(services, plan, progress)


def _ingest(services: Services, p: dict[str, Any]) -> JobFn:
    source = ingest_job.open_source(services, p["collection"], p["path"], p.get("model"))

    def run(progress: JobProgress) -> str:
        return ingest_job.run(services, p["collection"], source, progress, p.get("model"))

    return run


def _evaluate(services: Services, p: dict[str, Any]) -> JobFn:
    directory = evaluation.plan_job(services, p["collection"], p["path"], p["split"])
    features = bool(p.get("text_features", False))
    return lambda progress: evaluation.run_job(services, p["collection"], directory, p["split"], features, progress)


def _reconcile(services: Services, p: dict[str, Any]) -> JobFn:
    return lambda progress: reconcile.run_job(services, p["collection"], progress)


def _duplicates(services: Services, p: dict[str, Any]) -> JobFn:
    min_cosine = duplicates.validate_min_cosine(float(p["min_cosine"]))
    return lambda progress: duplicates.find(services, p["collection"], min_cosine, progress)


def _tags(services: Services, p: dict[str, Any]) -> JobFn:
    rule = tags.validate_rule(p.get("top_n"), p.get("min_probability"), len(p["labels"]))

    def run(progress: JobProgress) -> str:
        return tags.tag_collection(
            services, p["collection"], p["labels"], rule, progress, p.get("prompts", "photo"), p.get("template")
        )

    return run


def _sync(services: Services, p: dict[str, Any], job_id: str) -> JobFn:
    source = sources.require(services, p["collection"], int(p["source"]))
    sources.source_folder(services, source)  # gone since it was queued: fail with the reason
    under = sources.validate_under(p.get("path"))
    return lambda progress: sync.run(services, source, progress, under, job_id)


def _reembed(services: Services, p: dict[str, Any]) -> JobFn:
    return lambda progress: reembed.run_job(services, p, progress)


def _ocr(services: Services, p: dict[str, Any]) -> JobFn:
    ocr.require_available()
    return lambda progress: ocr.run_job(services, p["collection"], progress, bool(p.get("redo", False)))


def _faces(services: Services, p: dict[str, Any]) -> JobFn:
    faces.require_available(services.settings)
    return lambda progress: faces.run_job(services, p["collection"], progress, bool(p.get("redo", False)))


def _people(services: Services, p: dict[str, Any]) -> JobFn:
    def run(progress: JobProgress) -> str:
        return str(cluster_job.run(services, p["collection"], bool(p.get("all", False))))

    return run


_BUILDERS: dict[str, Callable[[Services, dict[str, Any]], JobFn]] = {
    "load": _load,
    "ingest": _ingest,
    "evaluate": _evaluate,
    "reconcile": _reconcile,
    "duplicates": _duplicates,
    "tags": _tags,
    "ocr": _ocr,
    "faces": _faces,
    "people": _people,
    "reembed": _reembed,
}


def job_function(services: Services, record: JobRecord) -> JobFn:
    """Checks the job's inputs again (files may have gone since it was queued): a problem fails the job with
    its reason, like any other failure."""
    if record.kind == "sync":  # the source remembers which job last synced it
        return _sync(services, record.params, record.id)
    return build_job(services, record.kind, record.params)


def build_job(services: Services, kind: str, params: dict[str, Any]) -> JobFn:
    """The work of a job of ``kind`` with ``params`` (a queued job's, or a CLI command's run in the foreground)."""
    builder = _BUILDERS.get(kind)
    if builder is None:
        raise ValueError(f"unknown job kind {kind!r}")
    return builder(services, params)
