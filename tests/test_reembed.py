"""Re-embedding a collection with another model while it is searched and written: the new vectors are built in a
generation of their own, writes made meanwhile (uploads, deletes, tags) reach both, one switch moves searches to
the new model, a rollback moves them back and a finalize drops the old vectors. A stopped re-embed resumes. On
SQLite and MariaDB, with Milvus Lite."""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
import pytest
from fastapi.testclient import TestClient

from adapters import images
from config import Settings
from operations.collections import reembed
from tests.conftest import wait_for_job
from tests.imagefiles import jpeg

C = "re"
NEW = "ViT-B-16"


@pytest.fixture
def client(metadata_url: str, make_settings: Callable[..., Settings], make_client: Callable[..., TestClient]):
    with make_client(make_settings(metadata_url, encode_batch_size=4)) as client:
        yield client


def _upload(client: TestClient, seeds: range) -> list[str]:
    files = [("files", (f"p{s}.jpg", jpeg(s), "image/jpeg")) for s in seeds]
    response = client.post("/img/upload", data={"collection": C}, files=files)
    assert response.status_code == 200, response.text
    return [r["image_id"] for r in response.json()["results"]]


def _collection(client: TestClient) -> dict:
    return next(c for c in client.get("/collections").json() if c["name"] == C)


def _search(client: TestClient, **body: object) -> dict:
    response = client.post("/img/search", json={"collection": C, "text": "海边", "mode": "semantic", **body})
    assert response.status_code == 200, response.text
    return response.json()


def _gate(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event]:
    """Holds the re-embed job before its first batch: writes can then be made while it runs."""
    reached, release = threading.Event(), threading.Event()
    real = reembed._missing_rows

    def held(*args, **kwargs):  # type: ignore[no-untyped-def]
        reached.set()
        assert release.wait(60)
        yield from real(*args, **kwargs)

    monkeypatch.setattr(reembed, "_missing_rows", held)
    return reached, release


def test_reembed_switch_rollback_and_finalize_with_writes_meanwhile(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = client.app.state.services  # type: ignore[attr-defined]
    ids = _upload(client, range(800, 812))
    assert client.put(f"/img/{C}/{ids[0]}/tags", json={"tags": ["家人"]}).status_code == 200
    assert client.put(f"/img/{C}/{ids[1]}/description", json={"description": "外婆的生日"}).status_code == 200
    old = services.metadata.get_collection(C)
    assert _search(client)["model"] == "RN50"

    for bad, status in (({"model": "RN50"}, 409), ({"model": "nope"}, 422)):
        assert client.post(f"/collections/{C}/reembed", json=bad).status_code == status, bad
    reached, release = _gate(monkeypatch)
    started = client.post(f"/collections/{C}/reembed", json={"model": NEW})
    assert started.status_code == 202, started.text
    assert reached.wait(120)
    assert _collection(client)["reembed"] == {"model": NEW, "state": "building"}
    assert client.post(f"/collections/{C}/reembed", json={"model": "resnet50"}).status_code == 409  # one at a time
    assert client.post(f"/collections/{C}/reembed/finalize").status_code == 409  # nothing built yet

    # Writes while it runs: they reach both generations.
    added = _upload(client, range(850, 852))
    assert client.delete(f"/img/{C}/{ids[2]}").status_code == 200
    assert client.put(f"/img/{C}/{ids[3]}/tags", json={"tags": ["旅行"]}).status_code == 200
    assert _search(client)["model"] == "RN50"  # still the old model until the switch
    release.set()
    job = wait_for_job(client, started.json()["job_id"])
    assert job["state"] == "succeeded", job

    record = services.metadata.get_collection(C)
    assert (record.model, record.next_model, record.next_state) == (NEW, "RN50", "previous")
    assert record.vector_collection != C and record.next_vectors == old.vector_collection
    listed = _collection(client)
    assert (
        listed["model"] == NEW and listed["dim"] == 512 and listed["reembed"] == {"model": "RN50", "state": "previous"}
    )
    assert listed["count"] == 13 == services.vectors.count(record.vector_collection) == services.vectors.count(C)

    # The new vectors are the new model's own, of the stored images; tags and words carried over.
    row = services.metadata.get_image(C, added[0])
    stored = services.vectors.get(record.vector_collection, [row.id])[row.id]
    encoder = services.models.get(NEW)
    fresh = encoder.encode_pixels([encoder.preprocess(images.decode_rgb(row.data, 10**8))])[0]
    assert float(np.dot(stored, fresh)) >= 0.99999
    result = _search(client)
    assert result["model"] == NEW and len(result["hits"]) == 10
    assert {h["image_id"] for h in _search(client, filters={"tags_any": ["家人", "旅行"]})["hits"]} == {ids[0], ids[3]}
    words = client.post("/img/search", json={"collection": C, "text": "外婆", "mode": "keyword"}).json()
    assert [h["image_id"] for h in words["hits"]] == [ids[1]]
    assert ids[2] not in {h["image_id"] for h in _search(client, top_k=20)["hits"]}

    # After the switch writes still reach the old vectors: a rollback is exact.
    later = _upload(client, range(860, 861))
    assert services.vectors.count(old.vector_collection) == 14 == services.vectors.count(record.vector_collection)
    back = client.post(f"/collections/{C}/reembed/rollback")
    assert back.status_code == 200 and back.json()["model"] == "RN50" and back.json()["reembed"]["state"] == "ready"
    assert _search(client)["model"] == "RN50" and later[0] in {h["image_id"] for h in _search(client, top_k=20)["hits"]}
    again = client.post(f"/collections/{C}/reembed/switch")
    assert again.status_code == 200 and again.json()["model"] == NEW
    done = client.post(f"/collections/{C}/reembed/finalize")
    assert done.status_code == 200 and done.json()["reembed"] is None
    assert not services.vectors.has_collection(old.vector_collection)
    assert _search(client)["model"] == NEW and client.get(f"/img/count?collection={C}").json()["count"] == 14
    assert client.post(f"/collections/{C}/reembed/rollback").status_code == 409  # nothing left to roll back to

    dropped = client.delete(f"/collections/{C}")
    assert dropped.status_code == 200 and not services.vectors.has_collection(record.vector_collection)


def test_a_stopped_reembed_resumes_and_an_abandoned_one_leaves_nothing(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = client.app.state.services  # type: ignore[attr-defined]
    _upload(client, range(900, 912))
    real = reembed._build_pass

    def one_batch_then_cancel(*args, **kwargs):  # type: ignore[no-untyped-def]
        progress = args[4]
        real_flush = progress.flush

        def flush() -> None:
            real_flush()
            if progress.loaded:
                client.post(f"/jobs/{progress.job_id}/cancel")

        progress.flush = flush
        return real(*args, **kwargs)

    monkeypatch.setattr(reembed, "_build_pass", one_batch_then_cancel)
    first = client.post(f"/collections/{C}/reembed", json={"model": NEW, "switch": False}).json()["job_id"]
    stopped = wait_for_job(client, first)
    assert stopped["state"] == "cancelled" and 0 < stopped["loaded"] < 12, stopped
    assert _collection(client)["reembed"] == {"model": NEW, "state": "building"}
    monkeypatch.setattr(reembed, "_build_pass", real)

    resumed = client.post(f"/collections/{C}/reembed", json={"model": NEW, "switch": False})
    assert resumed.status_code == 202, resumed.text
    job = wait_for_job(client, resumed.json()["job_id"])
    assert job["state"] == "succeeded" and job["skipped"] == stopped["loaded"], job
    assert job["loaded"] == 12 - stopped["loaded"]
    assert _collection(client)["reembed"] == {"model": NEW, "state": "ready"} and _search(client)["model"] == "RN50"

    target = services.metadata.get_collection(C).next_vectors
    abandoned = client.post(f"/collections/{C}/reembed/rollback")  # before a switch: drops the new vectors
    assert abandoned.status_code == 200 and abandoned.json()["reembed"] is None
    assert not services.vectors.has_collection(target) and _search(client)["model"] == "RN50"
