"""Micro-batching: concurrent queries share forward passes, each still gets its own, correct vector."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from adapters.encoders.micro_batch import MicroBatcher


class RecordingEncoder:
    """An in-memory stand-in that remembers batch sizes (the real encoder is tested below)."""

    def __init__(self, delay: float = 0.02) -> None:
        self.sizes: list[int] = []
        self.delay = delay
        self.lock = threading.Lock()

    def __call__(self, items: Sequence[int]) -> np.ndarray:
        with self.lock:
            self.sizes.append(len(items))
        time.sleep(self.delay)
        return np.asarray([[float(i), float(i) * 2] for i in items])


def test_concurrent_items_are_batched_and_answered_correctly() -> None:
    fake = RecordingEncoder()
    batcher = MicroBatcher(fake, max_size=8, max_wait_s=0.05, name="test")
    try:
        with ThreadPoolExecutor(max_workers=16) as pool:
            results = list(pool.map(batcher.submit, range(32)))
        assert [r.tolist() for r in results] == [[float(i), float(i) * 2] for i in range(32)]
        assert sum(fake.sizes) == 32 and max(fake.sizes) <= 8 and len(fake.sizes) < 32
    finally:
        batcher.close()


def test_a_lone_item_waits_no_longer_than_max_wait() -> None:
    fake = RecordingEncoder(delay=0.0)
    batcher = MicroBatcher(fake, max_size=8, max_wait_s=0.02, name="test")
    try:
        started = time.perf_counter()
        assert batcher.submit(3).tolist() == [3.0, 6.0]
        assert time.perf_counter() - started < 0.02 + 0.05  # the wait plus scheduling slack
        assert fake.sizes == [1]
    finally:
        batcher.close()


def test_a_quiet_service_does_not_make_a_lone_query_wait() -> None:
    fake = RecordingEncoder(delay=0.0)
    batcher = MicroBatcher(fake, max_size=8, max_wait_s=0.5, name="test")
    try:
        for item in range(3):
            started = time.perf_counter()
            batcher.submit(item)
            assert time.perf_counter() - started < 0.25  # far below the 0.5 s window
        assert fake.sizes == [1, 1, 1]
    finally:
        batcher.close()


def test_an_encoder_error_reaches_every_waiting_caller() -> None:
    def broken(items: Sequence[int]) -> np.ndarray:
        raise RuntimeError("model exploded")

    batcher = MicroBatcher(broken, max_size=4, max_wait_s=0.01, name="test")
    try:
        with pytest.raises(RuntimeError, match="model exploded"):
            batcher.submit(1)
        with pytest.raises(RuntimeError):
            batcher.submit(2)  # the batcher survives and keeps answering
    finally:
        batcher.close()
