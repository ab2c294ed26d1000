"""The audit trail: one row per data-changing or refused request, paged newest first by id."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass

from sqlalchemy import delete, func, insert, select
from sqlalchemy.engine import Engine

from adapters.stores.sql.sql_schema import audit_log


@dataclass(frozen=True)
class AuditEntry:
    at: dt.datetime
    key_name: str | None
    method: str
    route: str
    path: str
    collection: str | None
    target: str | None
    status: int
    outcome: str
    client: str | None
    request_id: str | None
    id: int | None = None


@dataclass(frozen=True)
class AuditFilter:
    key_name: str | None = None
    collection: str | None = None
    outcome: str | None = None
    route: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    before_id: int | None = None  # the page after the one whose last entry had this id


PRUNE_BATCH = 5000  # rows per delete: short transactions, so writers of new entries never wait long


class AuditStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, entries: list[AuditEntry]) -> None:
        if not entries:
            return
        rows = [{k: v for k, v in asdict(entry).items() if k != "id"} for entry in entries]
        with self.engine.begin() as conn:
            conn.execute(insert(audit_log), rows)

    def page(self, wanted: AuditFilter, limit: int) -> list[AuditEntry]:
        query = select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
        for column, value in (
            (audit_log.c.key_name, wanted.key_name),
            (audit_log.c.collection, wanted.collection),
            (audit_log.c.outcome, wanted.outcome),
            (audit_log.c.route, wanted.route),
        ):
            if value is not None:
                query = query.where(column == value)
        if wanted.since is not None:
            query = query.where(audit_log.c.at >= wanted.since)
        if wanted.until is not None:
            query = query.where(audit_log.c.at < wanted.until)
        if wanted.before_id is not None:
            query = query.where(audit_log.c.id < wanted.before_id)
        with self.engine.connect() as conn:
            return [AuditEntry(**row._mapping) for row in conn.execute(query)]

    def prune(self, before: dt.datetime) -> int:
        """Deletes the entries written before ``before``, oldest first, a batch of ids per transaction."""
        with self.engine.connect() as conn:
            lowest, highest = conn.execute(
                select(func.min(audit_log.c.id), func.max(audit_log.c.id)).where(audit_log.c.at < before)
            ).one()
        deleted = 0
        if lowest is None:
            return 0
        for start in range(lowest, highest + 1, PRUNE_BATCH):
            with self.engine.begin() as conn:
                deleted += conn.execute(
                    delete(audit_log).where(
                        audit_log.c.id >= start, audit_log.c.id < start + PRUNE_BATCH, audit_log.c.at < before
                    )
                ).rowcount
        return deleted
