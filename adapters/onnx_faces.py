"""A face model a user brings as ONNX files (IMGSEARCH_FACE_MODEL=onnx:<name>): an SCRFD-style detector and an
ArcFace-style embedding, as InsightFace's packs hold them (det_10g.onnx + w600k_r50.onnx, for example). The folder
``<custom_models_dir>/faces/<name>/`` holds both files and a ``manifest.json`` that says how to feed them:

    {"detector": {"file": "det_10g.onnx", "input_size": 640, "strides": [8, 16, 32], "anchors": 2,
                  "mean": 127.5, "std": 128.0, "score": 0.5, "nms": 0.4},
     "embedding": {"file": "w600k_r50.onnx", "input_size": 112, "mean": 127.5, "std": 127.5, "dim": 512}}

The detector reads the picture letterboxed into the top-left of a square, RGB, (x − mean) / std, and gives per
stride a score, four distances from the anchor centre to the box's sides, and five landmarks (in strides): nine
outputs, scores first, then boxes, then landmarks. Faces are aligned on the five points to ArcFace's 112-pixel
template by a similarity transform, then embedded; vectors are scaled to unit length."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from adapters.faces import BOX_SHARE, FoundFace

PREFIX = "onnx:"
MANIFEST = "manifest.json"
# ArcFace's five points (eyes, nose tip, mouth corners) in a 112 × 112 crop.
TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)


class OnnxFaces:
    """Loaded on first use (a locked, idempotent ``load``); the manifest is read at once, for the vectors' size."""

    def __init__(self, name: str, root: Path, min_size: int = 40, min_score: float = 0.0, threads: int = 0) -> None:
        self.name = name if name.startswith(PREFIX) else PREFIX + name
        self.directory = Path(root) / "faces" / self.name.removeprefix(PREFIX)
        manifest_path = self.directory / MANIFEST
        if not manifest_path.is_file():
            raise ValueError(f"face model {self.name!r}: no {manifest_path} (see adapters/onnx_faces.py)")
        self.manifest = json.loads(manifest_path.read_text())
        self.dim = int(self.manifest["embedding"]["dim"])
        self.min_size, self.min_score, self.threads = min_size, min_score, threads
        self._sessions: tuple[Any, Any] | None = None
        self._lock = threading.Lock()

    def load(self) -> None:
        with self._lock:
            if self._sessions is not None:
                return
            from adapters.encoders.onnx_runtime import cpu_session

            threads = self.threads or 1
            detector = cpu_session(self.directory / self.manifest["detector"]["file"], threads)
            embedding = cpu_session(self.directory / self.manifest["embedding"]["file"], threads)
            out = embedding.get_outputs()[0].shape[-1]
            if isinstance(out, int) and out != self.dim:
                raise ValueError(
                    f"face model {self.name!r}: the embedding gives {out}-d vectors, manifest says {self.dim}"
                )
            self._sessions = (detector, embedding)

    def find(self, picture: Image.Image) -> list[FoundFace]:
        self.load()
        assert self._sessions is not None
        rgb = picture.convert("RGB")
        boxes, scores, points = self._detect(rgb)
        found = []
        for box, score, landmarks in zip(boxes, scores, points, strict=True):
            x1, y1, x2, y2 = box
            if min(x2 - x1, y2 - y1) < self.min_size * BOX_SHARE or score < self.min_score:
                continue
            vector = self._embed(rgb, landmarks)
            found.append(FoundFace((round(x1), round(y1), round(x2 - x1), round(y2 - y1)), float(score), vector))
        return sorted(found, key=lambda f: -f.score)

    def _detect(self, rgb: Image.Image) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        spec = self.manifest["detector"]
        size = int(spec.get("input_size", 640))
        scale = size / max(rgb.size)
        resized = rgb.resize((max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale))), Image.BILINEAR)
        canvas = np.zeros((size, size, 3), dtype=np.float32)
        canvas[: resized.height, : resized.width] = np.asarray(resized, dtype=np.float32)
        blob = ((canvas - float(spec.get("mean", 127.5))) / float(spec.get("std", 128.0))).transpose(2, 0, 1)[None]
        session = self._sessions[0]  # type: ignore[index]
        outputs = session.run(None, {session.get_inputs()[0].name: blob.astype(np.float32)})
        strides = [int(s) for s in spec.get("strides", [8, 16, 32])]
        anchors = int(spec.get("anchors", 2))
        threshold = float(spec.get("score", 0.5))
        boxes, scores, points = [], [], []
        for index, stride in enumerate(strides):
            score = np.asarray(outputs[index]).reshape(-1)
            distance = np.asarray(outputs[index + len(strides)]).reshape(-1, 4) * stride
            marks = np.asarray(outputs[index + 2 * len(strides)]).reshape(-1, 10) * stride
            cells = size // stride
            ys, xs = np.mgrid[:cells, :cells]
            centres = np.repeat(np.stack([xs, ys], axis=-1).reshape(-1, 2) * stride, anchors, axis=0).astype(np.float32)
            keep = np.flatnonzero(score >= threshold)
            c = centres[keep]
            boxes.append(np.hstack([c - distance[keep, :2], c + distance[keep, 2:]]))
            points.append(np.tile(c, 5) + marks[keep])
            scores.append(score[keep])
        if not scores or not sum(len(s) for s in scores):
            return np.zeros((0, 4)), np.zeros(0), np.zeros((0, 10))
        box, score, mark = np.vstack(boxes) / scale, np.concatenate(scores), np.vstack(points) / scale
        kept = _nms(box, score, float(spec.get("nms", 0.4)))
        return box[kept], score[kept], mark[kept].reshape(-1, 5, 2)

    def _embed(self, rgb: Image.Image, landmarks: np.ndarray) -> np.ndarray:
        spec = self.manifest["embedding"]
        side = int(spec.get("input_size", 112))
        target = TEMPLATE * (side / 112.0)
        matrix = similarity(np.asarray(landmarks, dtype=np.float64), target)  # picture -> crop
        inverse = np.linalg.inv(np.vstack([matrix, [0, 0, 1]]))[:2]  # PIL maps crop pixels back to the picture
        crop = rgb.transform((side, side), Image.AFFINE, tuple(inverse.reshape(-1)), resample=Image.BILINEAR)
        pixels = (np.asarray(crop, dtype=np.float32) - float(spec.get("mean", 127.5))) / float(spec.get("std", 127.5))
        session = self._sessions[1]  # type: ignore[index]
        vector = np.asarray(session.run(None, {session.get_inputs()[0].name: pixels.transpose(2, 0, 1)[None]})[0])
        vector = vector.reshape(-1).astype(np.float32)
        return vector / max(float(np.linalg.norm(vector)), 1e-12)


def similarity(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 2 × 3 similarity transform (rotation, uniform scale, shift) taking ``source`` points nearest to
    ``target`` (Umeyama's least squares, as InsightFace's alignment uses)."""
    mean_s, mean_t = source.mean(0), target.mean(0)
    s, t = source - mean_s, target - mean_t
    covariance = t.T @ s / len(source)
    u, d, vt = np.linalg.svd(covariance)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1
    rotation = u @ sign @ vt
    scale = np.trace(np.diag(d) @ sign) / s.var(0).sum()
    shift = mean_t - scale * rotation @ mean_s
    return np.hstack([scale * rotation, shift[:, None]])


def _nms(boxes: np.ndarray, scores: np.ndarray, overlap: float) -> list[int]:
    order = list(np.argsort(-scores))
    kept: list[int] = []
    while order:
        best = order.pop(0)
        kept.append(int(best))
        if not order:
            break
        rest = np.array(order)
        x1 = np.maximum(boxes[best, 0], boxes[rest, 0])
        y1 = np.maximum(boxes[best, 1], boxes[rest, 1])
        x2 = np.minimum(boxes[best, 2], boxes[rest, 2])
        y2 = np.minimum(boxes[best, 3], boxes[rest, 3])
        inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
        area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
        iou = inter / (area(boxes[best]) + area(boxes[rest]) - inter + 1e-9)
        order = [int(i) for i, v in zip(rest, iou, strict=True) if v <= overlap]
    return kept
