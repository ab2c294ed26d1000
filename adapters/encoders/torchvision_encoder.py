"""Image-only encoders from torchvision, as the source documents use for image-to-image search:
ResNet50 without its last layer (2048-d) and VGG16 without its last layer (4096-d). They have no text side."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from adapters.encoders.encoder_base import EncoderBase, EncoderInfo, ModelLoadError

logger = logging.getLogger(__name__)

TORCHVISION_MODELS = {"resnet50": 2048, "vgg16": 4096}
IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
# torchvision's default weights for each (what IMGSEARCH_WEIGHTS=pretrained downloads), named without importing it.
DEFAULT_WEIGHTS = {"resnet50": "ResNet50_Weights.IMAGENET1K_V2", "vgg16": "VGG16_Weights.IMAGENET1K_V1"}


class TorchvisionEncoder(EncoderBase):
    has_text = False

    def __init__(self, model_name: str, weights: str, model_dir: Path | None, seed: int = 0, threads: int = 0) -> None:
        if model_name not in TORCHVISION_MODELS:
            raise ModelLoadError(f"unknown torchvision model {model_name!r}")
        super().__init__()
        self.model_name = model_name
        self.weights = weights
        self.model_dir = Path(model_dir or "models")
        self.seed = seed
        self.threads = threads or (os.cpu_count() or 1)
        self._seed_note = f" (seed {seed})"
        self._model: Any = None
        self._transform: Any = None
        self.local_weights: Path | None = None  # the state_dict file read, if any (export manifests)

    @property
    def weights_file(self) -> Path:
        """Where a local state_dict for this model is looked for before downloading."""
        return self.model_dir / f"{self.model_name}.pth"

    def _load(self) -> EncoderInfo:
        import torch
        from torchvision import models, transforms

        torch.set_num_threads(self.threads)
        build = models.resnet50 if self.model_name == "resnet50" else models.vgg16
        local = self.weights_file
        if self.weights == "random":
            torch.manual_seed(self.seed)
            network, kind, source = build(weights=None), "random", f"random init, seed {self.seed}"
            self._calibrate(torch, network)
        elif local.is_file():
            network, kind, source = build(weights=None), "checkpoint", str(local)
            network.load_state_dict(torch.load(local, map_location="cpu"))
            self.local_weights = local
        else:
            enum = models.ResNet50_Weights if self.model_name == "resnet50" else models.VGG16_Weights
            try:
                network = build(weights=enum.DEFAULT)
            except Exception as exc:
                raise ModelLoadError(
                    f"could not download torchvision {self.model_name} weights ({exc}); put a state_dict at "
                    f"{local}, or set IMGSEARCH_WEIGHTS=random for an offline test build"
                ) from exc
            kind, source = "pretrained", f"torchvision {enum.DEFAULT}"
        if self.model_name == "resnet50":
            network.fc = torch.nn.Identity()  # 2048-d pooled features
        else:
            network.classifier = torch.nn.Sequential(*list(network.classifier.children())[:-1])  # 4096-d
        self._model = network.eval()
        self._transform = transforms.Compose(
            [
                transforms.Resize(256),
                transforms.CenterCrop(224),
                transforms.ToTensor(),
                transforms.Normalize(IMAGENET["mean"], IMAGENET["std"]),
            ]
        )
        return EncoderInfo(self.model_name, TORCHVISION_MODELS[self.model_name], kind, source, "cpu", 224, "torch")

    def _calibrate(self, torch: Any, network: Any) -> None:
        """Seeded BatchNorm statistics, so random features differ from image to image (see clip_encoder)."""
        batch_norms = [m for m in network.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        if not batch_norms:
            return
        for bn in batch_norms:
            bn.reset_running_stats()
            bn.momentum = None
        network.train()
        with torch.no_grad():
            network(torch.randn(16, 3, 224, 224, generator=torch.Generator().manual_seed(self.seed)))

    def _encode_text_now(self, texts: Sequence[str]) -> np.ndarray:
        raise ModelLoadError(f"{self.model_name} is an image-only model: it cannot encode text")

    def preprocess(self, image: Image.Image) -> Any:
        self.load()
        return self._transform(image.convert("RGB"))

    def _forward_pixels(self, pixels: Sequence[Any]) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self._model(torch.stack(list(pixels))).float().numpy()
