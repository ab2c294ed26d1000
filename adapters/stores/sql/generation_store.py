"""A collection's vector generations: the Milvus collection that serves its name, and at most one other (being
built by a re-embed, ready, or the previous one kept after a switch). Every change is one conditional update of
the collection's row, so a switch happens once however many processes ask for it, and every process reads the
serving model and its vectors from the same row."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from adapters.stores.sql.metadata_store import CollectionRecord
from adapters.stores.sql.sql_schema import collections

BUILDING, READY, PREVIOUS = "building", "ready", "previous"
_CLEARED = {"next_model": None, "next_dim": None, "next_vectors": None, "next_state": None}


class GenerationStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def get(self, name: str) -> CollectionRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(collections).where(collections.c.name == name)).first()
        return CollectionRecord(**row._mapping) if row else None

    def begin(self, name: str, model: str, dim: int, vectors: str) -> bool:
        """Starts building ``vectors`` for ``model``; False when the collection already has another generation."""
        values = {"next_model": model, "next_dim": dim, "next_vectors": vectors, "next_state": BUILDING}
        return self._update(name, values, collections.c.next_state.is_(None))

    def mark_ready(self, name: str, vectors: str) -> bool:
        return self._update(
            name, {"next_state": READY}, collections.c.next_vectors == vectors, collections.c.next_state == BUILDING
        )

    def swap(self, name: str, expect_state: str, new_state: str, serving: str | None = None) -> bool:
        """The other generation serves, the serving one becomes the other (``new_state``); only from
        ``expect_state`` (and, with ``serving``, only while that Milvus collection serves). Both sides are read
        and written in one transaction, the row locked on MySQL."""
        with self.engine.begin() as conn:
            query = select(collections).where(collections.c.name == name)
            if self.engine.dialect.name in ("mysql", "mariadb"):
                query = query.with_for_update()
            row = conn.execute(query).first()
            if row is None:
                return False
            record = CollectionRecord(**row._mapping)
            if record.next_state != expect_state or (serving is not None and record.vector_collection != serving):
                return False
            values: dict[str, Any] = {
                "model": record.next_model,
                "dim": record.next_dim,
                "vectors": record.next_vectors,
                "next_model": record.model,
                "next_dim": record.dim,
                "next_vectors": record.vector_collection,
                "next_state": new_state,
            }
            changed = conn.execute(
                update(collections)
                .where(collections.c.name == name, collections.c.next_state == expect_state)
                .values(**values)
            )
            return changed.rowcount == 1

    def clear(self, name: str, states: tuple[str, ...]) -> str | None:
        """Forgets the other generation when it is in one of ``states``; returns its Milvus collection (to drop),
        or None when there was none in those states."""
        record = self.get(name)
        if record is None or record.next_state not in states or record.next_vectors is None:
            return None
        done = self._update(
            name, _CLEARED, collections.c.next_vectors == record.next_vectors, collections.c.next_state.in_(states)
        )
        return record.next_vectors if done else None

    def _update(self, name: str, values: dict[str, Any], *conditions: Any) -> bool:
        with self.engine.begin() as conn:
            changed = conn.execute(update(collections).where(collections.c.name == name, *conditions).values(**values))
        return changed.rowcount == 1
