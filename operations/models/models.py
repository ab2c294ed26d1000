"""Several Chinese-CLIP models side by side: each loaded on first use (or at start-up), at most
``IMGSEARCH_MAX_LOADED_MODELS`` kept in memory, the least recently used one let go first."""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from pathlib import Path

from adapters.encoders.encoder_base import ARCHITECTURES, EncoderBase, EncoderInfo
from adapters.encoders.onnx_image_encoder import PREFIX as ONNX_PREFIX
from adapters.encoders.torchvision_encoder import TORCHVISION_MODELS
from config import Settings
from operations.errors import InvalidInput
from operations.models.encoders import onnx_encoder_for, torch_encoder_for
from operations.models.onnx_auto import AutoOnnxEncoder

logger = logging.getLogger(__name__)
UNLOAD_GRACE_S = 30.0
_CUSTOM_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,58}$")  # "onnx:" + name fits the 64-char model column


def build_encoder(settings: Settings, model_name: str | None = None, backend: str | None = None) -> EncoderBase:
    """An encoder for ``model_name`` (default: the service's model) on the configured backend.
    The checkpoint path setting belongs to the default model; other models load by name from the model dir."""
    name = model_name or settings.model_name
    chosen = backend or settings.backend
    if chosen == "auto" and not name.startswith(ONNX_PREFIX):
        return AutoOnnxEncoder(settings, name)
    if chosen == "torch" and not name.startswith(ONNX_PREFIX):
        return torch_encoder_for(settings, name)
    return onnx_encoder_for(settings, name)


class ModelRegistry:
    def __init__(self, settings: Settings, shared: EncoderBase | None = None) -> None:
        self.settings = settings
        self.default_name = settings.model_name
        self._lock = threading.Lock()
        self._loaded: OrderedDict[str, EncoderBase] = OrderedDict()
        self._shared = shared  # given by the caller (tests share one model): never closed here
        if shared is not None:
            self._loaded[shared.model_name] = shared

    def validate(self, name: str) -> str:
        if name in ARCHITECTURES or name in TORCHVISION_MODELS:
            return name
        if name.startswith(ONNX_PREFIX):
            folder = Path(str(self.settings.custom_models_dir)) / name.removeprefix(ONNX_PREFIX)
            if _CUSTOM_NAME.match(name.removeprefix(ONNX_PREFIX)) and (folder / "manifest.json").is_file():
                return name
            raise InvalidInput(f"no ONNX model {name!r}: put model.onnx and manifest.json in {folder}")
        choices = [*ARCHITECTURES, *TORCHVISION_MODELS, f"{ONNX_PREFIX}<your model>"]
        raise InvalidInput(f"unknown model {name!r}; choose one of {', '.join(choices)}")

    def get(self, name: str | None = None) -> EncoderBase:
        name = self.validate(name or self.default_name)
        with self._lock:
            encoder = self._loaded.get(name)
            if encoder is None:
                if self._shared is not None and self._shared.model_name == name:
                    encoder = self._shared
                else:
                    encoder = build_encoder(self.settings, name)
                self._loaded[name] = encoder
            self._loaded.move_to_end(name)
            self._evict(keep=name)
        encoder.load()  # outside the registry lock: loading one model does not block the others
        return encoder

    def default(self) -> EncoderBase:
        return self.get(self.default_name)

    def _evict(self, keep: str) -> None:
        """Let the least recently used models go; requests still using one finish within the grace period."""
        while len(self._loaded) > self.settings.max_loaded_models:
            name = next(n for n in self._loaded if n != keep)
            encoder = self._loaded.pop(name)
            logger.info("unloading model %s (IMGSEARCH_MAX_LOADED_MODELS=%d)", name, self.settings.max_loaded_models)
            if encoder is not self._shared:
                timer = threading.Timer(UNLOAD_GRACE_S, encoder.close)
                timer.daemon = True
                timer.start()

    def loaded(self) -> list[EncoderInfo]:
        with self._lock:
            encoders = list(self._loaded.values())
        return [e.info for e in encoders if e.loaded]

    def close(self) -> None:
        with self._lock:
            encoders, self._loaded = list(self._loaded.values()), OrderedDict()
        for encoder in encoders:
            if encoder is not self._shared:
                encoder.close()
