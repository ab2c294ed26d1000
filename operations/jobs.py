"""Background jobs: run on a small thread pool, report progress into the metadata DB."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from adapters.job_store import JobRecord, JobStore
from adapters.sql_schema import utc_now
from operations.errors import NotFound

logger = logging.getLogger(__name__)

MAX_ERROR_SAMPLES = 100


@dataclass
class JobProgress:
    """Counters a job updates as it goes; ``flush`` writes them (and a heartbeat) to the job row."""

    store: JobStore
    job_id: str
    stop_event: threading.Event
    total: int | None = None
    done: int = 0
    loaded: int = 0
    skipped: int = 0
    failed: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)

    def error(self, reason: str, **where: Any) -> None:
        self.failed += 1
        self.done += 1
        if len(self.errors) < MAX_ERROR_SAMPLES:
            self.errors.append({"reason": reason, **where})

    def should_stop(self) -> bool:
        return self.stop_event.is_set()

    def flush(self, **extra: Any) -> None:
        self.store.update(
            self.job_id,
            total=self.total,
            done=self.done,
            loaded=self.loaded,
            skipped=self.skipped,
            failed=self.failed,
            errors=self.errors,
            **extra,
        )


JobFn = Callable[[JobProgress], str]


class JobRunner:
    def __init__(self, store: JobStore, workers: int, stale_after_s: float) -> None:
        self.store = store
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="job")
        self._stop = threading.Event()
        failed = store.fail_stale(
            dt.timedelta(seconds=stale_after_s), "interrupted: the service stopped; run the job again to finish"
        )
        if failed:
            logger.warning("marked %d interrupted job(s) as failed", failed)

    def submit(self, kind: str, collection: str, params: dict[str, Any], fn: JobFn) -> JobRecord:
        record = self.store.create(kind, collection, params)
        self._executor.submit(self._run, record.id, fn)
        logger.info("job %s queued: %s %s %s", record.id, kind, collection, params)
        return record

    def _run(self, job_id: str, fn: JobFn) -> None:
        progress = JobProgress(self.store, job_id, self._stop)
        started = time.monotonic()
        try:
            self.store.update(job_id, state="running", started_at=utc_now())
            message = fn(progress)
            state = "failed" if self._stop.is_set() else "succeeded"
            if self._stop.is_set():
                message = "interrupted: the service stopped; run the job again to finish"
        except Exception as exc:
            logger.exception("job %s failed", job_id)
            state, message = "failed", f"{type(exc).__name__}: {exc}"
        try:
            progress.flush(state=state, message=message, finished_at=utc_now())
        except Exception:
            logger.exception("job %s: could not record its end (%s)", job_id, state)
        logger.info(
            "job %s %s in %.1fs: %d done, %d loaded, %d skipped, %d failed",
            job_id,
            state,
            time.monotonic() - started,
            progress.done,
            progress.loaded,
            progress.skipped,
            progress.failed,
        )

    def get(self, job_id: str) -> JobRecord:
        record = self.store.get(job_id)
        if record is None:
            raise NotFound(f"job {job_id!r} does not exist")
        return record

    def shutdown(self) -> None:
        """Ask running jobs to stop at their next batch and wait for them."""
        self._stop.set()
        self._executor.shutdown(wait=True, cancel_futures=True)
