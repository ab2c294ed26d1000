"""The Milvus adapter against a real Milvus Lite database file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from adapters.vector_store import MilvusVectorStore


def _unit(rows: int, dim: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(rows, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture
def store(tmp_path: Path):
    store = MilvusVectorStore(str(tmp_path / "milvus.db"))
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


def test_drop_and_persistence_across_reopen(tmp_path: Path) -> None:
    path = str(tmp_path / "persist.db")
    first = MilvusVectorStore(path)
    first.ensure_collection("keep", 8)
    first.ensure_collection("drop", 8)
    first.upsert("keep", [1, 2, 3], _unit(3, 8))
    first.upsert("drop", [1], _unit(1, 8))
    first.drop_collection("drop")
    first.close()
    second = MilvusVectorStore(path)
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
