"""IMGSEARCH_ONNX_QUANTIZE=int8: dynamically quantised copies of an ONNX export, made once beside it.

Only MatMul and Gemm weights become int8 (onnxruntime's dynamic quantisation): that is where a transformer text
encoder spends its time (measured here: RN50's text encoder 3x faster, vectors at cosine 0.9998 of fp32).
Convolutions stay fp32: quantised, ResNet's image encoder ran 5x slower on this CPU and lost accuracy
(cosine 0.94); even with only its MatMuls quantised, RN50's image vectors fell to cosine 0.58 for some
pictures, so ``OnnxClipEncoder`` quantises image encoders of ViT models only. Copies are written under a
temporary name and renamed, so a crash never leaves half a model.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from pathlib import Path

logger = logging.getLogger(__name__)
QUANTIZED_OPS = ["MatMul", "Gemm"]


def int8_copy(model: Path) -> Path:
    """``<name>.int8.onnx`` beside ``<name>.onnx``, made on first use."""
    target = model.with_name(f"{model.stem}.int8.onnx")
    if target.is_file():
        return target
    from onnxruntime.quantization import QuantType, quantize_dynamic

    started = time.monotonic()
    staging = target.with_name(f".{target.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        quantize_dynamic(str(model), str(staging), weight_type=QuantType.QInt8, op_types_to_quantize=QUANTIZED_OPS)
        os.replace(staging, target)
    finally:
        staging.unlink(missing_ok=True)
    logger.info("quantised %s to int8 in %.1f s (%s)", model, time.monotonic() - started, target.name)
    return target
