"""The command line: ingest a folder with a progress bar, search by text and image with a picture,
reconcile, load a Flickr30k-CN split."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from app.cli import main
from tests.imagefiles import BAD_FILES, jpeg, resized_recompressed


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, onnx_dir: Path) -> Path:
    monkeypatch.setenv("IMGSEARCH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("IMGSEARCH_ONNX_DIR", str(onnx_dir))  # the run's shared exports (backend auto)
    monkeypatch.setenv("IMGSEARCH_WEIGHTS", "random")
    monkeypatch.setenv("IMGSEARCH_LOG_LEVEL", "WARNING")
    return tmp_path


def test_ingest_search_plot_reconcile(cli_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = cli_env / "photos"
    (folder / "sub").mkdir(parents=True)
    for i in range(10):
        (folder / "sub" / f"{i}.jpg").write_bytes(jpeg(1200 + i))
    for name, (data, _) in BAD_FILES.items():
        (folder / name).write_bytes(data)

    assert main(["ingest", str(folder), "--collection", "mine"]) == 0
    out = capsys.readouterr()
    assert "succeeded: 10 stored, 0 duplicates skipped, 4 rejected" in out.out
    for name in BAD_FILES:
        assert f"rejected {name}:" in out.out
    assert "img/s" in out.err  # the tqdm bar: images/s and ETA

    assert main(["ingest", str(folder), "--collection", "mine"]) == 0
    assert "0 stored, 10 duplicates skipped" in capsys.readouterr().out

    query = cli_env / "query.jpg"
    query.write_bytes(resized_recompressed(jpeg(1203)))
    picture = cli_env / "result.png"
    assert main(["search", "--image", str(query), "--collection", "mine", "--top-k", "4", "--plot", str(picture)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[0] == "1" and lines[0].endswith("sub/3.jpg")  # its source ranks first
    assert Image.open(picture).format == "PNG"

    assert main(["search", "红色的圆形", "--collection", "mine", "--top-k", "3"]) == 0
    assert len([line for line in capsys.readouterr().out.splitlines() if line.strip()]) == 3

    assert main(["reconcile", "--collection", "mine"]) == 0
    assert "nothing to repair" in capsys.readouterr().out

    assert main(["reembed", "--collection", "mine", "--model", "ViT-B-16"]) == 0
    assert "succeeded: 10 images encoded with ViT-B-16; mine now searches with ViT-B-16" in capsys.readouterr().out
    assert main(["search", "红色的圆形", "--collection", "mine", "--top-k", "3"]) == 0  # the new model's text encoder
    assert len([line for line in capsys.readouterr().out.splitlines() if line.strip()]) == 3
    assert main(["reembed", "rollback", "--collection", "mine"]) == 0
    assert "mine: searches with RN50; ViT-B-16 vectors ready" in capsys.readouterr().out
    assert main(["reembed", "finalize", "--collection", "mine"]) == 0
    assert capsys.readouterr().out.strip() == "mine: searches with RN50"


def test_load_split_and_errors(cli_env: Path, small_split: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["load", str(small_split), "--split", "valid", "--collection", "flickr"]) == 0
    assert "succeeded: 60 loaded" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="does not exist"):
        main(["reconcile", "--collection", "nothere"])
    with pytest.raises(SystemExit, match="not found"):
        main(["load", str(small_split), "--split", "nosuch", "--collection", "flickr"])


def test_export_onnx_covers_every_model_a_collection_uses_then_serve_on_onnx(
    cli_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastapi.testclient import TestClient

    from app.main import create_app
    from config import Settings

    folder = cli_env / "few"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.jpg").write_bytes(jpeg(1300 + i))
    assert main(["ingest", str(folder), "--collection", "rn"]) == 0
    assert main(["ingest", str(folder), "--collection", "vit", "--model", "ViT-B-16"]) == 0
    assert main(["ingest", str(folder), "--collection", "res", "--model", "resnet50"]) == 0
    capsys.readouterr()
    assert main(["export-onnx"]) == 0
    out = capsys.readouterr().out
    assert "exported RN50" in out and "exported ViT-B-16" in out and "exported resnet50" in out

    monkeypatch.setenv("IMGSEARCH_BACKEND", "onnx")  # one setting switches the service
    with TestClient(create_app(Settings())) as client:
        for name in ("rn", "vit"):
            hits = client.post("/img/search", json={"collection": name, "text": "海边", "top_k": 3}).json()["hits"]
            assert len(hits) == 3
        files = [("files", ("q.jpg", jpeg(1301), "image/jpeg"))]
        found = client.post("/img/search/image", data={"collection": "res", "top_k": "3"}, files=files).json()
        hits = found["results"][0]["hits"]
        assert len(hits) == 3 and hits[0]["score"] > 0.999  # the query image itself, through the ONNX ResNet50
        assert {m["backend"] for m in client.get("/models").json()} == {"onnx"}


def test_evaluate_prints_recall(cli_env: Path, small_split: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    split = cli_env / "split"
    shutil.copytree(small_split, split)
    assert main(["load", str(split), "--collection", "ev"]) == 0
    assert main(["evaluate", str(split), "--collection", "ev"]) == 0
    out = capsys.readouterr().out
    assert "text→image" in out and "image→text" in out and (split / "valid_predictions.jsonl").is_file()


def test_extract_writes_the_same_features_as_the_encoder(
    cli_env: Path, small_split: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    import numpy as np

    from operations.ingest.flickr_format import iter_jsonl

    split = cli_env / "extract_me"
    split.mkdir()
    for name in ("valid_imgs.tsv", "valid_texts.jsonl"):
        shutil.copy(small_split / name, split / name)
    assert main(["extract", str(split), "--split", "valid", "--batch-size", "7"]) == 0
    assert "wrote features of 60 images" in capsys.readouterr().out
    for kind, key in (("imgs.img_feat", "image_id"), ("texts.txt_feat", "text_id")):
        ours = {row[key]: row["feature"] for row in iter_jsonl(split / f"valid_{kind}.jsonl")}
        reference = {row[key]: row["feature"] for row in iter_jsonl(small_split / f"valid_{kind}.jsonl")}
        assert ours.keys() == reference.keys()
        assert all(np.allclose(ours[k], reference[k], atol=1e-4) for k in reference)


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ({}, "Put the checkpoint there, or set IMGSEARCH_CHECKPOINT_PATH"),
        ({"IMGSEARCH_CHECKPOINT_PATH": "/nowhere/clip_cn_rn50.pt"}, "/nowhere/clip_cn_rn50.pt is not a file"),
    ],
)
def test_serve_without_weights_says_what_to_do_in_one_sentence_and_exits_non_zero(
    tmp_path: Path, setting: dict[str, str], expected: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMGSEARCH_")}
    env.update(IMGSEARCH_DATA_DIR=str(tmp_path), HF_HUB_OFFLINE="1", **setting)  # offline: fail at once
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "serve", "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parent.parent,
    )
    output = (result.stdout + result.stderr).strip().splitlines()
    assert result.returncode == 1, output
    assert "Traceback" not in result.stderr and len(output) <= 2, output
    assert output[-1].startswith("error: ") and expected in output[-1]


def test_warmup_prepares_the_models_and_says_what_serves_them(
    cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["warmup", "--model", "resnet50"]) == 0
    out = capsys.readouterr().out
    assert "RN50: onnx (fp32), random weights" in out and "resnet50: onnx (fp32), random weights" in out
