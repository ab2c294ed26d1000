"""A tiny image model for tests, written as a user's ONNX model (``onnx:<name>``): the picture averaged down to
12x12 colour cells, each vector centred on its own mean. Unlike a random-weight Chinese-CLIP, whose vectors cannot
tell a 5%-cropped copy from a different picture, it has the property near-duplicate detection relies on in real
CLIP vectors: copies score close to 1, different pictures far below."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
from onnx import TensorProto, helper

SIZE, CELLS = 96, 12


def write_thumbnail_model(folder: Path) -> str:
    """Writes model.onnx and manifest.json into ``folder``; returns the model name to use (``onnx:<folder>``)."""
    folder.mkdir(parents=True, exist_ok=True)
    kernel = SIZE // CELLS
    nodes = [
        helper.make_node("AveragePool", ["image"], ["cells"], kernel_shape=[kernel, kernel], strides=[kernel, kernel]),
        helper.make_node("Flatten", ["cells"], ["flat"], axis=1),
        helper.make_node("ReduceMean", ["flat"], ["mean"], axes=[1], keepdims=1),
        helper.make_node("Sub", ["flat", "mean"], ["features"]),
    ]
    graph = helper.make_graph(
        nodes,
        "thumbnail",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 3 * CELLS * CELLS])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, folder / "model.onnx")
    manifest = {"output_dim": 3 * CELLS * CELLS, "input_size": SIZE, "mean": [0, 0, 0], "std": [1, 1, 1]}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return f"onnx:{folder.name}"
