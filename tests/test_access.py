"""API keys: with keys configured nobody without one changes data (401), a wrong one gets 403, and the keys
never reach the logs. Reads stay open unless IMGSEARCH_READ_ACCESS=key."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from config import Settings
from operations.access.keys import KeyDirectory
from tests.conftest import wait_for_job
from tests.imagefiles import jpeg

KEY, OTHER_KEY = "k" * 8 + "-first-key-0001", "second-key-abcdef-0002"
WRONG = "wrong-key-but-long-enough"

# Every route that changes data, with a request that would succeed given a key.
WRITES: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/img/load", {"json": {"collection": "other", "path": "small", "split": "valid"}}),
    ("POST", "/img/ingest", {"json": {"collection": "other", "path": "small"}}),
    ("POST", "/img/evaluate", {"json": {"collection": "good", "path": "small", "split": "valid"}}),
    ("POST", "/img/upload", {"data": {"collection": "good"}, "files": {"files": ("a.jpg", b"", "image/jpeg")}}),
    ("DELETE", "/img/good/1000", {}),
    ("POST", "/collections", {"json": {"name": "fresh"}}),
    ("DELETE", "/collections/good", {}),
    ("POST", "/collections/good/reconcile", {}),
    ("POST", "/collections/good/tags", {"json": {"labels": ["海边", "山"]}}),
    ("PUT", "/img/good/1000/tags", {"json": {"tags": ["家人"]}}),
    ("POST", "/collections/good/duplicates", {"json": {}}),
    ("POST", "/collections/good/duplicates/delete", {"json": {}}),
]
READS: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/img/search", {"json": {"collection": "good", "text": "红色的圆形"}}),
    ("GET", "/img/count?collection=good", {}),
    ("GET", "/collections", {}),
    ("GET", "/models", {}),
]


@pytest.fixture
def keyed(
    tmp_path: Path,
    small_split: Path,
    make_settings: Callable[..., Settings],
    make_client: Callable[[Settings], TestClient],
) -> Callable[..., TestClient]:
    def build(read_access: str = "open") -> TestClient:
        settings = make_settings(api_keys=f"{KEY}, {OTHER_KEY}", read_access=read_access)
        client = make_client(settings)
        client.__enter__()
        opened.append(client)
        return client

    opened: list[TestClient] = []
    yield build
    for client in opened:
        client.__exit__(None, None, None)


def _load_with_key(client: TestClient) -> None:
    response = client.post(
        "/img/load", json={"collection": "good", "path": "small", "split": "valid"}, headers={"X-API-Key": KEY}
    )
    assert response.status_code == 202, response.text
    client.headers["X-API-Key"] = KEY  # job status is a read: it needs the key under read_access=key
    try:
        assert wait_for_job(client, response.json()["job_id"])["state"] == "succeeded"
    finally:
        del client.headers["X-API-Key"]


def _counts(client: TestClient) -> dict[str, int]:
    return {c["name"]: c["count"] for c in client.get("/collections", headers={"X-API-Key": KEY}).json()}


@pytest.mark.parametrize(("method", "url", "kwargs"), WRITES, ids=[f"{m} {u}" for m, u, _ in WRITES])
def test_writes_need_a_valid_key(keyed: Callable[..., TestClient], method: str, url: str, kwargs: dict) -> None:
    client = keyed()
    _load_with_key(client)
    before = _counts(client)

    missing = client.request(method, url, **kwargs)
    assert missing.status_code == 401, missing.text
    assert missing.json()["error"]["code"] == "unauthorized"
    assert "X-API-Key" in missing.json()["error"]["message"]

    wrong = client.request(method, url, **kwargs, headers={"X-API-Key": WRONG})
    assert wrong.status_code == 403, wrong.text
    assert wrong.json()["error"]["code"] == "forbidden"
    wrong_bearer = client.request(method, url, **kwargs, headers={"Authorization": f"Bearer {WRONG}"})
    assert wrong_bearer.status_code == 403

    assert _counts(client) == before  # refused requests changed nothing
    allowed = client.request(method, url, **kwargs, headers={"Authorization": f"Bearer {OTHER_KEY}"})
    assert allowed.status_code not in (401, 403), allowed.text


def test_reads_are_open_by_default(keyed: Callable[..., TestClient]) -> None:
    client = keyed()
    _load_with_key(client)
    for method, url, kwargs in READS:
        assert client.request(method, url, **kwargs).status_code == 200, url
    image_id = client.post("/img/search", json={"collection": "good", "text": "红色"}).json()["hits"][0]["image_id"]
    assert client.get(f"/img/good/{image_id}").status_code == 200
    assert client.get("/healthz").status_code == 200


def test_reads_can_require_a_key(keyed: Callable[..., TestClient]) -> None:
    client = keyed(read_access="key")
    _load_with_key(client)
    for method, url, kwargs in READS:
        assert client.request(method, url, **kwargs).status_code == 401, url
        assert client.request(method, url, **kwargs, headers={"X-API-Key": WRONG}).status_code == 403, url
        assert client.request(method, url, **kwargs, headers={"X-API-Key": KEY}).status_code == 200, url
    assert client.get("/healthz").status_code == 200  # probes stay open


def test_upload_with_key_stores_the_image(keyed: Callable[..., TestClient]) -> None:
    client = keyed()
    _load_with_key(client)
    files = {"files": ("new.jpg", jpeg(seed=77), "image/jpeg")}
    assert client.post("/img/upload", data={"collection": "good"}, files=files).status_code == 401
    assert _counts(client)["good"] == 60
    response = client.post("/img/upload", data={"collection": "good"}, files=files, headers={"X-API-Key": KEY})
    assert response.status_code == 200, response.text
    assert _counts(client)["good"] == 61


def test_keys_never_reach_the_logs(keyed: Callable[..., TestClient], caplog: pytest.LogCaptureFixture) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logging.getLogger().addHandler(handler)
    try:
        with caplog.at_level(logging.DEBUG):
            client = keyed()
            _load_with_key(client)
            client.delete("/collections/good", headers={"X-API-Key": WRONG})
            client.delete("/collections/good", headers={"Authorization": f"Bearer {KEY}"})
    finally:
        logging.getLogger().removeHandler(handler)
    logged = stream.getvalue() + caplog.text
    assert "refused a wrong API key" in logged
    for secret in (KEY, OTHER_KEY, WRONG):
        assert secret not in logged


def test_short_keys_are_refused_at_start() -> None:
    with pytest.raises(ValidationError, match="at least 16 characters"):
        Settings(_env_file=None, api_keys="short")  # type: ignore[call-arg]
    assert "**********" in repr(Settings(_env_file=None, api_keys=KEY))  # type: ignore[call-arg]


def test_key_comparison() -> None:
    directory = KeyDirectory([KEY.encode(), OTHER_KEY.encode()])
    assert directory.env_key_number(KEY) == 1 and directory.env_key_number(OTHER_KEY) == 2
    assert directory.env_key_number(KEY[:-1]) is None and directory.env_key_number(KEY + "x") is None
    assert directory.env_key_number("") is None
    # a lone surrogate from a broken header: a wrong key, not a crash
    assert directory.env_key_number("\udbcd" * 20) is None
