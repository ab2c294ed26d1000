"""Search benchmark: `/img/search` over HTTP (real uvicorn) on 30k generated images in real MySQL, with the
embedded Milvus Lite and with a real Milvus server (PyPI `milvus` 2.3.5 as a local process, HNSW, the service's
server default) side by side in the same run: 1 client (p50, p99) and 8 clients (queries/s), time split by stage.

    .venv/bin/python bench/search.py [--images 30000 --queries 300 --seconds 20]     (part of `make bench`)

Both services run at once (each with its own fresh MySQL database) and the 1-client passes alternate
Lite, server, Lite, server, so both see the same machine (the CPU is shared).
Floors, measured in the same run on the same vectors: (1) Lite: service p50 at 1 client ≤ 1.5x the same encoder on
the same text + numpy exact top-10 (best of a run before and a run after the services, so machine drift counts
against the floor, not for it); (2) server p50 at 1 client ≤ 1.1x Lite's. Writes bench/RESULTS.md (section
"search").
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
from load import wait_quiet, wait_served  # noqa: E402
from pymilvus import MilvusClient  # noqa: E402
from results_file import run_header, write_section  # noqa: E402

from operations.ingest.sample_data import generate_split  # noqa: E402
from tests.milvus_server import running_milvus_server  # noqa: E402

STAGES = ("encode", "vector_search", "keyword_search", "metadata_fetch")
SERVER_EF = 128  # the service's default (IMGSEARCH_SEARCH_EF), set explicitly so the table says what ran


def app_ms(response: httpx.Response) -> float:
    """The service's own time for the request, from its ``Server-Timing: app;dur=…`` header."""
    for part in response.headers.get("server-timing", "").split(","):
        name, _, duration = part.strip().partition(";dur=")
        if name == "app":
            return float(duration)
    raise ValueError("response has no Server-Timing app entry")


def one_client(client: httpx.Client, queries: list[str], mode: str | None = None) -> list[dict[str, float]]:
    """Per request: the total, each stage the service names (keyword_search runs beside encode and vector_search,
    so only what it adds beyond them counts towards the service's time), the rest of the service's time
    (serialisation) and HTTP."""
    samples = []
    for text in queries:
        started = time.perf_counter()
        response = client.post("/img/search", json=_body(text, mode))
        total = (time.perf_counter() - started) * 1000
        assert response.status_code == 200 and len(response.json()["hits"]) == 10, response.text
        assert response.json().get("mode") in (None, mode or "semantic"), response.text  # None: before modes
        stages = {stage: response.json()["timings_ms"].get(stage, 0.0) for stage in STAGES}
        service = app_ms(response)
        accounted = max(stages["encode"] + stages["vector_search"], stages["keyword_search"]) + stages["metadata_fetch"]
        samples.append({"total": total, **stages, "serialisation": service - accounted, "http": total - service})
    return samples


def _body(text: str, mode: str | None) -> dict:
    return {"collection": "bench", "text": text, "top_k": 10} | ({"mode": mode} if mode else {})


def many_clients(
    base_url: str, queries: list[str], clients: int, seconds: float, mode: str | None = None, fresh: bool = True
) -> tuple[float, list[float], int]:
    """``clients`` threads asking in turn for ``seconds``; ``fresh``: every request a text of its own (past the
    first lap, a suffix), else the texts repeat lap after lap as users repeat searches (a service that remembers
    search texts answers those without its encoder)."""
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
                lap = i // len(queries)
                text = queries[i % len(queries)] + (f"~{lap}" if lap and fresh else "")
                response = client.post("/img/search", json=_body(text, mode))
                with lock:
                    latencies.append((time.perf_counter() - started) * 1000)
                    errors += response.status_code != 200
                i += clients

    return for_seconds(clients, worker), latencies, errors


def start(work: Path, name: str, database: str, args: argparse.Namespace, extra: dict[str, str]) -> tuple:
    port = free_port()
    env = {
        "IMGSEARCH_WEIGHTS": "random",
        "IMGSEARCH_DATA_DIR": str(work / f"svc_{name}"),
        "IMGSEARCH_DATA_ROOT": str(work / "datasets"),
        "IMGSEARCH_METADATA_URL": f"{args.mysql.rstrip('/')}/{database}",
        "IMGSEARCH_LOG_LEVEL": "WARNING",
        **extra,
    }
    return run_service(env, port), f"http://127.0.0.1:{port}"


def load(base_url: str, images: int) -> float:
    with httpx.Client(base_url=base_url, timeout=60) as client:
        started = time.perf_counter()
        job = client.post("/img/load", json={"collection": "bench", "path": "split", "split": "bench"}).json()
        while (state := client.get(f"/jobs/{job['job_id']}").json())["state"] not in ("succeeded", "failed"):
            time.sleep(0.2)
        assert state["state"] == "succeeded" and state["loaded"] == images, state
        return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=30000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--mysql", default="mysql+pymysql://root@127.0.0.1:3306/")
    parser.add_argument("--quiet-load", type=float, default=1.5, help="1-min load average to wait for before timing")
    parser.add_argument("--quiet-wait", type=float, default=600, help="longest wait for it, seconds")
    args = parser.parse_args()
    queries = [f"{QUERIES[i % len(QUERIES)]}{i}" for i in range(args.queries)]
    databases = {name: f"imgsearch_bench_search_{os.getpid()}_{name}" for name in ("lite", "server")}
    single: dict[str, list[dict[str, float]]] = {"lite": [], "server": []}
    many: dict[str, tuple[float, list[float], int]] = {}
    processes = []

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        split_dir = work / "datasets" / "split"
        generate_split(split_dir, "bench", args.images, encoder=None, seed=0)
        write_random_features(split_dir, "bench")
        floor_before = search_floor(split_dir, "bench", queries)
        try:
            with running_milvus_server(work / "milvus") as server:
                try:
                    lite, lite_url = start(work, "lite", databases["lite"], args, {})
                    processes.append(lite)
                    to_server = {"IMGSEARCH_MILVUS_URI": server.uri, "IMGSEARCH_SEARCH_EF": str(SERVER_EF)}
                    served, server_url = start(work, "server", databases["server"], args, to_server)
                    processes.append(served)
                    urls = {"lite": lite_url, "server": server_url}
                    load_s = {"lite": load(lite_url, args.images), "server": load(server_url, args.images)}
                    # The service's load ends with a flush; this one is a no-op then, and seals the data otherwise.
                    flushed = time.perf_counter()
                    client = MilvusClient(uri=server.uri)
                    client.flush("bench")
                    index = client.describe_index("bench", "vector")
                    client.close()
                    ready = wait_served(server.uri, "bench", args.images, flushed, timeout=1800)
                    waited = wait_quiet(args.quiet_load, args.quiet_wait)
                    for url in urls.values():
                        with httpx.Client(base_url=url, timeout=60) as http:
                            one_client(http, queries[:20])  # warm-up, as the floor's encoder gets
                    for _ in range(2):  # alternate, so drift of the shared CPU hits both alike
                        for name, url in urls.items():
                            with httpx.Client(base_url=url, timeout=60) as http:
                                single[name] += one_client(http, queries)
                    load_avg = os.getloadavg()[0]
                    for name, url in urls.items():
                        many[name] = many_clients(url, queries, args.clients, args.seconds)
                finally:  # the services go before the server they use
                    for process in processes:
                        process.terminate()
                        process.wait(timeout=60)
        finally:
            for database in databases.values():
                drop_database(database)
        floor = [min(a, b) for a, b in zip(floor_before, search_floor(split_dir, "bench", queries), strict=True)]

    total = {name: [s["total"] for s in samples] for name, samples in single.items()}
    ratio = pct(total["lite"], 50) / pct(floor, 50)
    server_ratio = pct(total["server"], 50) / pct(total["lite"], 50)
    errors = sum(m[2] for m in many.values())
    parts = ("encode", "vector_search", "metadata_fetch", "serialisation", "http")
    labels = {
        "encode": "text encode (micro-batched)",
        "vector_search": "vector search",
        "metadata_fetch": "metadata fetch (MySQL)",
        "serialisation": "validation, serialisation, framework",
        "http": "HTTP and client",
    }
    backends = {"lite": "Milvus Lite 2.5.1, FLAT", "server": f"Milvus 2.3.5 server, HNSW ef {SERVER_EF}"}
    lines = [
        "## search: /img/search at scale (bench/search.py)",
        "",
        f"{run_header()} · {args.images:,} generated JPEGs, 1024-d features · RN50 random weights, torch · "
        f"MariaDB 10.11 (a fresh database per service) · uvicorn, {args.queries} distinct Chinese queries · "
        "vectors in Milvus Lite 2.5.1 (FLAT/IP, the Lite default) and in a Milvus 2.3.5 standalone server (PyPI "
        f"`milvus`, a local process on the same 2 cores; HNSW {index.get('M')}/{index.get('efConstruction')} IP, "
        f"searched at ef {SERVER_EF} with Session consistency: the server defaults) · both services up at once; "
        f"1-client figures pool two alternating passes per backend ({2 * args.queries} requests each)",
        "",
        f"Server: loaded in {load_s['server']:.1f} s (Lite {load_s['lite']:.1f} s); every row indexed "
        f"{ready['indexed_s']:.1f} s and served from the index {ready['served_s']:.1f} s after the load "
        f"({ready['segments']} sealed segment(s)); timing starts after that, once the machine's 1-minute load "
        f"average is below {args.quiet_load} (waited {waited:.0f} s; other work shares the 2 cores; "
        f"{load_avg:.1f} after the 1-client passes).",
        "",
        "| vector store | clients | requests | p50 ms | p99 ms | queries/s | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in ("lite", "server"):
        elapsed, latencies, failed = many[name]
        lines += [
            f"| {backends[name]} | 1 | {len(total[name])} | {pct(total[name], 50):.1f} | {pct(total[name], 99):.1f} "
            f"| {len(total[name]) / (sum(total[name]) / 1000):.1f} | 0 |",
            f"| {backends[name]} | {args.clients} | {len(latencies)} | {pct(latencies, 50):.1f} | "
            f"{pct(latencies, 99):.1f} | {len(latencies) / elapsed:.1f} | {failed} |",
        ]
    lines += [
        "",
        "Where the time goes at 1 client (median per stage; the service reports the first three in `timings_ms`, "
        "its total in `Server-Timing`):",
        "",
        "| stage | Lite median ms | Lite share of p50 | server median ms | server share of p50 |",
        "|---|---|---|---|---|",
    ]
    for part in parts:
        cells = []
        for name in ("lite", "server"):
            median = statistics.median(s[part] for s in single[name])
            cells.append(f"{median:.1f} | {median / pct(total[name], 50):.0%}")
        lines.append(f"| {labels[part]} | {' | '.join(cells)} |")
    lines += [
        "",
        f"Floor in the same run: encoder + numpy exact top-10 over the same {args.images:,} vectors, p50 "
        f"{pct(floor, 50):.1f} ms, p99 {pct(floor, 99):.1f} ms.",
        f"- Lite: service p50 at 1 client is **{ratio:.2f}x** the floor (floor: at most 1.5x).",
        f"- Server: service p50 at 1 client is **{server_ratio:.2f}x** Lite's (floor: at most 1.1x); p99 "
        f"{pct(total['server'], 99) / pct(total['lite'], 99):.2f}x.",
    ]
    table = "\n".join(lines)
    print(table)
    write_section("search", table)
    return 0 if ratio <= 1.5 and server_ratio <= 1.1 and errors == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
