"""Cold start: seconds from starting `imgsearch serve` to the first answered `/img/search`, per backend.

    .venv/bin/python bench/cold_start.py [--runs 3]

A collection of 200 images (with feature files) is loaded once into the embedded defaults (Milvus Lite + SQLite);
each run starts a fresh process on a copy of that data folder and polls until a search returns 200:
- *torch*: IMGSEARCH_BACKEND=torch (imports PyTorch, builds the model);
- *onnx, export cached*: the default (auto) with the export already made: what every start after the first is;
- *onnx, first start*: the default (auto) with no export yet: loads PyTorch, exports, checks parity, serves.
Medians of ``--runs``. Floor (issue 11): ONNX with the export cached ≤ 0.5x torch.
Writes bench/RESULTS.md (section "cold-start").
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from core import free_port, run_service, write_random_features  # noqa: E402
from results_file import run_header, write_section  # noqa: E402
from search import load  # noqa: E402

from operations.ingest.sample_data import generate_split  # noqa: E402

CONFIGS = {"torch": "torch", "cached": "onnx, export cached", "first": "onnx, first start (exports)"}


def first_answer(data_dir: Path, datasets: Path, backend: str) -> float:
    port = free_port()
    env = {
        **os.environ,
        "IMGSEARCH_WEIGHTS": "random",
        "IMGSEARCH_DATA_DIR": str(data_dir),
        "IMGSEARCH_DATA_ROOT": str(datasets),
        "IMGSEARCH_LOG_LEVEL": "WARNING",
        "IMGSEARCH_BACKEND": backend,
    }
    started = time.perf_counter()
    process = subprocess.Popen(
        [str(ROOT / ".venv/bin/imgsearch"), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while time.perf_counter() - started < 300:
            try:
                response = httpx.post(
                    f"http://127.0.0.1:{port}/img/search", json={"collection": "c", "text": "海边的日落"}, timeout=30
                )
                if response.status_code == 200:
                    return time.perf_counter() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{backend}: no answer within 300 s")
    finally:
        process.terminate()
        process.wait(timeout=60)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in CONFIGS}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        datasets = work / "datasets"
        generate_split(datasets / "split", "bench", 200, encoder=None, seed=0)
        write_random_features(datasets / "split", "bench")
        seed_dir = work / "seed"
        port = free_port()
        env = {"IMGSEARCH_WEIGHTS": "random", "IMGSEARCH_DATA_DIR": str(seed_dir), "IMGSEARCH_DATA_ROOT": str(datasets)}
        process = run_service({**env, "IMGSEARCH_LOG_LEVEL": "WARNING"}, port)  # also makes the ONNX export
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
                client.post("/collections", json={"name": "c", "model": "RN50"})
            load(f"http://127.0.0.1:{port}", 200)
        finally:
            process.terminate()
            process.wait(timeout=60)
        for run in range(args.runs):
            for name in CONFIGS:  # interleaved, so drift hits all alike
                data_dir = work / f"run_{name}_{run}"
                shutil.copytree(seed_dir, data_dir)
                if name == "first":
                    shutil.rmtree(data_dir / "models" / "onnx")
                backend = "torch" if name == "torch" else "auto"
                times[name].append(first_answer(data_dir, datasets, backend))
                print(name, f"{times[name][-1]:.1f} s", flush=True)
                shutil.rmtree(data_dir)
    median = {name: statistics.median(values) for name, values in times.items()}
    ratio = median["cached"] / median["torch"]
    lines = [
        "## cold-start: process start to the first answered search (bench/cold_start.py)",
        "",
        f"{run_header()} · RN50 random weights · `imgsearch serve` on the embedded defaults (Milvus Lite + SQLite) "
        f"with a 200-image collection · from spawning the process to the first `/img/search` that returns 200 · "
        f"median of {args.runs} runs, interleaved",
        "",
        "| backend | median s | runs s |",
        "|---|---|---|",
    ]
    for name, label in CONFIGS.items():
        lines.append(f"| {label} | {median[name]:.1f} | {', '.join(f'{t:.1f}' for t in times[name])} |")
    lines += [
        "",
        f"- ONNX with the export cached starts in **{ratio:.2f}x** the time of torch (floor ≤ 0.5x); the first start "
        f"on ONNX, which makes the export, takes {median['first'] / median['torch']:.2f}x torch's.",
    ]
    table = "\n".join(lines)
    print(table)
    write_section("cold-start", table)
    return 0 if ratio <= 0.5 else 1


if __name__ == "__main__":
    raise SystemExit(main())
