"""Shared fixtures: the real MariaDB/MySQL on 127.0.0.1:3306, Milvus Lite files under tmp, one seeded
random-weight RN50 shared by all apps, and generated Flickr30k-CN-format splits."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pymysql
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pymilvus import MilvusClient
from sqlalchemy.engine import make_url

from adapters.encoders.clip_encoder import ChineseClipEncoder
from app.main import create_app
from config import Settings
from operations.ingest.sample_data import generate_split
from tests.milvus_server import LocalMilvusServer

MYSQL_SERVER_URL = os.environ.get("IMGSEARCH_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _mysql_connect(database: str | None = None) -> pymysql.connections.Connection:
    url = make_url(MYSQL_SERVER_URL)
    return pymysql.connect(
        host=url.host or "127.0.0.1",
        port=url.port or 3306,
        user=url.username or "root",
        password=url.password or "",
        database=database,
        connect_timeout=3,
    )


@pytest.fixture(scope="session")
def mysql_available() -> None:
    """In CI an unreachable MySQL fails the tests that need it; locally it skips them."""
    try:
        _mysql_connect().close()
    except Exception as exc:
        message = f"MySQL/MariaDB at {MYSQL_SERVER_URL} is unreachable: {exc}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def mysql_url(mysql_available: None) -> Iterator[str]:
    """A fresh database per test, dropped afterwards."""
    name = f"imgsearch_test_{uuid.uuid4().hex[:12]}"
    url = make_url(MYSQL_SERVER_URL).set(database=name, query={"charset": "utf8mb4"})
    yield url.render_as_string(hide_password=False)
    connection = _mysql_connect()
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
    finally:
        connection.close()


@pytest.fixture(params=["sqlite", "mysql"])
def metadata_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Runs a test once per metadata backend: both must behave the same."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'metadata.db'}"
    return request.getfixturevalue("mysql_url")


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMilvusServer]:
    """One real Milvus server for the whole run (it takes ~10 s to start); each test gets its own database."""
    try:
        server = LocalMilvusServer(tmp_path_factory.mktemp("milvus-server")).start()
    except Exception as exc:
        message = f"the embedded Milvus server (PyPI milvus==2.3.5) did not start: {exc!r}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    yield server
    server.stop()


@pytest.fixture
def milvus_server_db(milvus_server: LocalMilvusServer) -> Iterator[dict[str, str]]:
    """Settings for a fresh database on the shared server, dropped with its collections afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield {"milvus_uri": milvus_server.uri, "milvus_db": name}
    with contextlib.suppress(Exception):
        client = MilvusClient(uri=milvus_server.uri, db_name=name)
        for collection in client.list_collections():
            client.drop_collection(collection)
        client.close()
        MilvusClient(uri=milvus_server.uri).drop_database(name)


@pytest.fixture(params=["lite", "server"])
def milvus_target(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """Runs a test once on Milvus Lite and once on a real Milvus server, with the same assertions."""
    if request.param == "lite":
        return {"milvus_uri": str(tmp_path / "milvus.db")}
    return request.getfixturevalue("milvus_server_db")


@pytest.fixture(scope="session")
def encoder() -> Iterator[ChineseClipEncoder]:
    model = ChineseClipEncoder("RN50", weights="random", seed=0, threads=2)
    model.load()
    yield model
    model.close()


@pytest.fixture(scope="session")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("datasets")


@pytest.fixture(scope="session")
def small_split(data_root: Path, encoder: ChineseClipEncoder) -> Path:
    """60 images with feature files, under <data_root>/small."""
    generate_split(data_root / "small", "valid", 60, encoder=encoder, seed=1)
    return data_root / "small"


@pytest.fixture(scope="session")
def big_split(data_root: Path, encoder: ChineseClipEncoder) -> Path:
    """1,000 images with feature files (about two minutes on 2 cores), under <data_root>/big."""
    generate_split(data_root / "big", "test", 1000, encoder=encoder, seed=2)
    return data_root / "big"


@pytest.fixture(scope="session")
def onnx_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ONNX exports shared by the whole run: each random-weight model is exported once (IMGSEARCH_BACKEND=auto)."""
    return tmp_path_factory.mktemp("onnx")


@pytest.fixture
def make_settings(tmp_path: Path, data_root: Path, onnx_dir: Path) -> Callable[..., Settings]:
    def build(metadata_url: str | None = None, milvus: dict[str, str] | None = None, **overrides: object) -> Settings:
        values: dict[str, object] = {
            "data_dir": tmp_path / "data",
            "data_root": data_root,
            "weights": "random",
            "job_lease_seconds": 10.0,  # a busy CI machine can stall a keeper for seconds; tests of takeover set less
            "onnx_dir": onnx_dir,
        }
        if metadata_url:
            values["metadata_url"] = metadata_url
        values.update(milvus or {})
        values.update(overrides)
        return Settings(_env_file=None, **values)  # type: ignore[arg-type]

    return build


def wait_for_stores(app: FastAPI, seconds: float = 120.0) -> None:
    """Returns once the app's lifespan has its stores (or after ``seconds``): on a busy machine Milvus Lite can be
    slow to open, and the service starts anyway, answering 503 until they answer."""
    deadline = time.monotonic() + seconds
    while app.state.services is None and time.monotonic() < deadline:
        time.sleep(0.2)


class ReadyClient(TestClient):
    """A TestClient whose ``with`` returns once the service is ready. On a busy machine Milvus Lite can take longer
    than the first connection attempt allows; the service then starts anyway and answers 503 until its stores
    answer (tested on its own in test_milvus_outage.py), which a test that means to exercise something else must
    not mistake for its own failure."""

    wait_ready_s = 120.0

    def __enter__(self) -> ReadyClient:
        super().__enter__()
        wait_for_stores(self.app, self.wait_ready_s)
        return self


@pytest.fixture
def make_client(encoder: ChineseClipEncoder) -> Callable[..., TestClient]:
    """A running app (lifespan entered) that is ready to serve; use as a context manager to stop it. With
    ``wait_ready=False`` it returns as soon as the lifespan has run (tests of a service started before its stores)."""

    def build(settings: Settings, wait_ready: bool = True) -> TestClient:
        kind = ReadyClient if wait_ready else TestClient
        return kind(create_app(settings, encoder=encoder), raise_server_exceptions=False)

    return build


@contextlib.contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """The app under a real uvicorn on a free loopback port, for browsers and HTTP fuzzers; yields its URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=60)


def wait_for_job(client: TestClient, job_id: str, timeout: float = 300.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/jobs/{job_id}").json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish in {timeout}s")


def load_split(client: TestClient, collection: str, path: str, split: str) -> dict:
    response = client.post("/img/load", json={"collection": collection, "path": path, "split": split})
    assert response.status_code == 202, response.text
    return wait_for_job(client, response.json()["job_id"])
