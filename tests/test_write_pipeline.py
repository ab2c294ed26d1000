"""The bulk-write pipeline: batches overlap across stages, yet leave in order and report exactly what was stored."""

from __future__ import annotations

import threading

import pytest

from operations.ingest.write_pipeline import OrderedStages

WAIT = 10.0  # seconds; a stage that waits this long means the stages did not overlap


def test_batches_overlap_across_stages_and_finish_in_order_on_the_callers_thread() -> None:
    second_batch_started = threading.Event()
    log: list[tuple[str, int]] = []
    reported: list[tuple[int, int, bool]] = []

    def rows(batch: int) -> int:
        if batch == 2:
            second_batch_started.set()
        log.append(("rows", batch))
        return batch

    def vectors(batch: int) -> int:
        # Batch 1's vectors wait until batch 2's rows have started: only possible if the stages run side by side.
        if batch == 1:
            assert second_batch_started.wait(WAIT), "the second stage of batch 1 blocked the first stage of batch 2"
        log.append(("vectors", batch))
        return batch * 10

    def done(tag: int, result: int) -> None:
        reported.append((tag, result, threading.current_thread() is threading.main_thread()))

    with OrderedStages([rows, vectors], on_done=done, depth=3) as pipeline:
        for batch in range(1, 6):
            pipeline.submit(batch, batch)
        assert len(pipeline.in_flight()) <= 3
    assert reported == [(b, b * 10, True) for b in range(1, 6)]
    assert [b for stage, b in log if stage == "vectors"] == [1, 2, 3, 4, 5]
    assert [b for stage, b in log if stage == "rows"] == [1, 2, 3, 4, 5]


def test_a_failed_stage_stops_later_batches_and_only_stored_batches_are_reported() -> None:
    stored: list[int] = []
    reported: list[int] = []

    def vectors(batch: int) -> int:
        if batch == 2:
            raise ConnectionError("Milvus went away")
        stored.append(batch)
        return batch

    pipeline = OrderedStages([lambda b: b, vectors], on_done=lambda tag, _: reported.append(tag))
    with pytest.raises(ConnectionError, match="Milvus went away"), pipeline:
        for batch in range(1, 8):
            pipeline.submit(batch, batch)
    # Batch 3 and later may have passed the first stage, but none reached the second after batch 2 failed.
    assert stored == [1] and reported == [1]


def test_when_the_caller_fails_batches_in_flight_finish_and_are_reported() -> None:
    reported: list[int] = []
    release = threading.Event()

    def slow(batch: int) -> int:
        release.wait(WAIT)
        return batch

    pipeline = OrderedStages([slow], on_done=lambda tag, _: reported.append(tag), depth=4)
    with pytest.raises(ValueError, match="bad line"), pipeline:
        pipeline.submit(1, 1)
        pipeline.submit(2, 2)
        release.set()
        raise ValueError("bad line")
    assert reported == [1, 2]
