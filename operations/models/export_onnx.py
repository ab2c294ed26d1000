"""Export a Chinese-CLIP model's text and image encoders to ONNX with a dynamic batch axis (Chinese-CLIP's
own export is batch-size 1 only), and torchvision's ResNet50 / VGG16 feature extractors likewise, each with a
manifest the ONNX backend checks when it loads.

An export is written into a temporary folder, checked against PyTorch (every vector must agree to cosine
``PARITY_MIN_COSINE``) and only then moved into place, so a crash or a second process never leaves a half
export where the service looks for one.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from adapters.encoders.clip_encoder import ChineseClipEncoder
from adapters.encoders.clip_onnx import IMAGE_FILE, MANIFEST, TEXT_FILE, VOCAB_FILE, OnnxClipEncoder, export_dir
from adapters.encoders.clip_tokenizer import VOCAB
from adapters.encoders.encoder_base import EncoderBase
from adapters.encoders.onnx_image_encoder import MODEL_FILE as IMAGE_ONLY_FILE
from adapters.encoders.onnx_image_encoder import OnnxImageEncoder
from adapters.encoders.torchvision_encoder import IMAGENET, TorchvisionEncoder
from operations.models.onnx_source import EXPORT_VERSION, encoder_source_key

logger = logging.getLogger(__name__)
OPSET = 17
PARITY_MIN_COSINE = 0.99999
# Short and long (past the 52-token context) texts, in one batch and alone: the text graph gets each batch
# trimmed to its longest text, so every width from 3 tokens to the full context is checked.
_PARITY_TEXTS = ["一只猫在沙发上睡觉", "A dog runs on the beach", "蓝色的海和白色的帆船", "x", "山" * 70]


class ExportMismatch(RuntimeError):
    """The exported graph does not give PyTorch's vectors: it is not served."""


def export(encoder: ChineseClipEncoder | TorchvisionEncoder, onnx_root: Path) -> Path:
    """Writes the graphs and manifest.json under ``onnx_root/<model>``; returns that folder."""
    info = encoder.load()
    started = time.monotonic()
    target = export_dir(onnx_root, info.model)
    onnx_root.mkdir(parents=True, exist_ok=True)
    staging = onnx_root / f".{info.model}.export-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        if isinstance(encoder, TorchvisionEncoder):
            _write_image_only(encoder, staging)
            extra = {"output_dim": info.dim, "input_size": 224, "resize_shorter": 256, **IMAGENET}
            source_file = encoder.local_weights
        else:
            _write_graphs(encoder, staging)
            shutil.copyfile(VOCAB, staging / VOCAB_FILE)  # the bundle holds all that serving needs
            extra = {
                "dim": info.dim,
                "input_resolution": info.input_resolution,
                "context_length": 52,
                "dynamic_tokens": True,  # text.onnx takes [batch, tokens]: the service sends no padding columns
                "logit_scale": info.logit_scale,  # label probabilities (POST /img/classify) need the temperature
            }
            source_file = encoder.loaded_from
        manifest = {
            "model": info.model,
            **extra,
            "opset": OPSET,
            "export_version": EXPORT_VERSION,
            "weights": info.weights,
            "source": info.source if source_file is None else str(source_file),
            "source_key": encoder_source_key(encoder, onnx_root),
            "exported_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "torch": _torch_version(),
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
        manifest["parity_min_cosine"] = _check_parity(encoder, staging, onnx_root)
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
        _swap_in(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("exported %s to %s in %.1f s", info.model, target, time.monotonic() - started)
    return target


def _write_image_only(encoder: TorchvisionEncoder, folder: Path) -> None:
    import torch

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            encoder._model.float().cpu().eval(),
            (torch.randn(2, 3, 224, 224),),
            str(folder / IMAGE_ONLY_FILE),
            input_names=["image"],
            output_names=["features"],
            dynamic_axes={"image": {0: "batch"}, "features": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )


def _write_graphs(encoder: ChineseClipEncoder, folder: Path) -> None:
    import torch
    from cn_clip.clip.utils import tokenize

    model = encoder._model.float().cpu().eval()  # a wrapper left in train mode exports garbage

    class Text(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.clip = model  # a registered submodule: its weights become graph initialisers

        def forward(self, text: Any) -> Any:
            return self.clip.encode_text(text)

    class Image(Text):
        def forward(self, image: Any) -> Any:
            return self.clip.encode_image(image)

    resolution = encoder.info.input_resolution
    examples = [
        (Text().eval(), tokenize(["一只猫", "example"]), "text", TEXT_FILE, {0: "batch", 1: "tokens"}),
        (Image().eval(), torch.randn(2, 3, resolution, resolution), "image", IMAGE_FILE, {0: "batch"}),
    ]
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        for module, example, name, filename, axes in examples:
            torch.onnx.export(
                module,
                (example,),
                str(folder / filename),
                input_names=[name],
                output_names=["features"],
                dynamic_axes={name: axes, "features": {0: "batch"}},
                opset_version=OPSET,
                dynamo=False,
            )


def _check_parity(encoder: ChineseClipEncoder | TorchvisionEncoder, folder: Path, onnx_root: Path) -> float:
    """Text and image vectors from the staged export against PyTorch's; raises ExportMismatch below the bar."""
    from PIL import Image

    rng = np.random.default_rng(0)
    pictures = [Image.fromarray(rng.integers(0, 256, (200 + 40 * i, 260, 3), dtype=np.uint8)) for i in range(2)]
    staged: EncoderBase
    if isinstance(encoder, TorchvisionEncoder):
        staged = OnnxImageEncoder(encoder.model_name, onnx_root, encoder.threads, directory=folder)
    else:
        staged = OnnxClipEncoder(encoder.model_name, onnx_root, threads=encoder.threads, directory=folder)
    try:
        pairs = [(encoder.encode_images(pictures), staged.encode_images(pictures))]
        if encoder.has_text:
            pairs.append((encoder.encode_text(_PARITY_TEXTS), staged.encode_text(_PARITY_TEXTS)))
            pairs += [(encoder.encode_text([text]), staged.encode_text([text])) for text in _PARITY_TEXTS]
    finally:
        staged.close()
    worst = float(min((a * b).sum(axis=1).min() for a, b in pairs))
    if worst < PARITY_MIN_COSINE:
        raise ExportMismatch(
            f"the ONNX export of {encoder.model_name} gives vectors that differ from PyTorch's "
            f"(lowest cosine {worst:.6f}, need {PARITY_MIN_COSINE})"
        )
    return round(worst, 7)


def _swap_in(staging: Path, target: Path) -> None:
    """Replace ``target`` by ``staging`` with renames, so a reader sees the old export, the new one or none."""
    old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def _torch_version() -> str:
    import torch

    return str(torch.__version__)
