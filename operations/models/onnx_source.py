"""Which weights an ONNX export was made from, worked out without importing torch.

An export is reused only when its manifest names the same weights (the checkpoint's SHA-256, torchvision's
named default weights, or the random seed) and the same ``EXPORT_VERSION`` as today's code would produce.
Hashing a multi-GB checkpoint on every start would cost seconds, so each file's hash is kept beside the
exports, keyed by its size and mtime.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from pathlib import Path

from adapters.encoders.clip_encoder import ChineseClipEncoder
from adapters.encoders.torchvision_encoder import DEFAULT_WEIGHTS, TORCHVISION_MODELS, TorchvisionEncoder
from config import Settings

logger = logging.getLogger(__name__)

# Bump when the exported graphs or the manifest change meaning: older exports are then made again.
EXPORT_VERSION = 3  # 3: the text graph takes any token count (no padding sent); the logit scale
# cn_clip's checkpoint file names (cn_clip.clip.utils._MODELS), so the file is found without importing torch.
CHECKPOINT_FILES = {
    "RN50": "clip_cn_rn50.pt",
    "ViT-B-16": "clip_cn_vit-b-16.pt",
    "ViT-L-14": "clip_cn_vit-l-14.pt",
    "ViT-L-14-336": "clip_cn_vit-l-14-336.pt",
    "ViT-H-14": "clip_cn_vit-h-14.pt",
}
_HASHES = "checkpoint-sha256.json"


def wanted_key(settings: Settings, model_name: str, cache_dir: Path) -> str | None:
    """The weights the settings ask for, as an export's manifest names them; None when not on disk (yet)."""
    if settings.weights == "random":
        return f"random:seed={settings.seed}"
    model_dir = Path(str(settings.model_dir))
    if model_name in TORCHVISION_MODELS:
        local = model_dir / f"{model_name}.pth"
        return _file_key(local, cache_dir) if local.is_file() else f"torchvision:{DEFAULT_WEIGHTS[model_name]}"
    own_path = settings.checkpoint_path if model_name == settings.model_name else None
    path = own_path if own_path is not None else model_dir / CHECKPOINT_FILES[model_name]
    return _file_key(path, cache_dir) if path.is_file() else None


def encoder_source_key(encoder: ChineseClipEncoder | TorchvisionEncoder, cache_dir: Path) -> str | None:
    """The same key for weights a PyTorch encoder has loaded (what an export is made from)."""
    if encoder.weights == "random":
        return f"random:seed={encoder.seed}"
    if isinstance(encoder, TorchvisionEncoder):
        if encoder.local_weights is None:
            return f"torchvision:{DEFAULT_WEIGHTS[encoder.model_name]}"
        return _file_key(encoder.local_weights, cache_dir)
    return _file_key(encoder.loaded_from, cache_dir) if encoder.loaded_from else None


def _file_key(path: Path, cache_dir: Path) -> str:
    return "sha256:" + checkpoint_sha256(path, cache_dir)


def checkpoint_sha256(path: Path, cache_dir: Path | None = None) -> str:
    stat = path.stat()
    fingerprint = f"{stat.st_size}:{stat.st_mtime_ns}"
    cache_file = (cache_dir or path.parent) / _HASHES
    cache = _read_cache(cache_file)
    entry = cache.get(str(path.resolve()))
    if entry and entry.get("fingerprint") == fingerprint:
        return str(entry["sha256"])
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    cache[str(path.resolve())] = {"fingerprint": fingerprint, "sha256": digest.hexdigest()}
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        staging = cache_file.with_name(f".{cache_file.name}.{uuid.uuid4().hex[:8]}")
        staging.write_text(json.dumps(cache, indent=1))
        os.replace(staging, cache_file)
    except OSError as exc:  # a read-only model folder: hash again next time
        logger.debug("could not keep the checkpoint hash in %s: %s", cache_file, exc)
    return digest.hexdigest()


def _read_cache(path: Path) -> dict:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}
