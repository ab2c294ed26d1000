"""Background job records in the metadata database, so any replica (or a restarted one) can report them."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, insert, select, update

from adapters.sql_schema import jobs, utc_now

ACTIVE_STATES = ("queued", "running")


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


class JobStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(self, kind: str, collection: str, params: dict[str, Any]) -> JobRecord:
        job_id = uuid.uuid4().hex
        with self.engine.begin() as conn:
            conn.execute(
                insert(jobs).values(
                    id=job_id,
                    kind=kind,
                    collection=collection,
                    state="queued",
                    params=json.dumps(params),
                    done=0,
                    loaded=0,
                    skipped=0,
                    failed=0,
                    errors="[]",
                    created_at=utc_now(),
                    heartbeat_at=utc_now(),
                )
            )
        record = self.get(job_id)
        assert record is not None
        return record

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

    def update(self, job_id: str, **values: Any) -> None:
        if "errors" in values:
            values["errors"] = json.dumps(values["errors"], ensure_ascii=False)
        if values.get("result") is not None:
            values["result"] = json.dumps(values["result"], ensure_ascii=False)
        values["heartbeat_at"] = utc_now()
        with self.engine.begin() as conn:
            conn.execute(update(jobs).where(jobs.c.id == job_id).values(**values))

    def fail_stale(self, stale_after: dt.timedelta, reason: str, exclude: Collection[str] = ()) -> int:
        """Jobs whose worker stopped beating (a crash or restart) are marked failed, never left 'running';
        ``exclude`` holds the caller's own jobs, which are alive whatever their heartbeat says."""
        cutoff = utc_now() - stale_after
        query = update(jobs).where(jobs.c.state.in_(ACTIVE_STATES), jobs.c.heartbeat_at < cutoff)
        if exclude:
            query = query.where(jobs.c.id.not_in(list(exclude)))
        with self.engine.begin() as conn:
            result = conn.execute(query.values(state="failed", message=reason, finished_at=utc_now()))
        return int(result.rowcount or 0)


def _record(mapping: Any) -> JobRecord:
    values = dict(mapping)
    values["params"] = json.loads(values["params"])
    values["errors"] = json.loads(values["errors"])
    values["result"] = json.loads(values["result"]) if values["result"] else None
    return JobRecord(**values)
