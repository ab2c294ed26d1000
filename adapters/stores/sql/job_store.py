"""Background jobs as a queue in the metadata database, shared by every service process: a job is claimed by
exactly one process, held under a lease that process renews, and queued again when the lease runs out (the
process died), until its attempts are used up. Progress and cancellation live here too, so any process can
report or cancel any job."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select, text, update

from adapters.stores.sql.sql_schema import jobs, utc_now

ACTIVE_STATES = ("queued", "running")
FINISHED_STATES = ("succeeded", "failed", "cancelled")
_QUEUE_LOCK = "imgsearch_job_queue"  # MySQL named lock: counting active jobs and adding one is atomic


@dataclass
class JobRecord:
    id: str
    kind: str
    collection: str
    state: str
    params: dict[str, Any]
    total: int | None
    done: int
    loaded: int
    skipped: int
    failed: int
    errors: list[dict[str, Any]] = field(default_factory=list)
    message: str | None = None
    result: dict[str, Any] | None = None
    created_at: dt.datetime | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    heartbeat_at: dt.datetime | None = None
    owner: str | None = None
    lease_until: dt.datetime | None = None
    attempts: int = 0
    max_attempts: int = 1
    cancel_requested: bool = False
    runs: list[dict[str, Any]] = field(default_factory=list)


class QueueFull(Exception):
    def __init__(self, active: int) -> None:
        super().__init__(f"{active} jobs are queued or running")
        self.active = active


class JobStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._local_lock = threading.Lock()  # SQLite serves one process: a thread lock makes the limit atomic

    # --- creating and reading ------------------------------------------------------------------------
    def create(
        self,
        kind: str,
        collection: str,
        params: dict[str, Any],
        max_attempts: int = 1,
        owner: str | None = None,
        lease_s: float = 0.0,
        max_active: int | None = None,
    ) -> JobRecord:
        """Queued, or already running under ``owner`` (a job run in the caller's thread, as the CLI does).
        With ``max_active``, refuses (QueueFull) when that many jobs are already queued or running anywhere."""
        now = utc_now()
        values: dict[str, Any] = {
            "id": uuid.uuid4().hex,
            "kind": kind,
            "collection": collection,
            "state": "queued",
            "params": json.dumps(params),
            "done": 0,
            "loaded": 0,
            "skipped": 0,
            "failed": 0,
            "errors": "[]",
            "created_at": now,
            "heartbeat_at": now,
            "attempts": 0,
            "max_attempts": max_attempts,
            "cancel_requested": False,
            "runs": "[]",
        }
        if owner is not None:
            values |= {"state": "running", "owner": owner, "attempts": 1, "started_at": now}
            values |= {"lease_until": now + dt.timedelta(seconds=lease_s), "runs": json.dumps([_run(1, owner)])}
        with self._serialised() as conn:
            if max_active is not None:
                active = conn.execute(select(func.count()).where(jobs.c.state.in_(ACTIVE_STATES))).scalar_one()
                if active >= max_active:
                    raise QueueFull(int(active))
            conn.execute(insert(jobs).values(**values))
        record = self.get(values["id"])
        assert record is not None
        return record

    @contextlib.contextmanager
    def _serialised(self) -> Iterator[Connection]:
        """A transaction holding the queue lock: a MySQL named lock across processes, a thread lock on SQLite
        (which one process serves)."""
        mysql = self.engine.dialect.name in ("mysql", "mariadb")
        with contextlib.nullcontext() if mysql else self._local_lock, self.engine.connect() as conn:
            if mysql and conn.execute(text("SELECT GET_LOCK(:name, 10)"), {"name": _QUEUE_LOCK}).scalar() != 1:
                raise TimeoutError("the job queue lock was not free within 10 s")
            try:
                yield conn
                conn.commit()
            except BaseException:
                conn.rollback()
                raise
            finally:
                if mysql:
                    conn.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": _QUEUE_LOCK})

    def active_count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).where(jobs.c.state.in_(ACTIVE_STATES))).scalar_one())

    def get(self, job_id: str) -> JobRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(jobs).where(jobs.c.id == job_id)).first()
        return None if row is None else _record(row._mapping)

    def recent(self, limit: int, collection: str | None = None) -> list[JobRecord]:
        """Newest first; the web page shows these as progress bars."""
        query = select(jobs).order_by(jobs.c.created_at.desc()).limit(limit)
        if collection is not None:
            query = query.where(jobs.c.collection == collection)
        with self.engine.connect() as conn:
            return [_record(row._mapping) for row in conn.execute(query)]

    # --- the owner's side --------------------------------------------------------------------------------
    def claim(self, owner: str, lease_s: float) -> JobRecord | None:
        """The oldest queued job, now running under ``owner``; None when there is none. Two processes never
        claim the same job: SKIP LOCKED on MySQL/MariaDB, a conditional update on SQLite."""
        mysql = self.engine.dialect.name in ("mysql", "mariadb")
        query = select(jobs.c.id, jobs.c.attempts, jobs.c.runs).where(jobs.c.state == "queued")
        query = query.order_by(jobs.c.created_at).limit(1 if mysql else 8)
        with self.engine.begin() as conn:
            rows = conn.execute(query.with_for_update(skip_locked=True) if mysql else query).all()
            for job_id, attempts, runs in rows:
                now = utc_now()
                history = [*json.loads(runs or "[]"), _run(attempts + 1, owner)]
                claimed = conn.execute(
                    update(jobs)
                    .where(jobs.c.id == job_id, jobs.c.state == "queued")
                    .values(
                        state="running",
                        owner=owner,
                        attempts=attempts + 1,
                        lease_until=now + dt.timedelta(seconds=lease_s),
                        heartbeat_at=now,
                        started_at=func.coalesce(jobs.c.started_at, now),
                        runs=json.dumps(history),
                    )
                )
                if claimed.rowcount == 1:
                    break
            else:
                return None
        return self.get(job_id)

    def renew(self, owner: str, job_ids: list[str], lease_s: float) -> dict[str, bool]:
        """Extends the leases of the owner's running jobs; returns each job it still holds with whether a
        cancel was asked. A job missing from the answer was taken over (its lease had run out): stop it."""
        if not job_ids:
            return {}
        mine = (jobs.c.id.in_(job_ids), jobs.c.owner == owner, jobs.c.state == "running")
        now = utc_now()
        with self.engine.begin() as conn:
            conn.execute(
                update(jobs).where(*mine).values(lease_until=now + dt.timedelta(seconds=lease_s), heartbeat_at=now)
            )
            rows = conn.execute(select(jobs.c.id, jobs.c.cancel_requested).where(*mine)).all()
        return {job_id: bool(cancel) for job_id, cancel in rows}

    def update(self, job_id: str, held_by: str | None = None, **values: Any) -> bool:
        """Progress and results; with ``held_by``, only while that owner still holds the job (False if not)."""
        if "errors" in values:
            values["errors"] = json.dumps(values["errors"], ensure_ascii=False)
        if values.get("result") is not None:
            values["result"] = json.dumps(values["result"], ensure_ascii=False)
        values["heartbeat_at"] = utc_now()
        query = update(jobs).where(jobs.c.id == job_id)
        if held_by is not None:
            query = query.where(jobs.c.owner == held_by, jobs.c.state == "running")
        with self.engine.begin() as conn:
            return conn.execute(query.values(**values)).rowcount == 1

    def finish(self, job_id: str, owner: str, state: str, outcome: str, **values: Any) -> bool:
        """Ends the owner's attempt: a final state, or ``queued`` to hand the job to the next process."""
        with self.engine.begin() as conn:
            runs = conn.execute(select(jobs.c.runs).where(jobs.c.id == job_id)).scalar_one_or_none()
            history = _ended(json.loads(runs or "[]"), outcome)
            if state == "queued":
                values |= {"owner": None, "lease_until": None}
            elif state in FINISHED_STATES:
                values |= {"finished_at": utc_now(), "lease_until": None}
            values |= {"state": state, "runs": json.dumps(history, ensure_ascii=False)}
        return self.update(job_id, held_by=owner, **values)

    # --- any process's side ------------------------------------------------------------------------------
    def request_cancel(self, job_id: str) -> JobRecord | None:
        """A queued job is cancelled at once; a running one stops at its next batch, in whichever process."""
        now = utc_now()
        with self.engine.begin() as conn:
            conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.state == "queued")
                .values(state="cancelled", finished_at=now, message="cancelled before it started", heartbeat_at=now)
            )
            conn.execute(
                update(jobs).where(jobs.c.id == job_id, jobs.c.state == "running").values(cancel_requested=True)
            )
        return self.get(job_id)

    def expire_leases(self, reason: str) -> tuple[int, int]:
        """Running jobs whose lease ran out belong to a dead process: queued again while attempts remain,
        else failed with ``reason``. Safe to run in every process at once. Returns (requeued, failed)."""
        now = utc_now()
        expired = (jobs.c.state == "running", jobs.c.lease_until < now)
        requeued = failed = 0
        with self.engine.begin() as conn:
            rows = conn.execute(
                select(jobs.c.id, jobs.c.attempts, jobs.c.max_attempts, jobs.c.owner, jobs.c.runs).where(*expired)
            ).all()
            for job_id, attempts, max_attempts, owner, runs in rows:
                history = _ended(json.loads(runs or "[]"), f"lease expired: process {owner} stopped renewing it")
                values: dict[str, Any] = {"owner": None, "lease_until": None, "runs": json.dumps(history)}
                if attempts < max_attempts:
                    values["state"] = "queued"
                else:
                    tried = f" after {attempts} attempt{'s' if attempts != 1 else ''}"
                    values |= {"state": "failed", "message": reason + tried, "finished_at": now}
                changed = conn.execute(update(jobs).where(jobs.c.id == job_id, *expired).values(**values)).rowcount
                if changed and values["state"] == "queued":
                    requeued += 1
                elif changed:
                    failed += 1
        return requeued, failed


def _run(attempt: int, owner: str) -> dict[str, Any]:
    return {"attempt": attempt, "owner": owner, "started_at": utc_now().isoformat(), "ended_at": None, "outcome": None}


def _ended(history: list[dict[str, Any]], outcome: str) -> list[dict[str, Any]]:
    if history and history[-1].get("ended_at") is None:
        history[-1] |= {"ended_at": utc_now().isoformat(), "outcome": outcome}
    return history


def _record(mapping: Any) -> JobRecord:
    values = dict(mapping)
    values["params"] = json.loads(values["params"])
    values["errors"] = json.loads(values["errors"])
    values["result"] = json.loads(values["result"]) if values["result"] else None
    values["runs"] = json.loads(values["runs"] or "[]")
    values["cancel_requested"] = bool(values["cancel_requested"])
    return JobRecord(**values)
