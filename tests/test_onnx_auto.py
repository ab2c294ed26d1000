"""IMGSEARCH_BACKEND=auto, the default: ONNX Runtime out of the box, exported once per checkpoint, never a
silent change of results."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from adapters.encoders.clip_encoder import ChineseClipEncoder
from adapters.encoders.encoder_base import ModelLoadError
from config import Settings
from operations.models import export_onnx, onnx_auto
from operations.models.onnx_auto import AutoOnnxEncoder
from operations.models.onnx_source import EXPORT_VERSION, checkpoint_sha256, wanted_key
from tests.imagefiles import picture

TEXTS = ["一只猫在沙发上睡觉", "蓝色的海", "A dog on the beach"]
ROOT = Path(__file__).resolve().parent.parent


def _settings(tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {"data_dir": tmp_path / "data", "weights": "random", "onnx_threads": 2}
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


def _loaded(settings: Settings, name: str = "RN50") -> AutoOnnxEncoder:
    encoder = AutoOnnxEncoder(settings, name)
    encoder.load()
    return encoder


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1)


def test_the_default_backend_is_auto() -> None:
    assert Settings(_env_file=None).backend == "auto"


def test_first_use_exports_then_later_starts_reuse_the_export_with_the_same_vectors(
    tmp_path: Path, encoder: ChineseClipEncoder, caplog: pytest.LogCaptureFixture
) -> None:
    settings = _settings(tmp_path)
    with caplog.at_level(logging.INFO):
        first = _loaded(settings)
    try:
        assert first.info.backend == "onnx" and "exported to ONNX on first use" in (first.info.note or "")
        assert any("exporting to ONNX Runtime on first use" in r.message for r in caplog.records)
        manifest = json.loads((Path(str(settings.onnx_dir)) / "RN50" / "manifest.json").read_text())
        assert manifest["source_key"] == "random:seed=0" and manifest["export_version"] == EXPORT_VERSION
        assert manifest["parity_min_cosine"] >= 0.99999
        assert _cosines(first.encode_text(TEXTS), encoder.encode_text(TEXTS)).min() >= 0.99999
        pictures = [picture(3100 + i) for i in range(3)]
        assert _cosines(first.encode_images(pictures), encoder.encode_images(pictures)).min() >= 0.99999
    finally:
        first.close()
    assert not [p for p in Path(str(settings.onnx_dir)).iterdir() if p.name.startswith(".RN50.export")]
    assert first._impl is not None and type(first._impl).__name__ == "OnnxClipEncoder"

    # A later start, as a fresh process: reuses the export and never imports torch.
    script = textwrap.dedent(
        """
        import sys
        from config import Settings
        from operations.models.onnx_auto import AutoOnnxEncoder
        encoder = AutoOnnxEncoder(Settings(_env_file=None), "RN50")
        info = encoder.load()
        assert info.backend == "onnx" and "reused" in info.note, info
        encoder.encode_text(["猫"])
        assert "torch" not in sys.modules and "cn_clip" not in sys.modules, "torch was imported"
        print("ok")
        """
    )
    env = {**os.environ, "IMGSEARCH_DATA_DIR": str(tmp_path / "data"), "IMGSEARCH_WEIGHTS": "random"}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]


def test_an_export_of_other_weights_or_an_older_version_is_made_again(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    _loaded(settings).close()
    manifest_path = Path(str(settings.onnx_dir)) / "RN50" / "manifest.json"
    for field, stale in (("source_key", "sha256:" + "0" * 64), ("export_version", EXPORT_VERSION - 1)):
        manifest = json.loads(manifest_path.read_text())
        manifest[field] = stale
        manifest_path.write_text(json.dumps(manifest))
        again = _loaded(settings)
        try:
            assert "exported to ONNX on first use" in (again.info.note or ""), (field, again.info)
            assert json.loads(manifest_path.read_text())[field] != stale
        finally:
            again.close()


def test_two_starts_at_once_export_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(tmp_path)
    calls: list[str] = []
    real_child = onnx_auto.run_export_child

    def counting_child(*args):  # type: ignore[no-untyped-def]
        calls.append(args[1])
        return real_child(*args)

    monkeypatch.setattr(onnx_auto, "run_export_child", counting_child)
    encoders = [AutoOnnxEncoder(settings, "RN50") for _ in range(2)]
    threads = [threading.Thread(target=e.load) for e in encoders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    try:
        assert calls == ["RN50"]
        assert all(e.info.backend == "onnx" for e in encoders)
        notes = sorted(e.info.note or "" for e in encoders)
        assert "another process" in notes[0] and "first use" in notes[1], notes
    finally:
        for e in encoders:
            e.close()


def test_an_export_that_does_not_match_torch_is_never_swapped_in(
    tmp_path: Path, encoder: ChineseClipEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    def mismatch(*_args, **_kwargs):  # type: ignore[no-untyped-def]
        raise export_onnx.ExportMismatch("lowest cosine 0.5")

    monkeypatch.setattr(export_onnx, "_check_parity", mismatch)
    onnx_root = tmp_path / "onnx"
    with pytest.raises(export_onnx.ExportMismatch):
        export_onnx.export(encoder, onnx_root)
    assert list(onnx_root.iterdir()) == []  # neither the export nor its staging folder is left


def test_a_failed_export_is_served_on_torch_and_said_loudly(
    tmp_path: Path, encoder: ChineseClipEncoder, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(onnx_auto, "run_export_child", lambda *_: (1, "ExportMismatch: lowest cosine 0.5"))
    with caplog.at_level(logging.ERROR):
        served = _loaded(_settings(tmp_path))
    try:
        assert served.info.backend == "torch"
        assert "ONNX export failed" in (served.info.note or "") and "0.5" in (served.info.note or "")
        assert any("ONNX EXPORT FAILED" in r.message and r.levelno == logging.ERROR for r in caplog.records)
        assert np.allclose(served.encode_text(TEXTS), encoder.encode_text(TEXTS), atol=1e-5)
    finally:
        served.close()


def test_missing_weights_stop_the_start_with_the_sentence_from_the_export(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the child process cannot download: fail at once
    encoder = AutoOnnxEncoder(_settings(tmp_path, weights="pretrained"), "RN50")
    try:
        with pytest.raises(ModelLoadError, match="Put the checkpoint there, or set IMGSEARCH_CHECKPOINT_PATH"):
            encoder.load()
    finally:
        encoder.close()


def test_without_torch_and_without_an_export_the_error_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(onnx_auto, "missing_export_tools", lambda: ["torch", "cn_clip"])
    encoder = AutoOnnxEncoder(_settings(tmp_path), "RN50")
    try:
        with pytest.raises(ModelLoadError, match=r"torch and cn_clip .* are not installed: install the export extra"):
            encoder.load()
    finally:
        encoder.close()


def test_the_weights_an_export_must_come_from_are_named_without_torch(tmp_path: Path) -> None:
    models, cache = tmp_path / "models", tmp_path / "onnx"
    models.mkdir()
    pretrained = _settings(tmp_path, weights="pretrained", model_dir=models)
    assert wanted_key(pretrained, "RN50", cache) is None  # not downloaded yet
    assert wanted_key(pretrained, "resnet50", cache) == "torchvision:ResNet50_Weights.IMAGENET1K_V2"
    assert wanted_key(_settings(tmp_path, seed=7), "vgg16", cache) == "random:seed=7"
    checkpoint = models / "clip_cn_rn50.pt"
    checkpoint.write_bytes(b"weights v1")
    first = checkpoint_sha256(checkpoint, cache)
    assert wanted_key(pretrained, "RN50", cache) == "sha256:" + first
    assert json.loads((cache / "checkpoint-sha256.json").read_text())  # kept: the next start does not hash
    checkpoint.write_bytes(b"weights v2, longer")  # new size and mtime: hashed again
    assert wanted_key(pretrained, "RN50", cache) == "sha256:" + checkpoint_sha256(checkpoint, cache) != first
    own = models / "mine.pt"
    own.write_bytes(b"fine-tuned")
    tuned = _settings(tmp_path, weights="pretrained", model_dir=models, checkpoint_path=own)
    assert wanted_key(tuned, "RN50", cache) == "sha256:" + checkpoint_sha256(own, cache)


def test_int8_serves_quantised_copies_close_to_fp32_and_says_so(
    tmp_path: Path,
    onnx_dir: Path,
    make_settings,
    make_client,  # type: ignore[no-untyped-def]
) -> None:
    fp32 = _loaded(_settings(tmp_path, onnx_dir=onnx_dir))
    int8 = _loaded(_settings(tmp_path, onnx_dir=onnx_dir, onnx_quantize="int8"))
    try:
        # RN50's image encoder stays fp32 under int8: quantised, it gave some pictures cosine 0.58 (bench/encoders.py)
        assert (fp32.info.precision, int8.info.precision) == ("fp32", "int8 text, fp32 image")
        assert (onnx_dir / "RN50" / "text.int8.onnx").is_file()
        assert not (onnx_dir / "RN50" / "image.int8.onnx").exists()
        texts = [*TEXTS, "一个穿着蓝色游泳裤的男孩在水里"]
        cosines = _cosines(int8.encode_text(texts), fp32.encode_text(texts))
        assert cosines.min() >= 0.999 and cosines.max() < 1.0 - 1e-7  # close, and really another model
        pictures = [picture(3300 + i) for i in range(2)]
        assert _cosines(int8.encode_images(pictures), fp32.encode_images(pictures)).min() >= 0.999
    finally:
        fp32.close()
        int8.close()
    settings = make_settings(onnx_quantize="int8", model_name="ViT-B-16")
    with make_client(settings) as client:  # the shared test encoder is RN50 on torch: ViT-B-16 goes through auto
        assert client.post("/embed/text", json={"texts": ["猫"], "model": "ViT-B-16"}).status_code == 200
        models = {m["name"]: m for m in client.get("/models").json()}
        assert (models["ViT-B-16"]["backend"], models["ViT-B-16"]["precision"]) == ("onnx", "int8")
        health = client.get("/healthz").json()["model"]
        assert (health["name"], health["backend"], health["precision"]) == ("ViT-B-16", "onnx", "int8")
