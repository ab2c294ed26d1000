"""One process's access control: its key directory, its quota counter, its audit trail, and the background
thread that shares counts and last-used times through the metadata DB. Built in the lifespan before the stores
answer (environment keys work from the first request); ``attach`` hands it the database once they do."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time

from sqlalchemy.engine import Engine

from adapters.stores.sql.audit_store import AuditEntry, AuditFilter, AuditStore
from adapters.stores.sql.key_store import KeyStore
from adapters.stores.sql.rate_store import RateStore
from adapters.stores.sql.sql_schema import utc_now
from config import Settings
from operations.access.keys import KeyDirectory, Principal
from operations.access.quotas import RateLimiter

logger = logging.getLogger(__name__)

LAST_USED_EVERY_S = 10.0
PRUNE_EVERY_S = 300.0


class AccessControl:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.directory = KeyDirectory([k.get_secret_value().encode("utf-8") for k in settings.api_keys])
        self.limiter = RateLimiter(settings.rate_window_seconds)
        self.keys: KeyStore | None = None
        self.audit: AuditStore | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def attach(self, engine: Engine) -> None:
        self.keys, self.audit = KeyStore(engine), AuditStore(engine)
        self.directory.attach(self.keys)
        self.limiter.attach(RateStore(engine))
        self._thread = threading.Thread(target=self._flush_forever, name="access-flusher", daemon=True)
        self._thread.start()

    def limit_for(self, principal: Principal, scope: str, client: str | None) -> tuple[str, int] | None:
        """The quota subject and its limit per window for this request; None: no quota applies."""
        settings = self.settings
        if principal.operator:
            return None
        if principal.key_id is None:
            return f"addr:{client or '?'}", settings.rate_limit_anonymous
        if principal.rate_limit is not None:
            return f"key:{principal.key_id}", principal.rate_limit
        per_scope = {"read": settings.rate_limit_read, "write": settings.rate_limit_write}
        return f"key:{principal.key_id}:{scope}", per_scope.get(scope, settings.rate_limit_admin)

    def record(self, entry: AuditEntry) -> None:
        """Blocking. A trail that cannot be written is logged loudly, but never fails the request it describes."""
        if self.audit is None:
            logger.warning("audit entry not stored (metadata DB not open yet): %s", entry)
            return
        try:
            self.audit.add([entry])
        except Exception:
            logger.exception("audit entry not stored: %s", entry)

    def page(self, wanted: AuditFilter, limit: int) -> list[AuditEntry]:
        if self.audit is None:
            return []
        return self.audit.page(wanted, limit)

    def prune_audit(self) -> int:
        """Deletes the entries older than ``IMGSEARCH_AUDIT_RETENTION_DAYS`` (none when it is 0): the trail of a
        busy service, refused requests included, must not grow without end."""
        days = self.settings.audit_retention_days
        if self.audit is None or not days:
            return 0
        deleted = self.audit.prune(utc_now() - dt.timedelta(days=days))
        if deleted:
            logger.info("audit trail: %d entries older than %d days deleted", deleted, days)
        return deleted

    def _flush_forever(self) -> None:
        last_used = pruned = time.monotonic()
        while not self._stop.wait(self.settings.rate_flush_seconds):
            now = time.monotonic()
            try:
                self.limiter.flush()
                if now - last_used >= LAST_USED_EVERY_S:
                    self.directory.flush_last_used()
                    last_used = now
                if now - pruned >= PRUNE_EVERY_S:
                    self.limiter.prune()
                    self.prune_audit()
                    pruned = now
            except Exception as exc:  # the database is down: counts stay here until it answers
                logger.warning("access counters not shared this time: %s", exc)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            try:
                self.limiter.flush()
                self.directory.flush_last_used()
            except Exception as exc:
                logger.warning("access counters not shared at shutdown: %s", exc)
