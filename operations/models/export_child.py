"""The first-use export of IMGSEARCH_BACKEND=auto, run in a child process so the service never holds PyTorch.

    python -m operations.models.export_child MODEL ONNX_ROOT SETTINGS_JSON

Exit status: 0 exported; 2 the weights cannot be loaded (the message, on stderr's last line, says which
settings fix it); 1 anything else (the export failed or does not match PyTorch).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from adapters.encoders.encoder_base import ModelLoadError
from config import Settings
from operations.models.encoders import torch_encoder_for
from operations.models.export_onnx import export
from operations.models.onnx_auto import WEIGHTS_MISSING

logger = logging.getLogger(__name__)


def main(argv: list[str]) -> int:
    name, onnx_root, settings_json = argv
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    settings = Settings(_env_file=None, **json.loads(settings_json))
    encoder = torch_encoder_for(settings, name)
    try:
        encoder.load()
    except ModelLoadError as exc:
        sys.stderr.write(f"{exc}\n")
        return WEIGHTS_MISSING
    try:
        export(encoder, Path(onnx_root))
    except Exception as exc:
        sys.stderr.write(f"{type(exc).__name__}: {exc}\n")
        return 1
    finally:
        encoder.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
