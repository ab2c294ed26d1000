"""Sync drill on a real 10,000-file folder (embedded defaults, ONNX RN50 random weights):

A. manual sync: first sync; then add 1,000, delete 500, edit 300 in place, move 200 to another folder, rename 100
   (moved and renamed photos carry manual tags), sync → the job's counts and both stores are exact, the encoder ran
   on exactly the added and edited files, the tags survived;
B. the same changes on a watched copy, nobody asking for a sync → the same end state, and how long after the last
   file settled (debounce IMGSEARCH_WATCH_DEBOUNCE_SECONDS, default 2 s);
C. kill -9 of `imgsearch serve` in the middle of a sync of the folder → a new process resumes the job (lease) and
   it ends with the same exact end state.

    .venv/bin/python bench/sync_drill.py [--files 10000]

Writes bench/RESULTS.md (section "sync-drill"); exit status 1 when a check fails.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # see bench/core.py

import argparse
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from fastapi.testclient import TestClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from core import free_port  # noqa: E402
from results_file import run_header, write_section  # noqa: E402

from app.main import create_app  # noqa: E402
from config import Settings  # noqa: E402
from tests.imagefiles import jpeg  # noqa: E402

FOLDERS = 50
JOB_LIMIT_S = 3600


def make_library(folder: Path, files: int) -> None:
    for i in range(files):
        directory = folder / f"{i % FOLDERS:02d}"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"IMG_{i:05d}.jpg").write_bytes(jpeg(i))


def change_library(folder: Path, files: int) -> dict[str, list[str]]:
    """1,000 added, 500 deleted, 300 edited in place, 200 moved to another folder, 100 renamed (for 10,000 files);
    returns the paths of each group (moved and renamed: their old paths)."""
    groups = change_library_plan(files)
    for path in groups["delete"]:
        (folder / path).unlink()
    for k, path in enumerate(groups["edit"]):
        (folder / path).write_bytes(jpeg(10**6 + k))
        os.utime(folder / path, ns=(10**18 + k, 10**18 + k))
    (folder / "moved").mkdir()
    for path in groups["move"]:
        shutil.move(folder / path, folder / "moved" / Path(path).name)
    for path in groups["rename"]:
        (folder / path).rename(folder / path.replace("IMG_", "renamed_"))
    (folder / "new").mkdir()
    for k, path in enumerate(groups["add"]):
        (folder / path).write_bytes(jpeg(2 * 10**6 + k))
    return groups


def wait(client, job_id: str) -> dict:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + JOB_LIMIT_S
    while (job := client.get(f"/jobs/{job_id}").json())["state"] in ("queued", "running"):
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {job['state']}")
        time.sleep(0.5)
    return job


def settings_for(work: Path, data_root: Path, **extra: object) -> Settings:
    return Settings(_env_file=None, data_dir=work, data_root=data_root, weights="random", job_lease_seconds=5, **extra)  # type: ignore[arg-type]


def exact_state(client: TestClient, collection: str, source_id: int, folder: Path) -> tuple[bool, str]:
    services = client.app.state.services  # type: ignore[attr-defined]
    on_disk = sum(1 for p in folder.rglob("*.jpg"))
    placed = len(services.sources.files(source_id))
    rows = services.metadata.count(collection, include_pending=True)
    vectors = services.vectors.count(collection)
    shas = len(services.metadata.shas(collection))
    ok = placed == on_disk and rows == vectors == shas
    return ok, f"files on disk {on_disk:,}, placed {placed:,}, rows {rows:,}, vectors {vectors:,}"


def tag(client: TestClient, collection: str, source_id: int, paths: list[str]) -> dict[str, str]:
    services = client.app.state.services  # type: ignore[attr-defined]
    files = services.sources.files(source_id)
    ids = {path: files[path].image for path in paths}
    names = {i: r.image_id for i, r in services.metadata.fetch(collection, list(ids.values())).items()}
    for path in paths:
        client.put(f"/img/{collection}/{names[ids[path]]}/tags", json={"tags": ["家人"]})
    return {path: names[ids[path]] for path in paths}


def tags_kept(client: TestClient, collection: str, image_ids: list[str]) -> bool:
    return all(client.get(f"/img/{collection}/{i}/tags").json()["tags"][0]["tag"] == "家人" for i in image_ids)


def part_a(client: TestClient, folder: Path, files: int, checks: list, lines: list) -> None:
    relative = folder.name
    source = client.post("/collections/drill/sources", json={"path": relative}).json()
    started = time.perf_counter()
    first = wait(client, client.post(f"/collections/drill/sources/{source['id']}/sync").json()["job_id"])
    first_s = time.perf_counter() - started
    lines.append(f"- A first sync of {files:,} files: {first['message']} in {first_s:.0f} s")
    groups = change_library_plan(files)
    tagged = tag(client, "drill", source["id"], groups["move"] + groups["rename"])
    encoder = client.app.state.services.encoder  # type: ignore[attr-defined]
    calls = [0]
    real = encoder.encode_pixels
    encoder.encode_pixels = lambda pixels: (calls.__setitem__(0, calls[0] + len(pixels)), real(pixels))[1]
    change_library(folder, files)
    started = time.perf_counter()
    job = wait(client, client.post(f"/collections/drill/sources/{source['id']}/sync").json()["job_id"])
    took = time.perf_counter() - started
    encoder.encode_pixels = real
    counts = job["result"]["counts"]
    expected = {
        "stored": len(groups["add"]),
        "changed": len(groups["edit"]),
        "moved": len(groups["move"]) + len(groups["rename"]),
        "removed": len(groups["delete"]),
    }
    ok, state = exact_state(client, "drill", source["id"], folder)
    lines.append(f"- After the changes: {job['message']} in {took:.1f} s; encoder ran on {calls[0]:,} images; {state}")
    checks.append(("A  the job's counts are exact", all(counts[k] == v for k, v in expected.items()), str(counts)))
    checks.append(("A  both stores exact (files = placed, rows = vectors)", ok, state))
    checks.append(
        (
            "A  moved and renamed files not re-encoded",
            calls[0] == expected["stored"] + expected["changed"],
            f"{calls[0]:,} images encoded",
        )
    )
    checks.append(
        ("A  their manual tags survived", tags_kept(client, "drill", list(tagged.values())), f"{len(tagged)} tagged")
    )


def change_library_plan(files: int) -> dict[str, list[str]]:
    """The paths change_library touches, known before it does."""
    scale = files / 10_000
    n = {
        name: max(1, int(count * scale))
        for name, count in (("add", 1000), ("delete", 500), ("edit", 300), ("move", 200), ("rename", 100))
    }
    paths = [f"{i % FOLDERS:02d}/IMG_{i:05d}.jpg" for i in range(files)]
    groups, start = {}, 0
    for name in ("delete", "edit", "move", "rename"):
        groups[name], start = paths[start : start + n[name]], start + n[name]
    groups["add"] = [f"new/NEW_{k:05d}.jpg" for k in range(n["add"])]
    return groups


def part_b(client: TestClient, folder: Path, files: int, checks: list, lines: list) -> None:
    source = client.post("/collections/watched/sources", json={"path": folder.name, "watched": True}).json()
    deadline = time.monotonic() + JOB_LIMIT_S
    while client.get("/img/count?collection=watched").json().get("count", 0) < files:
        assert time.monotonic() < deadline
        time.sleep(1)
    settled_jobs = len([j for j in client.get("/jobs?collection=watched&limit=100").json() if j["kind"] == "sync"])
    wait_all(client, "watched")
    groups = change_library_plan(files)
    tagged = tag(client, "watched", source["id"], groups["move"] + groups["rename"])
    change_library(folder, files)
    last_change = time.monotonic()
    expected_count = files - len(groups["delete"]) + len(groups["add"])
    while True:
        jobs = [j for j in client.get("/jobs?collection=watched&limit=100").json() if j["kind"] == "sync"]
        busy = [j for j in jobs if j["state"] in ("queued", "running")]
        if len(jobs) > settled_jobs and not busy:
            ok, state = exact_state(client, "watched", source["id"], folder)
            if ok and client.get("/img/count?collection=watched").json()["count"] == expected_count:
                break
        assert time.monotonic() - last_change < 600, "the watcher did not catch up in 10 minutes"
        time.sleep(0.5)
    caught_up = time.monotonic() - last_change
    made = len(jobs) - settled_jobs
    lines.append(
        f"- Watched copy: the same changes, caught up {caught_up:.1f} s after the last file was written, "
        f"in {made} sync job(s); {state}"
    )
    checks.append(("B  the watcher reaches the same exact end state", ok, state))
    checks.append(
        (
            "B  …in a few jobs, tags kept",
            made <= 5 and tags_kept(client, "watched", list(tagged.values())),
            f"{made} jobs, caught up in {caught_up:.1f} s",
        )
    )


def wait_all(client: TestClient, collection: str) -> None:
    while any(j["state"] in ("queued", "running") for j in client.get(f"/jobs?collection={collection}").json()):
        time.sleep(0.5)


def part_c(work: Path, data_root: Path, folder: Path, files: int, checks: list, lines: list) -> None:
    env = {
        **os.environ,
        "IMGSEARCH_WEIGHTS": "random",
        "IMGSEARCH_DATA_DIR": str(work / "svc-c"),
        "IMGSEARCH_DATA_ROOT": str(data_root),
        "IMGSEARCH_JOB_LEASE_SECONDS": "5",
        "IMGSEARCH_LOG_LEVEL": "WARNING",
    }
    port = free_port()
    log = (work / "serve-c.log").open("w")
    command = [str(ROOT / ".venv/bin/imgsearch"), "serve", "--port", str(port)]
    first = subprocess.Popen(command, env=env, stdout=log, stderr=log, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    source = httpx.post(f"{base}/collections/killed/sources", json={"path": folder.name}, timeout=60).json()
    job_id = httpx.post(f"{base}/collections/killed/sources/{source['id']}/sync", timeout=60).json()["job_id"]
    while (job := httpx.get(f"{base}/jobs/{job_id}", timeout=30).json())["loaded"] < files // 3:
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    lines.append(f"- kill -9 of `imgsearch serve` with the sync at {job['done']:,}/{job['total']:,}")
    started = time.perf_counter()
    settings = settings_for(work / "svc-c", data_root)
    with TestClient(create_app(settings)) as client:
        finished = wait(client, job_id)
        took = time.perf_counter() - started
        ok, state = exact_state(client, "killed", source["id"], folder)
        lines.append(
            f"- A new process resumed it (attempt {finished['attempts']}) and it {finished['state']} "
            f"{took:.0f} s later: {finished['message']}; {state}"
        )
        checks.append(
            (
                "C  the killed sync is resumed by a new process and succeeds",
                finished["state"] == "succeeded" and finished["attempts"] == 2,
                finished["message"] or "",
            )
        )
        checks.append(("C  exact end state after the resume", ok, state))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=10_000)
    args = parser.parse_args()
    checks: list[tuple[str, bool, str]] = []
    lines: list[str] = []
    began = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="sync-drill-"))
    data_root = work / "data"
    for name in ("library", "watched_library", "killed_library"):
        make_library(data_root / name, args.files)
    print(f"made 3 x {args.files:,} files in {time.perf_counter() - began:.0f} s", flush=True)
    with TestClient(create_app(settings_for(work / "svc", data_root))) as client:
        part_a(client, data_root / "library", args.files, checks, lines)
        print("\n".join(lines), flush=True)
        part_b(client, data_root / "watched_library", args.files, checks, lines)
        print(lines[-1], flush=True)
    part_c(work, data_root, data_root / "killed_library", args.files, checks, lines)
    passed = all(ok for _, ok, _ in checks)
    table = "\n".join(
        [
            "## sync-drill: 10,000 files changed, synced by hand, by the watcher, and through a kill -9 "
            "(bench/sync_drill.py)",
            "",
            f"{run_header()} · {args.files:,} generated JPEGs in {FOLDERS} folders · Milvus Lite + SQLite · "
            f"RN50 random weights on ONNX Runtime · watch debounce 2 s · "
            f"whole drill {time.perf_counter() - began:.0f} s",
            "",
            *lines,
            "",
            "| check | result | measured |",
            "|---|---|---|",
            *(f"| {name} | {'pass' if ok else 'FAIL'} | {detail.replace('|', '/')} |" for name, ok, detail in checks),
        ]
    )
    print(table)
    write_section("sync-drill", table)
    if passed:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"a check failed: the work folder is kept in {work}")
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
