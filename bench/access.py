"""What keys cost a search: `/img/search` over HTTP on two real services up at once (uvicorn, MariaDB + Milvus Lite,
the same data): one open (no key exists), one where a stored read key is needed and its quota counted. Queries
alternate between the two, one by one, so machine drift and the other process's load hit both alike. The
difference of the medians is the key check (cached lookup, scopes) and the quota count of a request.

    .venv/bin/python bench/access.py [--images 3000] [--queries 300] [--rounds 3]      (part of `make bench`)

Floor (issue 20): keys on cost ≤ 0.5 ms per request at p50. Writes bench/RESULTS.md (section "access").
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # see bench/core.py

import argparse
import subprocess
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

from adapters.stores.sql.key_store import KeyStore  # noqa: E402
from adapters.stores.sql.sql_schema import create_metadata_engine  # noqa: E402
from config import Settings  # noqa: E402
from operations.access import keys  # noqa: E402
from operations.access.control import AccessControl  # noqa: E402
from operations.ingest.sample_data import generate_split  # noqa: E402

FLOOR_MS = 0.5


def direct_cost_us(work: Path, rounds: int = 20_000) -> float:
    """Microseconds of the per-request work keys add, in-process: the cached key lookup (hash, cache, expiry),
    the quota subject, and counting the request. Over HTTP that is far below the two processes' own noise."""
    settings = Settings(_env_file=None, data_dir=work / "direct", weights="random", rate_limit_read=10**9)  # type: ignore[call-arg]
    engine = create_metadata_engine(f"sqlite:///{work / 'direct.db'}")
    access = AccessControl(settings)
    access.attach(engine)
    try:
        key = keys.create(KeyStore(engine), "timed", ["read"]).key
        access.directory.lookup(key)

        def one_request() -> None:
            principal = access.directory.cached(key)
            assert principal is not None and principal.can("read")
            subject, limit = access.limit_for(principal, "read", "127.0.0.1")  # type: ignore[misc]
            access.limiter.known(subject)
            access.limiter.hit(subject, limit)

        started = time.perf_counter()
        for _ in range(rounds):
            one_request()
        return (time.perf_counter() - started) / rounds * 1e6
    finally:
        access.close()
        engine.dispose()


def timed_search(client: httpx.Client, text: str, headers: dict[str, str]) -> float:
    started = time.perf_counter()
    answer = client.post("/img/search", json={"collection": "bench", "text": text, "top_k": 10}, headers=headers)
    elapsed = (time.perf_counter() - started) * 1000
    assert answer.status_code == 200, answer.text
    return elapsed


def start(work: Path, name: str, database: str, mysql: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {
        "IMGSEARCH_WEIGHTS": "random",
        "IMGSEARCH_DATA_DIR": str(work / name),
        "IMGSEARCH_DATA_ROOT": str(work / "datasets"),
        "IMGSEARCH_METADATA_URL": f"{mysql.rstrip('/')}/{database}",
        "IMGSEARCH_RATE_LIMIT_READ": "1000000",  # counted, never reached
        "IMGSEARCH_LOG_LEVEL": "WARNING",
    }
    return run_service(env, port, log=work / f"{name}.log"), f"http://127.0.0.1:{port}"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mysql", default="mysql+pymysql://root@127.0.0.1:3306/")
    args = parser.parse_args()
    queries = [f"{QUERIES[i % len(QUERIES)]}{i}" for i in range(args.queries)]
    databases = [f"imgsearch_access_{name}_{os.getpid()}" for name in ("off", "on")]
    off: list[float] = []
    on: list[float] = []
    medians: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        split_dir = work / "datasets" / "split"
        direct_us = direct_cost_us(work)
        generate_split(split_dir, "bench", args.images, encoder=None, seed=0)
        write_random_features(split_dir, "bench")
        services = [
            start(work, name, database, args.mysql) for name, database in zip(("off", "on"), databases, strict=True)
        ]
        try:
            plain = httpx.Client(base_url=services[0][1], timeout=60)
            keyed = httpx.Client(base_url=services[1][1], timeout=60)
            for client in (plain, keyed):
                load = client.post("/img/load", json={"collection": "bench", "path": "split", "split": "bench"})
                assert wait_job(client, load.json()["job_id"])["state"] == "succeeded"
            admin = keyed.post("/keys", json={"name": "bench-admin", "scopes": ["admin"]}).json()["key"]
            reader = keyed.post("/keys", json={"name": "reader", "scopes": ["read"]}, headers={"X-API-Key": admin})
            key = {"X-API-Key": reader.json()["key"]}
            assert keyed.get("/keys/me").json()["keys_required"] and not plain.get("/keys/me").json()["keys_required"]
            for text in queries[:20]:  # warm-up
                timed_search(plain, text, {})
                timed_search(keyed, text, key)
            for round_no in range(args.rounds):
                a: list[float] = []
                b: list[float] = []
                for i, text in enumerate(queries):  # who goes first alternates too
                    if (i + round_no) % 2:
                        a.append(timed_search(plain, text, {}))
                        b.append(timed_search(keyed, text, key))
                    else:
                        b.append(timed_search(keyed, text, key))
                        a.append(timed_search(plain, text, {}))
                off += a
                on += b
                medians.append((float(np.median(a)), float(np.median(b))))
                print(f"round: off p50 {medians[-1][0]:.2f} ms, on p50 {medians[-1][1]:.2f} ms", flush=True)
            plain.close()
            keyed.close()
        finally:
            for process, _ in services:
                process.terminate()
                process.wait(timeout=30)
            for database in databases:
                drop_database(database)
    cost = float(np.median(on) - np.median(off))
    ok = cost <= FLOOR_MS
    lines = [
        "## access: what keys cost a search (bench/access.py)",
        "",
        f"{run_header()} · {args.images} generated images, 1024-d features · RN50 random weights · MariaDB + "
        f"Milvus Lite · two services up at once on the same data, {args.rounds} rounds of {args.queries} "
        "`/img/search` over HTTP, alternating between them query by query: one open (no key exists) against one "
        "that needs a stored read key and counts its quota (IMGSEARCH_RATE_LIMIT_READ=1000000, never reached)",
        "",
        "| round | keys off p50 ms | keys on p50 ms | difference ms |",
        "|---|---|---|---|",
        *[f"| {i} | {a:.2f} | {b:.2f} | {b - a:+.2f} |" for i, (a, b) in enumerate(medians, 1)],
        f"| all | {np.median(off):.2f} | {np.median(on):.2f} | {cost:+.2f} |",
        "",
        f"- The same work in-process, without HTTP: {direct_us:.1f} µs per request (the cached key lookup, the scope, "
        "the quota subject and its count). The difference over HTTP is within what two processes differ by anyway.",
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
