"""Several service processes on one Milvus server and one MariaDB: real `imgsearch serve` subprocesses, one of
them killed with SIGKILL mid-load; the job queue in the database lets the survivor finish the job."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from app.cli import main as cli_main
from config import Settings
from operations.ingest.sample_data import generate_split
from tests.conftest import wait_for_job
from tests.imagefiles import jpeg
from tests.milvus_server import free_port

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def serving(env: dict[str, str], *args: str) -> Iterator[tuple[subprocess.Popen, str]]:
    """`imgsearch serve` in a process of its own (its own session, so a kill reaches its workers too)."""
    port = free_port()
    command = [sys.executable, "-m", "app.cli", "serve", "--port", str(port), *args]
    process = subprocess.Popen(command, env={**os.environ, **env}, cwd=ROOT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert process.poll() is None, "the service exited during start-up"
            assert time.monotonic() < deadline, "the service did not start in 180 s"
            try:
                if httpx.get(f"{url}/healthz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        yield process, url
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)


def _running_with(url: str, job_id: str, counter: str) -> dict:
    """Waits until the job runs and has ``counter`` above 0 (some work done, more to come): the moment to kill."""
    deadline = time.monotonic() + 120
    while True:
        job = httpx.get(f"{url}/jobs/{job_id}", timeout=30).json()
        if job[counter] > 0 and job["state"] == "running":
            return job
        assert time.monotonic() < deadline and job["state"] in ("queued", "running"), job
        time.sleep(0.05)


@pytest.fixture
def shared_env(mysql_url: str, milvus_server_db: dict[str, str], data_root: Path, tmp_path: Path) -> dict[str, str]:
    return {
        "IMGSEARCH_WEIGHTS": "random",  # seed 0, the same model as the tests' encoder
        "IMGSEARCH_METADATA_URL": mysql_url,
        "IMGSEARCH_MILVUS_URI": milvus_server_db["milvus_uri"],
        "IMGSEARCH_MILVUS_DB": milvus_server_db["milvus_db"],
        "IMGSEARCH_DATA_DIR": str(tmp_path / "data"),
        "IMGSEARCH_DATA_ROOT": str(data_root),
        "IMGSEARCH_JOB_LEASE_SECONDS": "2",
        "IMGSEARCH_TORCH_THREADS": "1",
        "IMGSEARCH_LOG_LEVEL": "WARNING",
    }


def test_a_load_whose_process_is_killed_is_finished_by_another_with_exact_counts(
    shared_env: dict[str, str],
    mysql_url: str,
    milvus_server_db: dict[str, str],
    data_root: Path,
    make_settings: Callable[..., Settings],
    make_client: Callable[[Settings], TestClient],
) -> None:
    count = 48
    generate_split(data_root / "killed", "train", count, encoder=None, seed=11)  # no features: the load encodes
    slow = {**shared_env, "IMGSEARCH_LOAD_BATCH_SIZE": "4", "IMGSEARCH_ENCODE_BATCH_SIZE": "4"}
    with serving(slow) as (first, url):
        body = {"collection": "killed", "path": "killed", "split": "train"}
        job_id = httpx.post(f"{url}/img/load", json=body, timeout=30).json()["job_id"]
        job = _running_with(url, job_id, "done")
        assert job["owner"].split(":")[1] == str(first.pid)
        os.killpg(first.pid, signal.SIGKILL)  # no shutdown, no goodbye: its lease simply stops being renewed
        first.wait(timeout=30)
        done_when_killed = job["done"]

    settings = make_settings(mysql_url, milvus_server_db, job_lease_seconds=2)
    with make_client(settings) as second:
        finished = wait_for_job(second, job_id)
        assert finished["state"] == "succeeded", finished
        assert finished["attempts"] == 2 and len(finished["runs"]) == 2
        assert str(first.pid) in finished["runs"][0]["owner"] and "lease expired" in finished["runs"][0]["outcome"]
        assert finished["runs"][1]["owner"] == second.app.state.jobs.owner  # type: ignore[attr-defined]
        assert finished["loaded"] + finished["skipped"] == count and finished["failed"] == 0
        assert finished["skipped"] >= min(done_when_killed, count) - 4  # what the first stored was not redone
        services = second.app.state.services  # type: ignore[attr-defined]
        assert services.metadata.count("killed", include_pending=True) == services.vectors.count("killed") == count
        reconcile = second.post("/collections/killed/reconcile").json()["job_id"]
        assert wait_for_job(second, reconcile)["message"].startswith("nothing to repair")


def test_serve_with_two_workers_runs_two_processes_on_shared_stores(shared_env: dict[str, str]) -> None:
    with serving(shared_env, "--workers", "2") as (main, url):
        workers = subprocess.run(["pgrep", "-P", str(main.pid)], capture_output=True, text=True).stdout.split()
        assert len(workers) >= 2, workers  # uvicorn's supervisor and its two service processes (plus helpers)
        created = httpx.post(f"{url}/collections", json={"name": "shared", "model": "RN50"}, timeout=60)
        assert created.status_code == 201, created.text
        for _ in range(6):  # whichever process answers sees the same stores
            listed = httpx.get(f"{url}/collections", timeout=30).json()
            assert [c["name"] for c in listed] == ["shared"] and listed[0]["index"]["index_type"] == "HNSW"


def test_several_workers_on_embedded_stores_are_refused_with_what_to_change(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("IMGSEARCH_DATA_DIR", str(tmp_path))
    with pytest.raises(SystemExit) as refused:
        cli_main(["serve", "--workers", "2"])
    message = str(refused.value)
    assert "Milvus Lite" in message and "one process only" in message and "IMGSEARCH_MILVUS_URI=http" in message
    assert "SQLite" in message and "IMGSEARCH_METADATA_URL=mysql+pymysql" in message
    assert not (tmp_path / "milvus.db").exists()  # refused before opening anything


def test_a_sync_whose_process_is_killed_is_finished_by_another_with_the_exact_end_state(
    shared_env: dict[str, str],
    mysql_url: str,
    milvus_server_db: dict[str, str],
    data_root: Path,
    make_settings: Callable[..., Settings],
    make_client: Callable[[Settings], TestClient],
) -> None:
    count = 40
    folder = data_root / f"killed_sync_{free_port()}"
    for i in range(count):
        (folder / f"{i % 4}").mkdir(parents=True, exist_ok=True)
        (folder / f"{i % 4}" / f"IMG_{i:04d}.jpg").write_bytes(jpeg(900 + i))
    slow = {**shared_env, "IMGSEARCH_ENCODE_BATCH_SIZE": "2", "IMGSEARCH_DECODE_WORKERS": "1"}
    with serving(slow) as (first, url):
        body = {"path": folder.relative_to(data_root).as_posix()}
        source = httpx.post(f"{url}/collections/lib/sources", json=body, timeout=60).json()
        job_id = httpx.post(f"{url}/collections/lib/sources/{source['id']}/sync", timeout=30).json()["job_id"]
        _running_with(url, job_id, "loaded")
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=30)

    settings = make_settings(mysql_url, milvus_server_db, job_lease_seconds=2)
    with make_client(settings) as second:
        finished = wait_for_job(second, job_id)
        assert finished["state"] == "succeeded" and finished["attempts"] == 2, finished
        services = second.app.state.services  # type: ignore[attr-defined]
        assert services.metadata.count("lib", include_pending=True) == services.vectors.count("lib") == count
        assert len(services.sources.files(source["id"])) == count  # every file placed once, no orphan row
        again = second.post(f"/collections/lib/sources/{source['id']}/sync").json()["job_id"]
        assert wait_for_job(second, again)["result"]["counts"]["unchanged"] == count
        reconcile = second.post("/collections/lib/reconcile").json()["job_id"]
        assert wait_for_job(second, reconcile)["message"].startswith("nothing to repair")


class _Soak:
    """Searches and uploads against service processes from threads, until stopped; every answer is kept."""

    def __init__(self, urls: list[str], collection: str) -> None:
        self.urls, self.collection = list(urls), collection
        self.answers: list[tuple[str, float, int, str]] = []  # (url, time, status, model or error)
        self.uploaded: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._search, args=(u,)) for u in urls]
        self._threads.append(threading.Thread(target=self._write))

    def __enter__(self) -> _Soak:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def _search(self, url: str) -> None:
        body = {"collection": self.collection, "text": "海边的日落", "mode": "semantic", "top_k": 5}
        with httpx.Client(timeout=60) as client:
            while not self._stop.is_set() and url in self.urls:
                try:
                    response = client.post(f"{url}/img/search", json=body)
                    model = response.json().get("model", response.text[:200])
                except httpx.TransportError as exc:
                    response, model = None, repr(exc)
                if url in self.urls:
                    self.answers.append((url, time.monotonic(), response.status_code if response else 0, model))

    def _write(self) -> None:
        seed = 20_000
        with httpx.Client(timeout=120) as client:
            while not self._stop.wait(1.0):  # each upload is encoded twice while the re-embed runs
                url = self.urls[seed % len(self.urls)]
                seed += 1
                files = [("files", (f"s{seed}.jpg", jpeg(seed), "image/jpeg"))]
                try:
                    response = client.post(f"{url}/img/upload", data={"collection": self.collection}, files=files)
                    status, what = response.status_code, response.text[:200]
                except httpx.TransportError as exc:
                    status, what = 0, repr(exc)
                if url in self.urls:
                    self.answers.append((url, time.monotonic(), status, what))
                    if status == 200:
                        self.uploaded.append(response.json()["results"][0]["image_id"])

    def errors(self) -> list[tuple[str, float, int, str]]:
        return [answer for answer in self.answers if answer[2] != 200]


def test_a_reembed_runs_under_searches_and_writes_from_two_processes_and_survives_a_kill(
    shared_env: dict[str, str],
    mysql_url: str,
    milvus_server_db: dict[str, str],
    onnx_dir: Path,
    make_settings: Callable[..., Settings],
    make_client: Callable[[Settings], TestClient],
) -> None:
    """RN50 → ViT-B-16 while both processes search and upload: 0 errors, and a process that answered with the new
    model never answers with the old again (the vectors are 1024-d and 512-d: a search that mixed them would
    fail). Then ViT-B-16 → RN50 with the process running the job killed: the other resumes it, it switches once."""
    env = {**shared_env, "IMGSEARCH_ENCODE_BATCH_SIZE": "4", "IMGSEARCH_ONNX_DIR": str(onnx_dir)}
    with serving(env) as (first, a), serving(env) as (second, b):
        files = [("files", (f"p{i}.jpg", jpeg(i), "image/jpeg")) for i in range(10_000, 10_030)]
        uploaded = httpx.post(f"{a}/img/upload", data={"collection": "soak"}, files=files, timeout=300)
        assert uploaded.status_code == 200, uploaded.text
        with _Soak([a, b], "soak") as soak:
            time.sleep(2)
            job_id = httpx.post(f"{a}/collections/soak/reembed", json={"model": "ViT-B-16"}, timeout=300).json()
            job = wait_for_job(httpx.Client(base_url=a, timeout=60), job_id["job_id"], timeout=600)
            time.sleep(3)  # searches and writes after the switch
        assert job["state"] == "succeeded", job
        assert soak.errors() == [] and len(soak.answers) > 30, soak.errors()[:5]
        for url in (a, b):
            models = [m for u, _, status, m in soak.answers if u == url and m in ("RN50", "ViT-B-16")]
            switched = models.index("ViT-B-16")  # each process moved to the new model once, for good
            assert set(models[:switched]) == {"RN50"} and set(models[switched:]) == {"ViT-B-16"}, url
        listed = {c["name"]: c for c in httpx.get(f"{b}/collections", timeout=60).json()}["soak"]
        assert listed["model"] == "ViT-B-16" and listed["reembed"] == {"model": "RN50", "state": "previous"}
        assert listed["count"] == 30 + len(soak.uploaded)
        assert httpx.post(f"{b}/collections/soak/reembed/finalize", timeout=60).status_code == 200

        # Back to RN50, killing the process that runs the job.
        started = httpx.post(f"{b}/collections/soak/reembed", json={"model": "RN50"}, timeout=300).json()["job_id"]
        running = _running_with(b, started, "loaded")
        victim, survivor = (first, b) if running["owner"].split(":")[1] == str(first.pid) else (second, a)
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(timeout=30)
        finished = wait_for_job(httpx.Client(base_url=survivor, timeout=60), started, timeout=600)
        assert finished["state"] == "succeeded" and finished["attempts"] == 2, finished
        assert finished["skipped"] > 0  # what the killed process had made was kept, not made again

    with make_client(make_settings(mysql_url, milvus_server_db)) as inspect:
        services = inspect.app.state.services  # type: ignore[attr-defined]
        record = services.metadata.get_collection("soak")
        assert (record.model, record.next_model, record.next_state) == ("RN50", "ViT-B-16", "previous")  # once
        rows = services.metadata.count("soak", include_pending=True)
        assert rows == services.vectors.count(record.vector_collection) == services.vectors.count(record.next_vectors)
