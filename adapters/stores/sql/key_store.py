"""API keys in the metadata DB: rows hold a hash of each key, never the key, so a copy of the database or a
backup gives nobody access."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Engine

from adapters.stores.sql.sql_schema import api_keys, utc_now


@dataclass(frozen=True)
class KeyRecord:
    id: int
    name: str
    prefix: str
    scopes: tuple[str, ...]
    collections: tuple[str, ...] | None  # None: every collection
    rate_limit: int | None
    expires_at: dt.datetime | None
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None

    def expired(self, now: dt.datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now


def _record(row: object) -> KeyRecord:
    values = dict(row._mapping)  # type: ignore[attr-defined]
    values.pop("key_hash", None)
    values["scopes"] = tuple(values["scopes"].split(","))
    collections = values["collections"]
    values["collections"] = tuple(json.loads(collections)) if collections is not None else None
    return KeyRecord(**values)


class KeyStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(
        self,
        name: str,
        prefix: str,
        key_hash: str,
        scopes: list[str],
        collections: list[str] | None,
        rate_limit: int | None,
        expires_at: dt.datetime | None,
    ) -> KeyRecord | None:
        """The new key's row; None when an active key already has this name (names are how people revoke)."""
        with self.engine.begin() as conn:
            taken = conn.execute(
                select(api_keys.c.id).where(api_keys.c.name == name, api_keys.c.revoked_at.is_(None))
            ).first()
            if taken is not None:
                return None
            values = {
                "name": name,
                "prefix": prefix,
                "key_hash": key_hash,
                "scopes": ",".join(scopes),
                "collections": json.dumps(collections, ensure_ascii=False) if collections is not None else None,
                "rate_limit": rate_limit,
                "expires_at": expires_at,
                "created_at": utc_now(),
            }
            key_id = conn.execute(insert(api_keys).values(**values)).inserted_primary_key[0]
            row = conn.execute(select(api_keys).where(api_keys.c.id == key_id)).one()
        return _record(row)

    def by_hash(self, key_hash: str) -> KeyRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(api_keys).where(api_keys.c.key_hash == key_hash)).first()
        return _record(row) if row else None

    def listed(self, include_revoked: bool = False) -> list[KeyRecord]:
        query = select(api_keys).order_by(api_keys.c.id)
        if not include_revoked:
            query = query.where(api_keys.c.revoked_at.is_(None))
        with self.engine.connect() as conn:
            return [_record(row) for row in conn.execute(query)]

    def usable_count(self, now: dt.datetime) -> int:
        """Keys that are neither revoked nor expired: while there is one, the service asks for keys."""
        query = select(func.count()).where(
            api_keys.c.revoked_at.is_(None), (api_keys.c.expires_at.is_(None)) | (api_keys.c.expires_at > now)
        )
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def revoke(self, name_or_id: str) -> KeyRecord | None:
        """Revokes the active key of that name (or id); None when there is none."""
        with self.engine.begin() as conn:
            match = api_keys.c.name == name_or_id
            if name_or_id.isdigit() and len(name_or_id) <= 18:
                match = match | (api_keys.c.id == int(name_or_id))
            row = conn.execute(select(api_keys).where(match, api_keys.c.revoked_at.is_(None))).first()
            if row is None:
                return None
            conn.execute(update(api_keys).where(api_keys.c.id == row.id).values(revoked_at=utc_now()))
            row = conn.execute(select(api_keys).where(api_keys.c.id == row.id)).one()
        return _record(row)

    def touch(self, used: dict[int, dt.datetime]) -> None:
        """Last-used times, written in one transaction by the process's flusher (not once per request)."""
        if not used:
            return
        with self.engine.begin() as conn:
            for key_id, when in used.items():
                conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(last_used_at=when))
