"""A Milvus server that goes away and comes back, provoked for real on a server of this test's own (it is killed,
frozen, restarted and has its collection released): every answer meanwhile is a 503 in the one error shape with
Retry-After, never a 500; searches succeed again within 5 s of the server serving the collection; the log says
once that the store went down and once that it came back, with no tracebacks; the probes tell alive from ready;
and a service started before its stores starts anyway and becomes ready on its own."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from fastapi.testclient import TestClient
from pymilvus import MilvusClient
from pymilvus.client.cache import GlobalCache

from adapters.stores.milvus import vector_store
from adapters.stores.milvus.milvus_guard import GuardedClient, VectorStoreUnavailable
from adapters.stores.store_health import StoreHealth
from config import Settings
from tests.conftest import IN_CI, load_split
from tests.milvus_server import LocalMilvusServer, free_port

SEARCH = {"collection": "outage", "text": "红色的圆形", "top_k": 5}
RECOVERY_S = 5.0


@pytest.fixture
def own_milvus(tmp_path: Path) -> Iterator[LocalMilvusServer]:
    """A server this test may kill, freeze and restart (the session's shared one must stay up)."""
    server = LocalMilvusServer(tmp_path / "milvus")
    try:
        server.start()
    except Exception as exc:
        if IN_CI:
            pytest.fail(f"the embedded Milvus server did not start: {exc!r}")
        pytest.skip(f"the embedded Milvus server did not start: {exc!r}")
    yield server
    if server.pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(server.pid, signal.SIGCONT)
    server.stop()


def _unavailable(response, *, loading: bool = False) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "vector_store_unavailable", error
    assert int(response.headers["Retry-After"]) > 0
    if loading:
        assert "loading" in error["message"], error


def _poll(fn: Callable[[], bool], limit_s: float, every_s: float = 0.25) -> float:
    started = time.monotonic()
    while not fn():
        if time.monotonic() - started > limit_s:
            raise AssertionError(f"not reached within {limit_s:.0f} s")
        time.sleep(every_s)
    return time.monotonic() - started


def _fresh_client_searches(server: LocalMilvusServer) -> bool:
    """What "the server serves the collection again" means: a brand-new client's search succeeds."""
    try:
        client = MilvusClient(uri=server.uri, timeout=3, dedicated=True)
        try:
            client.search("outage", data=[[0.03] * 1024], limit=1, anns_field="vector", timeout=3)
        finally:
            client.close()
        return True
    except Exception:
        return False


def test_every_kind_of_milvus_failure_answers_503_and_recovery_is_prompt(
    own_milvus: LocalMilvusServer,
    make_settings: Callable[..., Settings],
    make_client: Callable[..., TestClient],
    small_split: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(vector_store, "READ_TIMEOUT_S", 3.0)  # a frozen server: fail after 3 s, not 15
    settings = make_settings(milvus={"milvus_uri": own_milvus.uri}, index_type="FLAT")
    with make_client(settings) as client:
        assert load_split(client, "outage", "small", "valid")["state"] == "succeeded"
        assert client.post("/img/search", json=SEARCH).status_code == 200
        assert client.get("/readyz").json()["status"] == "ready"
        vectors = client.app.state.services.vectors  # type: ignore[attr-defined]
        endpoint = vectors._client.client._get_connection().server_address

        def session_ts() -> int:  # pymilvus's last-write timestamp, which Session searches wait for
            return GlobalCache.collection_ts.get(endpoint, vectors.db_name, "outage")

        assert session_ts() > 0

        # 1. The collection released behind the service's back: "loading" until the service has loaded it again.
        admin = MilvusClient(uri=own_milvus.uri, dedicated=True)
        admin.release_collection("outage")
        admin.close()
        _unavailable(client.post("/img/search", json=SEARCH), loading=True)
        seen: list[int] = []

        def searches() -> bool:
            seen.append(client.post("/img/search", json=SEARCH).status_code)
            return seen[-1] == 200

        _poll(searches, 60)
        assert set(seen) <= {200, 503}, seen
        assert client.get("/readyz").status_code == 200

        # 2. A server that accepts connections but answers nothing (frozen): a deadline, still a 503.
        caplog.clear()
        os.kill(own_milvus.pid, signal.SIGSTOP)  # type: ignore[arg-type]
        try:
            started = time.monotonic()
            _unavailable(client.post("/img/search", json=SEARCH))
            assert time.monotonic() - started < 10
        finally:
            os.kill(own_milvus.pid, signal.SIGCONT)  # type: ignore[arg-type]
        _poll(searches, 30)

        # 3. Killed: refused connections. The process stays alive and says which store is missing.
        caplog.clear()
        caplog.set_level(logging.INFO)
        own_milvus.kill()
        for _ in range(5):
            _unavailable(client.post("/img/search", json=SEARCH))
        assert client.get("/livez").status_code == 200
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.headers["Retry-After"]
        stores = ready.json()["stores"]
        assert stores["metadata"]["ok"] and not stores["vectors"]["ok"] and stores["vectors"]["error"]

        # 4. Restarted on the same data: the server reloads the collection (tens of seconds); the service answers
        # 503 meanwhile and 200 within 5 s of a fresh client's first successful search.
        own_milvus.start()
        served_at: list[float] = []
        answers: list[tuple[float, int]] = []

        def watch_fresh_client() -> None:
            while not served_at:
                if _fresh_client_searches(own_milvus):
                    served_at.append(time.monotonic())
                time.sleep(0.25)

        watcher = threading.Thread(target=watch_fresh_client, daemon=True)
        watcher.start()

        def service_searches() -> bool:
            response = client.post("/img/search", json=SEARCH)
            answers.append((time.monotonic(), response.status_code))
            if response.status_code != 200:
                _unavailable(response)
            return response.status_code == 200

        _poll(service_searches, 180)
        watcher.join(timeout=RECOVERY_S + 10)
        assert served_at, "a fresh client never searched successfully"
        first_ok = answers[-1][0]
        assert first_ok - served_at[0] <= RECOVERY_S, f"service answered {first_ok - served_at[0]:.1f} s later"
        # Ready once every collection it serves is loaded again (a search of one can succeed a moment before).
        _poll(lambda: client.get("/readyz").status_code == 200, RECOVERY_S)
        assert session_ts() == 0  # after the outage searches no longer wait for the server to replay old writes

    ours = [r for r in caplog.records if r.name.startswith(("adapters", "app", "operations"))]
    assert not [r for r in ours if r.exc_info], "an expected outage logged a traceback"
    transitions = [m for r in ours if (m := r.getMessage()) and ("is down:" in m or "is back after" in m)]
    assert transitions and "is down:" in transitions[0] and "is back after" in transitions[-1], transitions
    assert len(transitions) <= 4, transitions  # once down, once back (a flap after the restart may add a pair)
    refused = [r for r in ours if r.name == "app.errors" and r.getMessage().startswith("POST /img/search")]
    assert len(refused) == 5 + sum(status == 503 for _, status in answers)  # one line per refused search


class _Forwarder:
    """A TCP port that refuses connections until ``open()``, then forwards them to ``target``: a store that
    comes up after the service."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._server: socket.socket | None = None

    def open(self) -> None:
        server = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def _accept(self, server: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = server.accept()
                upstream = socket.create_connection(self.target)
                for a, b in ((client, upstream), (upstream, client)):
                    threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()


def _starts_before_its_store_then_serves(client: TestClient, store: str, bring_up: Callable[[], None]) -> None:
    assert client.get("/livez").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["status"] == "starting", ready.text
    assert store in ready.json()["stores"], ready.json()
    assert client.get("/healthz").status_code == 503
    search = client.post("/img/search", json=SEARCH)
    assert search.status_code == 503 and search.json()["error"]["code"] == "not_ready"
    assert search.headers["Retry-After"]
    bring_up()
    took = _poll(lambda: client.get("/readyz").status_code == 200, 120)
    assert took < 30, f"ready {took:.1f} s after the store came up"
    assert load_split(client, "outage", "small", "valid")["state"] == "succeeded"
    assert client.post("/img/search", json=SEARCH).status_code == 200


def test_service_starts_before_milvus_and_becomes_ready_on_its_own(
    tmp_path: Path,
    make_settings: Callable[..., Settings],
    make_client: Callable[..., TestClient],
    small_split: Path,
) -> None:
    server = LocalMilvusServer(tmp_path / "late-milvus")  # not started yet
    settings = make_settings(milvus={"milvus_uri": server.uri}, index_type="FLAT")
    try:
        with make_client(settings, wait_ready=False) as client:
            _starts_before_its_store_then_serves(client, "vectors", server.start)
    finally:
        server.stop()


def test_service_starts_before_mysql_and_becomes_ready_on_its_own(
    mysql_url: str,
    tmp_path: Path,
    make_settings: Callable[..., Settings],
    make_client: Callable[..., TestClient],
    small_split: Path,
) -> None:
    from sqlalchemy.engine import make_url

    real = make_url(mysql_url)
    late = _Forwarder((real.host or "127.0.0.1", real.port or 3306))
    url = real.set(host="127.0.0.1", port=late.port).render_as_string(hide_password=False)
    settings = make_settings(metadata_url=url, milvus={"milvus_uri": str(tmp_path / "milvus.db")})
    try:
        with make_client(settings, wait_ready=False) as client:
            _starts_before_its_store_then_serves(client, "metadata", late.open)
    finally:
        late.close()


class _RawRpcError(grpc.RpcError):
    """What pymilvus lets through untouched for some status codes (DEADLINE_EXCEEDED among them)."""

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.DEADLINE_EXCEEDED

    def details(self) -> str:
        return "Deadline Exceeded"


@pytest.mark.parametrize(
    "error",
    [_RawRpcError(), grpc.FutureTimeoutError(), ConnectionRefusedError("refused"), TimeoutError("slow")],
    ids=["grpc-deadline", "channel-timeout", "refused", "timeout"],
)
def test_guard_turns_every_client_failure_into_one_unavailable_error(error: Exception) -> None:
    class Client:
        def search(self, *_args: object, **_kwargs: object) -> None:
            raise error

    health = StoreHealth("vector store (test)")
    guarded = GuardedClient(Client(), health, "test")
    with pytest.raises(VectorStoreUnavailable) as raised:
        guarded.search("c")
    assert raised.value.kind == "down" and health.down
    assert "\n" not in raised.value.message
