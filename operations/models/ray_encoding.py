"""Encoding on a Ray cluster (the ``distributed`` extra): Ray Data runs a job's images through a pool of encoder
actors, each loading the model once (``map_batches`` with a callable class and an actor-pool strategy), with
ONNX Runtime threads = the actor's CPUs, or its CUDA provider for actors given GPUs. The images go in windows of
``IMGSEARCH_RAY_WINDOW`` (and at most ``IMGSEARCH_RAY_WINDOW_MB`` of bytes): one Ray Data run each, its results
read back in order, so the service writes them in the order it always has.

Workers read a source's files themselves when the cluster shares the data root (``IMGSEARCH_RAY_SHARED_PATHS``);
otherwise the service sends the bytes. A worker node lost mid-run is Ray's to handle (it restarts the actor and
retries its batch elsewhere); a cluster that cannot be reached fails the job with a message saying so, and
running it again completes it: every job is idempotent."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np

from config import Settings
from operations.errors import Unavailable

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

    def encode(self, model: str, items: Iterable[T], task_of: Callable[[T], Any]) -> Iterator[tuple[T, Any]]:
        """Each item with its ``Encoded``, in order, window after window."""
        from operations.ingest.encode_stage import Encoded

        window: list[tuple[T, Any]] = []
        size = 0
        for item in items:
            task = task_of(item)
            window.append((item, task))
            size += task.size if task is not None else 0
            if len(window) >= self.settings.ray_window or size >= self.settings.ray_window_mb * 2**20:
                yield from self._run(model, window, Encoded)
                window, size = [], 0
        if window:
            yield from self._run(model, window, Encoded)

    def _run(self, model: str, window: list[tuple[T, Any]], encoded: type) -> Iterator[tuple[T, Any]]:
        import ray.data

        settings = self.settings
        rows = [
            {
                "i": i,
                "data": task.data if task.data is not None and not (settings.ray_shared_paths and task.path) else b"",
                "path": task.path or "",
                "preview": task.preview_size,
            }
            for i, (_, task) in enumerate(window)
            if task is not None
        ]
        position = 0
        if not rows:  # nothing of this window needs a vector
            for item, _ in window:
                yield item, encoded(None)
            return
        self.connect()  # only when something needs encoding: a job with nothing to encode needs no cluster
        # One block per actor batch: from_items makes a single block of a small window otherwise, and a block goes
        # to one actor, so a second node would sit idle.
        blocks = -(-len(rows) // settings.ray_batch_size)
        dataset = ray.data.from_items(rows, override_num_blocks=blocks).map_batches(
            EncoderActor,
            fn_constructor_kwargs={"settings": _worker_settings(settings), "model": model},
            compute=ray.data.ActorPoolStrategy(size=settings.ray_pool_size),
            batch_size=settings.ray_batch_size,
            batch_format="numpy",
            num_cpus=settings.ray_cpus_per_actor,
            num_gpus=settings.ray_gpus_per_actor or None,
        )
        try:
            for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
                for row in range(len(batch["i"])):
                    index = int(batch["i"][row])
                    while position < index and window[position][1] is None:  # no vector needed: passed through
                        yield window[position][0], encoded(None)
                        position += 1
                    if index != position:  # preserve_order is set: anything else is a bug, not a result
                        raise RuntimeError(f"Ray returned image {index} where {position} was expected")
                    error = str(batch["error"][row]) or None
                    preview = bytes(batch["preview"][row]) or None
                    vector = None if error else np.asarray(batch["vector"][row], dtype=np.float32)
                    yield window[index][0], encoded(vector, preview, error, str(batch["node"][row]))
                    position += 1
            while position < len(window) and window[position][1] is None:
                yield window[position][0], encoded(None)
                position += 1
        except (ray.exceptions.RaySystemError, ray.exceptions.RpcError, ConnectionError) as exc:
            self._connected = False
            raise RayUnavailable(f"the Ray cluster at {settings.ray_address} was lost mid-job: {exc}") from exc
        if position != len(window):
            raise RuntimeError(f"Ray returned {position} of {len(window)} images")


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


class EncoderActor:
    """A Ray Data actor: the model loads once in ``__init__``; each call decodes and encodes one batch."""

    def __init__(self, settings: dict[str, Any], model: str) -> None:
        import ray

        from operations.models.models import build_encoder

        if ray.get_runtime_context().get_assigned_resources().get("GPU", 0):
            settings = {**settings, "onnx_device": "cuda"}
        self.settings = Settings(_env_file=None, **settings)  # type: ignore[call-arg]
        self.encoder = build_encoder(self.settings, model)
        self.encoder.load()
        # Decoding a 12 MP JPEG costs ~56 ms of one core (entropy decoding): an actor given several CPUs (a GPU
        # actor above all) decodes its batch on as many threads, or the encoder would wait on one.
        self.decoders = ThreadPoolExecutor(max_workers=self.settings.onnx_threads, thread_name_prefix="decode")
        self.node = f"{ray.util.get_node_ip_address()}/{ray.get_runtime_context().get_node_id()[:8]}"

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        from adapters import images
        from operations.ingest.encode_stage import EncodeTask, prepare

        settings = self.settings
        count = len(batch["i"])

        def decode(row: int) -> tuple[Any, bytes | None, str]:
            task = EncodeTask(
                data=bytes(batch["data"][row]) or None,
                path=str(batch["path"][row]) or None,
                preview_size=int(batch["preview"][row]),
            )
            try:
                prepared, preview = prepare(
                    task.read(settings.max_image_bytes), self.encoder, settings.max_image_pixels, task.preview_size
                )
            except (images.InvalidImage, OSError) as exc:
                return None, None, str(exc) or type(exc).__name__
            return prepared, preview, ""

        decoded = list(self.decoders.map(decode, range(count)))
        good = [row for row in range(count) if decoded[row][0] is not None]
        pixels = [decoded[row][0] for row in good]
        previews = [decoded[row][1] or b"" for row in range(count)]
        errors = [decoded[row][2] for row in range(count)]
        dim = self.encoder.info.dim
        vectors = np.zeros((count, dim), dtype=np.float32)
        if good:
            vectors[good] = self.encoder.encode_pixels(pixels)
        return {
            "i": batch["i"],
            "vector": vectors,
            "preview": np.array(previews, dtype=object),
            "error": np.array(errors, dtype=object),
            "node": np.array([self.node] * count, dtype=object),
        }
