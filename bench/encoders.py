"""Encoder benchmark: torch vs ONNX Runtime (fp32 and int8) for RN50 and ViT-B-16 (text ms/query at batch 1 and
32, images/s at batch 1 and 16), what int8 costs (cosines, top-10 overlap on a sample split), batched ONNX
ingest vs per-image torch ingest, and /img/search throughput over HTTP (real uvicorn) at 1 and 8 clients with
micro-batching off and on. Every ratio is against a baseline measured in the same run.

    .venv/bin/python bench/encoders.py          (part of `make bench`; ~8 minutes on 2 cores)

Writes bench/RESULTS.md (section "encoders").
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
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from core import free_port, run_service, write_random_features  # noqa: E402
from ingest import ingest_rate, make_folder  # noqa: E402
from results_file import run_header, write_section  # noqa: E402

from adapters.encoders.clip_encoder import ChineseClipEncoder  # noqa: E402
from adapters.encoders.clip_onnx import OnnxClipEncoder  # noqa: E402
from adapters.encoders.encoder_base import EncoderBase  # noqa: E402
from operations.ingest.sample_data import generate_split  # noqa: E402
from operations.models.export_onnx import export  # noqa: E402
from tests.imagefiles import picture  # noqa: E402

TEXT = "一个穿着蓝色游泳裤的男孩在水里滑滑梯"


def best_ms(fn, repeats: int) -> float:  # type: ignore[no-untyped-def]
    """Median of ``repeats`` timed calls after two warm-ups, in milliseconds."""
    fn()
    fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def encoder_rows(name: str, encoders: dict[str, EncoderBase], quick: bool) -> list[dict]:
    texts = [f"{TEXT}{i}" for i in range(32)]
    pictures = [picture(i) for i in range(16)]
    rows = []
    for backend, encoder in encoders.items():
        pixels = [encoder.preprocess(p) for p in pictures]
        rows.append(
            {
                "model": name,
                "backend": backend,
                "text_b1_ms": best_ms(lambda e=encoder: e.encode_text(texts[:1]), 5 if quick else 20),
                "text_b32_ms_item": best_ms(lambda e=encoder: e.encode_text(texts), 3) / 32,
                "image_b1_per_s": 1000 / best_ms(lambda e=encoder, p=pixels: e.encode_pixels(p[:1]), 3 if quick else 8),
                "image_b16_per_s": 16000 / best_ms(lambda e=encoder, p=pixels: e.encode_pixels(p), 3),
            }
        )
    return rows


def int8_cost(name: str, fp32: EncoderBase, int8: EncoderBase, work: Path, images: int) -> dict:
    """What int8 changes: vector cosines and top-10 overlap of searches on a generated split."""
    from adapters.images import decode_rgb
    from operations.ingest.flickr_format import iter_jsonl, iter_tsv

    split = work / f"overlap_{name}"
    generate_split(split, "s", images, encoder=None, seed=3)
    pictures = [decode_rgb(row.data, 10**8) for row in iter_tsv(split / "s_imgs.tsv")]
    texts = [entry["text"] for entry in iter_jsonl(split / "s_texts.jsonl")][:500]
    vectors = {}
    for label, encoder in (("fp32", fp32), ("int8", int8)):
        vectors[label] = (
            encoder.encode_text(texts),
            np.concatenate([encoder.encode_images(pictures[i : i + 16]) for i in range(0, len(pictures), 16)]),
        )

    def top10(text_vectors: np.ndarray, image_vectors: np.ndarray) -> list[set[int]]:
        scores = text_vectors @ image_vectors.T
        return [set(np.argpartition(-row, 10)[:10]) for row in scores]

    reference = top10(*vectors["fp32"])
    text_only = top10(vectors["int8"][0], vectors["fp32"][1])
    both = top10(*vectors["int8"])
    text_cos = (vectors["int8"][0] * vectors["fp32"][0]).sum(axis=1)
    image_cos = (vectors["int8"][1] * vectors["fp32"][1]).sum(axis=1)
    return {
        "model": name,
        "text_min": float(text_cos.min()),
        "text_mean": float(text_cos.mean()),
        "image_min": float(image_cos.min()),
        "image_mean": float(image_cos.mean()),
        "overlap_text": float(np.mean([len(a & b) / 10 for a, b in zip(reference, text_only, strict=True)])),
        "overlap_both": float(np.mean([len(a & b) / 10 for a, b in zip(reference, both, strict=True)])),
    }


def search_throughput(work: Path, env: dict[str, str], clients: int, seconds: float) -> float:
    port = free_port()
    process = run_service({**env, "IMGSEARCH_DATA_DIR": str(work / f"svc{port}")}, port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            job = client.post("/img/load", json={"collection": "b", "path": "split", "split": "bench"}).json()
            while client.get(f"/jobs/{job['job_id']}").json()["state"] not in ("succeeded", "failed"):
                time.sleep(0.1)
            for i in range(5):
                client.post("/img/search", json={"collection": "b", "text": f"{TEXT}{i}"})
        done = [0] * clients
        deadline = time.monotonic() + seconds

        def worker(index: int) -> None:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
                while time.monotonic() < deadline:
                    text = f"{TEXT}{index}-{done[index]}"
                    response = client.post("/img/search", json={"collection": "b", "text": text, "top_k": 10})
                    assert response.status_code == 200, response.text
                    done[index] += 1

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return sum(done) / (time.monotonic() - started)
    finally:
        process.terminate()
        process.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=12.0, help="per HTTP throughput measurement")
    parser.add_argument("--images", type=int, default=160, help="folder size for the ingest comparison")
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    parser.add_argument("--overlap-images", type=int, default=1000, help="sample split size for int8 top-10 overlap")
    args = parser.parse_args()
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        onnx_root = work / "onnx"
        rows = []
        torch_rn50 = None
        int8_costs = []
        for name in ("RN50", "ViT-B-16"):
            torch_encoder = ChineseClipEncoder(name, weights="random", seed=0)
            export(torch_encoder, onnx_root)
            onnx_encoder = OnnxClipEncoder(name, onnx_root)
            int8_encoder = OnnxClipEncoder(name, onnx_root, quantize="int8")
            encoders = {"torch": torch_encoder, "onnx": onnx_encoder, "onnx int8": int8_encoder}
            rows += encoder_rows(name, encoders, args.quick)
            int8_costs.append(int8_cost(name, onnx_encoder, int8_encoder, work, args.overlap_images))
            int8_encoder.close()
            if name == "RN50":
                torch_rn50, onnx_rn50 = torch_encoder, onnx_encoder
            else:
                torch_encoder.close()
                onnx_encoder.close()

        make_folder(work / "photos", args.images)
        per_image_torch = ingest_rate(torch_rn50, work / "photos", work / "ingest_torch", 1, 1)
        batched_onnx = ingest_rate(onnx_rn50, work / "photos", work / "ingest_onnx", 16, 2)
        torch_rn50.close()
        onnx_rn50.close()

        split = work / "datasets" / "split"
        generate_split(split, "bench", 1000, encoder=None, seed=0)
        write_random_features(split, "bench")
        base_env = {
            "IMGSEARCH_WEIGHTS": "random",
            "IMGSEARCH_DATA_ROOT": str(work / "datasets"),
            "IMGSEARCH_LOG_LEVEL": "WARNING",
            "IMGSEARCH_ONNX_DIR": str(onnx_root),
        }
        http = {}
        for backend in ("torch", "onnx"):
            for batching in ("off", "on"):
                env = {
                    **base_env,
                    "IMGSEARCH_BACKEND": backend,
                    "IMGSEARCH_MICROBATCH_MAX_SIZE": "1" if batching == "off" else "16",
                }
                for clients in (1, 8):
                    http[(backend, batching, clients)] = search_throughput(work, env, clients, args.seconds)

    by = {(r["model"], r["backend"]): r for r in rows}
    lines += [
        "## encoders: torch vs ONNX Runtime, micro-batching (bench/encoders.py)",
        "",
        f"{run_header()} · random weights (same compute as real ones) · CPU, 2 threads per backend · medians",
        "",
        "| model | backend | text ms/query, batch 1 | text ms/query, batch 32 | images/s, batch 1 "
        "| images/s, batch 16 |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['backend']} | {r['text_b1_ms']:.1f} | {r['text_b32_ms_item']:.1f} | "
            f"{r['image_b1_per_s']:.1f} | {r['image_b16_per_s']:.1f} |"
        )
    text_ratio = by[("RN50", "torch")]["text_b1_ms"] / by[("RN50", "onnx")]["text_b1_ms"]
    lines += [
        "",
        f"- RN50 text at batch 1: ONNX is **{text_ratio:.2f}x** faster than torch (floor 1.4x).",
        f"- Folder ingest ({args.images} JPEGs, bench/ingest.py pipeline): per-image torch "
        f"{per_image_torch:.1f} images/s, "
        f"batched ONNX (batch 16) {batched_onnx:.1f} images/s: **{batched_onnx / per_image_torch:.2f}x** (floor 1.4x).",
        "",
        "`/img/search` queries/s over HTTP (uvicorn, RN50, 1,000 images, SQLite + Milvus Lite), "
        f"{args.seconds:.0f} s per cell:",
        "",
        "| backend | micro-batching | 1 client | 8 clients | 8 clients, on vs off |",
        "|---|---|---|---|---|",
    ]
    for backend in ("torch", "onnx"):
        for batching in ("off", "on"):
            ratio = http[(backend, batching, 8)] / http[(backend, "off", 8)]
            lines.append(
                f"| {backend} | {batching} | {http[(backend, batching, 1)]:.1f} | {http[(backend, batching, 8)]:.1f} "
                f"| {ratio:.2f}x |"
            )
    lines.append("")
    lines.append("Floor: torch, 8 clients, micro-batching on ≥ 1.3x off.")
    lines += [
        "",
        f"int8 (`IMGSEARCH_ONNX_QUANTIZE=int8`) against fp32 ONNX on the sample split ({args.overlap_images:,} "
        "generated images and their Chinese captions): cosine of each vector to its fp32 twin, and how many of "
        "the fp32 search's top-10 images the int8 search also returns (numpy exact search over the split; "
        "*text only*: int8 text vectors against fp32 image vectors; *both*: int8 on both sides):",
        "",
        "| model | text cosine min / mean | image cosine min / mean | top-10 overlap, text only | "
        "top-10 overlap, both | text ms b1 fp32 → int8 |",
        "|---|---|---|---|---|---|",
    ]
    for cost in int8_costs:
        fp32_ms = by[(cost["model"], "onnx")]["text_b1_ms"]
        int8_ms = by[(cost["model"], "onnx int8")]["text_b1_ms"]
        lines.append(
            f"| {cost['model']} | {cost['text_min']:.4f} / {cost['text_mean']:.4f} | {cost['image_min']:.4f} / "
            f"{cost['image_mean']:.4f} | {cost['overlap_text']:.3f} | {cost['overlap_both']:.3f} | "
            f"{fp32_ms:.1f} → {int8_ms:.1f} |"
        )
    rn50 = next(c for c in int8_costs if c["model"] == "RN50")
    verdict = "could be on by default" if rn50["overlap_text"] >= 0.98 else "stays off by default"
    lines += [
        "",
        f"- RN50 text encoder int8 top-10 overlap **{rn50['overlap_text']:.3f}** (bar for a default: 0.98): int8 "
        f"{verdict}. Random weights: a real checkpoint's overlap must be measured again with it.",
    ]
    table = "\n".join(lines)
    print(table)
    write_section("encoders", table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
