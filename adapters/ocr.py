"""Chinese and English text in images, read by PP-OCRv4 on ONNX Runtime (the ``rapidocr-onnxruntime`` package, the
``ocr`` extra: its detection, direction and recognition models ship inside the wheel, nothing is downloaded).

A service installed without the extra still starts; ``available()`` says so and OCR reports itself off."""

from __future__ import annotations

import importlib.util
import logging
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)

PACKAGE = "rapidocr_onnxruntime"
MISSING = "OCR is not installed: pip install 'cn-image-search[ocr]' (rapidocr-onnxruntime)"


@dataclass(frozen=True)
class OcrLine:
    text: str
    box: list[list[float]]  # four corners [x, y], clockwise from the top left, in the pixels of the image given
    confidence: float

    def scaled(self, factor: float) -> OcrLine:
        return OcrLine(self.text, [[round(x * factor, 1), round(y * factor, 1)] for x, y in self.box], self.confidence)

    def as_dict(self) -> dict[str, Any]:
        return {"text": self.text, "box": self.box, "confidence": round(self.confidence, 4)}


def available() -> bool:
    return importlib.util.find_spec(PACKAGE) is not None


def reads_at_write(settings: Any) -> bool:
    """IMGSEARCH_OCR=on and the extra installed: new and changed images are read as they are stored."""
    return settings.ocr == "on" and available()


class OcrReader:
    """One PP-OCR pipeline per process, loaded on first use (a locked, idempotent ``load``); ``read`` is
    serialised: the pipeline's ONNX sessions already use every thread they are given."""

    def __init__(self, threads: int = 0, min_confidence: float = 0.5) -> None:
        self.threads, self.min_confidence = threads, min_confidence
        self._engine: Any = None
        self._lock = threading.Lock()

    def load(self) -> None:
        with self._lock:
            if self._engine is not None:
                return
            if not available():
                raise RuntimeError(MISSING)
            from rapidocr_onnxruntime import RapidOCR

            options: dict[str, Any] = {"text_score": self.min_confidence}
            if self.threads > 0:
                options["intra_op_num_threads"] = self.threads
            self._engine = RapidOCR(**options)
            logger.info("OCR loaded: PP-OCRv4 (rapidocr-onnxruntime), %s threads", self.threads or "all")

    def read(self, image: Image.Image) -> list[OcrLine]:
        """The recognised lines, top to bottom; an image without text gives an empty list."""
        self.load()
        pixels = np.asarray(image.convert("RGB"))[:, :, ::-1]  # the pipeline reads OpenCV's BGR order
        with self._lock:
            found, _ = self._engine(np.ascontiguousarray(pixels))
        lines = [
            OcrLine(str(text).strip(), [[float(x), float(y)] for x, y in box], float(score))
            for box, text, score in (found or [])
            if str(text).strip()
        ]
        return sorted(lines, key=lambda line: (line.box[0][1], line.box[0][0]))
