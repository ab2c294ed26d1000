"""The encoder objects of one model on one backend, built from the settings: ONNX Runtime (Chinese-CLIP exports,
torchvision exports, custom ``onnx:<name>`` models) and PyTorch. models.py picks between them; onnx_auto.py uses
both (it serves the export, or falls back to PyTorch), so they live here, below both."""

from __future__ import annotations

from pathlib import Path

from adapters.encoders.clip_encoder import ChineseClipEncoder
from adapters.encoders.clip_onnx import OnnxClipEncoder
from adapters.encoders.encoder_base import EncoderBase
from adapters.encoders.onnx_image_encoder import PREFIX as ONNX_PREFIX
from adapters.encoders.onnx_image_encoder import OnnxImageEncoder
from adapters.encoders.torchvision_encoder import TORCHVISION_MODELS, TorchvisionEncoder
from config import Settings


def onnx_encoder_for(settings: Settings, name: str) -> EncoderBase:
    """The ONNX Runtime encoder of a model (IMGSEARCH_BACKEND=onnx, and what ``auto`` serves once exported)."""
    if name.startswith(ONNX_PREFIX):
        return OnnxImageEncoder(
            name,
            Path(str(settings.custom_models_dir)),
            settings.onnx_threads,
            spin=settings.onnx_spin,
            device=settings.onnx_device,
        )
    onnx_root = Path(str(settings.onnx_dir))
    if name in TORCHVISION_MODELS:
        return OnnxImageEncoder(
            name,
            onnx_root,
            settings.onnx_threads,
            directory=onnx_root / name,
            spin=settings.onnx_spin,
            device=settings.onnx_device,
        )
    return OnnxClipEncoder(
        name,
        onnx_root,
        settings.onnx_threads,
        quantize=settings.onnx_quantize,
        spin=settings.onnx_spin,
        device=settings.onnx_device,
    )


def torch_encoder_for(settings: Settings, name: str) -> ChineseClipEncoder | TorchvisionEncoder:
    """The PyTorch encoder of a Chinese-CLIP or torchvision model (IMGSEARCH_BACKEND=torch, and exports)."""
    if name in TORCHVISION_MODELS:
        return TorchvisionEncoder(name, settings.weights, settings.model_dir, settings.seed, settings.torch_threads)
    return ChineseClipEncoder(
        model_name=name,
        weights=settings.weights,
        checkpoint_path=settings.checkpoint_path if name == settings.model_name else None,
        model_dir=settings.model_dir,
        device=settings.device,
        seed=settings.seed,
        threads=settings.torch_threads,
    )
