"""Core benchmark: bulk load rate and text-search latency of the real service (uvicorn over HTTP),
on SQLite and on MySQL, each against a floor measured in the same run on the same data.

    make bench            # or: .venv/bin/python bench/core.py --images 3000 --queries 200

Floors: load = reading and parsing the same TSV + feature file without storing anything;
search = the same encoder on the same text + numpy exact top-10 over the same vectors.
Writes bench/RESULTS.md (section "core").
"""

from __future__ import annotations

import os

# A 1024-d matrix-vector product gains nothing from BLAS threads, and OpenBLAS's spinning threads
# steal the encoder's two cores (measured: the floor doubled from 18 to 38 ms without this).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import base64
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pymysql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from adapters.encoders.clip_encoder import ChineseClipEncoder  # noqa: E402
from operations.ingest.flickr_format import FeatureFile, iter_tsv  # noqa: E402
from operations.ingest.sample_data import generate_split  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from results_file import run_header, write_section  # noqa: E402

QUERIES = [
    "红色的圆形",
    "蓝色背景上有两个方块",
    "一张图片,画面中是绿色三角形",
    "白色的横条",
    "黄色背景上有三个紫色的圆形",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_random_features(directory: Path, split: str, dim: int = 1024, seed: int = 0) -> None:
    """Feature values do not change load cost; random unit vectors avoid minutes of encoding."""
    rng = np.random.default_rng(seed)
    with (directory / f"{split}_imgs.img_feat.jsonl").open("w") as out:
        for line in (directory / f"{split}_imgs.tsv").open():
            vector = rng.normal(size=dim).astype(np.float32)
            vector /= np.linalg.norm(vector)
            out.write(json.dumps({"image_id": int(line.split("\t", 1)[0]), "feature": vector.round(7).tolist()}) + "\n")


def parse_floor(directory: Path, split: str) -> float:
    started = time.perf_counter()
    features = FeatureFile(directory / f"{split}_imgs.img_feat.jsonl", 1024)
    for row in iter_tsv(directory / f"{split}_imgs.tsv"):
        features.get(row.image_id)
    features.close()
    return time.perf_counter() - started


def search_floor(directory: Path, split: str, queries: list[str]) -> list[float]:
    features = FeatureFile(directory / f"{split}_imgs.img_feat.jsonl", 1024)
    ids = [row.image_id for row in iter_tsv(directory / f"{split}_imgs.tsv")]
    matrix = np.stack([features.get(i) for i in ids])
    features.close()
    encoder = ChineseClipEncoder("RN50", weights="random", seed=0)
    encoder.load()
    for text in queries[:10]:  # warm-up, as the service gets
        encoder.encode_text([text])
    times = []
    for text in queries:
        started = time.perf_counter()
        vector = encoder.encode_text([text])[0]
        top = np.argpartition(-(matrix @ vector), 10)[:10]
        _ = [ids[i] for i in top]
        times.append((time.perf_counter() - started) * 1000)
    encoder.close()
    return times


def wait_job(client: httpx.Client, job_id: str) -> dict:
    while (job := client.get(f"/jobs/{job_id}").json())["state"] not in ("succeeded", "failed"):
        time.sleep(0.2)
    return job


def drop_database(name: str) -> None:
    connection = pymysql.connect(host="127.0.0.1", user="root", password="")
    try:
        connection.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")
    finally:
        connection.close()


def for_seconds(clients: int, worker: Callable[[int], None]) -> float:
    """Runs ``worker(n)`` in ``clients`` threads (each loops until its own deadline) and returns the wall time."""
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def run_service(
    env: dict[str, str], port: int, checkout: Path | None = None, log: Path | None = None
) -> subprocess.Popen:
    """`imgsearch serve` on ``port``, once /healthz answers 200; ``checkout`` runs another checkout's code (a git
    worktree) with this virtualenv: `python -m app.cli` there puts that folder first on sys.path. ``log`` takes
    the service's log (appended): a drill that runs for minutes must not leave it in a pipe nobody reads."""
    command = [str(ROOT / ".venv/bin/imgsearch"), "serve", "--port", str(port)]
    if checkout is not None:
        command = [sys.executable, "-m", "app.cli", "serve", "--port", str(port)]
        env = {**env, "PYTHONPATH": str(checkout)}
    process = subprocess.Popen(
        command,
        cwd=checkout,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=log.open("a") if log is not None else subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.5)
    process.kill()
    said = log.read_text(errors="replace")[-4000:] if log is not None else process.stderr.read()  # type: ignore[union-attr]
    raise RuntimeError("service did not start:\n" + said)


def measure_backend(name: str, metadata_url: str, work: Path, split: str, queries: list[str]) -> dict:
    port = free_port()
    env = {
        "IMGSEARCH_WEIGHTS": "random",
        "IMGSEARCH_DATA_DIR": str(work / name),
        "IMGSEARCH_DATA_ROOT": str(work / "datasets"),
        "IMGSEARCH_METADATA_URL": metadata_url,
        "IMGSEARCH_LOG_LEVEL": "WARNING",
    }
    process = run_service(env, port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            started = time.perf_counter()
            job_id = client.post("/img/load", json={"collection": "bench", "path": "split", "split": split}).json()[
                "job_id"
            ]
            while (job := client.get(f"/jobs/{job_id}").json())["state"] not in ("succeeded", "failed"):
                time.sleep(0.05)
            load_s = time.perf_counter() - started
            assert job["state"] == "succeeded" and job["failed"] == 0, job
            for text in queries[:5]:  # warm-up
                client.post("/img/search", json={"collection": "bench", "text": text, "top_k": 10})
            latencies = []
            for text in queries:
                t0 = time.perf_counter()
                response = client.post("/img/search", json={"collection": "bench", "text": text, "top_k": 10})
                latencies.append((time.perf_counter() - t0) * 1000)
                assert response.status_code == 200 and len(response.json()["hits"]) == 10
        return {"loaded": job["loaded"], "load_s": load_s, "latencies": latencies}
    finally:
        process.terminate()
        process.wait(timeout=30)


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--mysql", default="mysql+pymysql://root@127.0.0.1:3306/")
    parser.add_argument("--out", default=str(ROOT / "bench" / "RESULTS.md"))
    args = parser.parse_args()
    queries = [f"{QUERIES[i % len(QUERIES)]}{i}" for i in range(args.queries)]

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        split_dir = work / "datasets" / "split"
        generate_split(split_dir, "bench", args.images, encoder=None, seed=0)
        write_random_features(split_dir, "bench")
        with (split_dir / "bench_imgs.tsv").open() as tsv:
            size_kb = statistics.mean(len(base64.b64decode(line.split("\t")[1])) for line in tsv) / 1024
        floor_load = parse_floor(split_dir, "bench")
        floor_before = search_floor(split_dir, "bench", queries)

        database = f"imgsearch_bench_{os.getpid()}"
        results = {
            "sqlite": measure_backend("sqlite", f"sqlite:///{work / 'sqlite' / 'metadata.db'}", work, "bench", queries)
        }
        try:
            results["mysql"] = measure_backend("mysql", f"{args.mysql.rstrip('/')}/{database}", work, "bench", queries)
        finally:
            drop_database(database)
        # The floor is measured before and after the services, so machine drift shows up in both.
        floor_search = [min(a, b) for a, b in zip(floor_before, search_floor(split_dir, "bench", queries), strict=True)]

    lines = [
        "## core: load and text search (bench/core.py)",
        "",
        f"{run_header()} · {args.images} generated JPEGs (mean {size_kb:.1f} KB), 1024-d features · "
        "RN50 random weights · Milvus Lite, FLAT/IP",
        "",
        f"Floors in the same run: parse TSV + features {args.images / floor_load:,.0f} images/s; "
        f"encoder + numpy exact top-10 p50 {pct(floor_search, 50):.1f} ms, p99 {pct(floor_search, 99):.1f} ms.",
        "",
        "| metadata store | load images/s | load vs parse floor | search p50 ms | search p99 ms | p50 vs floor |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['loaded'] / r['load_s']:,.0f} | {r['load_s'] / floor_load:.2f}x slower | "
            f"{pct(r['latencies'], 50):.1f} | {pct(r['latencies'], 99):.1f} | "
            f"{pct(r['latencies'], 50) / pct(floor_search, 50):.2f}x |"
        )
    table = "\n".join(lines) + "\n"
    print(table)
    write_section("core", table, Path(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
