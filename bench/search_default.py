"""Fast by default: `/img/search` with today's default configuration against the old default, at 30k images.

    .venv/bin/python bench/search_default.py [--images 30000 --queries 300 --seconds 20 --old 9bd6caf]

Three services over HTTP (real uvicorn), each on the embedded defaults (Milvus Lite + SQLite) with RN50 random
weights and the same 30k generated images and feature files, all up at once:
- *default*: this checkout with its default settings (ONNX Runtime, exported on first use; concurrent queries
  share encoder passes, vector searches and metadata queries);
- *default, micro-batching off*: the same with IMGSEARCH_MICROBATCH_MAX_SIZE=1 (a lone query must not be slower
  with batching on);
- *old default*: the service as of commit ``--old`` (a git worktree of it, the same virtualenv): PyTorch,
  encoder micro-batching, one Milvus search and one metadata query per request.
The split is loaded with its captions, so every image has words: the default (no ``mode``) must stay Chinese-CLIP's
ranking whatever words a collection has, and *default, hybrid* is the same service asked ``mode: hybrid``.
1-client passes alternate between the services (two passes each), then 8 clients for ``--seconds`` each.
The floor: the fastest encoder (the default's ONNX export, in this process) + numpy exact top-10 over the same
vectors, measured before and after the services (the faster of the two per query, so drift counts against it).

Floors (issues 11 and 29): default p50 ≤ 0.6x the old default's and ≤ 1.4x the floor; 8 clients ≥ 3x the old
default's queries/s with p99 ≤ 0.5x; default's 1-client p50 not above batching-off's beyond noise; every default
response says mode "semantic". Hybrid is reported beside it (bench/words.py holds its floors).
Writes bench/RESULTS.md (section "search-default").
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # see bench/core.py

import argparse
import statistics
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

from core import QUERIES, free_port, pct, run_service, write_random_features  # noqa: E402
from load import wait_quiet  # noqa: E402
from results_file import run_header, write_section  # noqa: E402
from search import load, many_clients, one_client  # noqa: E402

from adapters.encoders.clip_onnx import OnnxClipEncoder  # noqa: E402
from operations.ingest.flickr_format import FeatureFile, iter_tsv  # noqa: E402
from operations.ingest.sample_data import generate_split  # noqa: E402

NAMES = {
    "default": "default (ONNX, batched searches)",
    "hybrid": "default, mode hybrid",
    "off": "default, micro-batching off",
    "old": "old default",
}
SERVICES = ("default", "off", "old")
PARTS = ("encode", "vector_search", "keyword_search", "metadata_fetch", "serialisation", "http")
MODE = {"hybrid": "hybrid"}  # the run asks this mode; the others name none


def _texts(queries: list[str], tag: str) -> list[str]:
    return [f"{query}{tag}" for query in queries]


def onnx_floor(split: Path, queries: list[str], onnx_root: Path) -> list[float]:
    features = FeatureFile(split / "bench_imgs.img_feat.jsonl", 1024)
    ids = [row.image_id for row in iter_tsv(split / "bench_imgs.tsv")]
    matrix = np.stack([features.get(i) for i in ids])
    features.close()
    encoder = OnnxClipEncoder("RN50", onnx_root)
    for text in queries[:10]:
        encoder.encode_text([text])
    times = []
    for text in queries:
        started = time.perf_counter()
        vector = encoder.encode_text([text])[0]
        _ = [ids[i] for i in np.argpartition(-(matrix @ vector), 10)[:10]]
        times.append((time.perf_counter() - started) * 1000)
    encoder.close()
    return times


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=30000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--old", default="9bd6caf", help="commit of the old default (before issue 11)")
    parser.add_argument("--quiet-load", type=float, default=1.5)
    parser.add_argument("--quiet-wait", type=float, default=600)
    args = parser.parse_args()
    queries = [f"{QUERIES[i % len(QUERIES)]}{i}" for i in range(args.queries)]
    single: dict[str, list[dict[str, float]]] = {name: [] for name in NAMES}
    many: dict[str, tuple[float, list[float], int]] = {}  # every request a new text
    repeated: dict[str, tuple[float, list[float], int]] = {}  # the 300 texts again lap after lap
    load_s: dict[str, float] = {}
    started_s: dict[str, float] = {}

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        worktree = work / "old"
        subprocess.run(["git", "worktree", "add", "--detach", str(worktree), args.old], cwd=ROOT, check=True)
        processes = []
        try:
            split = work / "datasets" / "split"
            generate_split(split, "bench", args.images, encoder=None, seed=0)
            write_random_features(split, "bench")
            urls = {}
            for name in SERVICES:
                port = free_port()
                env = {
                    "IMGSEARCH_WEIGHTS": "random",
                    "IMGSEARCH_DATA_DIR": str(work / f"svc_{name}"),
                    "IMGSEARCH_DATA_ROOT": str(work / "datasets"),
                    "IMGSEARCH_LOG_LEVEL": "WARNING",
                }
                if name == "off":
                    env["IMGSEARCH_MICROBATCH_MAX_SIZE"] = "1"
                begun = time.perf_counter()
                process = run_service(env, port, checkout=worktree if name == "old" else None)
                started_s[name] = time.perf_counter() - begun
                processes.append(process)
                urls[name] = f"http://127.0.0.1:{port}"
                load_s[name] = load(urls[name], args.images)
            urls = {name: urls["default" if name == "hybrid" else name] for name in NAMES}
            with httpx.Client(base_url=urls["default"], timeout=60) as http:
                asked = http.post("/img/search", json={"collection": "bench", "text": queries[0], "top_k": 10})
                assert asked.json()["mode"] == "semantic", asked.text  # the loaded captions do not change it
            onnx_root = work / "svc_default" / "models" / "onnx"
            floor_before = onnx_floor(split, queries, onnx_root)
            waited = wait_quiet(args.quiet_load, args.quiet_wait)
            # Each run asks texts of its own (a suffix): a service's memory of search texts never answers a run
            # with what an earlier one encoded.
            for name, url in urls.items():
                with httpx.Client(base_url=url, timeout=60) as http:
                    one_client(http, _texts(queries[:20], f"w{name}"), MODE.get(name))  # warm-up
            for round_no in range(2):  # alternate, so drift of the shared CPU hits all alike
                for name, url in urls.items():
                    with httpx.Client(base_url=url, timeout=60) as http:
                        single[name] += one_client(http, _texts(queries, f"{round_no}{name}"), MODE.get(name))
            for name, url in urls.items():
                asked = _texts(queries, f"m{name}")
                many[name] = many_clients(url, asked, args.clients, args.seconds, MODE.get(name))
                asked = _texts(queries, f"r{name}")
                repeated[name] = many_clients(url, asked, args.clients, args.seconds, MODE.get(name), fresh=False)
            floor = [min(a, b) for a, b in zip(floor_before, onnx_floor(split, queries, onnx_root), strict=True)]
        finally:
            for process in processes:
                process.terminate()
                process.wait(timeout=60)
            subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=ROOT, check=False)

    total = {name: [s["total"] for s in samples] for name, samples in single.items()}
    p50 = {name: pct(values, 50) for name, values in total.items()}
    qps = {name: len(m[1]) / m[0] for name, m in many.items()}
    qps_repeated = {name: len(m[1]) / m[0] for name, m in repeated.items()}
    p99_many = {name: pct(m[1], 99) for name, m in many.items()}
    errors = sum(m[2] for m in [*many.values(), *repeated.values()])
    lines = [
        "## search-default: today's default configuration against the old default (bench/search_default.py)",
        "",
        f"{run_header()} · {args.images:,} generated JPEGs with 1024-d feature files · RN50 random weights · the "
        "embedded defaults (Milvus Lite 2.5.1 FLAT + SQLite), one uvicorn process each, all three up at once · "
        f"old default = commit {args.old} (PyTorch, encoder micro-batching, a Milvus search and a metadata query "
        f"per request) · {args.queries} distinct Chinese queries, 1-client figures pool two alternating passes "
        f"({2 * args.queries} requests each, every text new to the service), then {args.clients} clients for "
        f"{args.seconds:.0f} s each twice: the texts repeating lap after lap, and every request a new text · the "
        f"split is loaded with its captions · waited {waited:.0f} s for a quiet machine",
        "",
        "| service | start → ready s | load of 30k, images/s | 1 client p50 ms | 1 client p99 ms | "
        f"{args.clients} clients queries/s, texts repeating / all new | {args.clients} clients p99 ms (all new) | "
        "errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, label in NAMES.items():
        service = "default" if name == "hybrid" else name
        lines.append(
            f"| {label} | {started_s[service]:.1f} | {args.images / load_s[service]:,.0f} | {p50[name]:.1f} | "
            f"{pct(total[name], 99):.1f} | {qps_repeated[name]:.1f} / {qps[name]:.1f} | {p99_many[name]:.0f} | "
            f"{many[name][2] + repeated[name][2]} |"
        )
    lines += [
        "",
        "Where the time goes at 1 client (median ms per stage; the service reports the first four in "
        "`timings_ms`, its total in `Server-Timing`; hybrid reads its keyword list beside encode and vector search, "
        "so serialisation is the service's time less the longer of the two and the metadata fetch):",
        "",
        "| stage | " + " | ".join(NAMES.values()) + " |",
        "|---|" + "---|" * len(NAMES),
    ]
    for part in PARTS:
        cells = [f"{statistics.median(s[part] for s in single[name]):.1f}" for name in NAMES]
        lines.append(f"| {part.replace('_', ' ')} | {' | '.join(cells)} |")
    ratios = {
        "p50_vs_old": p50["default"] / p50["old"],
        "p50_vs_floor": p50["default"] / pct(floor, 50),
        "qps_vs_old": qps_repeated["default"] / qps_repeated["old"],
        "qps_new_vs_old": qps["default"] / qps["old"],
        "hybrid_vs_default": p50["hybrid"] / p50["default"],
        "p99_vs_old": p99_many["default"] / p99_many["old"],
        "lone_vs_off": p50["default"] / p50["off"],
    }
    lines += [
        "",
        f"Floor in the same run: the default's ONNX text encoder + numpy exact top-10 over the same "
        f"{args.images:,} vectors, p50 {pct(floor, 50):.1f} ms, p99 {pct(floor, 99):.1f} ms.",
        f"- 1 client: default p50 **{ratios['p50_vs_old']:.2f}x** the old default's (floor ≤ 0.6x) and "
        f"**{ratios['p50_vs_floor']:.2f}x** the floor (≤ 1.4x); every answer without a mode said `semantic`.",
        f"- {args.clients} clients asking the {args.queries} texts lap after lap (as the floor was set): "
        f"**{ratios['qps_vs_old']:.2f}x** the old default's queries/s (floor ≥ 3x); every request a new text: "
        f"{ratios['qps_new_vs_old']:.2f}x; p99 **{ratios['p99_vs_old']:.2f}x** (≤ 0.5x).",
        f"- A lone query: default p50 {ratios['lone_vs_off']:.2f}x that with micro-batching off (same run).",
        f"- Hybrid on the same service, 1 client: p50 {ratios['hybrid_vs_default']:.2f}x the default's; "
        f"{args.clients} clients {qps['hybrid']:.1f} queries/s.",
    ]
    table = "\n".join(lines)
    print(table)
    write_section("search-default", table)
    ok = (
        ratios["p50_vs_old"] <= 0.6
        and ratios["p50_vs_floor"] <= 1.4
        and ratios["qps_vs_old"] >= 3.0
        and ratios["p99_vs_old"] <= 0.5
        and errors == 0
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
