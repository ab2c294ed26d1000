"""Faces read in worker processes: dlib holds the GIL while it detects and embeds, so threads would read one
picture at a time; processes read one each, on every core the setting gives them (IMGSEARCH_FACE_WORKERS).

Workers are spawned (never forked from a threaded server), each builds the face model once, and a picture's
bytes go in while its faces (boxes in the original's pixels, unit vectors) come back."""

from __future__ import annotations

import logging
import multiprocessing
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

logger = logging.getLogger(__name__)

_worker: dict[str, Any] = {}  # inside a worker process only: its model and limits, set once by _start


def _start(settings: dict[str, Any]) -> None:
    from adapters import faces
    from config import Settings

    resolved = Settings(_env_file=None, **settings)  # type: ignore[call-arg]
    model = faces.build(resolved)
    model.load()
    _worker.update(model=model, max_pixels=resolved.max_image_pixels, max_side=resolved.face_max_side)


def _read(data: bytes, width: int, height: int) -> tuple[list[Any], str | None]:
    from adapters import faces

    return faces.read_or_why(data, width, height, _worker["max_pixels"], _worker["max_side"], _worker["model"])


def _ready() -> bool:
    return "model" in _worker


class FacePool:
    def __init__(self, settings: Any, workers: int) -> None:
        self.workers = workers
        self._settings = settings.model_dump(mode="json", exclude={"api_keys", "milvus_token"})
        self._executor: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def _pool(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ProcessPoolExecutor(
                    self.workers,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_start,
                    initargs=(self._settings,),
                )
                logger.info("faces are read by %d worker processes", self.workers)
            return self._executor

    def warm(self) -> None:
        """Starts every worker and loads its model now (a benchmark times the reading, not the start)."""
        pool = self._pool()
        for future in [pool.submit(_ready) for _ in range(self.workers * 2)]:
            future.result()

    def read(self, pictures: Iterable[tuple[bytes, int, int]]) -> Iterator[tuple[list[Any], str | None]]:
        """Each picture's faces (or why it could not be read), in order."""
        pool = self._pool()
        futures = [pool.submit(_read, data, width, height) for data, width, height in pictures]
        for future in futures:
            yield future.result()

    def close(self) -> None:
        with self._lock:
            if self._executor is not None:
                self._executor.shutdown(wait=True, cancel_futures=True)
                self._executor = None
