"""Export a Chinese-CLIP model's text and image encoders to ONNX with a dynamic batch axis (Chinese-CLIP's
own export is batch-size 1 only), with a manifest the ONNX backend checks when it loads."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import warnings
from pathlib import Path
from typing import Any

from adapters.clip_encoder import ChineseClipEncoder
from adapters.clip_onnx import IMAGE_FILE, MANIFEST, TEXT_FILE, export_dir

logger = logging.getLogger(__name__)
OPSET = 17


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _source(encoder: ChineseClipEncoder) -> dict[str, Any]:
    info = encoder.info
    if info.weights == "random":
        return {"source": f"random init, seed {encoder.seed}", "source_sha256": None}
    checkpoint = encoder.loaded_from
    return {"source": str(checkpoint or info.source), "source_sha256": _sha256(checkpoint) if checkpoint else None}


def export(encoder: ChineseClipEncoder, onnx_root: Path) -> Path:
    """Writes text.onnx, image.onnx and manifest.json under ``onnx_root/<model>``; returns that folder."""
    import torch
    from cn_clip.clip.utils import tokenize

    info = encoder.load()
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

    target = export_dir(onnx_root, info.model)
    target.mkdir(parents=True, exist_ok=True)
    resolution = info.input_resolution
    examples = [
        (Text().eval(), tokenize(["一只猫", "example"]), "text", TEXT_FILE),
        (Image().eval(), torch.randn(2, 3, resolution, resolution), "image", IMAGE_FILE),
    ]
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        for module, example, name, filename in examples:
            torch.onnx.export(
                module,
                (example,),
                str(target / filename),
                input_names=[name],
                output_names=["features"],
                dynamic_axes={name: {0: "batch"}, "features": {0: "batch"}},
                opset_version=OPSET,
                dynamo=False,
            )
    manifest = {
        "model": info.model,
        "dim": info.dim,
        "input_resolution": resolution,
        "context_length": 52,
        "opset": OPSET,
        "weights": info.weights,
        **_source(encoder),
        "exported_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "torch": torch.__version__,
    }
    (target / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
    logger.info("exported %s to %s", info.model, target)
    return target
