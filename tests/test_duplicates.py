"""Near-duplicate groups from stored vectors: planted copies (recompressed, resized, 5% crop) of 20 photo-like
images among 300 others are grouped with their originals and nothing else; the extras go in one call."""

from __future__ import annotations

import io

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.conftest import wait_for_job
from tests.imagefiles import encode, jpeg, resized_recompressed
from tests.thumbnail_model import write_thumbnail_model

ORIGINALS, OTHERS = 20, 300


def _crop5(data: bytes) -> bytes:
    image = Image.open(io.BytesIO(data)).convert("RGB")
    w, h = image.size
    return encode(image.crop((int(w * 0.025), int(h * 0.025), w - int(w * 0.025), h - int(h * 0.025))), "JPEG")


def _recompressed(data: bytes) -> bytes:
    return encode(Image.open(io.BytesIO(data)).convert("RGB"), "JPEG", quality=50)


def _upload(client: TestClient, collection: str, files: dict[str, bytes], model: str | None = None) -> dict[str, str]:
    """name -> image_id, 32 files a request."""
    names, ids = list(files), {}
    for start in range(0, len(names), 32):
        chunk = names[start : start + 32]
        data = {"collection": collection, **({"model": model} if model else {})}
        body = client.post(
            "/img/upload", data=data, files=[("files", (n, files[n], "image/jpeg")) for n in chunk]
        ).json()
        assert body["stored"] == len(chunk), body
        ids.update({r["file"]: r["image_id"] for r in body["results"]})
    return ids


@pytest.fixture
def client(milvus_target, make_settings, make_client, tmp_path):
    name = write_thumbnail_model(tmp_path / "custom" / "thumbs")
    settings = make_settings(milvus=milvus_target, custom_models_dir=tmp_path / "custom")
    with make_client(settings) as client:
        yield client, name


def test_planted_near_duplicates_are_grouped_with_their_originals_and_nothing_else(client) -> None:
    http, model = client
    files: dict[str, bytes] = {}
    for i in range(ORIGINALS):
        original = jpeg(9000 + i)
        files[f"o{i}.jpg"] = original
        files[f"o{i}_recompressed.jpg"] = _recompressed(original)
        files[f"o{i}_resized.jpg"] = resized_recompressed(original)  # 60% size: fewer pixels than the original
        files[f"o{i}_crop.jpg"] = _crop5(original)
    files.update({f"x{i}.jpg": jpeg(20000 + i) for i in range(OTHERS)})
    ids = _upload(http, "dups", files, model)
    by_id = {image_id: name for name, image_id in ids.items()}

    job = http.post("/collections/dups/duplicates", json={})
    assert job.status_code == 202, job.text
    done = wait_for_job(http, job.json()["job_id"])
    assert done["state"] == "succeeded" and done["total"] == done["done"] == len(files), done
    assert done["message"].startswith("20 groups of near-duplicates (60 images beside their keepers)"), done

    report = http.get("/collections/dups/duplicates").json()
    assert report["min_cosine"] == 0.95 and report["extras"] == 3 * ORIGINALS
    groups = {
        frozenset(by_id[m["image_id"]] for m in [g["keeper"], *g["extras"]]): by_id[g["keeper"]["image_id"]]
        for g in report["groups"]
    }
    expected = {
        frozenset({f"o{i}.jpg", f"o{i}_recompressed.jpg", f"o{i}_resized.jpg", f"o{i}_crop.jpg"})
        for i in range(ORIGINALS)
    }
    assert set(groups) == expected
    # the keeper: the most pixels (the original and its recompressed copy tie), then the earliest stored
    for members, keeper in groups.items():
        assert keeper == min(members, key=len), (members, keeper)  # o{i}.jpg, stored before its copies

    deleted = http.post("/collections/dups/duplicates/delete", json={}).json()["deleted"]
    assert sorted(by_id[i] for i in deleted) == sorted(n for group in expected for n in group if "_" in n)
    assert http.get("/img/count", params={"collection": "dups"}).json()["count"] == ORIGINALS + OTHERS
    assert http.get("/collections/dups/duplicates").json()["groups"] == []
    for name in ("o0.jpg", "x0.jpg"):
        assert http.get(f"/img/dups/{ids[name]}").status_code == 200
    assert http.get(f"/img/dups/{ids['o0_crop.jpg']}").status_code == 404


def test_chosen_extras_only_and_bad_requests(client) -> None:
    http, model = client
    original = jpeg(42)
    ids = _upload(http, "few", {"a.jpg": original, "b.jpg": _recompressed(original), "c.jpg": jpeg(43)}, model)
    assert http.get("/collections/few/duplicates").status_code == 404  # no job yet: nothing to show
    wait_for_job(http, http.post("/collections/few/duplicates", json={"min_cosine": 0.9}).json()["job_id"])
    group = http.get("/collections/few/duplicates").json()["groups"]
    assert len(group) == 1 and {group[0]["keeper"]["image_id"], group[0]["extras"][0]["image_id"]} == {
        ids["a.jpg"],
        ids["b.jpg"],
    }
    refused = http.post("/collections/few/duplicates/delete", json={"image_ids": [ids["c.jpg"]]})
    assert refused.status_code == 422 and "not in the collection's duplicate groups" in refused.text
    assert http.get("/img/count", params={"collection": "few"}).json()["count"] == 3
    for value in (0.2, 1.5):
        bad = http.post("/collections/few/duplicates", json={"min_cosine": value})
        assert bad.status_code == 422 and "min_cosine" in bad.json()["error"]["message"]
    assert http.post("/collections/nope/duplicates", json={}).status_code == 404
    chosen = http.post("/collections/few/duplicates/delete", json={"image_ids": [ids["b.jpg"]]}).json()
    assert (
        chosen["deleted"] == [ids["b.jpg"]]
        and http.get("/img/count", params={"collection": "few"}).json()["count"] == 2
    )
