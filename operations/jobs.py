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

from pymilvus.exceptions import MilvusException
from sqlalchemy.exc import DBAPIError

from adapters.job_store import JobRecord, JobStore
from adapters.sql_schema import utc_now
from operations.errors import Busy, NotFound

logger = logging.getLogger(__name__)

MAX_ERROR_SAMPLES = 100
END_RECORD_ATTEMPTS = 8


@dataclass
class JobProgress:
    """Counters a job updates as it goes; ``flush`` writes them (and a heartbeat) to the job row,
    and tells the listener (the CLI's progress bar). Without a store (a synchronous upload) it only counts."""

    store: JobStore | None = None
    job_id: str = ""
    stop_event: threading.Event = field(default_factory=threading.Event)
    listener: Callable[[JobProgress], None] | None = None
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
        if self.listener is not None:
            self.listener(self)
        if self.store is not None:
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


@dataclass(frozen=True)
class JobOutcome:
    message: str
    result: dict[str, Any] | None = None


def describe_failure(exc: Exception) -> str:
    """A job's failure in words a user can act on."""
    if isinstance(exc, DBAPIError):
        return f"metadata database unavailable or failing: {exc.orig if exc.orig is not None else exc}; run again"
    if isinstance(exc, MilvusException):
        return f"vector store (Milvus) unavailable or failing: {exc.message}; run again"
    return f"{type(exc).__name__}: {exc}"


INTERRUPTED = "interrupted: the service stopped; run the job again to finish"

JobFn = Callable[[JobProgress], "str | JobOutcome"]


class JobRunner:
    def __init__(
        self,
        store: JobStore,
        workers: int,
        stale_after_s: float,
        max_active: int = 4,
        on_finish: Callable[[str, str], None] | None = None,
    ) -> None:
        self.store = store
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="job")
        self._stop = threading.Event()
        self.max_active = max_active
        self.active = 0  # queued or running, guarded by _lock
        self._lock = threading.Lock()
        self._mine: set[str] = set()  # ids of this process's queued and running jobs, guarded by _lock
        self._on_finish = on_finish
        self._stale_after = dt.timedelta(seconds=stale_after_s)
        self._sweep_stale()
        # A job left 'running' by a killed process must read 'failed' soon, not only after the next restart.
        self._sweeper = threading.Thread(
            target=self._sweep_forever, args=(max(1.0, stale_after_s / 3),), name="job-sweeper", daemon=True
        )
        self._sweeper.start()

    def _sweep_stale(self) -> None:
        with self._lock:
            mine = set(self._mine)
        failed = self.store.fail_stale(self._stale_after, INTERRUPTED, exclude=mine)
        if failed:
            logger.warning("marked %d interrupted job(s) as failed", failed)

    def _sweep_forever(self, every_s: float) -> None:
        while not self._stop.wait(every_s):
            try:
                self._sweep_stale()
            except Exception as exc:  # the database may be down for a while: try again next round
                logger.warning("could not check for interrupted jobs: %s", exc)

    def submit(self, kind: str, collection: str, params: dict[str, Any], fn: JobFn) -> JobRecord:
        """Queues the job, or refuses it (429) when ``max_active`` jobs are already queued or running."""
        with self._lock:
            self._refuse_when_full()
            self.active += 1
        try:
            record = self.store.create(kind, collection, params)
            with self._lock:
                self._mine.add(record.id)
            future = self._executor.submit(self._run_reported, kind, record.id, fn)
        except BaseException:
            self._release()
            raise
        future.add_done_callback(lambda _: self._release(record.id))  # also when cancelled at shutdown
        logger.info("job %s queued: %s %s %s", record.id, kind, collection, params)
        return record

    def run_now(
        self, kind: str, collection: str, params: dict[str, Any], fn: JobFn, listener: Callable | None = None
    ) -> JobRecord:
        """Run a job in the calling thread (the CLI), recorded like any other."""
        record = self.store.create(kind, collection, params)
        with self._lock:
            self._mine.add(record.id)
        try:
            self._run(record.id, fn, listener)
        finally:
            with self._lock:
                self._mine.discard(record.id)
        return self.get(record.id)

    def ensure_capacity(self) -> None:
        """Routes call this before creating anything a job needs, so a refused job leaves no trace."""
        with self._lock:
            self._refuse_when_full()

    def _refuse_when_full(self) -> None:
        if self.active >= self.max_active:
            raise Busy(
                f"{self.active} jobs are already queued or running (IMGSEARCH_MAX_ACTIVE_JOBS={self.max_active}); "
                "retry when one has finished"
            )

    def _release(self, job_id: str = "") -> None:
        with self._lock:
            self.active -= 1
            self._mine.discard(job_id)

    def _run_reported(self, kind: str, job_id: str, fn: JobFn) -> None:
        state = self._run(job_id, fn)
        if self._on_finish:
            self._on_finish(kind, state)

    def _run(self, job_id: str, fn: JobFn, listener: Callable | None = None) -> str:
        progress = JobProgress(self.store, job_id, self._stop, listener)
        started = time.monotonic()
        result = None
        try:
            self.store.update(job_id, state="running", started_at=utc_now())
            outcome = fn(progress)
            outcome = outcome if isinstance(outcome, JobOutcome) else JobOutcome(outcome)
            message, result = outcome.message, outcome.result
            state = "failed" if self._stop.is_set() else "succeeded"
            if self._stop.is_set():
                message = INTERRUPTED
        except Exception as exc:
            logger.exception("job %s failed", job_id)
            state, message = "failed", describe_failure(exc)
        self._record_end(progress, state=state, message=message, result=result, finished_at=utc_now())
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
        return state

    def _record_end(self, progress: JobProgress, **values: Any) -> None:
        """A job that failed because the database went away must still say so once it is back."""
        for attempt in range(END_RECORD_ATTEMPTS):
            try:
                progress.flush(**values)
                return
            except Exception as exc:
                logger.warning("job %s: could not record its end yet (%s); retrying", progress.job_id, exc)
                time.sleep(min(2**attempt, 10) * 0.5)
        logger.error("job %s: gave up recording its end; next start-up marks it interrupted", progress.job_id)

    def get(self, job_id: str) -> JobRecord:
        record = self.store.get(job_id)
        if record is None:
            raise NotFound(f"job {job_id!r} does not exist")
        return record

    def shutdown(self) -> None:
        """Ask running jobs to stop at their next batch and wait for them."""
        self._stop.set()
        self._executor.shutdown(wait=True, cancel_futures=True)
