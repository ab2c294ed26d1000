"""Micro-batching: single queries that arrive within a short window are encoded as one batch.

On a CPU a batch of 8 texts costs far less than 8 single passes, so under concurrent load the encoder
does more queries per second; a lone query waits at most ``max_wait`` for company. The wait is adaptive: after
a batch of one with nothing queued (a quiet service) the next query runs at once, so one client pays nothing.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, Generic, TypeVar

logger = logging.getLogger(__name__)
T = TypeVar("T")
_STOP = object()


class MicroBatcher(Generic[T]):
    def __init__(
        self, encode: Callable[[Sequence[T]], Sequence[Any]], max_size: int, max_wait_s: float, name: str
    ) -> None:
        self._encode = encode
        self.max_size = max_size
        self.max_wait_s = max_wait_s
        self._queue: queue.Queue[Any] = queue.Queue()
        self.batches = 0
        self.items = 0
        self._last_size = 0
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: T) -> Any:
        """Encode one item (blocking); returns its row."""
        future: Future[Any] = Future()
        self._queue.put((item, future))
        return future.result()

    def _collect(self, first: tuple[T, Future]) -> tuple[list[tuple[T, Future]], bool]:
        busy = self._last_size > 1 or not self._queue.empty()
        batch, deadline = [first], time.monotonic() + (self.max_wait_s if busy else 0.0)
        while len(batch) < self.max_size:
            remaining = deadline - time.monotonic()
            try:
                entry = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if entry is _STOP:
                return batch, True
            batch.append(entry)
        return batch, False

    def _loop(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                return
            batch, stopping = self._collect(first)
            try:
                rows = self._encode([item for item, _ in batch])
            except Exception as exc:
                for _, future in batch:
                    future.set_exception(exc)
                continue
            self.batches += 1
            self.items += len(batch)
            self._last_size = len(batch)
            for (_, future), row in zip(batch, rows, strict=True):
                future.set_result(row)

    def close(self) -> None:
        self._queue.put(_STOP)
        self._thread.join(timeout=10)
