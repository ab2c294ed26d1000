"""ONNX image-embedding models: a user's own (``onnx:<name>``) and this service's exports of torchvision's
ResNet50 and VGG16. A folder holds ``model.onnx`` plus a small ``manifest.json`` saying how to feed it, e.g.
{"input_size": 224, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "output_dim": 2048}; with
"resize_shorter": 256 the image is resized by its shorter side (bilinear) and centre-cropped to input_size, as
torchvision's ImageNet transform does, instead of squashed to a square (bicubic). Image-only: no text side."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from adapters.encoders.encoder_base import EncoderBase, EncoderInfo, ModelLoadError
from adapters.encoders.onnx_runtime import cpu_session

PREFIX = "onnx:"
MODEL_FILE = "model.onnx"


class OnnxImageEncoder(EncoderBase):
    has_text = False

    def __init__(
        self,
        model_name: str,
        root: Path,
        threads: int = 0,
        directory: Path | None = None,
        spin: bool = False,
        device: str = "cpu",
    ) -> None:
        super().__init__()
        self.model_name, self.spin, self.device = model_name, spin, device
        self.weights = "user"
        self.directory = directory or Path(root) / model_name.removeprefix(PREFIX)
        self.threads = threads or (os.cpu_count() or 1)
        self._session: Any = None
        self._input = "input"
        self._size = 224
        self._mean = np.zeros(3, dtype=np.float32)
        self._std = np.ones(3, dtype=np.float32)
        self._resize_shorter: int | None = None

    def _load(self) -> EncoderInfo:
        manifest_path, model_path = self.directory / "manifest.json", self.directory / MODEL_FILE
        if not manifest_path.is_file() or not model_path.is_file():
            raise ModelLoadError(f"{self.model_name}: put model.onnx and manifest.json in {self.directory}")
        try:
            manifest = json.loads(manifest_path.read_text())
            self._size = int(manifest.get("input_size", 224))
            self._mean = np.asarray(manifest.get("mean", [0.0, 0.0, 0.0]), dtype=np.float32)
            self._std = np.asarray(manifest.get("std", [1.0, 1.0, 1.0]), dtype=np.float32)
            dim = int(manifest["output_dim"])
            self._resize_shorter = int(manifest["resize_shorter"]) if manifest.get("resize_shorter") else None
            self.weights = str(manifest.get("weights", "user"))
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelLoadError(f"{manifest_path} is not a valid manifest ({exc})") from exc
        self._session = cpu_session(model_path, self.threads, self.spin, self.device)
        self._input = manifest.get("input_name") or self._session.get_inputs()[0].name
        probe = np.zeros((1, 3, self._size, self._size), dtype=np.float32)
        try:
            got = int(np.prod(self._session.run(None, {self._input: probe})[0].shape[1:]))
        except Exception as exc:
            raise ModelLoadError(f"{model_path} does not take a 1x3x{self._size}x{self._size} image ({exc})") from exc
        if got != dim:
            raise ModelLoadError(f"{model_path} gives {got}-d vectors but its manifest says output_dim {dim}")
        source = f"{model_path} (exported from {manifest['source']})" if manifest.get("source") else str(model_path)
        return EncoderInfo(self.model_name, dim, self.weights, source, "cpu", self._size, "onnx")

    def _encode_text_now(self, texts: Sequence[str]) -> np.ndarray:
        raise ModelLoadError(f"{self.model_name} is an image-only model: it cannot encode text")

    def preprocess(self, image: Image.Image) -> np.ndarray:
        self.load()
        if self._resize_shorter:
            resized = _resize_and_crop(image.convert("RGB"), self._resize_shorter, self._size)
        else:
            resized = image.convert("RGB").resize((self._size, self._size), Image.Resampling.BICUBIC)
        array = (np.asarray(resized, dtype=np.float32) / 255.0 - self._mean) / self._std
        return np.ascontiguousarray(array.transpose(2, 0, 1))

    def _forward_pixels(self, pixels: Sequence[Any]) -> np.ndarray:
        output = self._session.run(None, {self._input: np.stack(list(pixels)).astype(np.float32)})[0]
        return output.reshape(len(pixels), -1)


def _resize_and_crop(image: Image.Image, shorter: int, crop: int) -> Image.Image:
    """torchvision's Resize(shorter) + CenterCrop(crop) on a PIL image, to the pixel (same sizes, same rounding)."""
    width, height = image.size
    size = (shorter, int(shorter * height / width)) if width <= height else (int(shorter * width / height), shorter)
    resized = image.resize(size, Image.Resampling.BILINEAR)
    top, left = round((size[1] - crop) / 2.0), round((size[0] - crop) / 2.0)
    return resized.crop((left, top, left + crop, top + crop))
