"""Whether an external store answers, told once per change: one log line when it goes down, one when it comes
back (with how long it was down), so an outage of a minute does not become a thousand tracebacks."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)


class StoreHealth:
    """Fed by the adapter around each call: ``failed`` when the store could not be reached, ``succeeded`` when a
    call went through. Thread-safe; the success path costs one attribute read while the store is up."""

    def __init__(self, label: str, on_back: Callable[[], None] | None = None) -> None:
        self.label = label
        self.on_back = on_back  # called once each time the store comes back
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self.reason: str | None = None

    @property
    def down(self) -> bool:
        return self._down_since is not None

    def down_for(self) -> float:
        since = self._down_since
        return 0.0 if since is None else time.monotonic() - since

    def failed(self, reason: str) -> None:
        with self._lock:
            self.reason = reason
            if self._down_since is None:
                self._down_since = time.monotonic()
                logger.warning("%s is down: %s", self.label, reason)

    def succeeded(self) -> None:
        if self._down_since is None:
            return
        with self._lock:
            if self._down_since is None:
                return
            took = time.monotonic() - self._down_since
            self._down_since, self.reason = None, None
        logger.warning("%s is back after %.1f s down", self.label, took)
        if self.on_back is not None:
            self.on_back()
