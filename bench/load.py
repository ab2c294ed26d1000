"""Load benchmark: `/img/load` of 3k and 30k generated images (~20 KB JPEGs, features present) into real MySQL
and the embedded Milvus Lite, through the real service (uvicorn). Reports images/s and the service's peak RSS
(VmHWM of the server process, and of its Milvus Lite child), so the streaming claim is measured.

    .venv/bin/python bench/load.py [--small 3000 --large 30000]        (part of `make bench`)

Floors (issue 5): ≥ 1,000 images/s at 30k; peak RSS at 30k ≤ 150 MB above that at 3k.
Writes bench/RESULTS.md (section "load").
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # see bench/core.py

import argparse
import itertools
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from core import drop_database, free_port, run_service, write_random_features  # noqa: E402
from results_file import run_header, write_section  # noqa: E402

from operations.sample_data import generate_split  # noqa: E402


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def children(pid: int) -> list[int]:
    """Child processes started from any thread (Milvus Lite's server is started from a worker thread)."""
    return [int(c) for task in Path(f"/proc/{pid}/task").iterdir() for c in (task / "children").read_text().split()]


def head(source: Path, target: Path, split: str, count: int) -> None:
    target.mkdir(parents=True)
    for suffix in ("_imgs.tsv", "_imgs.img_feat.jsonl"):
        with (source / f"bench{suffix}").open() as src, (target / f"{split}{suffix}").open("w") as out:
            out.writelines(itertools.islice(src, count))


def measure(work: Path, mysql_url: str, name: str, count: int) -> dict:
    database = f"imgsearch_bench_load_{os.getpid()}_{name}"
    port = free_port()
    env = {
        "IMGSEARCH_WEIGHTS": "random",
        "IMGSEARCH_DATA_DIR": str(work / f"svc_{name}"),
        "IMGSEARCH_DATA_ROOT": str(work / "datasets"),
        "IMGSEARCH_LOG_LEVEL": "WARNING",
        "IMGSEARCH_METADATA_URL": f"{mysql_url.rstrip('/')}/{database}",
    }
    process = run_service(env, port)
    try:
        # The model's load at start-up sets the high-water mark, so RSS is sampled during the load instead.
        before = rss_mb(process.pid)
        milvus = children(process.pid)
        milvus_before = sum(rss_mb(c) for c in milvus)
        peak, milvus_peak = before, milvus_before
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            started = time.perf_counter()
            job = client.post("/img/load", json={"collection": "bench", "path": name, "split": "bench"}).json()
            while (state := client.get(f"/jobs/{job['job_id']}").json())["state"] not in ("succeeded", "failed"):
                peak = max(peak, rss_mb(process.pid))
                milvus_peak = max(milvus_peak, sum(rss_mb(c) for c in milvus))
                time.sleep(0.1)
            seconds = time.perf_counter() - started
        assert state["state"] == "succeeded" and state["loaded"] == count, state
        return {
            "count": count,
            "seconds": seconds,
            "rate": count / seconds,
            "rss_start": before,
            "rss_peak": peak,
            "milvus_start": milvus_before,
            "milvus_peak": milvus_peak,
        }
    finally:
        process.terminate()
        process.wait(timeout=60)
        drop_database(database)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", type=int, default=3000)
    parser.add_argument("--large", type=int, default=30000)
    parser.add_argument("--mysql", default="mysql+pymysql://root@127.0.0.1:3306/")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        source = work / "source"
        generate_split(source, "bench", args.large, encoder=None, seed=0)
        write_random_features(source, "bench")
        size_mb = (source / "bench_imgs.tsv").stat().st_size / 2**20
        features_mb = (source / "bench_imgs.img_feat.jsonl").stat().st_size / 2**20
        results = []
        for count in (args.small, args.large):
            head(source, work / "datasets" / f"n{count}", "bench", count)
            results.append(measure(work, args.mysql, f"n{count}", count))
    small, large = results
    lines = [
        "## load: /img/load into MySQL + Milvus Lite (bench/load.py)",
        "",
        f"{run_header()} · generated ~20 KB JPEGs with 1024-d features (the {args.large:,}-image split: "
        f"{size_mb:,.0f} MB TSV + {features_mb:,.0f} MB features) · MariaDB 10.11 · Milvus Lite 2.5.1",
        "",
        "| images | seconds | images/s | service RSS before MB | service peak RSS during load MB "
        "| Milvus Lite RSS before → peak MB |",
        "|---|---|---|---|---|---|",
        *(
            f"| {r['count']:,} | {r['seconds']:.1f} | {r['rate']:,.0f} | {r['rss_start']:.0f} | {r['rss_peak']:.0f} "
            f"| {r['milvus_start']:.0f} → {r['milvus_peak']:.0f} |"
            for r in results
        ),
        "",
        f"- {args.large:,} images: **{large['rate']:,.0f} images/s** (floor 1,000).",
        f"- Service peak RSS during the load at {args.large:,} is **{large['rss_peak'] - small['rss_peak']:+.0f} MB** "
        f"against {args.small:,} (floor: at most +150 MB); during the {args.large:,} load it rose "
        f"{large['rss_peak'] - large['rss_start']:+.0f} MB over its own start.",
    ]
    table = "\n".join(lines)
    print(table)
    write_section("load", table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
