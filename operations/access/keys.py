"""Who is asking: API keys with scopes, the collections they may touch, an expiry and a quota.

Keys created here live in the metadata DB as a SHA-256 (a key is 256 random bits, so a slow password hash would
add nothing); keys from ``IMGSEARCH_API_KEYS`` stay, as admin keys of every collection. Each process keeps what it
looked up for ``ttl`` seconds, so a revoked key is refused everywhere within that time without a restart, and an
expiry is checked against the clock on every request."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import secrets
import threading
import time
from dataclasses import dataclass

from adapters.stores.sql.key_store import KeyRecord, KeyStore
from adapters.stores.sql.sql_schema import utc_now
from operations.errors import Conflict, Forbidden, InvalidInput, NotFound

logger = logging.getLogger(__name__)

SCOPES = ("read", "write", "admin")  # each includes the ones before it
_RANK = {scope: rank for rank, scope in enumerate(SCOPES)}
KEY_PREFIX = "isk_"
LOOKUP_TTL_S = 2.0


@dataclass(frozen=True)
class Principal:
    """The caller of one request: a key's name and rights, or an anonymous client (name None)."""

    name: str | None
    scopes: frozenset[str]
    collections: frozenset[str] | None = None  # None: every collection
    key_id: int | None = None
    rate_limit: int | None = None
    expires_at: dt.datetime | None = None
    operator: bool = False  # a key from IMGSEARCH_API_KEYS (or an open service): no quota

    def can(self, scope: str) -> bool:
        return any(_RANK[held] >= _RANK[scope] for held in self.scopes)

    def may_touch(self, collection: str) -> bool:
        return self.collections is None or collection in self.collections

    @property
    def top_scope(self) -> str | None:
        return max(self.scopes, key=_RANK.__getitem__) if self.scopes else None


ANONYMOUS = Principal(None, frozenset())
OPEN = Principal(None, frozenset(SCOPES), operator=True)  # no key exists anywhere: a laptop install


class KeyRefused(Forbidden):
    """A presented key that is not (or no longer) valid; ``key_name`` when it was a key (revoked or expired)."""

    def __init__(self, message: str, key_name: str | None = None) -> None:
        super().__init__(message)
        self.key_name = key_name


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class NewKey:
    key: str  # shown once, never stored
    record: KeyRecord


def naive_utc(value: dt.datetime) -> dt.datetime:
    """UTC without a zone, as the DB columns keep it; a time out of range is bad input, not a crash."""
    if value.tzinfo is None:
        return value
    try:
        return value.astimezone(dt.UTC).replace(tzinfo=None)
    except OverflowError as exc:
        raise InvalidInput(f"{value.isoformat()} is out of range") from exc


def normalized_scopes(scopes: list[str]) -> list[str]:
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise InvalidInput(f"scopes must be some of {', '.join(SCOPES)}; got {', '.join(scopes) or 'none'}")
    return [scope for scope in SCOPES if scope in scopes]


class KeyDirectory:
    """Resolves presented keys for one process: environment keys in constant time, stored keys through a small
    cache. ``attach`` gives it the metadata DB once the stores are up; before that only environment keys work."""

    def __init__(self, env_keys: list[bytes], ttl: float = LOOKUP_TTL_S) -> None:
        self.env_keys = env_keys
        self.ttl = ttl
        self.store: KeyStore | None = None
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, KeyRecord | None]] = {}
        self._stored_count: tuple[float, int] = (0.0, 0)
        self._used: dict[int, dt.datetime] = {}

    def attach(self, store: KeyStore) -> None:
        self.store = store

    # -- the per-request path: no I/O while the cache is fresh ------------------------------------------------

    def required_now(self) -> bool | None:
        """Whether keys are asked for (any environment key, or a usable stored one); None: look it up first."""
        if self.env_keys:
            return True
        if self.store is None:
            return False
        fetched, count = self._stored_count
        return count > 0 if time.monotonic() - fetched < self.ttl else None

    def refresh_required(self) -> bool:
        """Blocking: counts the usable stored keys."""
        if self.env_keys:
            return True
        if self.store is None:
            return False
        count = self.store.usable_count(utc_now())
        self._stored_count = (time.monotonic(), count)
        return count > 0

    def cached(self, presented: str) -> Principal | None:
        """The caller when the key is an environment key or fresh in the cache; None: ``lookup`` it."""
        number = self.env_key_number(presented)
        if number is not None:
            return Principal(f"env:{number}", frozenset(SCOPES), operator=True)
        entry = self._cache.get(hash_key(presented))
        if entry is None or time.monotonic() - entry[0] >= self.ttl:
            return None
        return self._principal(entry[1])

    def lookup(self, presented: str) -> Principal:
        """Blocking: reads the key's row (the caller already tried ``cached``)."""
        if self.store is None:
            raise KeyRefused("the API key is not valid")
        key_hash = hash_key(presented)
        record = self.store.by_hash(key_hash)
        with self._lock:
            if len(self._cache) > 10_000:  # random keys from a scanner must not grow it without end
                self._cache.clear()
            self._cache[key_hash] = (time.monotonic(), record)
        return self._principal(record)

    def _principal(self, record: KeyRecord | None) -> Principal:
        if record is None:
            raise KeyRefused("the API key is not valid")
        if record.revoked_at is not None:
            raise KeyRefused(f"the API key {record.name!r} was revoked", record.name)
        now = utc_now()
        if record.expired(now):
            raise KeyRefused(
                f"the API key {record.name!r} expired at {record.expires_at:%Y-%m-%d %H:%M} UTC", record.name
            )
        self._used[record.id] = now
        collections = frozenset(record.collections) if record.collections is not None else None
        return Principal(
            record.name, frozenset(record.scopes), collections, record.id, record.rate_limit, record.expires_at
        )

    def env_key_number(self, presented: str) -> int | None:
        """Which environment key (1-based) ``presented`` is, or None; every key is compared, so the time does not
        tell which one matched."""
        candidate = presented.encode("utf-8", "surrogatepass")
        number = None
        for index, key in enumerate(self.env_keys, 1):
            if hmac.compare_digest(candidate, key):
                number = index
        return number

    def flush_last_used(self) -> None:
        """Writes the keys' last-used times (called every few seconds by the access flusher, not per request)."""
        used, self._used = self._used, {}
        if self.store is not None and used:
            self.store.touch(used)

    def forget(self) -> None:
        """Drops the cache: the next request of each key reads its row (after a change made in this process)."""
        with self._lock:
            self._cache.clear()
        self._stored_count = (0.0, 0)


# -- use cases of /keys and `imgsearch keys` -------------------------------------------------------------------


def create(
    store: KeyStore,
    name: str,
    scopes: list[str],
    collections: list[str] | None = None,
    expires_at: dt.datetime | None = None,
    rate_limit: int | None = None,
) -> NewKey:
    name = name.strip()
    if not name or len(name) > 64:
        raise InvalidInput("a key's name is 1 to 64 characters")
    if expires_at is not None:
        expires_at = naive_utc(expires_at)
        if expires_at <= utc_now():
            raise InvalidInput("expires_at is in the past")
    if rate_limit is not None and rate_limit < 0:
        raise InvalidInput("rate_limit is a number of requests per window, 0 for none")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    cleaned = sorted({c.strip() for c in collections if c.strip()}) if collections is not None else None
    record = store.add(name, key[:10], hash_key(key), normalized_scopes(scopes), cleaned, rate_limit, expires_at)
    if record is None:
        raise Conflict(f"an active key is already named {name!r}: revoke it first or choose another name")
    logger.info("API key %r created: scopes %s, collections %s", name, ",".join(record.scopes), cleaned or "all")
    return NewKey(key, record)


def revoke(store: KeyStore, name_or_id: str) -> KeyRecord:
    record = store.revoke(name_or_id)
    if record is None:
        raise NotFound(f"no active API key named {name_or_id!r}")
    logger.info("API key %r revoked", record.name)
    return record
