"""Scoped API keys: every route × {no key, read, write, admin, a key of another collection, a revoked key, an
expired key} gives the documented status; refused requests change nothing and are in the audit trail; the
OpenAPI schema has no route without a declared scope; keys made with the CLI work at once and never reach the
database in clear."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, func, select

from adapters.stores.sql import sql_schema
from adapters.stores.sql.key_store import KeyStore
from app.cli import main as cli_main
from app.scopes import RULES, Rule, undeclared_routes
from config import Settings
from operations.access import keys
from tests.conftest import wait_for_job
from tests.imagefiles import jpeg

OPERATOR = "operator-key-for-setup-0001"
JPEG = jpeg(seed=5)
WHO = ("none", "read", "write", "admin", "other", "revoked", "expired")


def probe(method: str, path: str, c: str, image: str, job: str) -> tuple[str, dict[str, Any]]:
    """A well-formed request for each declared route, on collection ``c``."""
    file = {"files": ("q.jpg", JPEG, "image/jpeg")}
    table: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {
        ("POST", "/img/search"): ("/img/search", {"json": {"collection": c, "text": "红色"}}),
        ("POST", "/img/search/combined"): ("/img/search/combined", {"data": {"collection": c, "text": "红色"}}),
        ("POST", "/img/search/image"): ("/img/search/image", {"data": {"collection": c}, "files": file}),
        ("POST", "/img/search/compare"): ("/img/search/compare", {"data": {"collections": [c, c], "text": "红"}}),
        ("GET", "/img/search.png"): (f"/img/search.png?collection={c}&text=红", {}),
        ("GET", "/img/{collection}/{image_id}/similar"): (f"/img/{c}/{image}/similar", {}),
        ("POST", "/img/classify"): ("/img/classify", {"data": {"collection": c, "image_id": image, "labels": "猫"}}),
        ("GET", "/img/count"): (f"/img/count?collection={c}", {}),
        ("GET", "/img/{collection}/{image_id}"): (f"/img/{c}/{image}", {}),
        ("GET", "/img/{collection}/{image_id}/thumb"): (f"/img/{c}/{image}/thumb", {}),
        ("GET", "/img/{collection}/{image_id}/frame"): (f"/img/{c}/{image}/frame?t=0", {}),
        ("GET", "/img/{collection}/{image_id}/clip"): (f"/img/{c}/{image}/clip?start_ms=0&end_ms=1000", {}),
        ("GET", "/img/{collection}/{image_id}/tags"): (f"/img/{c}/{image}/tags", {}),
        ("GET", "/img/{collection}/{image_id}/text"): (f"/img/{c}/{image}/text", {}),
        ("GET", "/collections"): ("/collections", {}),
        ("GET", "/collections/{name}/tags"): (f"/collections/{c}/tags", {}),
        ("GET", "/collections/{name}/sources"): (f"/collections/{c}/sources", {}),
        ("GET", "/collections/{name}/duplicates"): (f"/collections/{c}/duplicates", {}),
        ("GET", "/collections/{name}/people"): (f"/collections/{c}/people", {}),
        ("GET", "/collections/{name}/people/{person_id}"): (f"/collections/{c}/people/1", {}),
        ("GET", "/collections/{name}/faces/{face_id}/crop"): (f"/collections/{c}/faces/1/crop", {}),
        ("GET", "/img/{collection}/{image_id}/faces"): (f"/img/{c}/{image}/faces", {}),
        ("PATCH", "/collections/{name}/people/{person_id}"): (f"/collections/{c}/people/1", {"json": {"name": "妈妈"}}),
        ("POST", "/collections/{name}/people/merge"): (f"/collections/{c}/people/merge", {"json": {"ids": [1, 2]}}),
        ("POST", "/collections/{name}/faces/assign"): (f"/collections/{c}/faces/assign", {"json": {"face_ids": [1]}}),
        ("POST", "/collections/{name}/people/{person_id}/faces/move"): (
            f"/collections/{c}/people/1/faces/move",
            {"json": {"face_ids": [1]}},
        ),
        ("POST", "/collections/{name}/faces"): (f"/collections/{c}/faces", {"json": {}}),
        ("DELETE", "/collections/{name}/faces"): (f"/collections/{c}/faces", {}),
        ("POST", "/collections/{name}/people/cluster"): (f"/collections/{c}/people/cluster", {"json": {}}),
        ("GET", "/models"): ("/models", {}),
        ("POST", "/embed/text"): ("/embed/text", {"json": {"texts": ["猫"]}}),
        ("GET", "/jobs"): (f"/jobs?collection={c}", {}),
        ("GET", "/jobs/{job_id}"): (f"/jobs/{job}", {}),
        ("POST", "/img/load"): ("/img/load", {"json": {"collection": c, "path": "missing", "split": "valid"}}),
        ("POST", "/img/ingest"): ("/img/ingest", {"json": {"collection": c, "path": "missing"}}),
        ("POST", "/img/evaluate"): ("/img/evaluate", {"json": {"collection": c, "path": "missing", "split": "x"}}),
        ("POST", "/img/upload"): ("/img/upload", {"data": {"collection": c}, "files": file}),
        ("DELETE", "/img/{collection}/{image_id}"): (f"/img/{c}/{image}", {}),
        ("PUT", "/img/{collection}/{image_id}/tags"): (f"/img/{c}/{image}/tags", {"json": {"tags": ["家人"]}}),
        ("PUT", "/img/{collection}/{image_id}/description"): (
            f"/img/{c}/{image}/description",
            {"json": {"description": "海边"}},
        ),
        ("POST", "/collections/{name}/tags"): (f"/collections/{c}/tags", {"json": {"labels": ["海边", "山"]}}),
        ("POST", "/collections/{name}/ocr"): (f"/collections/{c}/ocr", {"json": {}}),
        ("POST", "/collections/{name}/duplicates"): (f"/collections/{c}/duplicates", {"json": {}}),
        ("POST", "/collections/{name}/duplicates/delete"): (f"/collections/{c}/duplicates/delete", {"json": {}}),
        ("POST", "/jobs/{job_id}/cancel"): (f"/jobs/{job}/cancel", {}),
        ("POST", "/collections"): ("/collections", {"json": {"name": c}}),
        ("DELETE", "/collections/{name}"): (f"/collections/{c}", {}),
        ("PATCH", "/collections/{name}"): (f"/collections/{c}", {"json": {"search_mode": "hybrid"}}),
        ("POST", "/collections/{name}/reconcile"): (f"/collections/{c}/reconcile", {}),
        ("POST", "/collections/{name}/reembed"): (f"/collections/{c}/reembed", {"json": {"model": "RN50"}}),
        ("POST", "/collections/{name}/reembed/switch"): (f"/collections/{c}/reembed/switch", {}),
        ("POST", "/collections/{name}/reembed/rollback"): (f"/collections/{c}/reembed/rollback", {}),
        ("POST", "/collections/{name}/reembed/finalize"): (f"/collections/{c}/reembed/finalize", {}),
        ("POST", "/collections/{name}/sources"): (f"/collections/{c}/sources", {"json": {"path": "missing"}}),
        ("DELETE", "/collections/{name}/sources/{source_id}"): (f"/collections/{c}/sources/999", {}),
        ("POST", "/collections/{name}/sources/{source_id}/sync"): (f"/collections/{c}/sources/999/sync", {"json": {}}),
        ("GET", "/keys"): ("/keys", {}),
        ("POST", "/keys"): ("/keys", {"json": {"name": f"made-{c}", "scopes": ["read"]}}),
        ("DELETE", "/keys/{name}"): ("/keys/nobody", {}),
        ("GET", "/keys/me"): ("/keys/me", {}),
        ("GET", "/audit"): ("/audit", {}),
        ("GET", "/livez"): ("/livez", {}),
        ("GET", "/readyz"): ("/readyz", {}),
        ("GET", "/healthz"): ("/healthz", {}),
        ("GET", "/metrics"): ("/metrics", {}),
        ("GET", "/"): ("/", {}),
    }
    return table[(method, path)]


def refusal(method: str, path: str, rule: Rule, who: str) -> int | None:
    """The documented answer (docs/access.md) under IMGSEARCH_READ_ACCESS=key: 401, 403, or None (let through)."""
    if (method, path) == ("GET", "/keys/me"):  # public, but it says when the key sent is not valid
        return 403 if who in ("revoked", "expired") else None
    if rule.scope == "public":
        return None
    if who == "none":
        return 401
    if who in ("revoked", "expired"):
        return 403
    if who == "other":  # an admin key of the collection "other" only
        return 403 if rule.where is not None or rule.global_only else None
    allowed = {"read": ("read",), "write": ("read", "write"), "admin": ("read", "write", "admin")}[who]
    return None if rule.scope in allowed else 403


@pytest.fixture
def keyed_service(
    tmp_path: Path, small_split: Path, make_settings: Callable[..., Settings], make_client: Callable[..., TestClient]
) -> Iterator[tuple[TestClient, dict[str, str], Settings]]:
    settings = make_settings(
        api_keys=OPERATOR, read_access="key", rate_limit_read=0, rate_limit_write=0, rate_limit_admin=0
    )
    with make_client(settings) as client:
        client.headers["X-API-Key"] = OPERATOR
        load = client.post("/img/load", json={"collection": "good", "path": "small", "split": "valid"})
        assert wait_for_job(client, load.json()["job_id"])["state"] == "succeeded"
        store = KeyStore(client.app.state.services.metadata.engine)  # type: ignore[attr-defined]
        made = {
            who: keys.create(store, who, [scope]).key
            for who, scope in (("read", "read"), ("write", "write"), ("admin", "admin"))
        }
        made["other"] = keys.create(store, "other", ["admin"], ["other"]).key
        made["revoked"] = keys.create(store, "revoked", ["admin"]).key
        keys.revoke(store, "revoked")
        past = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(minutes=1)
        expired = "isk_expired-key-made-for-the-matrix-000001"
        store.add("expired", expired[:10], keys.hash_key(expired), ["admin"], None, None, past)
        made["expired"] = expired
        del client.headers["X-API-Key"]
        yield client, made, settings


def _snapshot(url: str) -> dict[str, Any]:
    """Every table that a request could change (the trail and the quota counts aside), row by row."""
    engine = create_engine(url)
    skip = {"audit_log", "rate_counts"}
    try:
        with engine.connect() as conn:
            state: dict[str, Any] = {}
            for table in sql_schema.metadata.sorted_tables:
                if table.name in skip:
                    continue
                columns = [c for c in table.c if c.name not in ("last_used_at", "lease_until", "heartbeat_at")]
                rows = conn.execute(select(*columns)).all()
                state[table.name] = sorted(map(repr, rows))
            return state
    finally:
        engine.dispose()


def test_every_route_gives_the_documented_status_for_every_kind_of_key(
    keyed_service: tuple[TestClient, dict[str, str], Settings],
) -> None:
    client, made, settings = keyed_service
    headers = {who: {"X-API-Key": key} for who, key in made.items()} | {"none": {}}
    op = {"X-API-Key": OPERATOR}
    image = client.post("/img/search", json={"collection": "good", "text": "红"}, headers=op).json()["hits"][0]
    image_id = image["image_id"]
    job_id = client.get("/jobs", headers=op).json()[0]["job_id"]
    counts_before = client.get("/collections", headers=op).json()
    before = _snapshot(str(settings.metadata_url))

    refused = 0
    for (method, path), rule in RULES.items():
        url, kwargs = probe(method, path, "good", image_id, job_id)
        for who in WHO:
            expected = refusal(method, path, rule, who)
            if expected is None:
                continue
            response = client.request(method, url, **kwargs, headers=headers[who])
            assert response.status_code == expected, (method, path, who, response.text)
            assert response.json()["error"]["code"] == ("unauthorized" if expected == 401 else "forbidden")
            refused += 1
    assert refused > 150
    assert _snapshot(str(settings.metadata_url)) == before  # refused requests changed nothing
    assert client.get("/collections", headers=op).json() == counts_before  # Milvus and the DB counts alike

    trail = client.get("/audit", params={"outcome": "refused", "limit": 500}, headers=op).json()["entries"]
    assert len(trail) >= min(refused, 500)
    assert {e["key_name"] for e in trail} >= {"read", "write", "other", None}
    flat = repr(trail)
    for key in made.values():
        assert key not in flat  # never the presented key

    # Let through: past the access check (a 404 or 409 of the route itself is fine), never a 5xx. On a collection
    # that does not exist, so nothing here destroys the fixture.
    for (method, path), rule in RULES.items():
        url, kwargs = probe(method, path, "nothing", image_id, job_id)
        for who in WHO:
            if refusal(method, path, rule, who) is not None or who == "other" or who == "none":
                continue
            response = client.request(method, url, **kwargs, headers=headers[who])
            assert response.status_code not in (401, 403) and response.status_code < 500, (
                method,
                path,
                who,
                response.text,
            )


def test_a_key_of_some_collections_sees_only_those(keyed_service: tuple[TestClient, dict[str, str], Settings]) -> None:
    client, made, _ = keyed_service
    op = {"X-API-Key": OPERATOR}
    assert client.post("/collections", json={"name": "other"}, headers=op).status_code == 201
    other = {"X-API-Key": made["other"]}
    assert [c["name"] for c in client.get("/collections", headers=other).json()] == ["other"]
    assert client.get("/jobs", headers=other).json() == []  # the load job is of "good"
    assert client.get("/img/count?collection=other", headers=other).status_code == 200
    listed = sorted(c["name"] for c in client.get("/collections", headers=op).json())
    assert listed == ["good", "other"]
    me = client.get("/keys/me", headers=other).json()
    assert me["name"] == "other" and me["scopes"] == ["read", "write", "admin"] and me["collections"] == ["other"]


def test_every_route_in_the_openapi_schema_declares_a_scope(
    keyed_service: tuple[TestClient, dict[str, str], Settings],
) -> None:
    client, _, _ = keyed_service
    schema = client.get("/openapi.json").json()
    served = {(method.upper(), path) for path, ops in schema["paths"].items() for method in ops}
    assert served - set(RULES) == set() and undeclared_routes(client.app) == []  # type: ignore[arg-type]
    assert set(RULES) - served == {("GET", "/")}  # the page is the one route outside the schema
    for method, path in RULES:  # and the matrix above has a request for each
        assert probe(method, path, "c", "1", "j")


def test_a_route_without_a_scope_stops_the_service_from_starting(
    make_settings: Callable[..., Settings], make_client: Callable[..., TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delitem(RULES, ("GET", "/models"))
    with pytest.raises(RuntimeError, match="GET /models"):
        make_client(make_settings())


def test_keys_from_the_cli_are_hashed_work_at_once_and_revoke_within_seconds(
    keyed_service: tuple[TestClient, dict[str, str], Settings],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    client, _, settings = keyed_service
    for name, value in (("IMGSEARCH_METADATA_URL", str(settings.metadata_url)), ("IMGSEARCH_WEIGHTS", "random")):
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("IMGSEARCH_DATA_DIR", str(settings.data_dir))
    assert cli_main(["keys", "create", "--name", "family", "--scope", "read", "--collections", "good"]) == 0
    key = capsys.readouterr().out.splitlines()[0]
    assert key.startswith("isk_") and len(key) > 40
    family = {"X-API-Key": key}
    assert client.get("/img/count?collection=good", headers=family).json()["count"] == 60
    refused = client.delete("/collections/good", headers=family)
    assert refused.status_code == 403 and "needs admin" in refused.json()["error"]["message"]

    engine = create_engine(str(settings.metadata_url))
    with engine.connect() as conn:
        stored = [tuple(map(str, row)) for row in conn.execute(select(sql_schema.api_keys))]
    engine.dispose()
    assert stored and not any(key in value for row in stored for value in row)  # only its hash is stored

    assert cli_main(["keys", "list"]) == 0
    assert "family" in capsys.readouterr().out
    assert cli_main(["keys", "revoke", "family"]) == 0
    deadline = dt.datetime.now() + dt.timedelta(seconds=5)
    while client.get("/img/count?collection=good", headers=family).status_code == 200:
        assert dt.datetime.now() < deadline, "a revoked key still worked after 5 s"
    answer = client.get("/img/count?collection=good", headers=family)
    assert answer.status_code == 403 and "revoked" in answer.json()["error"]["message"]

    assert cli_main(["audit", "--outcome", "refused", "--key", "family"]) == 0
    out = capsys.readouterr().out
    assert "DELETE\t/collections/good\tgood" in out and "403" in out


def test_an_expiry_is_checked_on_every_request(keyed_service: tuple[TestClient, dict[str, str], Settings]) -> None:
    client, _, _ = keyed_service
    op = {"X-API-Key": OPERATOR}
    soon = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)).isoformat()
    made = client.post("/keys", json={"name": "brief", "scopes": ["read"], "expires_at": soon}, headers=op)
    assert made.status_code == 201, made.text
    brief = {"X-API-Key": made.json()["key"]}
    assert client.get("/models", headers=brief).status_code == 200
    time.sleep(max(0.0, (dt.datetime.fromisoformat(soon) - dt.datetime.now(dt.UTC)).total_seconds()) + 0.1)
    expired = client.get("/models", headers=brief)
    assert expired.status_code == 403 and "expired" in expired.json()["error"]["message"]
    bad = client.post("/keys", json={"name": "x", "scopes": ["root"]}, headers=op)
    assert bad.status_code == 422 and "scopes must be" in bad.json()["error"]["message"]
    twice = client.post("/keys", json={"name": "brief", "scopes": ["read"]}, headers=op)
    assert twice.status_code == 409  # a name is taken until its key is revoked, expired or not
    assert client.delete("/keys/brief", headers=op).status_code == 200
    assert client.post("/keys", json={"name": "brief", "scopes": ["read"]}, headers=op).status_code == 201


def test_the_audit_trail_says_who_changed_what(keyed_service: tuple[TestClient, dict[str, str], Settings]) -> None:
    client, made, _ = keyed_service
    writer = {"X-API-Key": made["write"]}
    upload = client.post(
        "/img/upload",
        data={"collection": "good"},
        files={"files": ("n.jpg", jpeg(seed=91), "image/jpeg")},
        headers=writer,
    )
    assert upload.status_code == 200, upload.text
    stored = upload.json()["results"][0]["image_id"]
    assert client.delete(f"/img/good/{stored}", headers=writer).status_code == 200
    tagged = client.post("/collections/good/tags", json={"labels": ["海边", "山", "城市", "人物"]}, headers=writer)
    assert tagged.status_code == 202, tagged.text

    op = {"X-API-Key": OPERATOR}
    entries = client.get("/audit", params={"key": "write"}, headers=op).json()["entries"]
    assert [(e["method"], e["route"], e["outcome"]) for e in entries] == [
        ("POST", "/collections/{name}/tags", "ok"),
        ("DELETE", "/img/{collection}/{image_id}", "ok"),
        ("POST", "/img/upload", "ok"),
    ]
    assert entries[0]["target"] == f"job:{tagged.json()['job_id']}"
    assert entries[1]["target"] == f"image:{stored}" and entries[2]["target"] == f"images:{stored}"
    assert {e["collection"] for e in entries} == {"good"} and all(e["request_id"] for e in entries)
    assert client.get("/audit", params={"key": "write"}, headers={"X-API-Key": made["write"]}).status_code == 403

    first = client.get("/audit", params={"limit": 2}, headers=op).json()
    second = client.get("/audit", params={"limit": 2, "before": first["next_before"]}, headers=op).json()
    assert first["next_before"] and {e["id"] for e in first["entries"]}.isdisjoint(e["id"] for e in second["entries"])
    assert max(e["id"] for e in second["entries"]) < min(e["id"] for e in first["entries"])
    with client.app.state.services.metadata.engine.connect() as conn:  # type: ignore[attr-defined]
        total = conn.execute(select(func.count()).select_from(sql_schema.audit_log)).scalar_one()
    assert total >= 3
