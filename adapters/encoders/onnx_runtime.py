"""One way to open an ONNX Runtime session for every ONNX encoder, so thread settings are the same everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def cpu_session(path: Path, threads: int, spin: bool = False) -> Any:
    """``spin``: ONNX Runtime's threads busy-wait for work between runs. That saves ~1 ms on a lone query but
    burns the CPU that concurrent requests need: on 2 cores, off gave 24% more searches/s under 8 clients
    (bench/search_default.py), so it is off unless IMGSEARCH_ONNX_SPIN=true."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
