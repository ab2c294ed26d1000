"""Quotas: a key's requests per window are counted across every service process on the metadata DB (two real
`imgsearch serve` processes on MariaDB), a spent quota is 429 with Retry-After in the one error shape and is in
the audit trail; anonymous reads have their own limit per client address; a key's own limit overrides its scope's.
A revoked key is refused by the other process within 5 s."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine

from adapters.stores.sql.key_store import KeyStore
from adapters.stores.sql.rate_store import RateStore
from adapters.stores.sql.sql_schema import create_metadata_engine
from config import Settings
from operations.access import keys
from operations.access.quotas import RateLimiter
from tests.test_multiprocess import serving

OPERATOR = "operator-key-for-quotas-0001"


@pytest.mark.parametrize("backend", ["sqlite", "mysql"])
def test_two_counters_on_one_database_share_a_limit(backend: str, tmp_path: Path, request: pytest.FixtureRequest):
    url = f"sqlite:///{tmp_path / 'm.db'}" if backend == "sqlite" else request.getfixturevalue("mysql_url")
    engine = create_metadata_engine(url)
    try:
        first, second = RateLimiter(60), RateLimiter(60)
        first.attach(RateStore(engine))
        second.attach(RateStore(engine))
        now = 600.5  # one fixed window: [600, 660)
        assert all(first.hit("key:1:read", 10, now) is None for _ in range(7))
        first.flush(now)
        assert not second.known("key:1:read", now)
        second.load("key:1:read", now)  # its first request of this key in this window reads the shared count
        assert second.known("key:1:read", now)
        let_through = sum(second.hit("key:1:read", 10, now) is None for _ in range(5))
        assert let_through == 3
        second.flush(now)
        first.flush(now)  # the first now sees the second's 3
        assert first.hit("key:1:read", 10, now) is not None
        retry = second.hit("key:1:read", 10, now)
        assert retry == 60  # the window ends at 660
        assert first.hit("key:1:read", 10, now + 60) is None  # a new window
        first.flush(now + 120)
        first.prune(now + 120)
        assert RateStore(engine).add_and_read({}, [("key:1:read", 10)]) == {("key:1:read", 10): 0}
    finally:
        engine.dispose()


def test_requests_during_a_flush_still_count_what_is_being_flushed(tmp_path: Path) -> None:
    """While a flush writes this process's counts and reads the totals back, those counts are neither pending nor
    in the totals yet: a request then must still see them (else a refused key gets through again)."""
    engine = create_metadata_engine(f"sqlite:///{tmp_path / 'm.db'}")
    try:
        store, entered, release = RateStore(engine), threading.Event(), threading.Event()
        real = store.add_and_read

        def slow(pending, wanted):  # type: ignore[no-untyped-def]
            entered.set()
            release.wait(10)
            return real(pending, wanted)

        store.add_and_read = slow  # type: ignore[method-assign]
        limiter = RateLimiter(60)
        limiter.attach(store)
        now = 600.5
        assert all(limiter.hit("key:2:read", 5, now) is None for _ in range(5))
        flushing = threading.Thread(target=limiter.flush, args=(now,))
        flushing.start()
        assert entered.wait(10)
        assert limiter.hit("key:2:read", 5, now) is not None  # the 5 in flight still count
        release.set()
        flushing.join(10)
        assert limiter.hit("key:2:read", 5, now) is not None  # and, once read back, as the shared total
    finally:
        engine.dispose()


def test_anonymous_reads_and_a_keys_own_limit(
    make_settings: Callable[..., Settings], make_client: Callable[..., TestClient]
) -> None:
    settings = make_settings(api_keys=OPERATOR, rate_limit_anonymous=5, rate_limit_read=1000)
    with make_client(settings) as client:
        answers = [client.get("/models") for _ in range(6)]
        assert [a.status_code for a in answers] == [200] * 5 + [429]
        refused = answers[-1]
        assert refused.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        assert refused.json()["error"]["details"]["limit"] == 5
        assert client.get("/healthz").status_code == 200  # probes have no quota
        assert client.get("/models", headers={"X-API-Key": OPERATOR}).status_code == 200  # the operator has none

        store = KeyStore(client.app.state.services.metadata.engine)  # type: ignore[attr-defined]
        tight = {"X-API-Key": keys.create(store, "tight", ["read"], rate_limit=3).key}
        assert [client.get("/models", headers=tight).status_code for _ in range(4)] == [200, 200, 200, 429]
        trail = client.get("/audit", params={"outcome": "refused"}, headers={"X-API-Key": OPERATOR}).json()
        assert {(e["key_name"], e["status"]) for e in trail["entries"]} == {(None, 429), ("tight", 429)}


def test_a_quota_is_shared_by_two_service_processes(
    mysql_url: str, tmp_path: Path, data_root: Path, onnx_dir: Path
) -> None:
    engine = create_engine(mysql_url)
    try:
        create_metadata_engine(mysql_url).dispose()  # the tables
        reader = keys.create(KeyStore(engine), "reader", ["read"]).key
    finally:
        engine.dispose()
    env = {
        "IMGSEARCH_WEIGHTS": "random",
        "IMGSEARCH_METADATA_URL": mysql_url,
        "IMGSEARCH_DATA_ROOT": str(data_root),
        "IMGSEARCH_ONNX_DIR": str(onnx_dir),
        "IMGSEARCH_API_KEYS": OPERATOR,
        "IMGSEARCH_RATE_LIMIT_READ": "10",
        # One window for the whole test: windows are aligned to the clock, and a 60 s one ended mid-test once.
        "IMGSEARCH_RATE_WINDOW_SECONDS": "86400",
        "IMGSEARCH_LOG_LEVEL": "WARNING",
    }
    key = {"X-API-Key": reader}
    first_env = {**env, "IMGSEARCH_DATA_DIR": str(tmp_path / "a")}  # each its own Milvus Lite file
    second_env = {**env, "IMGSEARCH_DATA_DIR": str(tmp_path / "b")}
    with serving(first_env) as (_, first), serving(second_env) as (_, second):
        assert [httpx.get(f"{first}/models", headers=key).status_code for _ in range(6)] == [200] * 6
        time.sleep(1.0)  # more than a flush interval (0.25 s): the second process has read the first's count
        answers = [httpx.get(f"{second}/models", headers=key) for _ in range(6)]
        assert [a.status_code for a in answers] == [200] * 4 + [429] * 2
        assert answers[-1].json()["error"]["code"] == "rate_limited" and answers[-1].headers["Retry-After"]
        time.sleep(1.0)
        assert httpx.get(f"{first}/models", headers=key).status_code == 429  # and the first sees the second's

        op = {"X-API-Key": OPERATOR}
        made = httpx.post(
            f"{first}/keys", json={"name": "family", "scopes": ["read"], "rate_limit": 0}, headers=op
        ).json()
        family = {"X-API-Key": made["key"]}
        assert httpx.get(f"{second}/models", headers=family).status_code == 200
        assert httpx.delete(f"{first}/keys/family", headers=op).status_code == 200
        revoked_at = time.monotonic()
        while httpx.get(f"{second}/models", headers=family).status_code == 200:
            assert time.monotonic() - revoked_at < 5, "the other process still let the revoked key in after 5 s"
            time.sleep(0.1)
        trail = httpx.get(f"{second}/audit", params={"outcome": "refused"}, headers=op).json()["entries"]
        assert {(e["key_name"], e["status"]) for e in trail} >= {("reader", 429), ("family", 403)}
