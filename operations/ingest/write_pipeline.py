"""Batches through ordered stages, one thread per stage, so a bulk write keeps both cores busy.

A load spends its time in three places that can overlap: Python reading and checking the next batch (the
caller), MySQL storing the previous one's rows, and Milvus storing the one before's vectors. Each stage runs on
its own single thread, so batches leave every stage in the order they entered it and every batch still goes
through the write order of ``operations.ingest.writes`` (rows pending → vectors → rows indexed). At most ``depth``
batches are in flight; the caller learns of finished batches, in order, on its own thread (``on_done``), so
progress counters are only ever touched there.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

logger = logging.getLogger(__name__)


class StageSkipped(RuntimeError):
    """A batch's stage did not run because an earlier batch failed."""


class OrderedStages:
    def __init__(
        self,
        stages: Sequence[Callable[[Any], Any]],
        on_done: Callable[[Any, Any], None],
        depth: int = 3,
        name: str = "stage",
    ) -> None:
        self._stages = list(stages)
        self._on_done = on_done
        self._depth = max(1, depth)
        self._executors = [
            ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{name}-{i}") for i in range(len(self._stages))
        ]
        self._in_flight: deque[tuple[Any, list[Future]]] = deque()
        # Set by the first stage that fails: no stage of a later batch starts after it, so what the caller is
        # told was stored (on_done) is exactly what was stored.
        self._failed = threading.Event()

    def __enter__(self) -> OrderedStages:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:  # type: ignore[no-untyped-def]
        try:
            if exc_type is None:
                self.drain()
            else:  # the caller failed: batches in flight finish (each is a consistent unit) and are reported
                self._settle()
        finally:
            for executor in self._executors:
                executor.shutdown(wait=True)

    def in_flight(self) -> list[Any]:
        """The tags of batches submitted but not yet reported done: their writes may not be visible yet."""
        return [tag for tag, _ in self._in_flight]

    def submit(self, tag: Any, item: Any) -> None:
        """Start ``item`` through the stages; first waits for the oldest batch while ``depth`` are in flight."""
        while len(self._in_flight) >= self._depth:
            self._finish_oldest()
        futures: list[Future] = []
        for executor, stage in zip(self._executors, self._stages, strict=True):
            futures.append(executor.submit(self._run, stage, futures[-1] if futures else None, item))
        self._in_flight.append((tag, futures))

    def drain(self) -> None:
        while self._in_flight:
            self._finish_oldest()

    def _run(self, stage: Callable[[Any], Any], previous: Future | None, item: Any) -> Any:
        """One stage of one batch, on that stage's thread, once the batch's previous stage is done."""
        value = item if previous is None else previous.result()
        if self._failed.is_set():
            raise StageSkipped("an earlier batch failed")
        try:
            return stage(value)
        except BaseException:
            self._failed.set()
            raise

    def _finish_oldest(self) -> None:
        tag, futures = self._in_flight.popleft()
        try:
            result = futures[-1].result()
        except BaseException:
            self._settle()
            raise
        self._on_done(tag, result)

    def _settle(self) -> None:
        """Wait for every batch in flight; report those that were stored, in order, and drop the rest."""
        while self._in_flight:
            tag, futures = self._in_flight.popleft()
            try:
                result = futures[-1].result()
            except BaseException as exc:  # the first failure is the one the caller sees
                logger.debug("batch %s not stored after an earlier failure: %s", tag, exc)
                continue
            self._on_done(tag, result)
