"""Chinese-CLIP text and image encoder: L2-normalised float32 vectors, inference on one worker thread."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Chinese-CLIP's published architectures and input resolutions (cn_clip.clip.utils._MODEL_INFO).
ARCHITECTURES: dict[str, tuple[str, int]] = {
    "RN50": ("RN50@RBT3-chinese", 224),
    "ViT-B-16": ("ViT-B-16@RoBERTa-wwm-ext-base-chinese", 224),
    "ViT-L-14": ("ViT-L-14@RoBERTa-wwm-ext-base-chinese", 224),
    "ViT-L-14-336": ("ViT-L-14-336@RoBERTa-wwm-ext-base-chinese", 336),
    "ViT-H-14": ("ViT-H-14@RoBERTa-wwm-ext-large-chinese", 224),
}
CONTEXT_LENGTH = 52


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


def _normalise(features: Any) -> np.ndarray:
    array = features.float().cpu().numpy().astype(np.float32, copy=False)
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    return array / np.maximum(norms, 1e-12)


class ChineseClipEncoder:
    """Loads lazily (``load`` is locked and idempotent) and runs every forward pass on one worker thread.

    One worker keeps the model's threads from fighting each other on small machines, and keeps
    inference off the web server's event loop.
    """

    def __init__(
        self,
        model_name: str = "RN50",
        weights: str = "pretrained",
        checkpoint_path: Path | None = None,
        model_dir: Path | None = None,
        device: str = "auto",
        seed: int = 0,
        threads: int = 0,
    ) -> None:
        if model_name not in ARCHITECTURES:
            raise ModelLoadError(f"unknown model {model_name!r}; choose one of {sorted(ARCHITECTURES)}")
        self.model_name = model_name
        self.weights = weights
        self.checkpoint_path = checkpoint_path
        self.model_dir = model_dir
        self.requested_device = device
        self.seed = seed
        self.threads = threads or (os.cpu_count() or 1)
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clip-inference")
        self._model: Any = None
        self._preprocess: Callable[[Image.Image], Any] | None = None
        self._info: EncoderInfo | None = None

    @property
    def info(self) -> EncoderInfo:
        self.load()
        assert self._info is not None
        return self._info

    @property
    def loaded(self) -> bool:
        return self._info is not None

    def load(self) -> EncoderInfo:
        with self._lock:
            if self._info is None:
                self._executor.submit(self._load).result()
            assert self._info is not None
            return self._info

    def _load(self) -> None:
        import torch
        from cn_clip.clip.utils import image_transform

        torch.set_num_threads(self.threads)
        device = self._resolve_device(torch)
        struct, resolution = ARCHITECTURES[self.model_name]
        if self.weights == "random":
            model, source = self._build_random(torch, struct), f"random init, seed {self.seed}"
            kind = "random"
        elif self.checkpoint_path is not None:
            model, source, kind = self._load_checkpoint(struct, resolution), str(self.checkpoint_path), "checkpoint"
        else:
            model, source, kind = self._load_by_name(), f"{self.model_name} in {self.model_dir}", "pretrained"
        model = model.float() if device == "cpu" else model.to(device)
        model.eval()
        self._model, self._device = model, device
        self._preprocess = image_transform(resolution)
        dim = int(self._encode_text_now(["维度"]).shape[1])
        self._info = EncoderInfo(self.model_name, dim, kind, source, device, resolution)
        if kind == "random":
            logger.warning(
                "RANDOM WEIGHTS: %s built with seeded random weights (seed %d); search results carry no "
                "meaning. Set IMGSEARCH_WEIGHTS=pretrained with a checkpoint for real use.",
                self.model_name,
                self.seed,
            )
        logger.info("encoder ready: %s", self._info)

    def _resolve_device(self, torch: Any) -> str:
        if self.requested_device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        if self.requested_device.startswith("cuda") and not torch.cuda.is_available():
            raise ModelLoadError(f"IMGSEARCH_DEVICE={self.requested_device} but no CUDA device is available")
        return self.requested_device

    def _build_random(self, torch: Any, struct: str) -> Any:
        """Same architecture, seeded random weights, made usable for tests.

        cn_clip zero-initialises the last BatchNorm of each ResNet block, which makes every image
        embed to nearly the same vector (cosine ~0.9999999). Resetting BN scales to 1 and calibrating
        BN statistics on seeded noise gives embeddings that differ like real ones do (cosine ~0.8).
        """
        from cn_clip.clip.utils import create_model

        torch.manual_seed(self.seed)
        with contextlib.redirect_stdout(io.StringIO()):
            model = create_model(struct).float()
        batch_norms = [m for m in model.visual.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        if batch_norms:
            for bn in batch_norms:
                torch.nn.init.ones_(bn.weight)
                torch.nn.init.zeros_(bn.bias)
                bn.reset_running_stats()
                bn.momentum = None
            noise = torch.randn(16, 3, 224, 224, generator=torch.Generator().manual_seed(self.seed))
            model.visual.train()
            with torch.no_grad():
                model.visual(noise)
        return model

    def _load_checkpoint(self, struct: str, resolution: int) -> Any:
        from cn_clip.clip.utils import load_from_name

        path = Path(self.checkpoint_path or "")
        if not path.is_file():
            raise ModelLoadError(f"IMGSEARCH_CHECKPOINT_PATH={path} is not a file")
        vision, text = struct.split("@")
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                model, _ = load_from_name(
                    str(path),
                    device="cpu",
                    vision_model_name=vision,
                    text_model_name=text,
                    input_resolution=resolution,
                )
        except Exception as exc:
            raise ModelLoadError(
                f"checkpoint {path} does not hold {self.model_name} weights ({exc}); check "
                "IMGSEARCH_MODEL_NAME and IMGSEARCH_CHECKPOINT_PATH"
            ) from exc
        return model

    def _load_by_name(self) -> Any:
        from cn_clip.clip.utils import load_from_name

        root = Path(self.model_dir or "models")
        root.mkdir(parents=True, exist_ok=True)
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                model, _ = load_from_name(self.model_name, device="cpu", download_root=str(root))
        except Exception as exc:
            raise ModelLoadError(
                f"could not load or download pretrained {self.model_name} weights into {root} ({exc}). "
                "Put the checkpoint there, or set IMGSEARCH_CHECKPOINT_PATH to a local .pt file, or set "
                "IMGSEARCH_WEIGHTS=random for an offline test build (results are meaningless)."
            ) from exc
        return model

    def _run(self, fn: Callable[[], T]) -> T:
        self.load()
        return self._executor.submit(fn).result()

    def _encode_text_now(self, texts: Sequence[str]) -> np.ndarray:
        import torch
        from cn_clip.clip.utils import tokenize

        tokens = tokenize(list(texts), context_length=CONTEXT_LENGTH).to(self._device)
        with torch.no_grad():
            return _normalise(self._model.encode_text(tokens))

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) float32, each row of unit length; over-long texts are cut at 52 tokens."""
        if not texts:
            return np.zeros((0, self.info.dim), dtype=np.float32)
        return self._run(lambda: self._encode_text_now(texts))

    def preprocess(self, image: Image.Image) -> Any:
        """Resize and normalise one image into the model's input tensor; thread-safe, so callers run it
        in worker threads and the encoder thread only does forward passes."""
        self.load()
        assert self._preprocess is not None
        return self._preprocess(image)

    def encode_pixels(self, pixels: Sequence[Any]) -> np.ndarray:
        """(len(pixels), dim) float32 unit vectors from tensors made by ``preprocess``."""
        import torch

        if not pixels:
            return np.zeros((0, self.info.dim), dtype=np.float32)
        batch = torch.stack(list(pixels))

        def forward() -> np.ndarray:
            with torch.no_grad():
                return _normalise(self._model.encode_image(batch.to(self._device)))

        return self._run(forward)

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """(len(images), dim) float32 unit vectors; images may be any size and mode."""
        return self.encode_pixels([self.preprocess(image) for image in images])

    def close(self) -> None:
        self._executor.shutdown(wait=True)
