"""Ordered maps over streams that never read far ahead, so a folder of a million files streams through a job."""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def bounded_map(pool: ThreadPoolExecutor, fn: Callable[[T], R], items: Iterable[T], lookahead: int) -> Iterator[R]:
    """Like ``pool.map`` but never more than ``lookahead`` items ahead, so huge folders stream."""
    window: deque[Future[R]] = deque()
    for item in items:
        window.append(pool.submit(fn, item))
        if len(window) >= lookahead:
            yield window.popleft().result()
    while window:
        yield window.popleft().result()


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


_DONE = object()


def run_ahead(items: Iterable[T], depth: int, name: str = "ahead") -> Iterator[T]:
    """``items`` produced by a thread of their own, at most ``depth`` ahead of the consumer: the encoder works on
    the next batch while the job writes the last one (in turn, the two left the cores idle half the time). An
    error of the producer is raised here; a consumer that stops early stops the producer at its next item."""
    handoff: queue.Queue[Any] = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(value: Any) -> bool:
        while not stop.is_set():
            try:
                handoff.put(value, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as exc:  # handed to the consumer, raised there
            put(_Failed(exc))

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            value = handoff.get()
            if value is _DONE:
                return
            if isinstance(value, _Failed):
                raise value.error
            yield value
    finally:
        stop.set()
        thread.join()
