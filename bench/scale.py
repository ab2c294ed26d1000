"""Scale benchmark: vector search latency and recall@10 (against numpy exact search) at 10k, 100k and 1M
vectors (1024-d), for each index type Milvus Lite 2.5.1 accepts, through the service's own vector store adapter;
plus insert rate and the memory Milvus Lite uses.

    .venv/bin/python bench/scale.py [--sizes 10000 100000 1000000 --queries 100]    (part of `make bench`)

The vectors are generated with the structure of real CLIP embeddings: clusters of about 100 images (one subject)
and queries noisier than the images, so a query's best match scores about 0.27, as Chinese-CLIP text→image
scores do. Uniform random vectors would make every approximate index look worse than it is on photos.
Writes bench/RESULTS.md (section "scale").
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # see bench/core.py

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from core import pct  # noqa: E402
from load import children, rss_mb  # noqa: E402
from results_file import run_header, write_section  # noqa: E402

from adapters.vector_store import MilvusVectorStore  # noqa: E402

DIM = 1024
INDEXES = {
    "FLAT": ({}, {}),
    "IVF_FLAT": (None, {"nprobe": 16}),  # nlist is set per size below
    "AUTOINDEX": ({}, {}),
}


def clustered(rng: np.random.Generator, centers: np.ndarray, count: int, noise: float) -> np.ndarray:
    picked = centers[rng.integers(0, len(centers), count)]
    vectors = picked + rng.standard_normal((count, DIM), dtype=np.float32) * np.float32(noise / np.sqrt(DIM))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def generate(size: int, queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((max(1, size // 100), DIM), dtype=np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    data = np.concatenate([clustered(rng, centers, min(100_000, size - s), 1.5) for s in range(0, size, 100_000)])
    return data, clustered(rng, centers, queries, 2.5)


def exact_top10(data: np.ndarray, queries: np.ndarray) -> tuple[list[set[int]], list[float]]:
    truth, times = [], []
    for query in queries:
        started = time.perf_counter()
        scores = data @ query
        truth.append({int(i) for i in np.argpartition(-scores, 10)[:10]})
        times.append((time.perf_counter() - started) * 1000)
    return truth, times


def measure(work: Path, index: str, data: np.ndarray, queries: np.ndarray, truth: list[set[int]]) -> dict:
    index_params, search_params = INDEXES[index]
    if index_params is None:
        index_params = {"nlist": int(4 * np.sqrt(len(data)))}
    before = set(children(os.getpid()))
    store = MilvusVectorStore(
        str(work / f"{index}.db"), index_type=index, index_params=index_params, search_params=search_params
    )
    try:
        store.ensure_collection("scale", DIM)
        started = time.perf_counter()
        for start in range(0, len(data), 10_000):
            chunk = data[start : start + 10_000]
            store.upsert("scale", list(range(start, start + len(chunk))), chunk)
        insert_s = time.perf_counter() - started
        assert store.count("scale") == len(data)
        for query in queries[:5]:  # warm-up
            store.search("scale", query[None, :], 10)
        times, recalls = [], []
        for query, expected in zip(queries, truth, strict=True):
            started = time.perf_counter()
            hits = store.search("scale", query[None, :], 10)[0]
            times.append((time.perf_counter() - started) * 1000)
            recalls.append(len(expected & {i for i, _ in hits}) / 10)
        rss = sum(rss_mb(pid) for pid in set(children(os.getpid())) - before)
    finally:
        store.close()
    disk = sum(f.stat().st_size for f in work.rglob("*") if f.is_file()) / 2**20
    for f in sorted(work.rglob("*"), reverse=True):
        f.unlink() if f.is_file() else f.rmdir()
    return {
        "index": index,
        "insert_rate": len(data) / insert_s,
        "p50": pct(times, 50),
        "p99": pct(times, 99),
        "recall": float(np.mean(recalls)),
        "rss": rss,
        "disk": disk,
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--indexes", nargs="+", default=list(INDEXES), choices=list(INDEXES))
    args = parser.parse_args()
    rows = []
    for size in args.sizes:
        data, queries = generate(size, args.queries)
        truth, exact_times = exact_top10(data, queries)
        raw_mb = data.nbytes / 2**20
        for index in args.indexes:
            with tempfile.TemporaryDirectory() as tmp:
                result = measure(Path(tmp), index, data, queries, truth)
            result.update(size=size, numpy_p50=pct(exact_times, 50), raw_mb=raw_mb)
            print(result, flush=True)
            rows.append(result)
        del data
    lines = [
        "## scale: vector search vs collection size (bench/scale.py)",
        "",
        f"{run_header()} · Milvus Lite 2.5.1 through the service's vector store (IP metric, 1024-d, inserted in "
        f"500-row batches) · clustered vectors (~100 per subject), {args.queries} single-vector queries whose best "
        "match scores ~0.27 · recall@10 against numpy exact search · memory = Milvus Lite process RSS after the "
        "searches",
        "",
        "| vectors | index | insert vectors/s | search p50 ms | search p99 ms | recall@10 | numpy exact p50 ms "
        "| Milvus RSS MB (raw vectors MB) | on disk MB |",
        "|---|---|---|---|---|---|---|---|---|",
        *(
            f"| {r['size']:,} | {r['index']} | {r['insert_rate']:,.0f} | {r['p50']:.1f} | {r['p99']:.1f} | "
            f"{r['recall']:.3f} | {r['numpy_p50']:.1f} | {r['rss']:,.0f} ({r['raw_mb']:,.0f}) | {r['disk']:,.0f} |"
            for r in rows
        ),
    ]
    table = "\n".join(lines)
    print(table)
    write_section("scale", table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
