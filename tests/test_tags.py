"""Tags: a job writes each image's most probable labels (as /img/classify ranks them), tags set by hand win and
survive the next job, hits carry their tags, each collection's tags are counted; the CLI does the same."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.cli import main
from tests.conftest import wait_for_job
from tests.imagefiles import jpeg

LABELS = ["海边", "山", "城市", "森林", "人物", "猫"]
COUNT = 12


@pytest.fixture
def client(metadata_url, make_settings, make_client):
    with make_client(make_settings(metadata_url, backend="torch")) as client:
        files = [("files", (f"{i}.jpg", jpeg(700 + i), "image/jpeg")) for i in range(COUNT)]
        body = client.post("/img/upload", data={"collection": "album"}, files=files).json()
        assert body["stored"] == COUNT, body
        yield client, [r["image_id"] for r in body["results"]]


def _tag(client: TestClient, **body: object) -> dict:
    response = client.post("/collections/album/tags", json={"labels": LABELS, **body})
    assert response.status_code == 202, response.text
    job = wait_for_job(client, response.json()["job_id"])
    assert job["state"] == "succeeded", job
    return job


def _tags(client: TestClient, image_id: str) -> list[dict]:
    return client.get(f"/img/album/{image_id}/tags").json()["tags"]


def test_a_tag_job_keeps_each_images_most_probable_labels(client) -> None:
    http, ids = client
    job = _tag(http, top_n=2)
    assert job["done"] == COUNT and job["message"].startswith(f"{COUNT} images tagged with")
    for image_id in ids:
        ranked = http.post(
            "/img/classify", data={"labels": LABELS, "collection": "album", "image_id": image_id}
        ).json()["labels"]
        tags = _tags(http, image_id)
        assert [t["tag"] for t in tags] == [r["label"] for r in ranked[:2]]
        assert [t["source"] for t in tags] == ["auto", "auto"]
        assert tags[0]["probability"] == pytest.approx(ranked[0]["probability"], abs=1e-5)
    counted = http.get("/collections/album/tags").json()["tags"]
    assert sum(c["count"] for c in counted) == 2 * COUNT and {c["tag"] for c in counted} <= set(LABELS)
    assert [c["count"] for c in counted] == sorted((c["count"] for c in counted), reverse=True)

    # a probability floor: only labels at or above it (each image's probabilities sum to 1 over 6 labels)
    _tag(http, top_n=None, min_probability=0.2)
    for image_id in ids:
        assert all(t["probability"] >= 0.2 for t in _tags(http, image_id))


def test_manual_tags_win_and_survive_the_next_job_and_hits_carry_tags(client) -> None:
    http, ids = client
    _tag(http, top_n=1)
    auto = _tags(http, ids[0])[0]["tag"]
    put = http.put(f"/img/album/{ids[0]}/tags", json={"tags": ["家人", auto, " 家人 "]})
    assert put.status_code == 200, put.text
    assert {(t["tag"], t["source"]) for t in put.json()["tags"]} == {("家人", "manual"), (auto, "manual")}
    _tag(http, top_n=3)  # replaces automatic tags only
    tags = _tags(http, ids[0])
    assert [t["tag"] for t in tags][:2] in (["家人", auto], [auto, "家人"])
    assert {t["source"] for t in tags[:2]} == {"manual"} and len(tags) == 4  # + two automatic ones
    hits = http.post(
        "/img/search", json={"mode": "semantic", "collection": "album", "text": "家人", "top_k": COUNT}
    ).json()["hits"]
    by_id = {hit["image_id"]: hit["tags"] for hit in hits}
    assert by_id[ids[0]] == [t["tag"] for t in tags] and all(len(by_id[i]) == 3 for i in ids[1:])
    cleared = http.put(f"/img/album/{ids[0]}/tags", json={"tags": []}).json()["tags"]
    assert all(t["source"] == "auto" for t in cleared) and len(cleared) == 2  # the job had skipped the manual one
    # a deleted image takes its tags with it
    assert http.delete(f"/img/album/{ids[1]}").status_code == 200
    assert sum(c["count"] for c in http.get("/collections/album/tags").json()["tags"]) == 2 + 3 * (COUNT - 2)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"top_n": 0}, "top_n must be between 1 and 6"),
        ({"top_n": None, "min_probability": None}, "give top_n, min_probability or both"),
        ({"min_probability": 1.5}, "min_probability must be above 0"),
        ({"labels": ["海边"]}, "2 to 1000 labels"),
        ({"template": ["没有占位"]}, "exactly once"),
    ],
)
def test_bad_tag_requests_change_nothing(client, body: dict, message: str) -> None:
    http, ids = client
    response = http.post("/collections/album/tags", json={"labels": LABELS, **body})
    assert response.status_code == 422 and message in response.json()["error"]["message"], response.text
    assert http.get("/collections/album/tags").json()["tags"] == []
    assert http.post("/collections/nope/tags", json={"labels": LABELS}).status_code == 404
    too_many = http.put(f"/img/album/{ids[0]}/tags", json={"tags": [f"t{i}" for i in range(65)]})
    assert too_many.status_code == 422 and "at most 64 tags" in too_many.text
    long = http.put(f"/img/album/{ids[0]}/tags", json={"tags": ["长" * 65]})
    assert long.status_code == 422 and _tags(http, ids[0]) == []
    assert http.put("/img/album/nope/tags", json={"tags": ["x"]}).status_code == 404


def test_the_cli_tags_a_collection_with_a_progress_bar(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, onnx_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("IMGSEARCH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("IMGSEARCH_ONNX_DIR", str(onnx_dir))
    monkeypatch.setenv("IMGSEARCH_WEIGHTS", "random")
    monkeypatch.setenv("IMGSEARCH_LOG_LEVEL", "WARNING")
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(5):
        (folder / f"{i}.jpg").write_bytes(jpeg(800 + i))
    assert main(["ingest", str(folder), "--collection", "cli_tags"]) == 0
    labels = tmp_path / "labels.txt"
    labels.write_text("海边\n山\n\n城市\n", "utf-8")
    capsys.readouterr()
    assert main(["tag", "--collection", "cli_tags", "--labels-file", str(labels), "--label", "猫", "--top-n", "2"]) == 0
    out = capsys.readouterr()
    assert "succeeded: 5 images tagged with" in out.out and "img/s" in out.err
    with pytest.raises(SystemExit, match="top_n must be between 1 and 3"):
        main(["tag", "--collection", "cli_tags", "--labels-file", str(labels), "--top-n", "9"])
