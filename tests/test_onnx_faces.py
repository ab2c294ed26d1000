"""A face model brought as ONNX files (IMGSEARCH_FACE_MODEL=onnx:<name>): the SCRFD-style outputs decoded into boxes
in the picture's pixels, the five points aligned to ArcFace's template, and the pair serving the face job in
place of dlib. The pair here is tiny and made by the test (a detector that always sees one planted face, an
embedding of the aligned crop's mean colour): real packs (InsightFace's) are not on PyPI."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image, ImageDraw

from adapters.onnx_faces import TEMPLATE, OnnxFaces, similarity
from tests.conftest import wait_for_job

SIZE, STRIDES, ANCHORS = 640, (8, 16, 32), 2
PICTURE = (1280, 960)  # the detector reads it at half size
FACE = (400, 300, 600, 540)  # x1, y1, x2, y2 in the picture
POINTS = [(460, 380), (540, 380), (500, 430), (470, 480), (530, 480)]
DIM = 8


def _detector() -> onnx.ModelProto:
    """Nine outputs as SCRFD gives them; one anchor of stride 32 holds the planted face."""
    scale = SIZE / max(PICTURE)
    cx, cy, stride = 256, 224, 32
    outputs, nodes, names = [], [], []
    tensors: dict[str, np.ndarray] = {}
    for s in STRIDES:
        n = (SIZE // s) ** 2 * ANCHORS
        tensors[f"score_{s}"] = np.zeros((n, 1), np.float32)
        tensors[f"bbox_{s}"] = np.zeros((n, 4), np.float32)
        tensors[f"kps_{s}"] = np.zeros((n, 10), np.float32)
    index = ((cy // stride) * (SIZE // stride) + cx // stride) * ANCHORS
    x1, y1, x2, y2 = (v * scale for v in FACE)
    tensors["score_32"][index] = 0.9
    tensors["bbox_32"][index] = [(cx - x1) / stride, (cy - y1) / stride, (x2 - cx) / stride, (y2 - cy) / stride]
    tensors["kps_32"][index] = [
        coordinate for x, y in POINTS for coordinate in ((x * scale - cx) / stride, (y * scale - cy) / stride)
    ]
    for kind in ("score", "bbox", "kps"):
        for s in STRIDES:
            name = f"{kind}_{s}"
            names.append(name)
            nodes.append(helper.make_node("Constant", [], [name], value=numpy_helper.from_array(tensors[name])))
            outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(tensors[name].shape)))
    image = helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, SIZE, SIZE])
    graph = helper.make_graph(nodes, "tiny-scrfd", [image], outputs)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def _embedding() -> onnx.ModelProto:
    weights = np.random.default_rng(3).normal(size=(3, DIM)).astype(np.float32)
    nodes = [
        helper.make_node("GlobalAveragePool", ["crop"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("MatMul", ["flat", "w"], ["vector"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny-arcface",
        [helper.make_tensor_value_info("crop", TensorProto.FLOAT, [1, 3, 112, 112])],
        [helper.make_tensor_value_info("vector", TensorProto.FLOAT, [1, DIM])],
        [numpy_helper.from_array(weights, "w")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


@pytest.fixture
def pack(tmp_path: Path) -> Path:
    """``<custom_models_dir>`` with faces/tiny/: the two graphs and their manifest."""
    folder = tmp_path / "custom" / "faces" / "tiny"
    folder.mkdir(parents=True)
    onnx.save(_detector(), folder / "det.onnx")
    onnx.save(_embedding(), folder / "rec.onnx")
    manifest = {
        "detector": {"file": "det.onnx", "input_size": SIZE, "strides": list(STRIDES), "anchors": ANCHORS},
        "embedding": {"file": "rec.onnx", "input_size": 112, "dim": DIM},
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return tmp_path / "custom"


def _picture(colour: tuple[int, int, int]) -> Image.Image:
    picture = Image.new("RGB", PICTURE, (30, 30, 30))
    ImageDraw.Draw(picture).rectangle(FACE, fill=colour)
    return picture


def test_the_outputs_become_a_box_in_the_pictures_pixels_and_a_unit_vector(pack: Path) -> None:
    model = OnnxFaces("onnx:tiny", pack)
    assert model.dim == DIM
    found = model.find(_picture((200, 150, 120)))
    assert len(found) == 1
    x, y, w, h = found[0].box
    assert (x, y, x + w, y + h) == pytest.approx(FACE, abs=1) and found[0].score == pytest.approx(0.9)
    assert found[0].vector.shape == (DIM,) and np.linalg.norm(found[0].vector) == pytest.approx(1.0, abs=1e-5)
    # The crop is the face (aligned on its points): another colour there, another vector; the same, the same.
    other = model.find(_picture((40, 90, 220)))[0].vector
    again = model.find(_picture((200, 150, 120)))[0].vector
    assert np.allclose(again, found[0].vector) and float(other @ found[0].vector) < 0.99


def test_alignment_recovers_a_rotation_scale_and_shift() -> None:
    angle, scale, shift = np.radians(12), 2.5, np.array([300.0, 120.0])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    seen = (scale * (rotation @ TEMPLATE.T)).T + shift  # the template as a photo shows it
    matrix = similarity(seen, TEMPLATE)
    back = (matrix[:, :2] @ seen.T).T + matrix[:, 2]
    assert np.allclose(back, TEMPLATE, atol=1e-6)


def test_the_pair_serves_the_face_job_in_place_of_dlib(pack: Path, make_settings, make_client) -> None:
    settings = make_settings(face_model="onnx:tiny", custom_models_dir=pack)
    with make_client(settings) as client:
        health = client.get("/healthz").json()
        assert health["faces"] == "off" and health["face_model"].startswith("onnx:tiny")
        data = io.BytesIO()
        _picture((200, 150, 120)).save(data, "JPEG", quality=92)
        body = client.post("/img/upload", data={"collection": "c"}, files=[("files", ("a.jpg", data.getvalue(), "x"))])
        image_id = body.json()["results"][0]["image_id"]
        job = wait_for_job(client, client.post("/collections/c/faces", json={}).json()["job_id"])
        assert job["state"] == "succeeded" and job["loaded"] == 1, job
        faces = client.get(f"/img/c/{image_id}/faces").json()
        assert len(faces) == 1
        box = faces[0]["box"]
        assert (box["x"], box["y"], box["width"], box["height"]) == pytest.approx((400, 300, 200, 240), abs=3)
        services = client.app.state.services
        assert services.vectors.get("c__faces", [faces[0]["id"]])[faces[0]["id"]].shape == (DIM,)
