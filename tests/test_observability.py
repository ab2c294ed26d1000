"""What an operator sees: /metrics, request ids in headers and logs, and the limits that answer 4xx
(busy job queue, over-long query text)."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.logging_setup import configure_logging
from config import Settings
from operations.errors import Busy
from operations.jobs.jobs import JobRunner
from tests.conftest import load_split


@pytest.fixture
def client(
    small_split: Path, make_settings: Callable[..., Settings], make_client: Callable[[Settings], TestClient]
) -> Iterator[TestClient]:
    with make_client(make_settings(max_active_jobs=1)) as test_client:
        assert load_split(test_client, "good", "small", "valid")["state"] == "succeeded"
        yield test_client


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
            if all(found.get(k) == v for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_requests_stages_and_jobs(client: TestClient) -> None:
    for text in ("红色的圆形", "蓝色的方块", "绿色三角形"):
        assert (
            client.post("/img/search", json={"mode": "semantic", "collection": "good", "text": text}).status_code == 200
        )
    assert client.post("/img/search", json={"mode": "semantic", "collection": "nope", "text": "猫"}).status_code == 404
    client.get("/no/such/thing")

    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert metric(text, "imgsearch_http_requests_total", route="/img/search", status="200") == 3
    assert metric(text, "imgsearch_http_requests_total", route="/img/search", status="404") == 1
    assert metric(text, "imgsearch_http_requests_total", route="unmatched", status="404") == 1
    assert metric(text, "imgsearch_http_request_duration_seconds_count", route="/img/search") == 4
    for stage in ("encode", "vector_search", "metadata_fetch"):
        assert metric(text, "imgsearch_search_stage_duration_seconds_count", stage=stage) == 3, stage
    assert metric(text, "imgsearch_jobs_total", kind="load", state="succeeded") == 1
    assert metric(text, "imgsearch_jobs_active") == 0


def test_request_ids_in_headers_and_json_logs(client: TestClient, capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    configure_logging("INFO", "json")
    try:
        sent = client.post(
            "/img/search",
            json={"mode": "semantic", "collection": "good", "text": "红色"},
            headers={"X-Request-ID": "trace-42"},
        )
        fresh = client.get("/img/count?collection=good")
        hostile = client.get("/img/count?collection=good", headers={"X-Request-ID": "bad id\nwith newline"})
    finally:
        root.handlers, root.level = saved
    assert sent.headers["x-request-id"] == "trace-42"
    assert re.fullmatch(r"[0-9a-f]{32}", fresh.headers["x-request-id"])
    assert re.fullmatch(r"[0-9a-f]{32}", hostile.headers["x-request-id"])  # not echoed into logs or headers
    assert "app;dur=" in sent.headers["server-timing"]

    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    access = [e for e in lines if e["logger"] == "app.access"]
    assert {"ts", "level", "logger", "request_id", "message"} <= set(access[0])
    assert any(e["request_id"] == "trace-42" and "POST /img/search 200" in e["message"] for e in access)
    assert any(e["request_id"] == fresh.headers["x-request-id"] for e in access)


def test_a_full_job_queue_answers_429_and_changes_nothing(client: TestClient) -> None:
    """The limit counts every process's jobs: one running in another process (a record it holds) fills it here."""
    runner: JobRunner = client.app.state.jobs  # type: ignore[attr-defined]
    held = runner.store.create("load", "good", {}, owner="other-host:1:abc", lease_s=600)
    count = client.get("/img/count?collection=good").json()["count"]
    response = client.post("/img/load", json={"collection": "other", "path": "small", "split": "valid"})
    assert response.status_code == 429, response.text
    assert response.json()["error"]["code"] == "busy"
    assert "IMGSEARCH_MAX_ACTIVE_JOBS=1" in response.json()["error"]["message"]
    assert client.get("/img/count?collection=good").json()["count"] == count
    assert [c["name"] for c in client.get("/collections").json()] == ["good"]
    runner.store.finish(held.id, "other-host:1:abc", "succeeded", "done")
    assert client.post("/img/load", json={"collection": "other", "path": "small", "split": "valid"}).status_code == 202


def _wait_until(condition, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_job_runner_counts_and_releases_slots(tmp_path: Path) -> None:
    from adapters.stores.sql.job_store import JobStore
    from adapters.stores.sql.sql_schema import create_metadata_engine

    finished: list[tuple[str, str]] = []
    gate = threading.Event()
    work = {"load": lambda p: gate.wait(30) and "ok", "ingest": lambda p: "ok"}
    engine = create_metadata_engine(f"sqlite:///{tmp_path / 'jobs.db'}")
    runner = JobRunner(
        JobStore(engine), lambda r: work[r.kind], 1, 60, max_active=2, on_finish=lambda k, s: finished.append((k, s))
    )
    try:
        runner.submit("load", "a", {})
        runner.submit("ingest", "a", {})
        with pytest.raises(Busy):
            runner.submit("load", "a", {})
        gate.set()
        _wait_until(lambda: len(finished) == 2)
        runner.submit("load", "a", {})  # slots are free again
        _wait_until(lambda: len(finished) == 3)
    finally:
        runner.shutdown()
        engine.dispose()
    assert runner.active == 0
    assert sorted(finished) == [("ingest", "succeeded"), ("load", "succeeded"), ("load", "succeeded")]


def test_over_long_query_is_truncated_and_says_so(client: TestClient) -> None:
    short = client.post("/img/search", json={"mode": "semantic", "collection": "good", "text": "红色的圆形"}).json()
    assert short["truncated"] is False and short["notice"] is None
    long_text = "一只红色的圆形在蓝色背景上" * 8  # 104 characters, 104 tokens: over the 50 the model reads
    response = client.post("/img/search", json={"mode": "semantic", "collection": "good", "text": long_text})
    assert response.status_code == 200
    body = response.json()
    assert body["truncated"] is True and "104 tokens" in body["notice"] and "first 50" in body["notice"]
    assert len(body["hits"]) == 10
    # The service searched with what the model read: the first 50 tokens give the same hits.
    cut = client.post("/img/search", json={"mode": "semantic", "collection": "good", "text": long_text[:50]}).json()
    assert [h["id"] for h in cut["hits"]] == [h["id"] for h in body["hits"]]


def test_jobs_of_a_dead_process_are_resumed_or_failed_without_a_restart(tmp_path: Path) -> None:
    """kill -9 leaves a job 'running' under a lease nobody renews: the live process resumes it while attempts
    remain, or marks it failed saying why; its own job, silent for longer than the lease, is left alone."""
    from adapters.stores.sql.job_store import JobStore
    from adapters.stores.sql.sql_schema import create_metadata_engine

    engine = create_metadata_engine(f"sqlite:///{tmp_path / 'jobs.db'}")
    store = JobStore(engine)
    gate = threading.Event()
    work = {"load": lambda p: gate.wait(30) and "ok", "ingest": lambda p: "resumed"}
    spent = store.create("ingest", "a", {}, max_attempts=1, owner="dead:1:x", lease_s=0.5)
    resumable = store.create("ingest", "a", {}, max_attempts=3, owner="dead:1:x", lease_s=0.5)
    runner = JobRunner(store, lambda r: work[r.kind], 2, lease_s=1.0)
    try:
        own = runner.submit("load", "a", {})
        _wait_until(lambda: store.get(resumable.id).state == "succeeded")  # type: ignore[union-attr]
        _wait_until(lambda: store.get(spent.id).state == "failed")  # type: ignore[union-attr]
        failed, resumed = store.get(spent.id), store.get(resumable.id)
        assert failed is not None and failed.message == "interrupted: the process running it stopped after 1 attempt"
        assert resumed is not None and resumed.message == "resumed" and resumed.attempts == 2
        assert [r["owner"] for r in resumed.runs] == ["dead:1:x", runner.owner]
        assert "lease expired" in resumed.runs[0]["outcome"]
        time.sleep(1.5)  # longer than the lease: the keeper renews it
        assert store.get(own.id).state == "running"  # type: ignore[union-attr]
        gate.set()
        _wait_until(lambda: store.get(own.id).state == "succeeded")  # type: ignore[union-attr]
    finally:
        runner.shutdown()
        engine.dispose()
