"""What every image/text encoder backend shares: a locked, idempotent ``load``, one inference thread
(so model threads never fight on small machines and inference never runs on the event loop), and
unit-length float32 output."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from cachetools import LRUCache
from PIL import Image

logger = logging.getLogger(__name__)
T = TypeVar("T")
QUERY_CACHE_SIZE = 4096  # search texts remembered per encoder: 4096 x 1024 floats is 16 MB

# Chinese-CLIP's published architectures and input resolutions (cn_clip.clip.utils._MODEL_INFO).
ARCHITECTURES: dict[str, tuple[str, int]] = {
    "RN50": ("RN50@RBT3-chinese", 224),
    "ViT-B-16": ("ViT-B-16@RoBERTa-wwm-ext-base-chinese", 224),
    "ViT-L-14": ("ViT-L-14@RoBERTa-wwm-ext-base-chinese", 224),
    "ViT-L-14-336": ("ViT-L-14-336@RoBERTa-wwm-ext-base-chinese", 336),
    "ViT-H-14": ("ViT-H-14@RoBERTa-wwm-ext-large-chinese", 224),
}
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class ModelLoadError(RuntimeError):
    """The configured weights could not be loaded; the message names the settings that fix it."""


@dataclass(frozen=True)
class EncoderInfo:
    model: str
    dim: int
    weights: str  # "pretrained" | "checkpoint" | "random"
    source: str
    device: str
    input_resolution: int
    backend: str = "torch"
    note: str | None = None  # how this backend came to serve it (IMGSEARCH_BACKEND=auto), e.g. a failed export
    precision: str = "fp32"  # "int8" with IMGSEARCH_ONNX_QUANTIZE=int8
    # exp(logit_scale): Chinese-CLIP's temperature, so label probabilities are softmax(scale * cosine), as
    # ``model.get_similarity`` computes them. None for image-only models.
    logit_scale: float | None = None


def normalise(array: np.ndarray) -> np.ndarray:
    array = np.asarray(array, dtype=np.float32)
    return array / np.maximum(np.linalg.norm(array, axis=1, keepdims=True), 1e-12)


def warn_if_random(info: EncoderInfo, seed: str = "") -> None:
    if info.weights == "random":
        logger.warning(
            "RANDOM WEIGHTS: %s (%s) runs with seeded random weights%s; search results carry no meaning. "
            "Set IMGSEARCH_WEIGHTS=pretrained with a checkpoint for real use.",
            info.model,
            info.backend,
            seed,
        )


class EncoderBase:
    """Subclasses implement ``_load`` (returns EncoderInfo), ``_encode_text_now``, ``preprocess`` and
    ``_forward_pixels``; everything here is shared."""

    model_name: str
    weights: str
    has_text = True  # image-only models (ResNet50, VGG16, a user's ONNX) say False

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self._info: EncoderInfo | None = None
        self._queries: LRUCache[str, np.ndarray] = LRUCache(QUERY_CACHE_SIZE)
        self._queries_lock = threading.Lock()

    @property
    def info(self) -> EncoderInfo:
        return self.load()

    @property
    def loaded(self) -> bool:
        return self._info is not None

    def load(self) -> EncoderInfo:
        with self._lock:
            if self._info is None:
                self._info = self._executor.submit(self._load).result()
                warn_if_random(self._info, getattr(self, "_seed_note", ""))
                logger.info("encoder ready: %s", self._info)
            return self._info

    def _load(self) -> EncoderInfo:
        raise NotImplementedError

    def _run(self, fn: Callable[[], T]) -> T:
        self.load()
        return self._executor.submit(fn).result()

    def _encode_text_now(self, texts: Sequence[str]) -> np.ndarray:
        raise NotImplementedError

    def _forward_pixels(self, pixels: Sequence[Any]) -> np.ndarray:
        raise NotImplementedError

    def preprocess(self, image: Image.Image) -> Any:
        """Resize and normalise one image into the model's input; thread-safe, so callers run it in worker
        threads and the inference thread only does forward passes."""
        raise NotImplementedError

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) float32, each row of unit length; over-long texts are cut at 52 tokens."""
        if not texts:
            return np.zeros((0, self.info.dim), dtype=np.float32)
        return self._run(lambda: normalise(self._encode_text_now(texts)))

    def remembered_query(self, text: str) -> np.ndarray | None:
        """The vector of a search text encoded lately by ``encode_queries``, else None."""
        with self._queries_lock:
            return self._queries.get(text)

    def forget_queries(self) -> None:
        """Benchmarks that time a search's encoding start each query from an empty memory."""
        with self._queries_lock:
            self._queries.clear()

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """``encode_text`` for search texts, remembered (least recently used out): the next page, a refresh or the
        same words from another user skip the one inference thread, which a running ingest can hold for seconds."""
        found = {text: self.remembered_query(text) for text in texts}
        missing = [text for text, vector in found.items() if vector is None]
        if missing:
            vectors = self.encode_text(missing)
            vectors.setflags(write=False)  # shared by every search that finds them
            with self._queries_lock:
                for text, vector in zip(missing, vectors, strict=True):
                    self._queries[text] = found[text] = vector
        if not texts:
            return np.zeros((0, self.info.dim), dtype=np.float32)
        return np.stack([found[text] for text in texts])

    def encode_pixels(self, pixels: Sequence[Any]) -> np.ndarray:
        """(len(pixels), dim) float32 unit vectors from inputs made by ``preprocess``."""
        if not pixels:
            return np.zeros((0, self.info.dim), dtype=np.float32)
        return self._run(lambda: normalise(self._forward_pixels(pixels)))

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """(len(images), dim) float32 unit vectors; images may be any size and mode."""
        return self.encode_pixels([self.preprocess(image) for image in images])

    def close(self) -> None:
        self._executor.shutdown(wait=True)
