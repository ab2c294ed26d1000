"""Milvus Lite's in-memory exact search copy: the same answers as Lite itself, kept in step by every write."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from adapters.stores.milvus.exact_mirror import ExactMirror
from adapters.stores.milvus.vector_store import MilvusVectorStore


def _unit(rows: int, dim: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(rows, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _wait_ready(store: MilvusVectorStore, name: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stats = store.mirror_stats().get(name)
        if stats and stats["ready"]:
            return stats
        time.sleep(0.05)
    raise AssertionError(f"the in-memory copy of {name} was not ready in {timeout} s: {store.mirror_stats()}")


def _brute_force(ids: list[int], vectors: np.ndarray, query: np.ndarray, k: int) -> list[int]:
    return [ids[j] for j in np.argsort(-(vectors @ query), kind="stable")[:k]]


def test_mirror_search_is_exact_and_follows_upserts_and_deletes() -> None:
    mirror = ExactMirror("c", 16)
    vectors = _unit(3000, 16)  # past the initial capacity: the matrix grows
    mirror.fill(list(range(3000)), vectors)
    mirror.finish_fill()
    queries = _unit(4, 16, seed=1)
    for query, hits in zip(queries, mirror.search(queries, 10), strict=True):
        assert [i for i, _ in hits] == _brute_force(list(range(3000)), vectors, query, 10)
    mirror.delete([0, 1500, 2999, 77_777])  # a hole in the middle, the last row, an unknown id
    replaced = _unit(1, 16, seed=9)
    mirror.upsert([5], replaced)
    live = [i for i in range(3000) if i not in (0, 1500, 2999)]
    expected = vectors.copy()
    expected[5] = replaced[0]
    for query, hits in zip(queries, mirror.search(queries, 3000), strict=True):
        assert sorted(i for i, _ in hits) == live
        assert [i for i, _ in hits][:10] == _brute_force(live, expected[live], query, 10)
    assert np.allclose(mirror.get([5])[5], replaced[0]) and mirror.get([0]) == {}


def test_a_write_during_the_fill_wins_over_the_rows_the_fill_read_before_it() -> None:
    mirror = ExactMirror("c", 4)
    old, new = _unit(3, 4, seed=1), _unit(1, 4, seed=2)
    mirror.upsert([1], new)  # written after the fill had read id 1 from Lite
    mirror.delete([2])  # deleted likewise
    mirror.fill([0, 1, 2], old)
    mirror.finish_fill()
    got = mirror.get([0, 1, 2])
    assert sorted(got) == [0, 1] and np.allclose(got[1], new[0]) and np.allclose(got[0], old[0])


def test_a_lite_collection_is_searched_from_memory_with_lites_own_answers(tmp_path: Path) -> None:
    uri = str(tmp_path / "milvus.db")
    vectors, ids = _unit(2500, 64), list(range(50_000, 52_500))
    plain = MilvusVectorStore(uri, index_type="FLAT")
    plain.ensure_collection("c", 64)
    plain.upsert("c", ids, vectors)
    queries = _unit(6, 64, seed=1)
    from_lite = plain.search("c", queries, 20)
    plain.close()

    store = MilvusVectorStore(uri, index_type="FLAT", lite_mirror_mb=64)  # reopened: filled in the background
    try:
        assert [len(hits) for hits in store.search("c", queries, 20)] == [20] * 6  # Lite or the copy: answered
        assert _wait_ready(store, "c")["vectors"] == 2500
        from_memory = store.search("c", queries, 20)
        for lite_hits, memory_hits in zip(from_lite, from_memory, strict=True):
            assert [i for i, _ in memory_hits] == [i for i, _ in lite_hits]
            assert np.allclose([s for _, s in memory_hits], [s for _, s in lite_hits], atol=1e-5)
        # Writes reach Lite and the copy alike; the copy answers, Lite agrees after a reopen.
        store.delete("c", ids[:100])
        store.upsert("c", [1, 2], _unit(2, 64, seed=5))
        assert store.count("c") == 2402
        best = store.search("c", _unit(2, 64, seed=5), 1)
        assert [hits[0][0] for hits in best] == [1, 2]
        assert sorted(store.get("c", [1, ids[0], ids[200]])) == [1, ids[200]]
        after = store.search("c", queries, 20)
    finally:
        store.close()
    reopened = MilvusVectorStore(uri, index_type="FLAT")
    try:
        assert [[i for i, _ in hits] for hits in reopened.search("c", queries, 20)] == [
            [i for i, _ in hits] for hits in after
        ]
    finally:
        reopened.close()


def test_a_collection_over_the_memory_budget_stays_on_lite(tmp_path: Path) -> None:
    store = MilvusVectorStore(str(tmp_path / "milvus.db"), index_type="FLAT", lite_mirror_mb=1)
    try:
        store.ensure_collection("big", 256)
        _wait_ready(store, "big")
        vectors = _unit(1500, 256)  # 1.5 MB of vectors: more than the 1 MB budget
        store.upsert("big", list(range(1500)), vectors)
        assert "big" not in store.mirror_stats()
        hits = store.search("big", vectors[:1], 5)[0]
        assert hits[0][0] == 0 and len(hits) == 5
    finally:
        store.close()


@pytest.mark.parametrize("index_type", ["IVF_FLAT"])
def test_an_approximate_index_is_not_mirrored(tmp_path: Path, index_type: str) -> None:
    store = MilvusVectorStore(
        str(tmp_path / "milvus.db"), index_type=index_type, index_params={"nlist": 16}, lite_mirror_mb=64
    )
    try:
        store.ensure_collection("c", 8)
        assert store.mirror_stats() == {}
    finally:
        store.close()
