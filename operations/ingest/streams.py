"""Ordered maps over streams that never read far ahead, so a folder of a million files streams through a job."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

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
