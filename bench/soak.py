"""Soak: 8 concurrent clients for 60 s against the real service on loopback (uvicorn, MySQL + Milvus Lite),
mixing text search, image search, uploads and image reads. Passes when no request fails, and the counts are
exact afterwards (both stores hold the starting images plus every stored upload, and reconcile finds nothing).

    .venv/bin/python bench/soak.py [--clients 8 --seconds 60 --images 500]      (`make soak`)

Writes bench/RESULTS.md (section "soak"); exit status 1 when the run fails.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # see bench/core.py

import argparse
import random
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from core import (  # noqa: E402
    QUERIES,
    drop_database,
    for_seconds,
    free_port,
    pct,
    run_service,
    wait_job,
    write_random_features,
)
from results_file import run_header, write_section  # noqa: E402

from operations.ingest.sample_data import generate_split, make_image  # noqa: E402

# Share of each kind of request in the mix.
MIX = (("text_search", 0.45), ("image_search", 0.2), ("upload", 0.15), ("image_read", 0.2))
KEY = "soak-key-0123456789abcdef"


class Soak:
    def __init__(self, base_url: str, collection: str, stored_ids: list[str], query_images: list[bytes]) -> None:
        self.base_url = base_url
        self.collection = collection
        self.stored_ids = stored_ids
        self.query_images = query_images
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.failures: list[str] = []
        self.uploaded = 0
        self.lock = threading.Lock()
        self.upload_seq = iter(range(10**9))

    def one(self, client: httpx.Client, kind: str, rng: random.Random) -> None:
        started = time.perf_counter()
        try:
            response = self.request(client, kind, rng)
            ok = response.status_code == 200
            problem = None if ok else f"{kind}: {response.status_code} {response.text[:200]}"
        except httpx.HTTPError as exc:
            response, problem = None, f"{kind}: {type(exc).__name__}: {exc}"
        with self.lock:
            self.latencies[kind].append((time.perf_counter() - started) * 1000)
            if problem:
                self.failures.append(problem)
            elif kind == "upload" and response is not None:
                self.uploaded += sum(r["status"] == "stored" for r in response.json()["results"])

    def request(self, client: httpx.Client, kind: str, rng: random.Random) -> httpx.Response:
        c = self.collection
        if kind == "text_search":
            text = f"{rng.choice(QUERIES)}{rng.randrange(1000)}"
            return client.post("/img/search", json={"collection": c, "text": text, "top_k": 10})
        if kind == "image_search":
            files = {"files": ("q.jpg", rng.choice(self.query_images), "image/jpeg")}
            return client.post("/img/search/image", data={"collection": c, "top_k": "10"}, files=files)
        if kind == "upload":
            with self.lock:
                seed = 10_000 + next(self.upload_seq)
            data = make_image(np.random.default_rng(seed))[0]  # a new image each time: it must be stored
            files = {"files": (f"new{seed}.jpg", data, "image/jpeg")}
            return client.post("/img/upload", data={"collection": c}, files=files, headers={"X-API-Key": KEY})
        image_id = rng.choice(self.stored_ids)
        path = f"/img/{c}/{image_id}" + ("/thumb" if rng.random() < 0.5 else "")
        return client.get(path)

    def run(self, clients: int, seconds: float) -> float:
        deadline = time.perf_counter() + seconds
        kinds, weights = zip(*MIX, strict=True)

        def worker(n: int) -> None:
            rng = random.Random(n)
            with httpx.Client(base_url=self.base_url, timeout=60) as client:
                while time.perf_counter() < deadline:
                    self.one(client, rng.choices(kinds, weights)[0], rng)

        return for_seconds(clients, worker)


def server_errors(metrics: str) -> int:
    return sum(
        int(float(line.rsplit(" ", 1)[1]))
        for line in metrics.splitlines()
        if line.startswith("imgsearch_http_requests_total{") and 'status="5' in line
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--mysql", default="mysql+pymysql://root@127.0.0.1:3306/")
    args = parser.parse_args()
    database = f"imgsearch_soak_{os.getpid()}"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        split_dir = work / "datasets" / "split"
        generate_split(split_dir, "soak", args.images, encoder=None, seed=3)
        write_random_features(split_dir, "soak")
        env = {
            "IMGSEARCH_WEIGHTS": "random",
            "IMGSEARCH_DATA_DIR": str(work / "svc"),
            "IMGSEARCH_DATA_ROOT": str(work / "datasets"),
            "IMGSEARCH_METADATA_URL": f"{args.mysql.rstrip('/')}/{database}",
            "IMGSEARCH_API_KEYS": KEY,
            "IMGSEARCH_LOG_LEVEL": "WARNING",
        }
        port = free_port()
        process = run_service(env, port)  # binds 127.0.0.1 only
        try:
            base = f"http://127.0.0.1:{port}"
            with httpx.Client(base_url=base, timeout=120, headers={"X-API-Key": KEY}) as client:
                body = {"collection": "soak", "path": "split", "split": "soak"}
                job = wait_job(client, client.post("/img/load", json=body).json()["job_id"])
                assert job["state"] == "succeeded" and job["loaded"] == args.images, job
                ids = [line.split("\t", 1)[0] for line in (split_dir / "soak_imgs.tsv").open()]
                queries = [client.get(f"/img/soak/{i}").content for i in ids[:20]]
                soak = Soak(base, "soak", ids, queries)
                elapsed = soak.run(args.clients, args.seconds)
                expected = args.images + soak.uploaded
                counted = client.get("/img/count?collection=soak").json()["count"]
                reconcile = wait_job(client, client.post("/collections/soak/reconcile").json()["job_id"])
                metrics = client.get("/metrics").text
        finally:
            process.terminate()
            process.wait(timeout=60)
            drop_database(database)

    result = reconcile["result"] or {}
    vectors = result.get("vectors_checked")
    total = sum(len(v) for v in soak.latencies.values())
    passed = (
        not soak.failures
        and server_errors(metrics) == 0
        and counted == expected == vectors
        and reconcile["message"].startswith("nothing to repair")
    )
    lines = [
        "## soak: 8 clients, mixed load (bench/soak.py)",
        "",
        f"{run_header()} · {args.clients} clients for {args.seconds:.0f} s on loopback · RN50 random weights, torch "
        f"· MariaDB 10.11 + Milvus Lite 2.5.1 · {args.images} images loaded first · API keys on",
        "",
        "| request | count | p50 ms | p99 ms |",
        "|---|---|---|---|",
        *(
            f"| {kind} | {len(soak.latencies[kind])} | {pct(soak.latencies[kind], 50):.0f} | "
            f"{pct(soak.latencies[kind], 99):.0f} |"
            for kind, _ in MIX
            if soak.latencies[kind]
        ),
        f"| **all** | {total} ({total / elapsed:.1f}/s) | "
        f"{pct([x for v in soak.latencies.values() for x in v], 50):.0f} | "
        f"{pct([x for v in soak.latencies.values() for x in v], 99):.0f} |",
        "",
        f"- Errors: **{len(soak.failures)}**" + (f" (first: {soak.failures[0]})" if soak.failures else "") + ".",
        f"- Counts afterwards: {counted} searchable rows, {vectors} vectors; expected {args.images} loaded + "
        f"{soak.uploaded} uploaded = {expected}. Reconcile: {reconcile['message']}.",
        f"- The service's own /metrics count {server_errors(metrics)} responses with a 5xx status.",
        f"- Result: **{'pass' if passed else 'FAIL'}**.",
    ]
    table = "\n".join(lines)
    print(table)
    write_section("soak", table)
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
