"""Request counts per quota subject and window, shared by every service process on one metadata DB. Each process
adds what it counted since its last flush in one statement per subject (an atomic ``count = count + n``), and
reads back the totals: the processes see each other's use within one flush interval."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sqlalchemy import delete, select, tuple_
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine

from adapters.stores.sql.sql_schema import chunks, rate_counts

Slot = tuple[str, int]  # (subject, window number)


class RateStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._mysql = engine.dialect.name in ("mysql", "mariadb")

    def add_and_read(self, added: Mapping[Slot, int], wanted: Iterable[Slot]) -> dict[Slot, int]:
        """Adds ``added`` and returns the totals of those slots and of ``wanted`` (slots other processes may use)."""
        slots = sorted(set(added) | set(wanted))
        totals: dict[Slot, int] = {}
        with self.engine.begin() as conn:
            for (subject, window), count in sorted(added.items()):  # one order: no deadlock between processes
                if count <= 0:
                    continue
                values = {"subject": subject, "window_no": window, "count": count}
                if self._mysql:
                    statement = mysql_insert(rate_counts).values(**values)
                    statement = statement.on_duplicate_key_update(count=rate_counts.c.count + statement.inserted.count)
                else:
                    statement = sqlite_insert(rate_counts).values(**values)
                    statement = statement.on_conflict_do_update(
                        index_elements=["subject", "window_no"], set_={"count": rate_counts.c.count + count}
                    )
                conn.execute(statement)
            for part in chunks(slots, 200):
                rows = conn.execute(
                    select(rate_counts).where(tuple_(rate_counts.c.subject, rate_counts.c.window_no).in_(part))
                )
                totals.update({(row.subject, row.window_no): row.count for row in rows})
        return {slot: totals.get(slot, 0) for slot in slots}

    def prune(self, before_window: int) -> int:
        """Drops the counts of windows that ended (they decide nothing any more)."""
        with self.engine.begin() as conn:
            return conn.execute(delete(rate_counts).where(rate_counts.c.window_no < before_window)).rowcount
