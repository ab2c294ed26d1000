"""Request quotas in fixed windows, shared by the service processes on one metadata DB.

Counting every request in the database would cost a write per request; instead each process counts in memory
and a flusher adds its counts to the shared row every ``flush_s`` and reads back the totals of all processes. A
request is let through while the last total read plus what this process counted since is under the limit, so
processes can together overshoot a limit by what they admit within one flush interval (a fraction of a second)
and no more. Windows are fixed (``window_s``): a refusal says when the window ends (``Retry-After``)."""

from __future__ import annotations

import logging
import math
import threading
import time

from adapters.stores.sql.rate_store import RateStore, Slot

logger = logging.getLogger(__name__)


class RateLimiter:
    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self.store: RateStore | None = None
        self._lock = threading.Lock()
        self._pending: dict[Slot, int] = {}
        self._totals: dict[Slot, int] = {}  # the latest totals read from the store (every process's)
        # Counts on their way to the store: still this process's until the totals read back include them (a
        # request during a flush would otherwise see neither).
        self._flushing: dict[Slot, int] = {}

    def attach(self, store: RateStore) -> None:
        self.store = store

    def hit(self, subject: str, limit: int, now: float | None = None) -> float | None:
        """Counts one request; None when it may go on, else the seconds until the window ends."""
        if limit <= 0:
            return None
        now = time.time() if now is None else now
        window = int(now // self.window_s)
        slot = (subject, window)
        with self._lock:
            used = self._totals.get(slot, 0) + self._flushing.get(slot, 0) + self._pending.get(slot, 0)
            if used >= limit:
                return max(1.0, math.ceil((window + 1) * self.window_s - now))
            self._pending[slot] = self._pending.get(slot, 0) + 1
            self._totals.setdefault(slot, 0)
        return None

    def known(self, subject: str, now: float | None = None) -> bool:
        """Whether this process has the shared count of ``subject``'s current window (else ``load`` it first)."""
        now = time.time() if now is None else now
        return self.store is None or (subject, int(now // self.window_s)) in self._totals

    def load(self, subject: str, now: float | None = None) -> None:
        """Blocking: reads the shared count of a subject this process has not counted yet in this window, so a
        key that moves to another process is held to what it used in the first."""
        now = time.time() if now is None else now
        slot = (subject, int(now // self.window_s))
        if self.store is None:
            return
        total = self.store.add_and_read({}, [slot])[slot]
        with self._lock:
            self._totals[slot] = max(total, self._totals.get(slot, 0))

    def flush(self, now: float | None = None) -> None:
        """Blocking: adds this process's counts to the shared ones and reads every process's totals back."""
        now = time.time() if now is None else now
        current = int(now // self.window_s)
        with self._lock:
            pending, self._pending = self._pending, {}
            self._flushing = pending
            # Slots of ended windows decide nothing more; the current window's are read back.
            self._totals = {slot: total for slot, total in self._totals.items() if slot[1] >= current}
            wanted = list(self._totals)
        if self.store is None:
            with self._lock:
                for slot, count in pending.items():
                    if slot[1] >= current:
                        self._totals[slot] = self._totals.get(slot, 0) + count
                self._flushing = {}
            return
        try:
            totals = self.store.add_and_read(pending, wanted)
        except Exception:
            with self._lock:  # counted again next time: a database hiccup loses no request
                for slot, count in pending.items():
                    self._pending[slot] = self._pending.get(slot, 0) + count
                self._flushing = {}
            raise
        with self._lock:
            for slot, total in totals.items():
                if slot[1] >= current:
                    self._totals[slot] = total
            self._flushing = {}

    def prune(self, now: float | None = None) -> None:
        if self.store is not None:
            now = time.time() if now is None else now
            self.store.prune(int(now // self.window_s) - 1)
