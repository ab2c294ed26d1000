"""IMGSEARCH_BACKEND=auto (the default): Chinese-CLIP, ResNet50 and VGG16 served through ONNX Runtime, exported
on first use.

On load, an export under ``<onnx_dir>/<model>`` made from these very weights (same checkpoint SHA-256 or random
seed, same export version) is served as it is. Without one, the model is loaded on PyTorch, exported, checked
against PyTorch and swapped in (``operations.models.export_onnx``); one process exports while the others wait on a file
lock and then use its export. If the export cannot be made or does not match PyTorch, the model is served on
PyTorch and the log and ``/healthz`` say so: results never change silently.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import importlib.util
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from adapters.encoders.clip_onnx import MANIFEST, export_dir
from adapters.encoders.encoder_base import EncoderBase, EncoderInfo, ModelLoadError
from adapters.encoders.torchvision_encoder import TORCHVISION_MODELS
from config import Settings
from operations.models.encoders import onnx_encoder_for, torch_encoder_for
from operations.models.onnx_source import EXPORT_VERSION, wanted_key

logger = logging.getLogger(__name__)
WEIGHTS_MISSING = 2  # the export child's exit status when the weights cannot be loaded


class AutoOnnxEncoder(EncoderBase):
    def __init__(self, settings: Settings, model_name: str) -> None:
        super().__init__()
        self.settings = settings
        self.model_name = model_name
        self.image_only = model_name in TORCHVISION_MODELS
        self.has_text = not self.image_only
        self.weights = settings.weights
        self.onnx_root = Path(str(settings.onnx_dir))
        self._seed_note = f" (seed {settings.seed})"
        self._impl: EncoderBase | None = None

    def _load(self) -> EncoderInfo:
        started = time.monotonic()
        wanted = wanted_key(self.settings, self.model_name, self.onnx_root)
        reused = self._reusable(wanted)
        if reused is not None:
            return self._serve_onnx(f"ONNX export reused ({reused})")
        with self._export_lock():
            if self._reusable(wanted) is not None:  # another process exported it while this one waited
                return self._serve_onnx("ONNX export made by another process")
            return self._export_or_fall_back(started)

    def _reusable(self, wanted: str | None) -> str | None:
        """Why the export on disk may be served, or None when it must be made (again)."""
        try:
            manifest = json.loads((export_dir(self.onnx_root, self.model_name) / MANIFEST).read_text())
        except (OSError, ValueError):
            return None
        if manifest.get("model") != self.model_name or manifest.get("export_version") != EXPORT_VERSION:
            return None
        if wanted is not None:
            return "same weights" if manifest.get("source_key") == wanted else None
        # Chinese-CLIP's pretrained weights with no checkpoint here (a torch-free serving machine with a copied
        # export): the export is all there is to serve, and it says which weights it holds.
        if self.settings.weights == "pretrained" and self.settings.checkpoint_path is None and not self.image_only:
            logger.warning(
                "%s: no checkpoint in %s to compare with; serving the ONNX export made from %s",
                self.model_name,
                self.settings.model_dir,
                manifest.get("source"),
            )
            return "no checkpoint here to compare"
        return None

    def _serve_onnx(self, note: str) -> EncoderInfo:
        impl = onnx_encoder_for(self.settings, self.model_name)  # what IMGSEARCH_BACKEND=onnx serves
        info = impl.load()
        self._impl, self.weights = impl, info.weights
        return dataclasses.replace(info, note=note)

    def _export_or_fall_back(self, started: float) -> EncoderInfo:
        missing = missing_export_tools()
        if missing:
            raise ModelLoadError(
                f"no ONNX export of {self.model_name} in {self.onnx_root}, and {' and '.join(missing)} (needed to "
                f"make one) {'is' if len(missing) == 1 else 'are'} not installed: install the export extra "
                "(pip install 'cn-image-search[export]', or '.[export]' in the source folder), or copy an export "
                "made elsewhere with `imgsearch export-onnx` into that folder"
            )
        logger.info("%s: exporting to ONNX Runtime on first use (once per checkpoint) ...", self.model_name)
        returncode, message = run_export_child(self.settings, self.model_name, self.onnx_root)
        if returncode == 0:
            return self._serve_onnx(f"exported to ONNX on first use in {time.monotonic() - started:.0f} s")
        if returncode == WEIGHTS_MISSING:
            raise ModelLoadError(message)
        logger.error(
            "ONNX EXPORT FAILED for %s (%s): serving it with PyTorch instead (same results, slower). "
            "Set IMGSEARCH_BACKEND=torch to silence this.",
            self.model_name,
            message,
        )
        torch_encoder = torch_encoder_for(self.settings, self.model_name)
        info = torch_encoder.load()
        self._impl, self.weights = torch_encoder, torch_encoder.weights
        return dataclasses.replace(info, note=f"ONNX export failed ({message}); serving on PyTorch"[:500])

    @contextlib.contextmanager
    def _export_lock(self) -> Iterator[None]:
        self.onnx_root.mkdir(parents=True, exist_ok=True)
        with (self.onnx_root / f".{self.model_name}.lock").open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _encode_text_now(self, texts: Sequence[str]) -> np.ndarray:
        assert self._impl is not None
        return self._impl._encode_text_now(texts)

    def preprocess(self, image: Image.Image) -> Any:
        self.load()
        assert self._impl is not None
        return self._impl.preprocess(image)

    def _forward_pixels(self, pixels: Sequence[Any]) -> np.ndarray:
        assert self._impl is not None
        return self._impl._forward_pixels(pixels)

    def close(self) -> None:
        if self._impl is not None:
            self._impl.close()
        super().close()


def missing_export_tools() -> list[str]:
    """What a torch-free serving install lacks to make an export (it can still serve one made elsewhere)."""
    return [name for name in ("torch", "cn_clip") if importlib.util.find_spec(name) is None]


def run_export_child(settings: Settings, model_name: str, onnx_root: Path) -> tuple[int, str]:
    """The export in a child process (``operations.models.export_child``): PyTorch never enters the service's memory,
    and a crash while exporting cannot take the service down. Returns its exit status and last error line."""
    fields = ("model_name", "weights", "checkpoint_path", "model_dir", "seed", "device", "torch_threads", "onnx_dir")
    settings_json = settings.model_dump_json(include=set(fields))
    package_root = str(Path(__file__).resolve().parents[2])  # found whether installed or run from a checkout
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
    result = subprocess.run(
        [sys.executable, "-m", "operations.models.export_child", model_name, str(onnx_root), settings_json],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    if result.returncode != 0:
        logger.debug("export child of %s said:\n%s", model_name, result.stderr[-4000:])
    return result.returncode, lines[-1] if lines else f"exit status {result.returncode}"
