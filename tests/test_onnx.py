"""The ONNX Runtime backend: same token ids as cn_clip, same vectors as torch, no torch in the serving path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from adapters.encoders.clip_encoder import ChineseClipEncoder
from adapters.encoders.clip_onnx import OnnxClipEncoder
from adapters.encoders.clip_tokenizer import ClipTokenizer
from adapters.encoders.encoder_base import ModelLoadError
from operations.models.export_onnx import export
from tests.imagefiles import picture

TEXTS = [
    "一只猫在沙发上睡觉",
    "A dog runs on the BEACH!",
    "混合 mixed 文本 with English 和数字 12345",
    "🐶🐱 emoji 表情😀",
    "Café naïve résumé",
    "长" * 100,
    "  空格  \t 制表符\n换行",
    "標點符號:「你好」,『世界』!?",
    "url http://example.com/a_b?c=d",
    "ｆｕｌｌｗｉｄｔｈ　全角",
    "\u200b零宽\u200d字符",
    "한국어 日本語 ひらがな",
    "x",
    "数学 ∑∫√π",
    "don't stop-believing...",
    "一个穿着蓝色游泳裤的男孩在水里滑了一个黄色的幻灯片,在水里漂浮着充气玩具。",
]


def test_token_ids_equal_cn_clip_tokenize() -> None:
    from cn_clip.clip import tokenize

    ours = ClipTokenizer()
    assert np.array_equal(ours(TEXTS), tokenize(TEXTS).numpy())
    assert ours.truncated("长" * 100) and not ours.truncated("短句")


def test_trimmed_token_ids_drop_only_padding_columns() -> None:
    from cn_clip.clip import tokenize

    ours, short = ClipTokenizer(), ["猫", "一只猫在沙发上睡觉"]
    trimmed = ours(short, trim=True)
    assert trimmed.shape == (2, 11)  # [CLS] + 9 characters + [SEP]
    assert np.array_equal(trimmed, tokenize(short).numpy()[:, :11])
    assert ours(TEXTS, trim=True).shape[1] == 52  # "长" * 100 fills the context


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.fixture(scope="module")
def rn50_onnx_root(encoder: ChineseClipEncoder, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("onnx_RN50")
    export(encoder, root)
    return root


@pytest.fixture(scope="module", params=["RN50", "ViT-B-16"])
def encoders(request: pytest.FixtureRequest, encoder: ChineseClipEncoder, tmp_path_factory: pytest.TempPathFactory):
    name = request.param
    if name == "RN50":
        torch_encoder, root = encoder, request.getfixturevalue("rn50_onnx_root")
    else:
        torch_encoder = ChineseClipEncoder(name, weights="random", seed=0, threads=2)
        root = tmp_path_factory.mktemp(f"onnx_{name}")
        export(torch_encoder, root)
    onnx_encoder = OnnxClipEncoder(name, root, threads=2)
    yield name, root, torch_encoder, onnx_encoder
    onnx_encoder.close()
    if torch_encoder is not encoder:
        torch_encoder.close()


def test_export_writes_a_manifest(encoders) -> None:
    name, root, torch_encoder, onnx_encoder = encoders
    manifest = json.loads((root / name / "manifest.json").read_text())
    assert manifest["model"] == name and manifest["dim"] == torch_encoder.info.dim
    assert manifest["opset"] >= 17 and manifest["weights"] == "random" and "seed 0" in manifest["source"]
    assert onnx_encoder.info.backend == "onnx" and onnx_encoder.info.dim == torch_encoder.info.dim
    # the temperature of label probabilities travels with the export: cn_clip initialises it to 1/0.07
    assert manifest["logit_scale"] == pytest.approx(1 / 0.07, rel=1e-5)
    assert onnx_encoder.info.logit_scale == torch_encoder.info.logit_scale == manifest["logit_scale"]


@pytest.mark.parametrize("batch", [1, 16])
def test_onnx_equals_torch_for_text_and_images(encoders, batch: int) -> None:
    _, _, torch_encoder, onnx_encoder = encoders
    texts = TEXTS[:batch]
    assert _cosines(onnx_encoder.encode_text(texts), torch_encoder.encode_text(texts)).min() >= 0.99999
    images = [picture(2000 + i) for i in range(batch)]
    assert _cosines(onnx_encoder.encode_images(images), torch_encoder.encode_images(images)).min() >= 0.99999


def test_each_query_alone_equals_torch_without_its_padding(encoders) -> None:
    """A search encodes one text at a time: the export sends only its own tokens and still gives torch's vector."""
    name, root, torch_encoder, onnx_encoder = encoders
    assert json.loads((root / name / "manifest.json").read_text())["dynamic_tokens"] is True
    for text in TEXTS:
        assert _cosines(onnx_encoder.encode_text([text]), torch_encoder.encode_text([text])).min() >= 0.99999, text


def test_an_export_without_dynamic_tokens_is_sent_the_full_context(encoders, tmp_path: Path) -> None:
    """Exports made before version 3 were traced at 52 tokens: they still get padded input and work."""
    import shutil

    name, root, torch_encoder, _ = encoders
    old = tmp_path / name
    shutil.copytree(root / name, old)
    manifest = json.loads((old / "manifest.json").read_text())
    del manifest["dynamic_tokens"]
    (old / "manifest.json").write_text(json.dumps(manifest))
    encoder = OnnxClipEncoder(name, tmp_path, threads=2)
    try:
        assert _cosines(encoder.encode_text(["猫"]), torch_encoder.encode_text(["猫"])).min() >= 0.99999
    finally:
        encoder.close()


def test_missing_export_names_the_command(tmp_path: Path) -> None:
    encoder = OnnxClipEncoder("RN50", tmp_path)
    try:
        with pytest.raises(ModelLoadError, match="imgsearch export-onnx"):
            encoder.load()
    finally:
        encoder.close()


@pytest.mark.parametrize("backend", ["onnx", "auto"])
def test_service_on_onnx_never_imports_torch(rn50_onnx_root: Path, tmp_path: Path, backend: str) -> None:
    """As on a serving install (`pip install .`): torch, torchvision and cn_clip cannot even be imported."""
    script = textwrap.dedent(
        """
        import importlib.abc, io, sys

        class NoTorch(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {"torch", "torchvision", "cn_clip"}:
                    raise ModuleNotFoundError(f"No module named {name!r} (a serving install)")

        sys.meta_path.insert(0, NoTorch())
        from fastapi.testclient import TestClient
        from app.main import create_app
        from config import Settings
        from tests.imagefiles import jpeg
        settings = Settings(_env_file=None)
        with TestClient(create_app(settings)) as client:
            health = client.get("/healthz").json()["model"]
            assert health["weights"] == "random" and health["backend"] == "onnx", health
            stored = client.post("/img/upload", data={"collection": "x"}, files=[("files", ("a.jpg", jpeg(1), "x"))])
            assert stored.json()["stored"] == 1, stored.text
            hits = client.post("/img/search", json={"mode": "semantic", "collection": "x", "text": "猫"}).json()["hits"]
            assert len(hits) == 1
        assert "torch" not in sys.modules and "cn_clip" not in sys.modules, "torch was imported"
        print("ok")
        """
    )
    env = {
        **os.environ,
        "IMGSEARCH_BACKEND": backend,
        "IMGSEARCH_ONNX_DIR": str(rn50_onnx_root),
        "IMGSEARCH_DATA_DIR": str(tmp_path),
        "IMGSEARCH_WEIGHTS": "random",
    }
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
