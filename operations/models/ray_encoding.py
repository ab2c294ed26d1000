"""Encoding on a Ray cluster (the ``distributed`` extra): Ray Data runs a job's images through a pool of encoder
actors, each loading the model once (``map_batches`` with a callable class and an actor-pool strategy), with
ONNX Runtime threads = the actor's CPUs, or its CUDA provider for actors given GPUs. The images go in windows of
``IMGSEARCH_RAY_WINDOW`` (and at most ``IMGSEARCH_RAY_WINDOW_MB`` of bytes): one Ray Data run each, its results
read back in order, so the service writes them in the order it always has. The OCR job's pictures go through
the same windows to OCR actors (``operations.models.ray_actors``).

Workers read a source's files themselves when the cluster shares the data root (``IMGSEARCH_RAY_SHARED_PATHS``);
otherwise the service sends the bytes. A worker node lost mid-run is Ray's to handle (it restarts the actor and
retries its batch elsewhere); a cluster that cannot be reached fails the job with a message saying so, and
running it again completes it: every job is idempotent."""

from __future__ import annotations

import logging
import pickle
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from config import Settings
from operations.errors import Unavailable
from operations.models.face_reads import FaceRead

logger = logging.getLogger(__name__)
T = TypeVar("T")


class RayUnavailable(Unavailable):
    """The Ray cluster could not be reached, or was lost mid-run."""


class RayEncoding:
    """One per service process: a Ray driver, connected on first use and again after the cluster was lost."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._connected = False

    def connect(self) -> None:
        import ray

        with self._lock:
            if self._connected and ray.is_initialized():
                return
            if ray.is_initialized():
                ray.shutdown()
            _reachable(self.settings.ray_address or "")
            try:
                ray.init(
                    address=self.settings.ray_address,
                    namespace="imgsearch",
                    logging_level=logging.WARNING,
                    log_to_driver=False,
                    configure_logging=False,
                )
            except Exception as exc:
                raise RayUnavailable(f"Ray cluster at {self.settings.ray_address} unreachable: {exc}") from exc
            self._connected = True
            import ray.data

            context = ray.data.DataContext.get_current()
            context.execution_options.preserve_order = True  # results come back in the order they went in
            context.enable_progress_bars = False
            nodes = [n["NodeManagerAddress"] for n in ray.nodes() if n.get("Alive")]
            logger.info("connected to Ray at %s: %d node(s) %s", self.settings.ray_address, len(nodes), nodes)

    def nodes(self) -> list[dict[str, Any]]:
        """The cluster's live nodes: address and resources (for /healthz and the tests)."""
        import ray

        self.connect()
        return [
            {"address": n["NodeManagerAddress"], "node_id": n["NodeID"], "resources": n.get("Resources", {})}
            for n in ray.nodes()
            if n.get("Alive")
        ]

    def encode(
        self, model: str, items: Iterable[T], task_of: Callable[[T], Any], read_text: bool = False
    ) -> Iterator[tuple[T, Any]]:
        """Each item with its ``Encoded``, in order, window after window; ``read_text``: the actors also read the
        text in each picture (``Encoded.text``)."""
        from operations.ingest.encode_stage import Encoded
        from operations.models.ray_actors import EncoderActor, lines_from_json

        shared = self.settings.ray_shared_paths
        ocr_side = self.settings.ocr_max_side if read_text else 0
        actor_args = {"settings": _worker_settings(self.settings), "model": model, "ocr_side": ocr_side}

        def row_of(task: Any) -> dict[str, Any]:
            data = task.data if task.data is not None and not (shared and task.path) else b""
            return {"data": data, "path": task.path or "", "preview": task.preview_size}

        def encoded(batch: dict[str, np.ndarray], row: int) -> Encoded:
            error = str(batch["error"][row]) or None
            preview = bytes(batch["preview"][row]) or None
            vector = None if error else np.asarray(batch["vector"][row], dtype=np.float32)
            text = lines_from_json(batch["text"][row]) if ocr_side and not error else None
            return Encoded(vector, preview, error, str(batch["node"][row]), text)

        for window in self._windows(items, task_of):
            yield from self._run(window, EncoderActor, actor_args, row_of, encoded, Encoded(None))

    def encode_video_pieces(self, model: str, items: Iterable[tuple[T, Any]]) -> Iterator[tuple[tuple[T, Any], Any]]:
        """Pieces of videos (``operations.ingest.videos.PieceTask``), one per actor call, sampled and encoded on the
        cluster: each with its ``EncodedVideo`` or the reason it gave none, in order. The nodes read the files."""
        from operations.models.ray_actors import VideoActor

        actor_args = {"settings": _worker_settings(self.settings), "model": model}

        def row_of(task: Any) -> dict[str, Any]:
            return {"path": task.path, "start": task.start_ms, "end": -1 if task.end_ms is None else task.end_ms}

        def result_of(batch: dict[str, np.ndarray], row: int) -> Any:
            return pickle.loads(bytes(batch["result"][row]))  # written by our own actor, never by a user

        for window in self._windows(items, lambda item: item[1]):
            yield from self._run(window, VideoActor, actor_args, row_of, result_of, "not sampled", rows_per_call=1)

    def read_text(self, items: Iterable[T], task_of: Callable[[T], Any]) -> Iterator[tuple[T, TextRead]]:
        """Each item's lines (or why it has none), in order: OCR of stored pictures on the cluster. A task has
        ``data`` (the picture) and ``longest`` (its original's longer side, for the boxes)."""
        from operations.models.ray_actors import OcrActor, lines_from_json

        def read(batch: dict[str, np.ndarray], row: int) -> TextRead:
            error = str(batch["error"][row]) or None
            lines = [] if error else lines_from_json(batch["text"][row])
            return TextRead(lines, error, str(batch["node"][row]))

        def row_of(task: Any) -> dict[str, Any]:
            return {"data": task.data, "longest": task.longest}

        actor_args = {"settings": _worker_settings(self.settings)}
        for window in self._windows(items, task_of):
            yield from self._run(window, OcrActor, actor_args, row_of, read, TextRead([], None))

    def find_faces(self, rows: Iterable[Any]) -> Iterator[tuple[Any, FaceRead]]:
        """Each stored picture's faces (or why it has none), in order, read by face actors on the cluster: the rows
        (``ImageRecord``) carry the bytes and the original's size."""
        from operations.models.ray_actors import FaceActor

        def read(batch: dict[str, np.ndarray], row: int) -> FaceRead:
            error = str(batch["error"][row]) or None
            found = pickle.loads(bytes(batch["result"][row]))  # written by our own actor, never by a user
            return FaceRead(found, error, str(batch["node"][row]))

        def row_of(task: Any) -> dict[str, Any]:
            return {"data": task.data or b"", "width": task.width, "height": task.height}

        actor_args = {"settings": _worker_settings(self.settings)}
        for window in self._windows(rows, lambda row: _Sized(row)):
            yield from self._run(window, FaceActor, actor_args, lambda t: row_of(t.row), read, FaceRead())

    def _windows(self, items: Iterable[T], task_of: Callable[[T], Any]) -> Iterator[list[tuple[T, Any]]]:
        """The items with their tasks, in windows of at most IMGSEARCH_RAY_WINDOW items and _WINDOW_MB bytes."""
        window: list[tuple[T, Any]] = []
        size = 0
        for item in items:
            task = task_of(item)
            window.append((item, task))
            size += task.size if task is not None else 0
            if len(window) >= self.settings.ray_window or size >= self.settings.ray_window_mb * 2**20:
                yield window
                window, size = [], 0
        if window:
            yield window

    def _run(
        self,
        window: list[tuple[T, Any]],
        actor: type,
        actor_args: dict[str, Any],
        row_of: Callable[[Any], dict[str, Any]],
        result_of: Callable[[dict[str, np.ndarray], int], Any],
        nothing: Any,
        rows_per_call: int | None = None,
    ) -> Iterator[tuple[T, Any]]:
        """One Ray Data run of ``actor`` over a window: each item with its result, in order; an item without a
        task passes through as ``nothing``."""
        import ray.data

        settings = self.settings
        rows = [{"i": i, **row_of(task)} for i, (_, task) in enumerate(window) if task is not None]
        position = 0
        if not rows:  # nothing of this window needs the cluster
            for item, _ in window:
                yield item, nothing
            return
        self.connect()  # only when something needs the cluster: a job with nothing to encode needs none
        # One block per actor batch (at most IMGSEARCH_RAY_BATCH_SIZE rows, as even as Ray splits them), each block
        # one batch (``batch_size=None``): from_items makes a single block of a small window otherwise, and with a
        # batch size Ray bundles blocks smaller than it into one task; either way one actor gets the work of two.
        blocks = -(-len(rows) // (rows_per_call or settings.ray_batch_size))
        dataset = ray.data.from_items(rows, override_num_blocks=blocks).map_batches(
            actor,
            fn_constructor_kwargs=actor_args,
            # One batch at a time per actor: with Ray's default of two, the first actor ready takes two batches while
            # the other still loads its model, and at a window's end one node idles while the other works its queue.
            compute=ray.data.ActorPoolStrategy(size=settings.ray_pool_size, max_tasks_in_flight_per_actor=1),
            batch_size=None,
            batch_format="numpy",
            num_cpus=settings.ray_cpus_per_actor,
            num_gpus=settings.ray_gpus_per_actor or None,
        )
        try:
            for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
                for row in range(len(batch["i"])):
                    index = int(batch["i"][row])
                    while position < index and window[position][1] is None:  # nothing to do: passed through
                        yield window[position][0], nothing
                        position += 1
                    if index != position:  # preserve_order is set: anything else is a bug, not a result
                        raise RuntimeError(f"Ray returned image {index} where {position} was expected")
                    yield window[index][0], result_of(batch, row)
                    position += 1
            while position < len(window) and window[position][1] is None:
                yield window[position][0], nothing
                position += 1
        except (ray.exceptions.RaySystemError, ray.exceptions.RpcError, ConnectionError) as exc:
            self._connected = False
            raise RayUnavailable(f"the Ray cluster at {settings.ray_address} was lost mid-job: {exc}") from exc
        if position != len(window):
            raise RuntimeError(f"Ray returned {position} of {len(window)} images")


@dataclass(frozen=True)
class _Sized:
    """A stored picture as a window counts it (by its bytes)."""

    row: Any

    @property
    def size(self) -> int:
        return len(self.row.data or b"")


@dataclass(frozen=True)
class TextRead:
    """The lines OCR read in one picture, boxes in its original's pixels (or why it could not be read)."""

    lines: list[Any]
    error: str | None = None
    node: str = ""


def _reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fails at once when nothing listens at HOST:PORT (ray.init would keep trying for minutes)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return  # "auto", or a form Ray resolves itself
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise RayUnavailable(
            f"Ray cluster at {address} unreachable: {exc}; start it, or unset IMGSEARCH_RAY_ADDRESS"
        ) from exc


def _worker_settings(settings: Settings) -> dict[str, Any]:
    """What an actor needs to build the same encoder: the model settings, and as many ONNX threads as it has
    CPUs. Secrets and store addresses stay in the service."""
    values = settings.model_dump(mode="json", exclude={"api_keys", "milvus_token", "metadata_url", "milvus_uri"})
    values["onnx_threads"] = max(1, int(settings.ray_cpus_per_actor))
    values["ray_address"] = None
    return values
