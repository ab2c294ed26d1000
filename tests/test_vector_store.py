"""The Milvus adapter against a real Milvus Lite database file and a real Milvus server, same assertions."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from adapters.stores.milvus.vector_store import MilvusVectorStore
from config import Settings


def _unit(rows: int, dim: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(rows, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _open(target: dict[str, str], **options: Any) -> MilvusVectorStore:
    return MilvusVectorStore(target["milvus_uri"], db_name=target.get("milvus_db", "default"), **options)


@pytest.fixture
def store(milvus_target: dict[str, str]):
    store = _open(milvus_target, index_type="FLAT")
    yield store
    store.close()


def test_search_is_exact_inner_product_top_k(store: MilvusVectorStore) -> None:
    vectors = _unit(2000, 64)
    ids = list(range(10_000, 12_000))
    store.ensure_collection("c", 64)
    store.upsert("c", ids, vectors)
    queries = _unit(5, 64, seed=1)
    results = store.search("c", queries, 10)
    for query, hits in zip(queries, results, strict=True):
        scores = vectors @ query
        expected = np.argsort(-scores)[:10]
        assert [i for i, _ in hits] == [ids[j] for j in expected]
        assert np.allclose([s for _, s in hits], scores[expected], atol=1e-5)


def test_upsert_is_idempotent_and_delete_removes(store: MilvusVectorStore) -> None:
    store.ensure_collection("c", 8)
    vectors = _unit(30, 8)
    store.upsert("c", list(range(30)), vectors)
    store.upsert("c", list(range(30)), vectors)
    assert store.count("c") == 30
    store.delete("c", [0, 1, 2])
    assert store.count("c") == 27
    assert all(i not in (0, 1, 2) for i, _ in store.search("c", vectors[:1], 30)[0])


def test_dim_mismatch_is_refused(store: MilvusVectorStore) -> None:
    store.ensure_collection("c", 8)
    with pytest.raises(ValueError, match="dim 8"):
        store.ensure_collection("c", 16)


def test_drop_and_persistence_across_reopen(milvus_target: dict[str, str]) -> None:
    first = _open(milvus_target)
    first.ensure_collection("keep", 8)
    first.ensure_collection("drop", 8)
    first.upsert("keep", [1, 2, 3], _unit(3, 8))
    first.upsert("drop", [1], _unit(1, 8))
    first.drop_collection("drop")
    first.close()
    second = _open(milvus_target)
    try:
        assert second.has_collection("keep") and not second.has_collection("drop")
        assert second.count("keep") == 3 and second.count("drop") == 0
    finally:
        second.close()


def test_get_existing_and_iterate_ids(store: MilvusVectorStore) -> None:
    store.ensure_collection("c", 8)
    vectors = _unit(2500, 8)
    store.upsert("c", list(range(2500)), vectors)
    got = store.get("c", [3, 7, 99_999])
    assert sorted(got) == [3, 7] and np.allclose(got[7], vectors[7], atol=1e-6)
    assert store.existing_ids("c", [1, 2, 5000, 2499]) == {1, 2, 2499}
    seen = [i for batch in store.iter_ids("c", batch=1000) for i in batch]
    assert sorted(seen) == list(range(2500))


def test_new_collections_get_flat_on_lite_and_hnsw_on_a_server(milvus_target: dict[str, str]) -> None:
    settings = Settings(_env_file=None, **milvus_target)  # type: ignore[arg-type]
    store = _open(milvus_target, index_type=str(settings.index_type), index_params=settings.index_params)
    try:
        store.ensure_collection("c", 8)
        info = store.index_info("c")
        if store.local:
            assert (store.backend, info.index_type, info.params) == ("milvus-lite", "FLAT", {})
        else:
            assert (store.backend, info.index_type, info.metric) == ("milvus-server", "HNSW", "IP")
            assert info.params == {"M": 16, "efConstruction": 200}
    finally:
        store.close()


def test_hnsw_on_a_server_finds_the_exact_neighbours_and_takes_any_top_k(milvus_server_db: dict[str, str]) -> None:
    """Clustered vectors (like photos of one subject), sealed so the server builds the graph; top_k above ``ef``
    must work (ef is raised to top_k) and recall@10 against exact search is high."""
    rng = np.random.default_rng(3)
    centres = _unit(40, 64, seed=4)
    vectors = centres[rng.integers(0, 40, 4000)] + rng.normal(scale=0.08, size=(4000, 64)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    store = _open(milvus_server_db, index_type="HNSW", index_params={"M": 16, "efConstruction": 200}, search_ef=64)
    try:
        store.ensure_collection("h", 64)
        store.upsert("h", list(range(4000)), vectors)
        store.flush("h")
        assert store.search_params_for("h", 10) == {"ef": 64} and store.search_params_for("h", 300) == {"ef": 300}
        queries = vectors[:50] + rng.normal(scale=0.05, size=(50, 64)).astype(np.float32)
        found = store.search("h", queries, 10)
        exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
        recall = np.mean([len({i for i, _ in hits} & set(row)) / 10 for hits, row in zip(found, exact, strict=True)])
        assert recall >= 0.95
        assert len(store.search("h", queries[:1], 300)[0]) == 300
    finally:
        store.close()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"milvus_uri": "x/milvus.db", "index_type": "HNSW"}, "HNSW needs a Milvus server"),
        ({"milvus_uri": "http://h:19530", "index_type": "DISKANN"}, "not available on a Milvus server"),
        ({"milvus_uri": "http://h:19530", "index_params": {"M": 1}}, "M must be an integer in 2..2048"),
        ({"milvus_uri": "http://h:19530", "index_params": {"nlist": 8}}, "HNSW has no parameter 'nlist'"),
        ({"milvus_uri": "x/milvus.db", "index_type": "IVF_FLAT", "index_params": {"nlist": 0}}, "nlist must be"),
    ],
)
def test_index_settings_the_backend_cannot_honour_are_refused_at_start_up(values: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(_env_file=None, **values)


def test_index_defaults_follow_the_backend() -> None:
    lite = Settings(_env_file=None, milvus_uri="x/milvus.db")  # type: ignore[call-arg]
    server = Settings(_env_file=None, milvus_uri="http://h:19530")  # type: ignore[call-arg]
    ivf = Settings(_env_file=None, milvus_uri="http://h:19530", index_type="ivf_flat")  # type: ignore[call-arg]
    assert (lite.index_type, lite.index_params) == ("FLAT", {})
    assert (server.index_type, server.index_params) == ("HNSW", {"M": 16, "efConstruction": 200})
    assert (ivf.index_type, ivf.index_params) == ("IVF_FLAT", {"nlist": 1024})
    assert lite.search_consistency == server.search_consistency == "Session"
