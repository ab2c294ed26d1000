"""A store failing mid-ingest leaves nothing searchable without its vector; a re-run completes with exact
counts; reconcile finds and repairs whatever disagrees between the stores."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError

from config import Settings
from tests.conftest import wait_for_job
from tests.imagefiles import jpeg

COUNT = 24


def _folder(root: Path, name: str) -> Path:
    folder = root / name
    folder.mkdir(exist_ok=True)
    for i in range(COUNT):
        (folder / f"{i:03}.jpg").write_bytes(jpeg(900 + i))
    return folder


def _counts(client: TestClient, collection: str) -> tuple[int, int, int]:
    """(searchable rows, all rows, vectors)"""
    services = client.app.state.services  # type: ignore[attr-defined]
    return (
        services.metadata.count(collection),
        services.metadata.count(collection, include_pending=True),
        services.vectors.count(collection),
    )


def _job(client: TestClient, url: str, body: dict | None = None) -> dict:
    response = client.post(url, json=body) if body is not None else client.post(url)
    assert response.status_code == 202, response.text
    return wait_for_job(client, response.json()["job_id"])


def _reconcile(client: TestClient, collection: str) -> dict:
    job = _job(client, f"/collections/{collection}/reconcile")
    assert job["state"] == "succeeded", job
    return job


class FailsOnCall:
    """Wraps a store method to raise on its n-th call, as a database that goes away mid-job would."""

    def __init__(self, real: Callable, n: int, error: Exception) -> None:
        self.real, self.n, self.error, self.calls = real, n, error, 0

    def __call__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.calls += 1
        if self.calls == self.n:
            raise self.error
        return self.real(*args, **kwargs)


@pytest.mark.parametrize(
    ("store", "method", "error"),
    [
        ("metadata", "mark_indexed", OperationalError("UPDATE", {}, ConnectionRefusedError("MySQL went away"))),
        ("metadata", "insert_pending", OperationalError("INSERT", {}, ConnectionRefusedError("MySQL went away"))),
        ("vectors", "upsert", ConnectionError("Milvus went away")),
    ],
)
def test_store_failure_mid_ingest_then_rerun_gives_exact_counts(
    store: str,
    method: str,
    error: Exception,
    mysql_url: str,
    data_root: Path,
    make_settings: Callable[..., Settings],
    make_client: Callable[[Settings], TestClient],
) -> None:
    folder = _folder(data_root, f"faults_{store}_{method}")
    with make_client(make_settings(mysql_url, encode_batch_size=8)) as client:
        target = getattr(client.app.state.services, store)  # type: ignore[attr-defined]
        real = getattr(target, method)
        setattr(target, method, FailsOnCall(real, 2, error))
        job = _job(client, "/img/ingest", {"collection": "faulty", "path": folder.name})
        assert job["state"] == "failed" and "went away" in job["message"], job
        if store == "metadata":
            assert job["message"].startswith("metadata database unavailable"), job["message"]
        searchable, _, vectors = _counts(client, "faulty")
        assert searchable == 8 and vectors >= searchable  # nothing searchable lacks its vector

        setattr(target, method, real)  # the store is back
        rerun = _job(client, "/img/ingest", {"collection": "faulty", "path": folder.name})
        assert (rerun["state"], rerun["loaded"] + rerun["skipped"], rerun["failed"]) == ("succeeded", COUNT, 0)
        assert _counts(client, "faulty") == (COUNT, COUNT, COUNT)
        report = _reconcile(client, "faulty")
        assert report["message"].startswith("nothing to repair"), report
        assert report["result"]["rows_checked"] == report["result"]["vectors_checked"] == COUNT


def test_reconcile_repairs_what_changed_behind_the_services_back(
    metadata_url: str,
    milvus_target: dict[str, str],
    data_root: Path,
    make_settings: Callable[..., Settings],
    make_client: Callable[[Settings], TestClient],
) -> None:
    folder = _folder(data_root, "reconcile_me")
    with make_client(make_settings(metadata_url, milvus_target)) as client:
        services = client.app.state.services  # type: ignore[attr-defined]
        assert _job(client, "/img/ingest", {"collection": "rc", "path": folder.name})["loaded"] == COUNT
        ids = [row_id for page in services.metadata.iter_id_pages("rc") for row_id, _ in page]
        victim = ids[3]
        original = services.vectors.get("rc", [victim])[victim]
        record = services.metadata.fetch("rc", [victim])[victim]

        services.vectors.delete("rc", [victim])  # a vector lost
        services.vectors.upsert("rc", [10**12], original[None, :])  # a vector without a row
        services.metadata.mark_indexed([ids[5]], indexed=False)  # a write cut short before its last step
        assert _counts(client, "rc") == (COUNT - 1, COUNT, COUNT)

        job = _reconcile(client, "rc")
        result = job["result"]
        assert (result["vectors_rebuilt"], result["orphan_vectors_deleted"], result["pending_completed"]) == (1, 1, 1)
        assert result["examples"]["vectors_rebuilt"] == [victim]
        assert _counts(client, "rc") == (COUNT, COUNT, COUNT)
        rebuilt = services.vectors.get("rc", [victim])[victim]
        assert float(np.dot(rebuilt, original)) == pytest.approx(1.0, abs=1e-4)  # same image, same vector
        similar = client.get(f"/img/rc/{record.image_id}/similar", params={"top_k": 3})
        assert similar.status_code == 200

        again = _reconcile(client, "rc")
        assert again["message"].startswith("nothing to repair")
        assert client.post("/collections/nope/reconcile").status_code == 404


def test_reconcile_rebuilds_a_lost_milvus_collection(
    milvus_target: dict[str, str],
    data_root: Path,
    make_settings: Callable[..., Settings],
    make_client: Callable[[Settings], TestClient],
) -> None:
    folder = _folder(data_root, "lost_collection")
    with make_client(make_settings(milvus=milvus_target)) as client:
        services = client.app.state.services  # type: ignore[attr-defined]
        _job(client, "/img/ingest", {"collection": "lost", "path": folder.name})
        services.vectors.drop_collection("lost")
        assert _reconcile(client, "lost")["result"]["vectors_rebuilt"] == COUNT
        assert _counts(client, "lost") == (COUNT, COUNT, COUNT)
