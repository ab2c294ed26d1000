"""Schemathesis fuzzes every operation of the OpenAPI schema over real HTTP (uvicorn, MySQL, Milvus Lite):
no answer is a 5xx, and a rejected request (4xx) leaves both stores' counts exactly as they were.

IMGSEARCH_FUZZ_EXAMPLES sets the examples per operation (default 25; the CI budget)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from adapters.encoders.clip_encoder import ChineseClipEncoder
from app.main import create_app
from config import Settings
from operations.collections import collections
from operations.services import Services
from tests.conftest import load_split, serve, wait_for_stores

KEY = "fuzz-key-0123456789abcdef"
EXAMPLES = int(os.environ.get("IMGSEARCH_FUZZ_EXAMPLES", "25"))

# The schema comes from the app itself (no server needed to build it); the calls go to the live server below.
schema = schemathesis.openapi.from_dict(
    create_app(Settings(_env_file=None, data_dir=Path(tempfile.gettempdir()) / "unused")).openapi()  # type: ignore[call-arg]
)


@pytest.fixture(scope="module")
def fuzz_target(
    mysql_available: None, small_split: Path, data_root: Path, encoder: ChineseClipEncoder
) -> Iterator[tuple[str, Services]]:
    import pymysql

    database = f"imgsearch_test_fuzz_{os.getpid()}"
    with tempfile.TemporaryDirectory() as data_dir:
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None,
            data_dir=Path(data_dir),
            data_root=data_root,
            weights="random",
            metadata_url=f"mysql+pymysql://root@127.0.0.1:3306/{database}",
            api_keys=KEY,
        )
        app = create_app(settings, encoder=encoder)
        try:
            with serve(app) as base, httpx.Client(base_url=base, headers={"X-API-Key": KEY}) as client:
                wait_for_stores(app)
                assert load_split(client, "fuzzbase", "small", "valid")["state"] == "succeeded"  # type: ignore[arg-type]
                yield base, app.state.services
        finally:
            connection = pymysql.connect(host="127.0.0.1", user="root", password="")
            connection.cursor().execute(f"DROP DATABASE IF EXISTS `{database}`")
            connection.close()


def store_counts(services: Services) -> dict[str, tuple[int, int]]:
    """Per collection: (searchable rows, vectors)."""
    return {s.record.name: (s.count, services.vectors.count(s.record.name)) for s in collections.list_all(services)}


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_no_server_errors_and_rejections_change_nothing(case: schemathesis.Case, fuzz_target) -> None:  # type: ignore[no-untyped-def]
    base, services = fuzz_target
    before = store_counts(services)
    # A valid key, so that writes get past access control and their validation is fuzzed too (test_access
    # covers the missing and wrong keys).
    case.headers = {**(case.headers or {}), "X-API-Key": KEY}
    response = case.call(base_url=base, timeout=60)
    assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.status_code} {response.text}"
    if 400 <= response.status_code < 500:
        assert response.headers.get("content-type", [""])[0].startswith("application/json")
        assert set(response.json()) == {"error"}, response.text
        assert store_counts(services) == before, f"{case.method} {case.formatted_path} was refused but changed data"
    assert store_counts(services)["fuzzbase"] == (60, 60) or case.method == "DELETE"
