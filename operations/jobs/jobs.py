"""Background jobs: claimed from the queue in the metadata DB by any service process, run on a few threads,
reporting progress into the job's row."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from adapters.stores.sql.job_store import FINISHED_STATES, JobRecord, JobStore, QueueFull
from operations.errors import Busy, Conflict, NotFound
from operations.jobs.job_progress import JobOutcome, JobProgress, describe_failure, is_store_outage

logger = logging.getLogger(__name__)

INTERRUPTED = "interrupted: the process running it stopped"
POLL_S = 0.5  # how often an idle worker looks for queued jobs (a job queued in this process wakes it at once)
END_RECORD_ATTEMPTS = 8

JobFn = Callable[[JobProgress], "str | JobOutcome"]


@dataclass
class _Running:
    record: JobRecord
    stop: threading.Event = field(default_factory=threading.Event)
    reason: str | None = None  # why it was asked to stop: "cancel", "shutdown" or "lost"

    def ask_to_stop(self, reason: str) -> None:
        self.reason = self.reason or reason
        self.stop.set()


def process_owner_id() -> str:
    """Names this process in job records: host, pid and a random suffix (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class JobRunner:
    """Runs jobs from the shared queue: ``workers`` threads claim queued jobs (``resolve`` turns a record into
    the function to run), and one keeper thread renews this process's leases, notices cancels asked through any
    process, and puts back in the queue the jobs of processes that died. With no ``resolve`` (the CLI) it claims
    nothing and only runs what it is handed."""

    def __init__(
        self,
        store: JobStore,
        resolve: Callable[[JobRecord], JobFn] | None,
        workers: int,
        lease_s: float,
        max_active: int = 4,
        max_attempts: int = 3,
        on_finish: Callable[[str, str], None] | None = None,
    ) -> None:
        self.store = store
        self.owner = process_owner_id()
        self.lease_s = lease_s
        self.max_active = max_active
        self.max_attempts = max_attempts
        self._resolve = resolve
        self._on_finish = on_finish
        self._running: dict[str, _Running] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._expire()
        self._threads = [threading.Thread(target=self._keep, name="job-keeper", daemon=True)]
        if resolve is not None:
            self._threads += [threading.Thread(target=self._work, name=f"job-{n}", daemon=True) for n in range(workers)]
        for thread in self._threads:
            thread.start()
        logger.info("job runner %s: %d worker(s), lease %.0fs", self.owner, len(self._threads) - 1, lease_s)

    @property
    def active(self) -> int:
        """Jobs running in this process."""
        with self._lock:
            return len(self._running)

    # --- what routes and the CLI call -------------------------------------------------------------------
    def ensure_capacity(self) -> None:
        """Routes call this before creating anything a job needs, so a refused job leaves no trace."""
        active = self.store.active_count()
        if active >= self.max_active:
            raise self._busy(active)

    def submit(self, kind: str, collection: str, params: dict[str, Any]) -> JobRecord:
        """Queues the job for whichever process claims it first, or refuses it (429) when ``max_active`` jobs
        are already queued or running in all processes together."""
        try:
            record = self.store.create(kind, collection, params, self.max_attempts, max_active=self.max_active)
        except QueueFull as full:
            raise self._busy(full.active) from None
        self._wake.set()
        logger.info("job %s queued: %s %s %s", record.id, kind, collection, params)
        return record

    def run_now(
        self, kind: str, collection: str, params: dict[str, Any], fn: JobFn, listener: Callable | None = None
    ) -> JobRecord:
        """Run a job in the calling thread (the CLI), recorded like any other; it is not resumed elsewhere."""
        record = self.store.create(kind, collection, params, max_attempts=1, owner=self.owner, lease_s=self.lease_s)
        self._execute(record, fn, listener)
        return self.get(record.id)

    def cancel(self, job_id: str) -> JobRecord:
        """A queued job is cancelled at once; a running one stops at its next batch, in whichever process."""
        record = self.store.request_cancel(job_id)
        if record is None:
            raise NotFound(f"job {job_id!r} does not exist")
        if record.state in FINISHED_STATES and record.state != "cancelled":
            raise Conflict(f"job {job_id} already {record.state}")
        with self._lock:
            running = self._running.get(job_id)
        if running is not None:
            running.ask_to_stop("cancel")
        return record

    def get(self, job_id: str) -> JobRecord:
        record = self.store.get(job_id)
        if record is None:
            raise NotFound(f"job {job_id!r} does not exist")
        return record

    def shutdown(self) -> None:
        """Stop claiming, ask running jobs to stop at their next batch (they go back to the queue for the next
        process), and wait for them."""
        self._stop.set()
        self._wake.set()
        with self._lock:
            running = list(self._running.values())
        for entry in running:
            entry.ask_to_stop("shutdown")
        for thread in self._threads:
            thread.join(timeout=120)

    # --- the threads --------------------------------------------------------------------------------------
    def _busy(self, active: int) -> Busy:
        return Busy(
            f"{active} jobs are already queued or running (IMGSEARCH_MAX_ACTIVE_JOBS={self.max_active}); "
            "retry when one has finished"
        )

    def _work(self) -> None:
        assert self._resolve is not None
        while not self._stop.is_set():
            try:
                record = self.store.claim(self.owner, self.lease_s)
            except Exception as exc:  # the database may be down for a while: try again
                logger.warning("could not look for queued jobs: %s", exc)
                record = None
            if record is None:
                self._wake.wait(POLL_S)
                self._wake.clear()
                continue
            logger.info("job %s claimed (attempt %d of %d)", record.id, record.attempts, record.max_attempts)
            try:
                fn = self._resolve(record)
            except Exception as exc:
                self._record_end(JobProgress(self.store, record.id, owner=self.owner), "failed", describe_failure(exc))
                state = "failed"
            else:
                state = self._execute(record, fn)
            if self._on_finish:
                self._on_finish(record.kind, state)

    def _keep(self) -> None:
        every = max(0.2, self.lease_s / 3)
        while not self._stop.wait(every):
            with self._lock:
                running = dict(self._running)
            try:
                held = self.store.renew(self.owner, list(running), self.lease_s)
                self._expire()
            except Exception as exc:  # the database may be down for a while: try again next round
                logger.warning("could not renew job leases: %s", exc)
                continue
            for job_id, entry in running.items():
                if job_id not in held:
                    entry.ask_to_stop("lost")
                elif held[job_id]:
                    entry.ask_to_stop("cancel")

    def _expire(self) -> None:
        requeued, failed = self.store.expire_leases(INTERRUPTED)
        if requeued or failed:
            logger.warning("jobs of stopped processes: %d queued again, %d failed (no attempts left)", requeued, failed)
            self._wake.set()

    def _execute(self, record: JobRecord, fn: JobFn, listener: Callable | None = None) -> str:
        entry = _Running(record)
        with self._lock:
            self._running[record.id] = entry
        progress = JobProgress(self.store, record.id, entry.stop, listener, owner=self.owner)
        started = time.monotonic()
        result = None
        try:
            outcome = fn(progress)
            outcome = outcome if isinstance(outcome, JobOutcome) else JobOutcome(outcome)
            state, message, result = "succeeded", outcome.message, outcome.result
        except Exception as exc:
            state, message = "failed", describe_failure(exc)
            if is_store_outage(exc):  # expected: the stores log the outage; no traceback
                logger.warning("job %s failed: %s", record.id, message)
            else:
                logger.exception("job %s failed", record.id)
        finally:
            with self._lock:
                del self._running[record.id]
        reason = "lost" if progress.lost else entry.reason
        if reason == "lost":
            logger.warning("job %s was taken over by another process; this one stopped it", record.id)
            return "lost"
        if reason == "cancel":
            state, message = "cancelled", f"cancelled after {progress.done} of {progress.total} items"
        elif reason == "shutdown" and record.attempts < record.max_attempts:
            state, message = "queued", "the service stopped mid-job; queued again for the next process"
        elif reason == "shutdown":
            state, message = "failed", INTERRUPTED
        self._record_end(progress, state, message, result)
        logger.info(
            "job %s %s in %.1fs: %d done, %d loaded, %d skipped, %d failed",
            record.id,
            state,
            time.monotonic() - started,
            progress.done,
            progress.loaded,
            progress.skipped,
            progress.failed,
        )
        return state

    def _record_end(self, progress: JobProgress, state: str, message: str, result: dict | None = None) -> None:
        """A job that failed because the database went away must still say so once it is back."""
        if progress.listener is not None:
            progress.listener(progress)
        counters = progress.counters()
        if "result" in counters:  # where the images were encoded, beside what the job says it did
            result = {**counters.pop("result"), **(result or {})}
        for attempt in range(END_RECORD_ATTEMPTS):
            try:
                self.store.finish(
                    progress.job_id, self.owner, state, message, message=message, result=result, **counters
                )
                return
            except Exception as exc:
                logger.warning("job %s: could not record its end yet (%s); retrying", progress.job_id, exc)
                time.sleep(min(2**attempt, 10) * 0.5)
        logger.error(
            "job %s: gave up recording its end; its lease runs out and another process takes it", progress.job_id
        )
