"""Search benchmark: `/img/search` over HTTP (real uvicorn) on 30k generated images in real MySQL + the embedded
Milvus Lite, 1 client (p50, p99) and 8 clients (queries/s), with the time split by stage.

    .venv/bin/python bench/search.py [--images 30000 --queries 300 --seconds 20]     (part of `make bench`)

Floor, measured in the same run on the same vectors: the same encoder on the same text + numpy exact top-10
(best of a run before and a run after the service, so machine drift counts against the floor, not for it).
Issue 5: service p50 at 1 client ≤ 1.5x the floor p50. Writes bench/RESULTS.md (section "search").
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # see bench/core.py

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from core import QUERIES, drop_database, for_seconds, free_port, pct, run_service, search_floor, write_random_features  # noqa: E402
from results_file import run_header, write_section  # noqa: E402

from operations.sample_data import generate_split  # noqa: E402

STAGES = ("encode", "vector_search", "metadata_fetch")


def app_ms(response: httpx.Response) -> float:
    """The service's own time for the request, from its ``Server-Timing: app;dur=…`` header."""
    for part in response.headers.get("server-timing", "").split(","):
        name, _, duration = part.strip().partition(";dur=")
        if name == "app":
            return float(duration)
    raise ValueError("response has no Server-Timing app entry")


def one_client(client: httpx.Client, queries: list[str]) -> list[dict[str, float]]:
    samples = []
    for text in queries:
        started = time.perf_counter()
        response = client.post("/img/search", json={"collection": "bench", "text": text, "top_k": 10})
        total = (time.perf_counter() - started) * 1000
        assert response.status_code == 200 and len(response.json()["hits"]) == 10, response.text
        stages = response.json()["timings_ms"]
        service = app_ms(response)
        samples.append(
            {
                "total": total,
                **{stage: stages[stage] for stage in STAGES},
                "serialisation": service - sum(stages[stage] for stage in STAGES),
                "http": total - service,
            }
        )
    return samples


def many_clients(base_url: str, queries: list[str], clients: int, seconds: float) -> tuple[float, list[float], int]:
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def worker(offset: int) -> None:
        nonlocal errors
        with httpx.Client(base_url=base_url, timeout=60) as client:
            i = offset
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                response = client.post(
                    "/img/search", json={"collection": "bench", "text": queries[i % len(queries)], "top_k": 10}
                )
                with lock:
                    latencies.append((time.perf_counter() - started) * 1000)
                    errors += response.status_code != 200
                i += clients

    return for_seconds(clients, worker), latencies, errors


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=30000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--mysql", default="mysql+pymysql://root@127.0.0.1:3306/")
    args = parser.parse_args()
    queries = [f"{QUERIES[i % len(QUERIES)]}{i}" for i in range(args.queries)]
    database = f"imgsearch_bench_search_{os.getpid()}"

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        split_dir = work / "datasets" / "split"
        generate_split(split_dir, "bench", args.images, encoder=None, seed=0)
        write_random_features(split_dir, "bench")
        floor_before = search_floor(split_dir, "bench", queries)
        port = free_port()
        env = {
            "IMGSEARCH_WEIGHTS": "random",
            "IMGSEARCH_DATA_DIR": str(work / "svc"),
            "IMGSEARCH_DATA_ROOT": str(work / "datasets"),
            "IMGSEARCH_METADATA_URL": f"{args.mysql.rstrip('/')}/{database}",
            "IMGSEARCH_LOG_LEVEL": "WARNING",
        }
        process = run_service(env, port)
        try:
            base_url = f"http://127.0.0.1:{port}"
            with httpx.Client(base_url=base_url, timeout=60) as client:
                job = client.post("/img/load", json={"collection": "bench", "path": "split", "split": "bench"}).json()
                while (state := client.get(f"/jobs/{job['job_id']}").json())["state"] not in ("succeeded", "failed"):
                    time.sleep(0.2)
                assert state["state"] == "succeeded" and state["loaded"] == args.images, state
                one_client(client, queries[:20])  # warm-up, as the floor's encoder gets
                single = one_client(client, queries)
            elapsed, latencies, errors = many_clients(base_url, queries, args.clients, args.seconds)
        finally:
            process.terminate()
            process.wait(timeout=60)
            drop_database(database)
        floor = [min(a, b) for a, b in zip(floor_before, search_floor(split_dir, "bench", queries), strict=True)]

    total = [s["total"] for s in single]
    ratio = pct(total, 50) / pct(floor, 50)
    parts = ("encode", "vector_search", "metadata_fetch", "serialisation", "http")
    labels = {
        "encode": "text encode (micro-batched)",
        "vector_search": "vector search (Milvus Lite, FLAT)",
        "metadata_fetch": "metadata fetch (MySQL)",
        "serialisation": "validation, serialisation, framework",
        "http": "HTTP and client",
    }
    lines = [
        "## search: /img/search at scale (bench/search.py)",
        "",
        f"{run_header()} · {args.images:,} generated JPEGs, 1024-d features · RN50 random weights, torch · "
        f"MariaDB 10.11 + Milvus Lite 2.5.1 (FLAT/IP) · uvicorn, {args.queries} distinct Chinese queries",
        "",
        "| clients | requests | p50 ms | p99 ms | queries/s | errors |",
        "|---|---|---|---|---|---|",
        f"| 1 | {len(single)} | {pct(total, 50):.1f} | {pct(total, 99):.1f} | "
        f"{len(single) / (sum(total) / 1000):.1f} | 0 |",
        f"| {args.clients} | {len(latencies)} | {pct(latencies, 50):.1f} | {pct(latencies, 99):.1f} | "
        f"{len(latencies) / elapsed:.1f} | {errors} |",
        "",
        "Where the time goes at 1 client (median per stage; the service reports the first three in `timings_ms`, "
        "its total in `Server-Timing`):",
        "",
        "| stage | median ms | share of p50 |",
        "|---|---|---|",
        *(
            f"| {labels[p]} | {statistics.median(s[p] for s in single):.1f} | "
            f"{statistics.median(s[p] for s in single) / pct(total, 50):.0%} |"
            for p in parts
        ),
        "",
        f"Floor in the same run: encoder + numpy exact top-10 over the same {args.images:,} vectors, p50 "
        f"{pct(floor, 50):.1f} ms, p99 {pct(floor, 99):.1f} ms.",
        f"- Service p50 at 1 client is **{ratio:.2f}x** the floor (floor: at most 1.5x).",
    ]
    table = "\n".join(lines)
    print(table)
    write_section("search", table)
    return 0 if ratio <= 1.5 and errors == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
