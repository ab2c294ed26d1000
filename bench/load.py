"""Load benchmark: `/img/load` of 3k and 30k generated images (~20 KB JPEGs, features present) into real MySQL
and the embedded Milvus Lite, and into real MySQL and a real Milvus server (PyPI `milvus` 2.3.5 as a local
process), through the real service (uvicorn), both in the same run. Reports images/s and the service's peak RSS
(sampled during the load, and that of Milvus), so the streaming claim is measured; for the server, also how long
after the load every row is indexed and served from the index.

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
from pymilvus import MilvusClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from core import drop_database, free_port, parse_floor, run_service, write_random_features  # noqa: E402
from results_file import run_header, write_section  # noqa: E402

from operations.ingest.sample_data import generate_split  # noqa: E402
from tests.milvus_server import LocalMilvusServer  # noqa: E402


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def children(pid: int) -> list[int]:
    """Child processes started from any thread (Milvus Lite's server is started from a worker thread)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):  # the thread ended meanwhile
            continue
    return found


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    found = [pid]
    for child in children(pid):
        found += tree(child)
    return found


def tree_mb(pid: int, field: str = "VmRSS") -> float:
    """Memory of a process and its descendants: ``VmRSS`` now, or ``VmHWM`` (each process's own peak, summed)."""
    total = 0.0
    for member in tree(pid):
        for line in Path(f"/proc/{member}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                total += int(line.split()[1]) / 1024
    return total


# Milvus builds no index on a segment of fewer rows (queryNode.segcore minSegmentNumRowsToEnableIndex, default).
UNINDEXED_BELOW = 1024


def loaded_segments(client: MilvusClient, collection: str) -> dict[int, tuple[int, bool]]:
    """The query node's sealed segments: id -> (rows, served from an index)."""
    return {s.segment_id: (s.num_rows, bool(s.index_name)) for s in client.list_loaded_segments(collection)}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its descendants so far."""
    total = 0.0
    for member in tree(pid):
        fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def wait_served(
    uri: str,
    collection: str,
    count: int,
    started: float,
    timeout: float = 3600,
    settle: float = 0,
    pid: int | None = None,
) -> dict:
    """After a flush at ``started`` (perf_counter): seconds until the server reports every row indexed
    (describe_index ``indexed_rows``), then until its query node serves them all from indexed segments (an indexed
    segment replaces the brute-force one a few seconds after its index is built; segments under 1,024 rows are
    never indexed). With ``settle``, then until the loaded segments have not changed for ``settle`` seconds and
    the server (``pid``) has used under 0.2 of a core over the last minute: the server merges small sealed
    segments in the background (compaction) and indexes the merged ones again before it swaps them in."""
    client = MilvusClient(uri=uri)
    result: dict = {}
    loads = []
    cpu: list[tuple[float, float]] = []
    try:
        while (now := time.perf_counter()) - started < timeout:
            loads.append(os.getloadavg()[0])
            result["load_build"] = sum(loads) / len(loads)  # the machine's mean 1-minute load average meanwhile
            if pid is not None:
                cpu.append((now, cpu_seconds(pid)))
            if "indexed_s" not in result:
                if int(client.describe_index(collection, "vector").get("indexed_rows", 0)) >= count:
                    result["indexed_s"] = now - started
            else:
                segments = loaded_segments(client, collection)
                served = sum(rows for rows, _ in segments.values()) >= count and all(
                    indexed or rows < UNINDEXED_BELOW for rows, indexed in segments.values()
                )
                if "served_s" not in result:
                    if served:
                        result.update(served_s=now - started, segments=len(segments), settled_s=now - started)
                        seen = segments
                elif segments != seen or not served:
                    seen, result["settled_s"] = segments, now - started
                    result["segments"] = len(segments)
                window = [c for c in cpu if c[0] >= now - 60]
                idle = pid is None or (
                    window[-1][0] - window[0][0] >= 50
                    and (window[-1][1] - window[0][1]) / (window[-1][0] - window[0][0]) < 0.2
                )
                if "served_s" in result and served and now - started - result["settled_s"] >= settle and idle:
                    result["idle_s"] = now - started
                    return result
            time.sleep(1 if settle else 0.5)
    finally:
        client.close()
    if "served_s" in result:  # served from indexes, but the server is still merging and re-indexing segments
        result["idle_s"] = None
        return result
    raise TimeoutError(f"{collection}: {count:,} rows not indexed and served within {timeout:.0f} s of the flush")


def wait_quiet(threshold: float, longest: float) -> float:
    """The CPU is shared with other work: wait (up to ``longest`` s) for the 1-minute load average to drop below
    ``threshold`` before timing searches. Returns the seconds waited."""
    started = time.perf_counter()
    while os.getloadavg()[0] >= threshold and time.perf_counter() - started < longest:
        time.sleep(5)
    return time.perf_counter() - started


def head(source: Path, target: Path, split: str, count: int) -> None:
    target.mkdir(parents=True)
    for suffix in ("_imgs.tsv", "_imgs.img_feat.jsonl"):
        with (source / f"bench{suffix}").open() as src, (target / f"{split}{suffix}").open("w") as out:
            out.writelines(itertools.islice(src, count))


def measure(work: Path, mysql_url: str, name: str, count: int, backend: str) -> dict:
    """One load into a fresh service, a fresh MySQL database and a fresh vector store (``lite`` or ``server``)."""
    database = f"imgsearch_bench_load_{os.getpid()}_{name}_{backend}"
    port = free_port()
    env = {
        "IMGSEARCH_WEIGHTS": "random",
        "IMGSEARCH_DATA_DIR": str(work / f"svc_{name}_{backend}"),
        "IMGSEARCH_DATA_ROOT": str(work / "datasets"),
        "IMGSEARCH_LOG_LEVEL": "WARNING",
        "IMGSEARCH_METADATA_URL": f"{mysql_url.rstrip('/')}/{database}",
    }
    server = LocalMilvusServer(work / f"milvus_{name}").start() if backend == "server" else None
    if server is not None:
        env["IMGSEARCH_MILVUS_URI"] = server.uri
    try:
        process = run_service(env, port)
        try:
            # The model's load at start-up sets the high-water mark, so RSS is sampled during the load instead.
            before = rss_mb(process.pid)
            milvus = tree(server.pid) if server is not None and server.pid else children(process.pid)
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
            result = {
                "backend": backend,
                "count": count,
                "seconds": seconds,
                "rate": count / seconds,
                "rss_start": before,
                "rss_peak": peak,
                "milvus_start": milvus_before,
                "milvus_peak": milvus_peak,
            }
            if server is not None:
                # The service's load ends with a flush; this one is a no-op then. Not part of the load's seconds.
                flushed = time.perf_counter()
                milvus_client = MilvusClient(uri=server.uri)
                milvus_client.flush("bench")
                milvus_client.close()
                result.update(wait_served(server.uri, "bench", count, flushed, timeout=1800))
                result["milvus_after"] = sum(rss_mb(c) for c in milvus)
            return result
        finally:
            process.terminate()
            process.wait(timeout=60)
            drop_database(database)
    finally:
        if server is not None:
            server.stop()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", type=int, default=3000)
    parser.add_argument("--large", type=int, default=30000)
    parser.add_argument("--backends", nargs="+", choices=("lite", "server"), default=["lite", "server"])
    parser.add_argument("--mysql", default="mysql+pymysql://root@127.0.0.1:3306/")
    parser.add_argument("--quiet-load", type=float, default=1.5, help="1-min load average to wait for before a load")
    parser.add_argument("--quiet-wait", type=float, default=300, help="longest wait for it, seconds")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        source = work / "source"
        generate_split(source, "bench", args.large, encoder=None, seed=0)
        write_random_features(source, "bench")
        size_mb = (source / "bench_imgs.tsv").stat().st_size / 2**20
        features_mb = (source / "bench_imgs.img_feat.jsonl").stat().st_size / 2**20
        floor_s = parse_floor(source, "bench")
        results = []
        for count in (args.small, args.large):
            head(source, work / "datasets" / f"n{count}", "bench", count)
            for backend in args.backends:  # alternate, so drift of the shared CPU hits both alike
                wait_quiet(args.quiet_load, args.quiet_wait)
                load_avg = os.getloadavg()[0]
                results.append(measure(work, args.mysql, f"n{count}", count, backend))
                results[-1]["load"] = max(load_avg, os.getloadavg()[0])
                print(results[-1], flush=True)
        # the floor again after the loads: the faster of the two counts, so drift counts against the floor
        floor_rate = args.large / min(floor_s, parse_floor(source, "bench"))
    names = {"lite": "Milvus Lite 2.5.1 (FLAT)", "server": "Milvus 2.3.5 server (HNSW 16/200)"}
    lines = [
        "## load: /img/load into MySQL + Milvus Lite or a Milvus server (bench/load.py)",
        "",
        f"{run_header()} · generated ~20 KB JPEGs with 1024-d features (the {args.large:,}-image split: "
        f"{size_mb:,.0f} MB TSV + {features_mb:,.0f} MB features) · MariaDB 10.11 (a fresh database per load) · "
        "Milvus Lite 2.5.1, or a Milvus 2.3.5 standalone server (PyPI `milvus`, a local process on the same 2 cores, "
        "a fresh one per load; the service's server default HNSW M 16 / efConstruction 200) · the service's own "
        "batches (the Milvus adapter sends 500-row upserts to Lite, 2,000-row ones to a server) · each size "
        "loaded into Lite, then into the server",
        "",
        "| vector store | images | seconds | images/s | service RSS before MB | service peak RSS during load MB "
        "| Milvus RSS before → peak MB | load avg |",
        "|---|---|---|---|---|---|---|---|",
        *(
            f"| {names[r['backend']]} | {r['count']:,} | {r['seconds']:.1f} | {r['rate']:,.0f} | "
            f"{r['rss_start']:.0f} | {r['rss_peak']:.0f} | {r['milvus_start']:.0f} → {r['milvus_peak']:.0f} | "
            f"{r['load']:.1f} |"
            for r in results
        ),
        "",
        f"Floor in the same run: reading and parsing the same {args.large:,}-line TSV + feature file without "
        f"storing anything (bench/core.py's parse floor), **{floor_rate:,.0f} images/s**.",
        "",
        f"Load avg: the machine's 1-minute load average, the higher of before and after the load (2 cores, shared "
        f"with other work; each load waits up to {args.quiet_wait:.0f} s for it to drop below {args.quiet_load}).",
        "",
    ]
    for backend in args.backends:
        small, large = (r for r in results if r["backend"] == backend)
        lines += [
            f"- {names[backend]}, {args.large:,} images: **{large['rate']:,.0f} images/s** (floor 1,000; "
            f"{large['rate'] / floor_rate:.0%} of the parse floor). Service "
            f"peak RSS during the load at {args.large:,} is **{large['rss_peak'] - small['rss_peak']:+.0f} MB** "
            f"against {args.small:,} (floor: at most +150 MB); during the {args.large:,} load it rose "
            f"{large['rss_peak'] - large['rss_start']:+.0f} MB over its own start."
        ]
    for r in results:
        if r["backend"] == "server":
            lines.append(
                f"- Server, {r['count']:,} images: after the load (whose last step is the flush), every row was "
                f"indexed {r['indexed_s']:.1f} s later and served from the index {r['served_s']:.1f} s later "
                f"({r['segments']} sealed segment(s); not counted in images/s: the load returns first and searches "
                f"work meanwhile, by brute force on unindexed segments); server RSS then {r['milvus_after']:,.0f} MB."
            )
    lite_rate = {r["count"]: r["rate"] for r in results if r["backend"] == "lite"}
    if "lite" in args.backends and "server" in args.backends:
        large_server = next(r for r in results if r["backend"] == "server" and r["count"] == args.large)
        lines.append(
            f"- Server vs Lite at {args.large:,}: **{large_server['rate'] / lite_rate[args.large]:.2f}x** the images/s."
        )
    table = "\n".join(lines)
    print(table)
    write_section("load", table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
