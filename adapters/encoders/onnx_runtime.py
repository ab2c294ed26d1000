"""One way to open an ONNX Runtime session for every ONNX encoder, so thread settings are the same everywhere."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def cpu_session(path: Path, threads: int, spin: bool = False, device: str = "cpu") -> Any:
    """``spin``: ONNX Runtime's threads busy-wait for work between runs. That saves ~1 ms on a lone query but
    burns the CPU that concurrent requests need: on 2 cores, off gave 24% more searches/s under 8 clients
    (bench/search_default.py), so it is off unless IMGSEARCH_ONNX_SPIN=true. ``device`` "cuda" runs on the GPU
    where ONNX Runtime has its CUDA provider (onnxruntime-gpu), else on the CPU, saying so."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = ["CPUExecutionProvider"]
    if device == "cuda":
        if "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        else:
            logger.warning("ONNX Runtime has no CUDA provider here (install onnxruntime-gpu): %s runs on the CPU", path)
    return ort.InferenceSession(str(path), options, providers=providers)
