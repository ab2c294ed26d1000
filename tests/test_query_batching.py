"""Concurrent searches share encoder passes and vector searches, and get exactly the results they would alone."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient
from pymilvus.exceptions import MilvusException

from adapters import images as image_facts
from config import Settings
from operations.search import search
from operations.search.search_batch import search_vectors
from tests.conftest import load_split
from tests.imagefiles import picture

TEXTS = [
    f"第{i}张图片:{colour}的{shape}"
    for i, (colour, shape) in enumerate([("红色", "圆形"), ("蓝色", "方块"), ("绿色", "三角形"), ("黄色", "星星")] * 3)
]


def _alone(services, collection: str, vector: np.ndarray, top_k: int) -> list[tuple[str, float]]:  # type: ignore[no-untyped-def]
    """The same search with no batching at all: one query, one Milvus call, one metadata query."""
    result = search_vectors(services.vectors, services.metadata, collection, "RN50", vector[None, :], top_k, False)[0]
    return [(hit.image.image_id, hit.score) for hit in result.hits]


def _ranked(result: search.SearchResult) -> list[tuple[str, float]]:
    return [(hit.image.image_id, hit.score) for hit in result.hits]


def _same(got: list[tuple[str, float]], expected: list[tuple[str, float]]) -> None:
    assert [i for i, _ in got] == [i for i, _ in expected]
    assert np.allclose([s for _, s in got], [s for _, s in expected], atol=1e-5)


def test_concurrent_text_searches_share_passes_and_searches_with_unchanged_results(
    small_split: Path, make_settings: Callable[..., Settings], make_client: Callable[[Settings], TestClient]
) -> None:
    with make_client(make_settings()) as client:
        assert load_split(client, "batched", "small", "valid")["state"] == "succeeded"
        services = client.app.state.services  # type: ignore[attr-defined]
        encoder = services.encoder
        # Two top_k values: queries only share a vector search with those asking for the same top_k.
        asks = [(text, 5 if i % 2 else 8) for i, text in enumerate(TEXTS)]
        before = dict(services.queries.stats)
        with ThreadPoolExecutor(max_workers=len(asks)) as pool:
            results = list(pool.map(lambda ask: search.search_text(services, "batched", ask[0], ask[1]), asks))
        after = services.queries.stats
        for (text, top_k), result in zip(asks, results, strict=True):
            assert len(result.hits) == top_k
            _same(_ranked(result), _alone(services, "batched", encoder.encode_text([text])[0], top_k))
            assert {"encode", "vector_search", "metadata_fetch"} <= set(result.timings_ms)
        passes = after["encoder_passes"] - before["encoder_passes"]
        searches = after["vector_searches"] - before["vector_searches"]
        assert after["encoded_queries"] - before["encoded_queries"] == len(asks)
        assert after["searched_queries"] - before["searched_queries"] == len(asks)
        assert passes < len(asks), after  # some queries shared a forward pass ...
        assert searches < len(asks), after  # ... and a Milvus search
        health = client.get("/healthz").json()["model"]["micro_batching"]
        assert health["vector_searches"] == after["vector_searches"]


def test_concurrent_image_and_more_like_this_queries_are_batched_exactly(
    small_split: Path, make_settings: Callable[..., Settings], make_client: Callable[[Settings], TestClient]
) -> None:
    with make_client(make_settings()) as client:
        assert load_split(client, "pics", "small", "valid")["state"] == "succeeded"
        services = client.app.state.services  # type: ignore[attr-defined]
        encoder = services.encoder
        uploads = []
        for i in range(6):
            image = picture(7000 + i)
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            uploads.append((f"q{i}.png", buffer.getvalue()))
        stored = [r.image_id for r in next(services.metadata.iter_image_pages("pics", page=6, with_data=False))]

        def image_query(upload: tuple[str, bytes]) -> search.SearchResult:
            return search.search_images(services, "pics", [upload], 6)[0]

        with ThreadPoolExecutor(max_workers=12) as pool:
            by_image = list(pool.map(image_query, uploads))
            alike = list(pool.map(lambda image_id: search.similar(services, "pics", image_id, 6), stored))
        for (_, data), result in zip(uploads, by_image, strict=True):
            vector = encoder.encode_images([image_facts.decode_rgb(data, 10**8)])[0]
            _same(_ranked(result), _alone(services, "pics", vector, 6))
        for image_id, result in zip(stored, alike, strict=True):
            row = services.metadata.get_image("pics", image_id)
            vector = services.vectors.get("pics", [row.id])[row.id]
            expected = [hit for hit in _alone(services, "pics", vector, 7) if hit[0] != image_id][:6]
            _same(_ranked(result), expected)
            assert "vector_fetch" in result.timings_ms


def test_micro_batching_off_searches_alone_with_the_same_results(
    small_split: Path, make_settings: Callable[..., Settings], make_client: Callable[[Settings], TestClient]
) -> None:
    with make_client(make_settings(microbatch_max_size=1)) as client:
        assert load_split(client, "alone", "small", "valid")["state"] == "succeeded"
        services = client.app.state.services  # type: ignore[attr-defined]
        assert services.queries is None
        text = "没有与其他测试共用的一句话"  # not searched before: the session's encoder has not remembered it
        result = search.search_text(services, "alone", text, 7)
        _same(_ranked(result), _alone(services, "alone", services.encoder.encode_text([text])[0], 7))
        assert client.get("/healthz").json()["model"]["micro_batching"] is None


def test_a_failing_search_reaches_its_own_callers_and_the_batcher_keeps_answering(
    small_split: Path, make_settings: Callable[..., Settings], make_client: Callable[[Settings], TestClient]
) -> None:
    with make_client(make_settings()) as client:
        assert load_split(client, "sturdy", "small", "valid")["state"] == "succeeded"
        services = client.app.state.services  # type: ignore[attr-defined]
        real_search = services.vectors.search

        def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
            raise MilvusException(message="Milvus went away")

        services.vectors.search = broken
        failed = client.post(
            "/img/search", json={"mode": "semantic", "collection": "sturdy", "text": "红色的圆形", "top_k": 3}
        )
        assert failed.status_code == 503, failed.text
        services.vectors.search = real_search
        again = client.post(
            "/img/search", json={"mode": "semantic", "collection": "sturdy", "text": "红色的圆形", "top_k": 3}
        )
        assert failed.json()["error"]["code"] == "vector_store_unavailable"
        assert again.status_code == 200 and len(again.json()["hits"]) == 3


def test_a_text_searched_lately_is_answered_while_the_encoder_is_busy(
    small_split: Path, make_settings: Callable[..., Settings], make_client: Callable[[Settings], TestClient]
) -> None:
    """A page turn or a repeated search does not wait behind an ingest's batch on the one inference thread; a new
    text still does, and every answer is what an encoder pass gives."""
    with make_client(make_settings()) as client:
        assert load_split(client, "recent", "small", "valid")["state"] == "succeeded"
        services = client.app.state.services  # type: ignore[attr-defined]
        encoder = services.encoder
        ask = {"mode": "semantic", "collection": "recent", "text": "最近搜过的:一只橙色的猫", "top_k": 4}
        first = client.post("/img/search", json=ask).json()["hits"]
        expected = _alone(services, "recent", encoder.encode_text([ask["text"]])[0], 8)

        started, release = threading.Event(), threading.Event()

        def hold() -> None:  # the inference thread busy, as it is with an ingest's batch
            started.set()
            release.wait(60)

        held = encoder._executor.submit(hold)
        try:
            assert started.wait(10)
            again = client.post("/img/search", json=ask)
            page_two = client.post("/img/search", json={**ask, "offset": 4})
            alone = search.search_text(services, "recent", str(ask["text"]), 8)
            assert not held.done()  # all three were answered while the encoder was held
            with ThreadPoolExecutor(max_workers=1) as pool:
                fresh = pool.submit(search.search_text, services, "recent", "一句没有搜过的话", 3)
                time.sleep(1.0)
                assert not fresh.done()  # a new text waits for the encoder
                release.set()
                assert len(fresh.result(timeout=60).hits) == 3
        finally:
            release.set()
        assert again.status_code == 200 and again.json()["hits"] == first
        _same([(h["image_id"], h["score"]) for h in first + page_two.json()["hits"]], expected)
        _same(_ranked(alone), expected)
