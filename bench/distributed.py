"""Encoding spread over a Ray cluster (issue 19): the same folder of phone-size JPEGs synced as a source (referenced
in place, a preview kept: how a photo library is ingested) with the local encoder (1 ONNX thread, 1 decode
thread), on a 1-node Ray cluster and on a 2-node one (1 CPU per node, one actor per node, workers reading the
files and making the previews themselves), with the per-node split and the cluster's fixed costs.

    .venv/bin/python bench/distributed.py [--photos 80 --copies 4] [--rounds 2] [--keep DIR]

Every node and the driver stay on 127.0.0.1, with Ray's token authentication (tests/ray_cluster.py). Floors
(issue 19): 2 nodes ≥ 1.7x one node; one node ≥ 0.8x the local encoder with 1 thread. Writes bench/RESULTS.md
(section "distributed"); exit status 1 when a floor is missed.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # see bench/core.py

import argparse
import contextlib
import io
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from results_file import run_header, write_section  # noqa: E402
from sync import phone_photo, write_copies  # noqa: E402

from config import Settings  # noqa: E402
from operations.ingest import encode_stage, sources, sync  # noqa: E402
from operations.jobs.job_progress import JobProgress  # noqa: E402
from operations.services import build_encoder, build_services  # noqa: E402
from tests.ray_cluster import ray_environment  # noqa: E402

FLOORS = {"two_vs_one": 1.7, "one_vs_local": 0.8}
DRIVER_CPU: dict[str, float] = {}  # CPU ms per image of the service process itself (scan, probe, writes, Ray's driver)


def make_photos(folder: Path, count: int) -> float:
    folder.mkdir(parents=True)
    total = 0
    for i in range(count):
        buffer = io.BytesIO()
        phone_photo(i).save(buffer, format="JPEG", quality=92)
        (folder / f"IMG_{i:04d}.jpg").write_bytes(buffer.getvalue())
        total += buffer.tell()
    return total / count / 2**20


@contextlib.contextmanager
def pinned(cores: set[int]) -> Iterator[None]:
    """This process (and what it starts meanwhile: Milvus Lite) on ``cores``."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cores)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                tree.setdefault(parent, []).append(int(entry.name))
    return tree


def pin_node(node: object, cores: set[int]) -> int:
    """A Ray node's raylet, every thread of it and of its descendants (the workers it has started) on ``cores``;
    workers it starts later inherit the raylet's. "A node of 1 CPU" then means one core, not a share of two.
    Returns how many processes were pinned."""
    tree = _children()
    todo = [info.process.pid for info in node.all_processes.get("raylet", [])]  # type: ignore[attr-defined]
    pinned_count = 0
    while todo:
        pid = todo.pop()
        todo += tree.get(pid, [])
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{pid}/task").iterdir():
                os.sched_setaffinity(int(task.name), cores)
            pinned_count += 1
    return pinned_count


def one_core_costs(work: Path, folder: Path, count: int = 16) -> tuple[float, float]:
    """(ms of one core to decode a photo and make its model input, ms to encode it at batch 16 on 1 thread):
    the two halves of a node's time per photo, which a GPU pool's plan needs apart."""
    settings = Settings(_env_file=None, weights="random", onnx_dir=work / "onnx", onnx_threads=1)  # type: ignore[call-arg]
    encoder = build_encoder(settings, settings.model_name)
    encoder.load()
    photos = sorted(folder.iterdir())[:count]
    with pinned({0}):
        started = time.perf_counter()
        pixels = [encode_stage.prepare(p.read_bytes(), encoder, 10**9, settings.preview_size)[0] for p in photos]
        decode_ms = (time.perf_counter() - started) / len(photos) * 1000
        encoder.encode_pixels(pixels[:2])  # warm
        started = time.perf_counter()
        encoder.encode_pixels(pixels)
        encode_ms = (time.perf_counter() - started) / len(photos) * 1000
    encoder.close()
    return decode_ms, encode_ms


def synced(work: Path, name: str, folder: Path, **settings: object) -> tuple[float, dict[str, int], float, float]:
    """Syncs ``folder`` as a source of a new collection: (images/s of the whole job, images per node, seconds of a
    1-image sync first: the actors' warm-up, and the steady rate: the images after the first over the job's time
    less the warm-up's)."""
    values = {"data_dir": work / name, "data_root": folder.parent, "weights": "random", "onnx_dir": work / "onnx"}
    services = build_services(Settings(_env_file=None, **values, **settings))  # type: ignore[arg-type]
    try:
        services.encoder.load()
        warm = folder.parent / f"warm_{name}"
        warm.mkdir()
        (warm / "one.jpg").write_bytes(next(folder.iterdir()).read_bytes())
        started = time.perf_counter()
        sync.run(services, sources.add(services, f"{name}_warm", warm.name, [], False), JobProgress())
        warm_s = time.perf_counter() - started
        progress = JobProgress()
        record = sources.add(services, name, folder.name, [], False)
        started, cpu = time.perf_counter(), time.process_time()
        outcome = sync.run(services, record, progress)
        seconds = time.perf_counter() - started
        stored = outcome.result["counts"]["stored"] if outcome.result else 0
        DRIVER_CPU[name] = (time.process_time() - cpu) / max(stored, 1) * 1000
        assert stored == len(list(folder.iterdir())) and not progress.errors, progress.errors[:3]
        steady = (stored - 1) / max(seconds - warm_s, 1e-6)
        return stored / seconds, dict(progress.encoded_by), warm_s, steady
    finally:
        services.close()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--photos", type=int, default=80, help="12 MP JPEGs generated")
    parser.add_argument("--copies", type=int, default=4, help="files synced per generated photo (bench/sync.py)")
    parser.add_argument("--rounds", type=int, default=2, help="1-node and 2-node syncs, alternating")
    parser.add_argument("--keep", type=Path, help="a folder to keep the generated photos in, and reuse them from")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        generated = work / "generated"
        if args.keep is not None and len(list(args.keep.glob("IMG_*.jpg"))) == args.photos:
            generated.mkdir(parents=True)
            for kept in args.keep.glob("IMG_*.jpg"):
                os.link(kept, generated / kept.name)
            mb = sum(p.stat().st_size for p in generated.iterdir()) / args.photos / 2**20
        else:
            mb = make_photos(generated, args.photos)
            if args.keep is not None:
                shutil.copytree(generated, args.keep, dirs_exist_ok=True)
        folder = work / "data" / "phone"
        files = write_copies(sorted(generated.iterdir()), folder, args.copies)
        print(f"{files} files ({args.photos} photos of {mb:.1f} MB, {args.copies} copies each)", flush=True)
        decode_ms, encode_ms = one_core_costs(work, folder)
        print(f"one core: decode {decode_ms:.0f} ms, encode {encode_ms:.0f} ms per photo", flush=True)
        with pinned({0}):  # the whole service on one core: what one node has
            local = synced(work, "local", folder, onnx_threads=1, decode_workers=1)
        print(f"local: {local[0]:.2f} images/s, steady {local[3]:.2f}", flush=True)
        with ray_environment(work):
            from ray.cluster_utils import Cluster

            ray_settings = {"ray_cpus_per_actor": 1, "ray_shared_paths": True, "decode_workers": 1}
            started = time.perf_counter()
            cluster = Cluster(
                initialize_head=True,
                head_node_args={"num_cpus": 1, "object_store_memory": 200_000_000, "include_dashboard": False},
            )
            head_s = time.perf_counter() - started
            print(f"head node pinned to core 0: {pin_node(cluster.head_node, {0})} processes", flush=True)
            ones, twos, node_s = [], [], 0.0
            try:
                # Rounds of 1 node, then 2 (the second node joins, and leaves after): the ratio is of means over
                # the same stretch of time, as these machines are noisy.
                for round_ in range(args.rounds):
                    with pinned({0}):  # the service on the node's core, as it is on the nodes' cores with 2 nodes
                        one = synced(
                            work, f"ray1_{round_}", folder, ray_address=cluster.address, ray_pool_size=1, **ray_settings
                        )
                    print(f"1 node: {one[0]:.2f} images/s, steady {one[3]:.2f}", flush=True)
                    started = time.perf_counter()
                    second = cluster.add_node(num_cpus=1, object_store_memory=200_000_000)
                    cluster.wait_for_nodes()
                    print(f"second node pinned to core 1: {pin_node(second, {1})} processes", flush=True)
                    node_s = time.perf_counter() - started
                    two = synced(
                        work, f"ray2_{round_}", folder, ray_address=cluster.address, ray_pool_size=2, **ray_settings
                    )
                    print(f"2 nodes: {two[0]:.2f} images/s, steady {two[3]:.2f}", flush=True)
                    ones.append(one)
                    twos.append(two)
                    cluster.remove_node(second)
                    cluster.wait_for_nodes()
            finally:
                import ray

                ray.shutdown()
                cluster.shutdown()
    one_rate, two_rate = (sum(run[3] for run in runs) / len(runs) for runs in (ones, twos))
    checks = {
        f"2 nodes ≥ {FLOORS['two_vs_one']}x 1 node (steady rate)": two_rate / one_rate >= FLOORS["two_vs_one"],
        f"1 node ≥ {FLOORS['one_vs_local']}x the local encoder, 1 thread (steady rate)": one_rate / local[3]
        >= FLOORS["one_vs_local"],
    }
    split = " / ".join(f"{count}" for count in sorted(twos[-1][1].values(), reverse=True))
    rounds = lambda runs: " / ".join(f"{run[3]:.2f}" for run in runs)  # noqa: E731
    lines = [
        "## distributed: phone photos synced on a Ray cluster (bench/distributed.py)",
        "",
        f"{run_header()} · {files} JPEGs 4032×3024 ({mb:.1f} MB each; {args.photos} generated, {args.copies} copies "
        "of each with another JPEG comment) synced from one source folder · RN50 random weights "
        "on ONNX Runtime · Ray 2.60 on 127.0.0.1 with token auth, 1 CPU per node, one encoder actor (1 thread) per "
        "node, workers reading the files (shared paths); each node pinned to its own core; the service process (the "
        "driver, with its Milvus Lite) on that same core in the local and 1-node runs and on both in the 2-node run, "
        "so that each run has all of its work on 1 or 2 cores · Milvus Lite + SQLite · steady = the images after "
        "the first "
        "over the job's time less the warm-up job's (a 1-image job: actor start and model load); the 1-node and 2-node "
        f"syncs alternate, {args.rounds} of each (the second node joins for its sync and leaves after); "
        "whole-job rate, split and warm-up of the last",
        "",
        "| measured | whole job, images/s | steady, images/s | vs 1 node (steady) | per-node split | warm-up |",
        "|---|---|---|---|---|---|",
        f"| local encoder on one core, 1 ONNX thread, 1 decode thread | {local[0]:.2f} | {local[3]:.2f} | "
        f"{local[3] / one_rate:.2f}x | {local[1].get('local', 0)} here | {local[2]:.1f} s |",
        f"| Ray, 1 node (1 core; mean of {rounds(ones)}) | {ones[-1][0]:.2f} | {one_rate:.2f} | 1.00x | "
        f"{sum(ones[-1][1].values())} | {ones[-1][2]:.1f} s |",
        f"| Ray, 2 nodes (1 core each; mean of {rounds(twos)}) | {twos[-1][0]:.2f} | {two_rate:.2f} | "
        f"{two_rate / one_rate:.2f}x | {split} | {twos[-1][2]:.1f} s |",
        "",
        f"- One core's time per photo: {decode_ms:.0f} ms to decode it (1/2-scale JPEG decode, EXIF, the "
        f"preview and the model's input) and {encode_ms:.0f} ms to encode it (RN50, batch 16, 1 ONNX thread).",
        f"- The service process itself used {DRIVER_CPU['local']:.0f} ms of CPU per "
        f"image encoding locally, {DRIVER_CPU['ray1_0']:.0f} ms with 1 node and {DRIVER_CPU['ray2_0']:.0f} ms with 2 "
        "(scanning, reading and hashing each file, the writes, Ray Data's driver): here that time comes out of the "
        "nodes' cores (in the 1-node run, of its one core); on separate machines it does not.",
        f"- Fixed costs: the head node started in {head_s:.1f} s, the second node joined in {node_s:.1f} s; every "
        "Ray Data run starts its encoder actors (the warm-up column: a job of one image, model load included).",
        "",
        "| floor | result |",
        "|---|---|",
        *[f"| {name} | {'pass' if ok else 'FAIL'} |" for name, ok in checks.items()],
    ]
    text = "\n".join(lines)
    print(text)
    write_section("distributed", text)
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
