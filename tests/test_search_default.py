"""The search route's default is the seed's ranking: a Flickr30k-CN split loaded with its captions and searched
without ``mode`` answers Chinese-CLIP's top-k, equal to brute force over the loaded features (text, combined with
a stored image, with a negative text, filtered, paged), on Milvus Lite and on a Milvus server. Hybrid is one
parameter away, or a collection's choice (search_mode, set at creation, by PATCH or by the CLI); a request's own
mode always wins."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.cli import main as cli_main
from config import Settings
from operations.ingest.flickr_format import image_features_jsonl, iter_jsonl, texts_jsonl
from tests.conftest import load_split
from tests.ranking import same_ranking


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector)


def _search(client: TestClient, **body) -> dict:  # type: ignore[no-untyped-def]
    response = client.post("/img/search", json={"collection": "flickr", "top_k": 10, **body})
    assert response.status_code == 200, response.text
    return response.json()


def _embed(client: TestClient, text: str) -> np.ndarray:
    return np.asarray(client.post("/embed/text", json={"texts": [text]}).json()["vectors"][0], dtype=np.float32)


def _assert_brute_force(body: dict, ids: list[str], matrix: np.ndarray, query: np.ndarray, keep, offset=0) -> None:  # type: ignore[no-untyped-def]
    scores = matrix @ _unit(query)
    order = [j for j in np.argsort(-scores, kind="stable") if keep(ids[j])][offset : offset + 10]
    got = [hit["image_id"] for hit in body["hits"]]
    assert body["mode"] == "semantic"
    assert same_ranking(got, [ids[j] for j in order], scores[order]), (got, [ids[j] for j in order])
    assert np.allclose([hit["score"] for hit in body["hits"]], scores[order], atol=1e-5)


def test_a_split_with_captions_searched_without_mode_is_brute_force_knn(
    mysql_url: str,
    milvus_target: dict[str, str],
    small_split: Path,
    make_settings: Callable[..., Settings],
    make_client: Callable[[Settings], TestClient],
) -> None:
    features = list(iter_jsonl(image_features_jsonl(small_split, "valid")))
    ids = [str(f["image_id"]) for f in features]
    matrix = np.asarray([f["feature"] for f in features], dtype=np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    captions = [t["text"] for t in iter_jsonl(texts_jsonl(small_split, "valid"))][:8]
    beach = set(ids[::3])
    with make_client(make_settings(mysql_url, milvus_target)) as client:
        assert load_split(client, "flickr", "small", "valid")["state"] == "succeeded"
        assert client.get("/img/flickr/" + ids[0] + "/text").json()["caption"]  # the captions were kept: words
        for image_id in beach:
            assert client.put(f"/img/flickr/{image_id}/tags", json={"tags": ["海边"]}).status_code == 200
        listed = {c["name"]: c for c in client.get("/collections").json()}
        assert listed["flickr"]["search_mode"] == "semantic"
        anything = lambda _: True  # noqa: E731

        for caption in captions:  # a caption finds its image by words in hybrid: the default must not
            body = _search(client, text=caption)
            _assert_brute_force(body, ids, matrix, _embed(client, caption), anything)
            assert set(body["timings_ms"]) >= {"encode", "vector_search", "metadata_fetch"}
        text, other = captions[0], captions[1]
        paged = _search(client, text=text, offset=10)
        _assert_brute_force(paged, ids, matrix, _embed(client, text), anything, offset=10)
        filtered = _search(client, text=text, filters={"tags_any": ["海边"]})
        _assert_brute_force(filtered, ids, matrix, _embed(client, text), lambda i: i in beach)
        image = ids[5]
        combined = _search(client, text=text, image_id=image)
        _assert_brute_force(combined, ids, matrix, _unit(_embed(client, text)) + matrix[5], anything)
        assert combined["query"]["combined"]
        negative = _search(client, text=text, negative_text=other)
        query = _unit(_embed(client, text)) - _unit(_embed(client, other))
        _assert_brute_force(negative, ids, matrix, query, anything)

        # A person makes hybrid the collection's default: searches without a mode become hybrid, ...
        patched = client.patch("/collections/flickr", json={"search_mode": "hybrid"})
        assert patched.status_code == 200 and patched.json()["search_mode"] == "hybrid"
        assert {c["name"]: c["search_mode"] for c in client.get("/collections").json()}["flickr"] == "hybrid"
        hybrid = _search(client, text=captions[2])
        assert hybrid["mode"] == "hybrid" and "keyword_search" in hybrid["timings_ms"]
        captioned = {h["image_id"] for h in _search(client, text=captions[2], mode="keyword", top_k=100)["hits"]}
        assert hybrid["hits"][0]["image_id"] in captioned  # its words put a captioned image first
        # ... a request's own mode still wins, and an image-only query stays semantic.
        _assert_brute_force(_search(client, text=text, mode="semantic"), ids, matrix, _embed(client, text), anything)
        assert _search(client, image_id=image)["mode"] == "semantic"
        assert client.patch("/collections/flickr", json={"search_mode": "fuzzy"}).status_code == 422
        assert client.patch("/collections/nowhere", json={"search_mode": "hybrid"}).status_code == 404
        created = client.post("/collections", json={"name": "chosen", "search_mode": "keyword"})
        assert created.status_code == 201 and created.json()["search_mode"] == "keyword"


def test_the_cli_sets_and_lists_the_search_mode(
    metadata_url: str, make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch, capsys
) -> None:  # type: ignore[no-untyped-def]
    from adapters.stores.sql.metadata_store import MetadataStore

    settings = make_settings(metadata_url)
    store = MetadataStore(str(settings.metadata_url))
    try:
        store.create_collection("photos", "RN50", 1024, "IP")
    finally:
        store.close()
    monkeypatch.setenv("IMGSEARCH_METADATA_URL", str(settings.metadata_url))
    assert cli_main(["collections", "mode", "photos", "hybrid"]) == 0
    assert cli_main(["collections", "list"]) == 0
    assert "photos\tRN50\t0 images\tsearch_mode=hybrid" in capsys.readouterr().out
    assert cli_main(["collections", "mode", "photos", "semantic"]) == 0
    assert cli_main(["collections", "list"]) == 0
    assert "search_mode=semantic" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="does not exist"):
        cli_main(["collections", "mode", "nowhere", "hybrid"])
