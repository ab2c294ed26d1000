"""Chinese-CLIP on PyTorch: text and image encoders with L2-normalised float32 output."""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from adapters.encoders.encoder_base import ARCHITECTURES, EncoderBase, EncoderInfo, ModelLoadError

logger = logging.getLogger(__name__)
CONTEXT_LENGTH = 52

__all__ = ["ARCHITECTURES", "ChineseClipEncoder", "EncoderInfo", "ModelLoadError"]


class ChineseClipEncoder(EncoderBase):
    """Chinese-CLIP on PyTorch: loads by name (download), from a checkpoint, or with seeded random weights."""

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
        super().__init__()
        self._seed_note = f" (seed {seed})"
        self._model: Any = None
        self.loaded_from: Path | None = None  # the checkpoint file actually read, for export manifests
        self._preprocess: Callable[[Image.Image], Any] | None = None

    def _load(self) -> EncoderInfo:
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
        scale = float(model.logit_scale.exp().item())
        return EncoderInfo(self.model_name, dim, kind, source, device, resolution, "torch", logit_scale=scale)

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
        self.loaded_from = path
        return model

    def _load_by_name(self) -> Any:
        from cn_clip.clip.utils import _MODELS, load_from_name

        root = Path(self.model_dir or "models")
        root.mkdir(parents=True, exist_ok=True)
        if not (root / _MODELS[self.model_name][1]).is_file():
            logger.info("%s: no checkpoint in %s yet; downloading it (first use) ...", self.model_name, root)
        try:
            with contextlib.redirect_stdout(io.StringIO()), _quiet("huggingface_hub"):
                model, _ = load_from_name(self.model_name, device="cpu", download_root=str(root))
        except Exception as exc:
            raise ModelLoadError(
                f"could not load or download pretrained {self.model_name} weights into {root} ({exc}). "
                "Put the checkpoint there, or set IMGSEARCH_CHECKPOINT_PATH to a local .pt file, or set "
                "IMGSEARCH_WEIGHTS=random for an offline test build (results are meaningless)."
            ) from exc
        self.loaded_from = root / _MODELS[self.model_name][1]
        return model

    def _encode_text_now(self, texts: Sequence[str]) -> np.ndarray:
        import torch
        from cn_clip.clip.utils import tokenize

        tokens = tokenize(list(texts), context_length=CONTEXT_LENGTH).to(self._device)
        with torch.no_grad():
            return self._model.encode_text(tokens).float().cpu().numpy()

    def preprocess(self, image: Image.Image) -> Any:
        self.load()
        assert self._preprocess is not None
        return self._preprocess(image)

    def _forward_pixels(self, pixels: Sequence[Any]) -> np.ndarray:
        import torch

        with torch.no_grad():
            batch = torch.stack(list(pixels)).to(self._device)
            return self._model.encode_image(batch).float().cpu().numpy()


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    """A failed download retries several times, each logged twice; the one error that follows says it all."""
    with contextlib.suppress(ImportError):
        importlib.import_module(f"{name}.file_download")  # its logging sets its own level when first imported
    chosen = logging.getLogger(name)
    level = chosen.level
    chosen.setLevel(logging.ERROR)
    try:
        yield
    finally:
        chosen.setLevel(level)
