"""evaluate: predictions in Chinese-CLIP's format, and recall numbers equal to its own evaluation scripts
(which ship in the cn_clip wheel), in both directions."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from config import Settings
from operations.evaluation.evaluation import evaluate, recall
from operations.ingest.flickr_format import iter_jsonl
from tests.conftest import load_split

CN_CLIP_EVAL = "cn_clip.eval.{}"


def _run_cn_clip(script: str, *args: Path) -> dict:
    subprocess.run(
        [sys.executable, "-m", CN_CLIP_EVAL.format(script), *map(str, args)], check=True, capture_output=True, text=True
    )
    return json.loads(args[-1].read_text())


def test_recall_matches_the_definition() -> None:
    reference = {1: [10], 2: [20, 21], 3: [30]}
    predictions = {1: [10, *range(100, 109)], 2: [99, 98, 97, 96, 21, *range(200, 205)], 3: list(range(300, 310))}
    assert recall(reference, predictions).__dict__ == pytest.approx(
        {"r1": 100 / 3, "r5": 200 / 3, "r10": 200 / 3, "mean_recall": 500 / 9}
    )


@pytest.mark.parametrize("use_text_features", [False, True])
def test_evaluate_equals_chinese_clips_own_scripts(
    use_text_features: bool,
    small_split: Path,
    tmp_path: Path,
    make_settings: Callable[..., Settings],
    make_client: Callable[[Settings], TestClient],
) -> None:
    split_dir = tmp_path / "split"
    shutil.copytree(small_split, split_dir)
    with make_client(make_settings()) as client:
        assert load_split(client, "ev", "small", "valid")["state"] == "succeeded"
        report = evaluate(client.app.state.services, "ev", split_dir, "valid", use_text_features)  # type: ignore[attr-defined]

    texts = list(iter_jsonl(split_dir / "valid_texts.jsonl"))
    predictions = list(iter_jsonl(split_dir / "valid_predictions.jsonl"))
    assert report.texts == len(texts) == len(predictions) and report.images == 60
    assert all(len(p["image_ids"]) == 10 and isinstance(p["image_ids"][0], int) for p in predictions)

    ir = _run_cn_clip(
        "evaluation", split_dir / "valid_texts.jsonl", split_dir / "valid_predictions.jsonl", tmp_path / "ir.json"
    )
    assert ir["success"], ir
    ours = report.text_to_image
    assert (ours.r1, ours.r5, ours.r10, ours.mean_recall) == (
        ir["scoreJson"]["r1"],
        ir["scoreJson"]["r5"],
        ir["scoreJson"]["r10"],
        ir["scoreJson"]["mean_recall"],
    )

    subprocess.run(
        [
            sys.executable,
            "-m",
            CN_CLIP_EVAL.format("transform_ir_annotation_to_tr"),
            "--input",
            str(split_dir / "valid_texts.jsonl"),
        ],
        check=True,
        capture_output=True,
    )
    tr = _run_cn_clip(
        "evaluation_tr",
        split_dir / "valid_texts.tr.jsonl",
        split_dir / "valid_tr_predictions.jsonl",
        tmp_path / "tr.json",
    )
    assert tr["success"], tr
    ours = report.image_to_text
    assert (ours.r1, ours.r5, ours.r10, ours.mean_recall) == (
        tr["scoreJson"]["r1"],
        tr["scoreJson"]["r5"],
        tr["scoreJson"]["r10"],
        tr["scoreJson"]["mean_recall"],
    )


def test_evaluate_job_over_http(
    small_split: Path, make_settings: Callable[..., Settings], make_client: Callable[[Settings], TestClient]
) -> None:
    from tests.conftest import wait_for_job

    settings = make_settings()
    with make_client(settings) as client:
        assert load_split(client, "evh", "small", "valid")["state"] == "succeeded"
        response = client.post("/img/evaluate", json={"collection": "evh", "path": "small", "split": "valid"})
        assert response.status_code == 202
        job = wait_for_job(client, response.json()["job_id"])
        assert job["state"] == "succeeded", job
        result = job["result"]
        assert set(result["text_to_image"]) == {"r1", "r5", "r10", "mean_recall"}
        assert Path(result["predictions"]).is_file() and Path(result["predictions"]).is_relative_to(settings.data_dir)
        assert not (small_split / "valid_predictions.jsonl").exists()  # the data root is only read
        for body, status in (
            ({"collection": "nope", "path": "small", "split": "valid"}, 404),
            ({"collection": "evh", "path": "../", "split": "valid"}, 422),
            ({"collection": "evh", "path": "small", "split": "nosuch"}, 404),
        ):
            assert client.post("/img/evaluate", json=body).status_code == status
