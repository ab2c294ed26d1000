"""Bad input gets a 4xx with the one error shape, and leaves both stores exactly as they were."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from config import Settings
from tests.conftest import load_split

BAD_REQUESTS: list[tuple[str, str, dict[str, Any], int]] = [
    # (method, url, request kwargs, expected status)
    ("POST", "/img/search", {"json": {"collection": "nope", "text": "猫"}}, 404),
    ("POST", "/img/search", {"json": {"collection": "good", "text": ""}}, 422),
    ("POST", "/img/search", {"json": {"collection": "good", "text": "   \n"}}, 422),
    ("POST", "/img/search", {"json": {"collection": "good", "text": "猫", "top_k": 0}}, 422),
    ("POST", "/img/search", {"json": {"collection": "good", "text": "猫", "top_k": -5}}, 422),
    ("POST", "/img/search", {"json": {"collection": "good", "text": "猫", "top_k": 51}}, 422),
    ("POST", "/img/search", {"json": {"collection": "good", "text": "猫", "top_k": "many"}}, 422),
    ("POST", "/img/search", {"json": {"collection": "good", "text": "长" * 600}}, 422),
    ("POST", "/img/search", {"json": {"collection": "a-b", "text": "猫"}}, 422),
    ("POST", "/img/search", {"json": {"collection": "images; DROP TABLE images", "text": "猫"}}, 422),
    ("POST", "/img/search", {"json": {"collection": "x" * 65, "text": "猫"}}, 422),
    ("POST", "/img/search", {"json": {"collection": "1abc", "text": "猫"}}, 422),
    ("POST", "/img/search", {"content": b'{"collection": "good", "text": "\\udbcd"}'}, 422),
    ("POST", "/img/search", {"content": b"{not json", "headers": {"content-type": "application/json"}}, 422),
    ("POST", "/img/search", {"json": {"text": "猫"}}, 422),
    ("POST", "/img/load", {"json": {"collection": "good", "path": "../", "split": "valid"}}, 422),
    ("POST", "/img/load", {"json": {"collection": "good", "path": "/etc", "split": "valid"}}, 422),
    ("POST", "/img/load", {"json": {"collection": "good", "path": "small/../../..", "split": "valid"}}, 422),
    ("POST", "/img/load", {"json": {"collection": "good", "path": "escape", "split": "valid"}}, 422),
    ("POST", "/img/load", {"json": {"collection": "good", "path": "small", "split": "../valid"}}, 422),
    ("POST", "/img/load", {"json": {"collection": "good", "path": "small", "split": "nosuchsplit"}}, 404),
    ("POST", "/img/load", {"json": {"collection": "good", "path": "nowhere", "split": "valid"}}, 404),
    ("POST", "/img/load", {"json": {"collection": "bad name", "path": "small", "split": "valid"}}, 422),
    ("POST", "/img/load", {"json": {"collection": "newone", "path": "", "split": "valid"}}, 422),
    ("POST", "/img/load", {"json": {"collection": "good", "path": "0" * 1000, "split": "valid"}}, 422),
    ("POST", "/img/load", {"json": {"collection": "good", "path": "small\u0000", "split": "valid"}}, 422),
    ("POST", "/img/ingest", {"json": {"collection": "good", "path": "x" * 300}}, 422),
    ("POST", "/img/ingest", {"content": b'{"collection": "good", "path": "\\udbcd"}'}, 422),
    ("GET", "/img/count?collection=nope", {}, 404),
    ("GET", "/img/count?collection=no-pe", {}, 422),
    ("GET", "/img/count", {}, 422),
    ("GET", "/img/good/not-an-image-id", {}, 404),
    ("GET", "/img/bad-name/1", {}, 422),
    ("DELETE", "/collections/bad-name", {}, 422),
    ("DELETE", "/collections/nope", {}, 404),
    ("PUT", "/img/search", {"json": {}}, 405),
    ("GET", "/no/such/route", {}, 404),
]


@pytest.fixture
def loaded_client(
    mysql_url: str,
    small_split: Path,
    data_root: Path,
    make_settings: Callable[..., Settings],
    make_client: Callable[[Settings], TestClient],
):
    escape = data_root / "escape"
    if not escape.exists():
        escape.symlink_to(Path("/etc"))  # a link inside the root that points out of it
    with make_client(make_settings(mysql_url, max_top_k=50)) as client:
        assert load_split(client, "good", "small", "valid")["state"] == "succeeded"
        yield client


def _snapshot(client: TestClient) -> tuple:
    services = client.app.state.services  # type: ignore[attr-defined]
    names = [c.name for c in services.metadata.list_collections()]
    return (
        names,
        [(services.metadata.count(n, include_pending=True), services.vectors.count(n)) for n in names],
        services.vectors.has_collection("newone"),
    )


def test_bad_requests_get_clear_4xx_and_change_nothing(loaded_client: TestClient) -> None:
    before = _snapshot(loaded_client)
    for method, url, kwargs, status in BAD_REQUESTS:
        response = loaded_client.request(method, url, **kwargs)
        assert response.status_code == status, (method, url, kwargs, response.status_code, response.text)
        error = response.json()["error"]
        assert set(error) == {"code", "message", "details"} and error["code"] and error["message"], error
    assert _snapshot(loaded_client) == before
    # and the service still answers
    ok = loaded_client.post("/img/search", json={"collection": "good", "text": "猫", "top_k": 50})
    assert ok.status_code == 200 and len(ok.json()["hits"]) == 50


def test_store_outages_give_503_with_the_error_shape(loaded_client: TestClient) -> None:
    from pymilvus.exceptions import MilvusException
    from sqlalchemy.exc import OperationalError

    services = loaded_client.app.state.services  # type: ignore[attr-defined]
    body = {"collection": "good", "text": "猫"}

    def metadata_down(*_args, **_kwargs):  # type: ignore[no-untyped-def]
        raise OperationalError("SELECT", {}, ConnectionRefusedError("MySQL is gone"))

    def vectors_down(*_args, **_kwargs):  # type: ignore[no-untyped-def]
        raise MilvusException(message="connection refused")

    real_fetch, real_search = services.metadata.fetch, services.vectors.search
    services.metadata.fetch = metadata_down
    response = loaded_client.post("/img/search", json=body)
    assert response.status_code == 503 and response.json()["error"]["code"] == "metadata_store_unavailable"
    services.metadata.fetch = real_fetch

    services.vectors.search = vectors_down
    response = loaded_client.post("/img/search", json=body)
    assert response.status_code == 503 and response.json()["error"]["code"] == "vector_store_unavailable"
    services.vectors.search = real_search

    assert loaded_client.post("/img/search", json=body).status_code == 200  # recovers by itself


def test_healthz_is_503_when_a_store_is_down(loaded_client: TestClient) -> None:
    services = loaded_client.app.state.services  # type: ignore[attr-defined]
    real_ping = services.metadata.ping

    def down() -> None:
        raise ConnectionRefusedError("MySQL is gone")

    services.metadata.ping = down
    try:
        response = loaded_client.get("/healthz")
        body = response.json()
        assert response.status_code == 503 and body["status"] == "degraded"
        assert not body["stores"]["metadata"]["ok"] and "MySQL is gone" in body["stores"]["metadata"]["error"]
        assert body["stores"]["vectors"]["ok"]
    finally:
        services.metadata.ping = real_ping
