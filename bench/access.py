"""What keys cost a search: `/img/search` over HTTP on the real service (uvicorn, MariaDB + Milvus Lite), with no
key at all (the open service) against a stored read key whose quota is counted, alternated in rounds in the same
process on the same data, so machine drift hits both. The difference of the medians is the scope check, the key
lookup (cached) and the quota count of a request.

    .venv/bin/python bench/access.py [--images 3000] [--queries 200] [--rounds 3]      (part of `make bench`)

Floor (issue 20): keys on cost ≤ 0.5 ms per request at p50. Writes bench/RESULTS.md (section "access").
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # see bench/core.py

import argparse
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from core import QUERIES, drop_database, free_port, run_service, wait_job, write_random_features  # noqa: E402
from results_file import run_header, write_section  # noqa: E402

from operations.ingest.sample_data import generate_split  # noqa: E402

FLOOR_MS = 0.5


def searches(client: httpx.Client, queries: list[str], headers: dict[str, str]) -> list[float]:
    latencies = []
    for text in queries:
        started = time.perf_counter()
        answer = client.post("/img/search", json={"collection": "bench", "text": text, "top_k": 10}, headers=headers)
        latencies.append((time.perf_counter() - started) * 1000)
        assert answer.status_code == 200, answer.text
    return latencies


def keys_on(client: httpx.Client) -> tuple[dict[str, str], dict[str, str]]:
    """An admin key made while the service is open, then the read key the searches use."""
    admin = client.post("/keys", json={"name": "bench-admin", "scopes": ["admin"]}).json()["key"]
    admin_headers = {"X-API-Key": admin}
    reader = client.post("/keys", json={"name": "bench-reader", "scopes": ["read"]}, headers=admin_headers)
    return admin_headers, {"X-API-Key": reader.json()["key"]}


def keys_off(client: httpx.Client, admin: dict[str, str]) -> None:
    for name in ("bench-reader", "bench-admin"):
        assert client.delete(f"/keys/{name}", headers=admin).status_code == 200
    deadline = time.monotonic() + 10
    while client.get("/keys/me").json()["keys_required"]:  # open again once the count is read anew (2 s)
        assert time.monotonic() < deadline
        time.sleep(0.2)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mysql", default="mysql+pymysql://root@127.0.0.1:3306/")
    args = parser.parse_args()
    queries = [f"{QUERIES[i % len(QUERIES)]}{i}" for i in range(args.queries)]
    database = f"imgsearch_access_{os.getpid()}"
    off: list[float] = []
    on: list[float] = []
    medians: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        split_dir = work / "datasets" / "split"
        generate_split(split_dir, "bench", args.images, encoder=None, seed=0)
        write_random_features(split_dir, "bench")
        port = free_port()
        env = {
            "IMGSEARCH_WEIGHTS": "random",
            "IMGSEARCH_DATA_DIR": str(work / "data"),
            "IMGSEARCH_DATA_ROOT": str(work / "datasets"),
            "IMGSEARCH_METADATA_URL": f"{args.mysql.rstrip('/')}/{database}",
            "IMGSEARCH_RATE_LIMIT_READ": "1000000",  # counted, never reached
            "IMGSEARCH_LOG_LEVEL": "WARNING",
        }
        process = run_service(env, port, log=work / "service.log")
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
                load = client.post("/img/load", json={"collection": "bench", "path": "split", "split": "bench"})
                assert wait_job(client, load.json()["job_id"])["state"] == "succeeded"
                searches(client, queries[:20], {})  # warm-up
                for _ in range(args.rounds):
                    plain = searches(client, queries, {})
                    admin, reader = keys_on(client)
                    searches(client, queries[:5], reader)  # the key's row is read once, then cached
                    keyed = searches(client, queries, reader)
                    keys_off(client, admin)
                    off += plain
                    on += keyed
                    medians.append((float(np.median(plain)), float(np.median(keyed))))
                    print(f"round: off p50 {medians[-1][0]:.2f} ms, on p50 {medians[-1][1]:.2f} ms", flush=True)
        finally:
            process.terminate()
            process.wait(timeout=30)
            drop_database(database)
    cost = float(np.median(on) - np.median(off))
    ok = cost <= FLOOR_MS
    lines = [
        "## access: what keys cost a search (bench/access.py)",
        "",
        f"{run_header()} · {args.images} generated images, 1024-d features · RN50 random weights · MariaDB + "
        f"Milvus Lite · {args.rounds} rounds of {args.queries} sequential `/img/search` over HTTP each way, "
        "alternated in one service process: no key (the open service) against a stored read key with its "
        "quota counted (IMGSEARCH_RATE_LIMIT_READ=1000000, never reached)",
        "",
        "| round | keys off p50 ms | keys on p50 ms | difference ms |",
        "|---|---|---|---|",
        *[f"| {i} | {a:.2f} | {b:.2f} | {b - a:+.2f} |" for i, (a, b) in enumerate(medians, 1)],
        f"| all | {np.median(off):.2f} | {np.median(on):.2f} | {cost:+.2f} |",
        "",
        "| floor | result |",
        "|---|---|",
        f"| keys on cost ≤ {FLOOR_MS} ms per search at p50 (measured {cost:+.2f} ms) | {'pass' if ok else 'FAIL'} |",
    ]
    text = "\n".join(lines)
    print(text)
    write_section("access", text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
