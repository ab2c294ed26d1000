"""Load and search through the HTTP API, on both metadata backends, with a real Milvus Lite file."""

from __future__ import annotations

import base64
import io
import json
import re
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from adapters.encoders.clip_encoder import ChineseClipEncoder
from adapters.stores.sql.job_store import JobStore
from config import Settings
from operations.ingest.sample_data import generate_split
from tests.conftest import load_split, wait_for_job

SMALL = 60


def _tsv_bytes(split_dir: Path, split: str = "valid") -> dict[str, bytes]:
    rows = (line.rstrip("\n").split("\t") for line in (split_dir / f"{split}_imgs.tsv").open())
    return {image_id: base64.b64decode(b64) for image_id, b64 in rows}


def _store_counts(client: TestClient, collection: str) -> tuple[int, int]:
    services = client.app.state.services  # type: ignore[attr-defined]
    return services.metadata.count(collection, include_pending=True), services.vectors.count(collection)


def test_load_search_fetch_reload_restart_drop(
    metadata_url: str,
    milvus_target: dict[str, str],
    small_split: Path,
    make_settings: Callable[..., Settings],
    make_client: Callable[[Settings], TestClient],
) -> None:
    settings = make_settings(metadata_url, milvus_target)
    originals = _tsv_bytes(small_split)
    with make_client(settings) as client:
        job = load_split(client, "flickr", "small", "valid")
        assert job["state"] == "succeeded", job
        assert (job["total"], job["loaded"], job["skipped"], job["failed"]) == (SMALL, SMALL, 0, 0)
        assert job["rate"] > 0
        assert client.get("/img/count", params={"collection": "flickr"}).json()["count"] == SMALL
        assert _store_counts(client, "flickr") == (SMALL, SMALL)

        response = client.post(
            "/img/search", json={"mode": "semantic", "collection": "flickr", "text": "红色的圆形", "top_k": 7}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        hits = body["hits"]
        assert body["model"] == "RN50" and len(hits) == 7
        assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
        image = client.get(hits[0]["url"])
        assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
        assert image.content == originals[hits[0]["image_id"]]

        with_bytes = client.post(
            "/img/search",
            json={"mode": "semantic", "collection": "flickr", "text": "红色的圆形", "top_k": 3, "include_image": True},
        ).json()["hits"]
        assert [h["image_id"] for h in with_bytes] == [h["image_id"] for h in hits[:3]]
        assert all(base64.b64decode(h["image"]) == originals[h["image_id"]] for h in with_bytes)

        again = load_split(client, "flickr", "small", "valid")
        assert (again["state"], again["loaded"], again["skipped"]) == ("succeeded", 0, SMALL)
        assert _store_counts(client, "flickr") == (SMALL, SMALL)
        first_job_id = job["job_id"]

    with make_client(settings) as client:  # a restart keeps data and job history
        assert client.get("/img/count", params={"collection": "flickr"}).json()["count"] == SMALL
        assert client.get(f"/jobs/{first_job_id}").json()["loaded"] == SMALL
        after = client.post(
            "/img/search", json={"mode": "semantic", "collection": "flickr", "text": "红色的圆形", "top_k": 7}
        ).json()
        assert [h["id"] for h in after["hits"]] == [h["id"] for h in hits]
        listed = client.get("/collections").json()
        assert [(c["name"], c["model"], c["dim"], c["count"]) for c in listed] == [("flickr", "RN50", 1024, SMALL)]
        index = listed[0]["index"]
        health = client.get("/healthz").json()["vector_index"]
        assert health["collections"]["flickr"] == index
        if settings.milvus_is_local:  # exact search on Lite; HNSW with its parameters and ef on a server
            assert (index["backend"], index["index_type"], index["search_params"]) == ("milvus-lite", "FLAT", {})
        else:
            assert (index["backend"], index["index_type"]) == ("milvus-server", "HNSW")
            assert index["params"] == {"M": 16, "efConstruction": 200} and index["search_params"] == {"ef": 128}
            assert health["server_version"].startswith("v2.3") and health["database"] == settings.milvus_db
        assert health["search"]["consistency"] == "Session"

        dropped = client.delete("/collections/flickr")
        assert dropped.status_code == 200 and dropped.json()["removed"] == SMALL
        assert _store_counts(client, "flickr") == (0, 0)
        assert not client.app.state.services.vectors.has_collection("flickr")  # type: ignore[attr-defined]
        assert (
            client.post("/img/search", json={"mode": "semantic", "collection": "flickr", "text": "圆形"}).status_code
            == 404
        )
        assert client.get(hits[0]["url"]).status_code == 404
        assert client.delete("/collections/flickr").status_code == 404
        assert client.get("/collections").json() == []


def test_load_without_feature_file_encodes_images(
    data_root: Path,
    encoder: ChineseClipEncoder,
    make_settings: Callable[..., Settings],
    make_client: Callable[[Settings], TestClient],
) -> None:
    generate_split(data_root / "nofeat", "train", 12, encoder=None, seed=4)
    originals = _tsv_bytes(data_root / "nofeat", "train")
    with make_client(make_settings(encode_batch_size=5)) as client:
        job = load_split(client, "raw", "nofeat", "train")
        assert (job["state"], job["loaded"], job["failed"]) == ("succeeded", 12, 0), job
        image_id, data = next(iter(originals.items()))
        expected = encoder.encode_images([Image.open(io.BytesIO(data))])[0]
        hits = client.post(
            "/img/search", json={"mode": "semantic", "collection": "raw", "text": "图片", "top_k": 12}
        ).json()["hits"]
        query = encoder.encode_text(["图片"])[0]
        score = next(h["score"] for h in hits if h["image_id"] == image_id)
        assert score == pytest.approx(float(expected @ query), abs=1e-4)


def _write_split_with_bad_lines(directory: Path, good_dir: Path) -> None:
    directory.mkdir(exist_ok=True)
    good = (good_dir / "valid_imgs.tsv").read_text().splitlines()[:5]
    features = (good_dir / "valid_imgs.img_feat.jsonl").read_text().splitlines()[:5]
    bad = [
        "no_tab_here",
        "notb64\t!!!not base64!!!",
        "notimage\t" + base64.b64encode(b"just some text, not a picture").decode(),
        "empty\t",
        "\t" + good[0].split("\t")[1],
        "badfeat\t" + good[1].split("\t")[1],
    ]
    lines = good[:2] + bad + good[2:]
    (directory / "mixed_imgs.tsv").write_text("\n".join(lines) + "\n")
    wrong_dim = json.dumps({"image_id": "badfeat", "feature": [0.1, 0.2]})
    (directory / "mixed_imgs.img_feat.jsonl").write_text("\n".join([*features, wrong_dim]) + "\n")


def test_corrupt_lines_are_reported_and_skipped(
    data_root: Path,
    small_split: Path,
    metadata_url: str,
    make_settings: Callable[..., Settings],
    make_client: Callable[[Settings], TestClient],
) -> None:
    _write_split_with_bad_lines(data_root / "mixed", small_split)
    with make_client(make_settings(metadata_url)) as client:
        job = load_split(client, "mixed", "mixed", "mixed")
        assert job["state"] == "succeeded"
        assert (job["total"], job["loaded"], job["failed"], job["done"]) == (11, 5, 6, 11), job
        reasons = " | ".join(e["reason"] for e in job["errors"])
        for expected in ("line 3", "line 4", "not an image", "empty file", "line 7", "badfeat has shape"):
            assert expected in reasons
        assert _store_counts(client, "mixed") == (5, 5)


def test_batch_where_every_feature_is_bad_fails_only_those_lines(
    data_root: Path,
    small_split: Path,
    make_settings: Callable[..., Settings],
    make_client: Callable[[Settings], TestClient],
) -> None:
    directory = data_root / "allbad"
    directory.mkdir(exist_ok=True)
    lines = (small_split / "valid_imgs.tsv").read_text().splitlines()[:3]
    (directory / "x_imgs.tsv").write_text("\n".join(lines) + "\n")
    bad = [json.dumps({"image_id": line.split("\t")[0], "feature": [1.0, 2.0]}) for line in lines]
    (directory / "x_imgs.img_feat.jsonl").write_text("\n".join(bad) + "\n")
    with make_client(make_settings()) as client:
        job = load_split(client, "allbad", "allbad", "x")
        assert (job["state"], job["loaded"], job["failed"], job["done"]) == ("succeeded", 0, 3, 3), job
        assert _store_counts(client, "allbad") == (0, 0)


def test_an_image_id_repeated_in_the_file_is_stored_once_with_its_first_image(
    data_root: Path,
    small_split: Path,
    make_settings: Callable[..., Settings],
    make_client: Callable[[Settings], TestClient],
) -> None:
    """Batches of 2 are stored while later ones are read: a repeat two lines on may meet its first occurrence
    still in flight, and must be skipped as it is once that batch is stored."""
    directory = data_root / "repeats"
    directory.mkdir(exist_ok=True)
    lines = (small_split / "valid_imgs.tsv").read_text().splitlines()[:12]
    features = {json.loads(f)["image_id"]: f for f in (small_split / "valid_imgs.img_feat.jsonl").open()}
    first_id = lines[0].split("\t")[0]
    repeat = first_id + "\t" + lines[5].split("\t")[1]  # the same id with another picture
    rows = [*lines[:3], repeat, *lines[3:8], repeat, *lines[8:]]
    (directory / "r_imgs.tsv").write_text("\n".join(rows) + "\n")
    (directory / "r_imgs.img_feat.jsonl").write_text("".join(features[int(line.split("\t")[0])] for line in lines))
    with make_client(make_settings(load_batch_size=2)) as client:
        job = load_split(client, "repeats", "repeats", "r")
        assert (job["state"], job["total"], job["loaded"], job["skipped"], job["failed"]) == (
            "succeeded",
            14,
            12,
            2,
            0,
        ), job
        assert _store_counts(client, "repeats") == (12, 12)
        stored = client.get(f"/img/repeats/{first_id}")
        assert stored.status_code == 200 and stored.content == _tsv_bytes(small_split)[first_id]


def test_failure_mid_load_leaves_nothing_searchable_without_its_vector(
    small_split: Path,
    make_settings: Callable[..., Settings],
    make_client: Callable[[Settings], TestClient],
) -> None:
    with make_client(make_settings(load_batch_size=20)) as client:
        services = client.app.state.services  # type: ignore[attr-defined]
        real_upsert = services.vectors.upsert
        calls = {"n": 0}

        def flaky_upsert(*args, **kwargs):  # type: ignore[no-untyped-def]
            calls["n"] += 1
            if calls["n"] == 2:
                raise ConnectionError("Milvus went away")
            return real_upsert(*args, **kwargs)

        services.vectors.upsert = flaky_upsert
        job = load_split(client, "faulty", "small", "valid")
        assert job["state"] == "failed" and "Milvus went away" in job["message"]
        assert job["loaded"] == 20
        assert services.metadata.count("faulty") == services.vectors.count("faulty") == 20
        assert client.get("/img/count", params={"collection": "faulty"}).json()["count"] == 20

        services.vectors.upsert = real_upsert
        rerun = load_split(client, "faulty", "small", "valid")
        assert (rerun["state"], rerun["loaded"], rerun["skipped"]) == ("succeeded", SMALL - 20, 20)
        assert _store_counts(client, "faulty") == (SMALL, SMALL)


def test_job_left_running_by_a_dead_process_is_resumed_on_restart_with_exact_counts(
    small_split: Path, make_settings: Callable[..., Settings], make_client: Callable[[Settings], TestClient]
) -> None:
    """The embedded defaults, one process: a load whose process died (its lease left to run out) is resumed by
    the next start and ends with every image stored once; a job with no attempts left is failed with the reason."""
    settings = make_settings(job_lease_seconds=0.5)
    with make_client(settings) as client:
        jobs = JobStore(client.app.state.services.metadata.engine)  # type: ignore[attr-defined]
        params = {"collection": "resumed", "path": "small", "split": "valid", "model": None}
        orphan = jobs.create("load", "resumed", params, max_attempts=3, owner="dead:1:x", lease_s=0.3)
        spent = jobs.create("load", "x", params, max_attempts=1, owner="dead:1:x", lease_s=0.3)
    time.sleep(0.5)
    with make_client(settings) as client:
        resumed = wait_for_job(client, orphan.id)
        assert (resumed["state"], resumed["loaded"], resumed["attempts"]) == ("succeeded", SMALL, 2), resumed
        assert resumed["runs"][0]["owner"] == "dead:1:x"
        assert _store_counts(client, "resumed") == (SMALL, SMALL)
        failed = wait_for_job(client, spent.id)
        assert failed["state"] == "failed" and "interrupted" in failed["message"] and "1 attempt" in failed["message"]
        missing = client.get("/jobs/doesnotexist")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_cancel_stops_a_running_load_and_a_rerun_completes_it(
    data_root: Path, make_settings: Callable[..., Settings], make_client: Callable[[Settings], TestClient]
) -> None:
    generate_split(data_root / "slow", "train", 40, encoder=None, seed=9)  # no features: encoding is slow
    with make_client(make_settings(load_batch_size=4, encode_batch_size=4)) as client:
        job_id = client.post("/img/load", json={"collection": "slow", "path": "slow", "split": "train"}).json()[
            "job_id"
        ]
        deadline = time.monotonic() + 60
        while client.get(f"/jobs/{job_id}").json()["done"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        cancelled = client.post(f"/jobs/{job_id}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["cancel_requested"] is True
        job = wait_for_job(client, job_id)
        assert job["state"] == "cancelled" and 0 < job["done"] < 40, job
        assert _store_counts(client, "slow") == (job["loaded"], job["loaded"])  # nothing half-written
        assert client.post(f"/jobs/{job_id}/cancel").status_code == 200  # cancelling again changes nothing
        rerun = load_split(client, "slow", "slow", "train")
        assert (rerun["state"], rerun["loaded"] + rerun["skipped"]) == ("succeeded", 40)
        assert rerun["skipped"] == job["loaded"]
        assert client.post(f"/jobs/{rerun['job_id']}/cancel").status_code == 409
        assert client.post("/jobs/nope/cancel").status_code == 404


def test_healthz_reports_random_weights_and_stores(
    make_settings: Callable[..., Settings], make_client: Callable[[Settings], TestClient]
) -> None:
    with make_client(make_settings()) as client:
        health = client.get("/healthz")
        assert health.status_code == 200
        body = health.json()
        assert body["status"] == "ok"
        assert body["model"]["weights"] == "random" and "RANDOM WEIGHTS" in body["model"]["warning"]
        assert body["model"]["dim"] == 1024
        assert body["stores"]["metadata"]["ok"] and body["stores"]["vectors"]["ok"]


def test_embed_text_matches_the_encoder(
    encoder: ChineseClipEncoder,
    make_settings: Callable[..., Settings],
    make_client: Callable[[Settings], TestClient],
) -> None:
    with make_client(make_settings(max_embed_texts=3)) as client:
        body = client.post("/embed/text", json={"texts": ["小狗", "大海"]}).json()
        assert (body["model"], body["dim"], len(body["vectors"])) == ("RN50", 1024, 2)
        assert np.allclose(body["vectors"], encoder.encode_text(["小狗", "大海"]), atol=1e-5)
        for bad in ({"texts": []}, {"texts": ["a", "b", "c", "d"]}, {"texts": ["ok", " "]}, {"texts": "小狗"}):
            response = client.post("/embed/text", json=bad)
            assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_input"


def test_collection_is_bound_to_its_model(
    make_settings: Callable[..., Settings], make_client: Callable[[Settings], TestClient]
) -> None:
    with make_client(make_settings()) as client:
        created = client.post("/collections", json={"name": "bound", "model": "RN50"})
        assert created.status_code == 201 and (created.json()["model"], created.json()["dim"]) == ("RN50", 1024)
        assert client.post("/collections", json={"name": "bound", "model": "RN50"}).status_code == 201  # no-op
        again = client.post("/collections", json={"name": "bound", "model": "ViT-B-16"})
        assert again.status_code == 409 and "bound to RN50" in again.json()["error"]["message"]
        load = client.post(
            "/img/load", json={"collection": "bound", "path": "small", "split": "valid", "model": "ViT-L-14"}
        )
        assert load.status_code == 409
        unknown = client.post("/collections", json={"name": "other", "model": "RN51"})
        assert unknown.status_code == 422 and "unknown model" in unknown.json()["error"]["message"]

        # vectors of another size than the model gives (e.g. another checkpoint) are refused, never mixed
        client.app.state.services.metadata.create_collection("odd", "RN50", 512, "IP")  # type: ignore[attr-defined]
        response = client.post("/img/search", json={"mode": "semantic", "collection": "odd", "text": "猫"})
        assert response.status_code == 409 and "512-d" in response.json()["error"]["message"]
        assert (
            client.post("/img/load", json={"collection": "odd", "path": "small", "split": "valid"}).status_code == 409
        )


def test_swagger_ui_is_served_by_the_app_itself(
    make_settings: Callable[..., Settings], make_client: Callable[[Settings], TestClient]
) -> None:
    with make_client(make_settings()) as client:
        page = client.get("/docs")
        assert page.status_code == 200 and "cdn" not in page.text.lower()
        assets = re.findall(r"""["'](/[^"']*(?:swagger-ui-bundle\.js|swagger-ui\.css))["']""", page.text)
        assert len(assets) == 2, page.text
        for url in assets:
            assert client.get(url).status_code == 200, url
        schema = client.get("/openapi.json").json()
        assert schema["paths"]["/img/search"]["post"]
        for body in ("Body_upload_images_img_upload_post", "Body_search_by_image_img_search_image_post"):
            files = schema["components"]["schemas"][body]["properties"]["files"]
            assert files["items"]["format"] == "binary"  # Swagger UI shows file pickers, not text boxes
