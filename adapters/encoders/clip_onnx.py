"""Chinese-CLIP on ONNX Runtime: the exported text and image encoders (dynamic batch), tokenised with the
same vocab through ``tokenizers``. Nothing here imports torch, so a service on this backend does not load it."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from adapters.encoders.clip_tokenizer import ClipTokenizer
from adapters.encoders.encoder_base import CLIP_MEAN, CLIP_STD, EncoderBase, EncoderInfo, ModelLoadError
from adapters.encoders.onnx_quantize import int8_copy
from adapters.encoders.onnx_runtime import cpu_session

logger = logging.getLogger(__name__)

MANIFEST, TEXT_FILE, IMAGE_FILE, VOCAB_FILE = "manifest.json", "text.onnx", "image.onnx", "vocab.txt"


def export_dir(onnx_root: Path, model_name: str) -> Path:
    return onnx_root / model_name


def clip_pixels(image: Image.Image, resolution: int) -> np.ndarray:
    """The numpy twin of cn_clip's image_transform: bicubic resize to a square, RGB, scale, normalise, CHW."""
    resized = image.resize((resolution, resolution), Image.Resampling.BICUBIC).convert("RGB")
    array = np.asarray(resized, dtype=np.float32) / 255.0
    array = (array - np.asarray(CLIP_MEAN, dtype=np.float32)) / np.asarray(CLIP_STD, dtype=np.float32)
    return np.ascontiguousarray(array.transpose(2, 0, 1))


class OnnxClipEncoder(EncoderBase):
    def __init__(
        self,
        model_name: str,
        onnx_root: Path,
        threads: int = 0,
        directory: Path | None = None,
        quantize: str = "none",
        spin: bool = False,
        device: str = "cpu",
    ) -> None:
        super().__init__()
        self.quantize, self.spin, self.device = quantize, spin, device
        self.model_name = model_name
        self.directory = directory or export_dir(onnx_root, model_name)
        self.threads = threads or (os.cpu_count() or 1)
        self.weights = "onnx"
        self._text: Any = None
        self._image: Any = None
        self._tokenizer: ClipTokenizer | None = None
        self._resolution = 224
        self._trim_tokens = False

    def _load(self) -> EncoderInfo:
        manifest_path = self.directory / MANIFEST
        if not manifest_path.is_file():
            raise ModelLoadError(
                f"no ONNX export of {self.model_name} in {self.directory}: run `imgsearch export-onnx` first "
                "(or set IMGSEARCH_BACKEND=torch)"
            )
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("model") != self.model_name:
            raise ModelLoadError(f"{manifest_path} holds {manifest.get('model')}, not {self.model_name}")
        text, image = self.directory / TEXT_FILE, self.directory / IMAGE_FILE
        precision = "fp32"
        if self.quantize == "int8":
            text, precision = int8_copy(text), "int8 text, fp32 image"
            # RN50's quantised image encoder gave some pictures vectors at cosine 0.58 of fp32 (bench/encoders.py);
            # the ViT image encoders stay at 0.9998 and run 3.6x faster, so only they are quantised.
            if self.model_name.startswith("ViT"):
                image, precision = int8_copy(image), "int8"
        self._text = cpu_session(text, self.threads, self.spin, self.device)
        self._image = cpu_session(image, self.threads, self.spin, self.device)
        vocab = self.directory / VOCAB_FILE  # an export carries its vocab; older ones use the packaged copy
        self._tokenizer = ClipTokenizer(vocab if vocab.is_file() else None, int(manifest.get("context_length", 52)))
        self._resolution = int(manifest["input_resolution"])
        # Exports since version 3 take any token count; older ones were traced at the full context only.
        self._trim_tokens = bool(manifest.get("dynamic_tokens", False))
        self.weights = str(manifest.get("weights", "unknown"))
        source = f"{self.directory} (exported from {manifest.get('source', '?')}, opset {manifest.get('opset')})"
        return EncoderInfo(
            self.model_name,
            int(manifest["dim"]),
            self.weights,
            source,
            "cpu",
            self._resolution,
            "onnx",
            None,
            precision,
            manifest.get("logit_scale"),
        )

    def _encode_text_now(self, texts: Sequence[str]) -> np.ndarray:
        assert self._tokenizer is not None
        return self._text.run(None, {"text": self._tokenizer(texts, trim=self._trim_tokens)})[0]

    def preprocess(self, image: Image.Image) -> np.ndarray:
        self.load()
        return clip_pixels(image, self._resolution)

    def _forward_pixels(self, pixels: Sequence[Any]) -> np.ndarray:
        return self._image.run(None, {"image": np.stack(list(pixels)).astype(np.float32, copy=False)})[0]
