"""What a running job reports: counters written to its row while its process still holds it, and the words a
user sees when it fails."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pymilvus.exceptions import MilvusException
from sqlalchemy.exc import DBAPIError

from adapters import file_names
from adapters.stores.sql.job_store import JobStore

MAX_ERROR_SAMPLES = 100


@dataclass
class JobProgress:
    """Counters a job updates as it goes; ``flush`` writes them (and a heartbeat) to the job row while this process
    still holds the job, and tells the listener (the CLI's progress bar). Without a store (a synchronous upload) it
    only counts."""

    store: JobStore | None = None
    job_id: str = ""
    stop_event: threading.Event = field(default_factory=threading.Event)
    listener: Callable[[JobProgress], None] | None = None
    owner: str | None = None
    total: int | None = None
    done: int = 0
    loaded: int = 0
    skipped: int = 0
    failed: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    encoded_by: Counter = field(default_factory=Counter)  # images encoded per Ray node ("local": this process)
    lost: bool = False  # another process took the job over (this one's lease ran out): stop, write nothing more

    def error(self, reason: str, **where: Any) -> None:
        self.failed += 1
        self.done += 1
        self.warn(reason, **where)

    def warn(self, reason: str, **where: Any) -> None:
        """Listed with the errors without counting a failure: an item done in part (a video indexed up to where
        its stream is damaged)."""
        if len(self.errors) < MAX_ERROR_SAMPLES:
            if isinstance(where.get("file"), str):  # a file name as people read it: never a lone surrogate
                where["file"] = file_names.readable(where["file"])
            self.errors.append({"reason": reason, **where})

    def should_stop(self) -> bool:
        return self.stop_event.is_set()

    def counters(self) -> dict[str, Any]:
        values = {
            "total": self.total,
            "done": self.done,
            "loaded": self.loaded,
            "skipped": self.skipped,
            "failed": self.failed,
            "errors": self.errors,
        }
        if self.encoded_by:  # shown while the job runs; merged into its result at the end
            values["result"] = {"encoded_by": dict(self.encoded_by)}
        return values

    def flush(self) -> None:
        if self.listener is not None:
            self.listener(self)
        if (
            self.store is not None
            and not self.lost
            and not self.store.update(self.job_id, held_by=self.owner, **self.counters())
        ):
            self.lost = True
            self.stop_event.set()


@dataclass(frozen=True)
class JobOutcome:
    message: str
    result: dict[str, Any] | None = None


def is_store_outage(exc: Exception) -> bool:
    return isinstance(exc, DBAPIError | MilvusException)


def describe_failure(exc: Exception) -> str:
    """A job's failure in words a user can act on."""
    if isinstance(exc, DBAPIError):
        return f"metadata database unavailable or failing: {exc.orig if exc.orig is not None else exc}; run again"
    if isinstance(exc, MilvusException):
        return f"vector store (Milvus) unavailable or failing: {exc.message}; run again"
    return f"{type(exc).__name__}: {exc}"
