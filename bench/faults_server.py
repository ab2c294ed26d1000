"""Fault drill on the Milvus-server path: the real service (`imgsearch serve`, uvicorn) against a real local Milvus
standalone server (tests/milvus_server.py) and MariaDB, on loopback.

Part A, one service process:
  1. kill -9 the Milvus server in the middle of a bulk load → the job ends failed, naming Milvus, in bounded time;
  2. while Milvus is down, searches answer 503 `vector_store_unavailable` (never a 500, never a hang) and /healthz
     answers 503 with the vector store down and the metadata store up;
  3. start Milvus again → every answer meanwhile is 200 or 503 (never a 500), and searches succeed by themselves,
     without restarting the service, within 5 s of a fresh client's first successful search (the server reloads
     the collection after a restart); the service's log tells the outage in one line per refused request, one
     when Milvus went down and one when it came back, with no traceback;
  4. the same load again → succeeded, exact counts in both stores (service, Milvus, MySQL), reconcile finds nothing.
Part B, two service processes on one Milvus server and one MySQL database:
  kill -9 the process running a load → the other one resumes it once the lease runs out, it succeeds with nobody
  re-running it, counts are exact in both stores and reconcile finds nothing.
Part C, a service started while Milvus is down: it starts (/livez 200, /readyz 503 naming the vector store,
  searches 503 not_ready), and once Milvus is started it becomes ready on its own and searches succeed.

When a check fails, the work folder (service logs, the Milvus server's data and logs) is kept and its path printed.
    .venv/bin/python bench/faults_server.py [--images 4000] [--resume-images 200]     (`make faults-server`)

Writes bench/RESULTS.md (section "faults-server"); exit status 1 when an expectation fails.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # see bench/core.py

import argparse
import contextlib
import io
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pymysql
from pymilvus import MilvusClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from core import drop_database, free_port, write_random_features  # noqa: E402
from results_file import run_header, write_section  # noqa: E402

from operations.ingest.sample_data import generate_split  # noqa: E402
from tests.milvus_server import LocalMilvusServer  # noqa: E402

LEASE_S = 5
MILVUS_DB = "faults"
JOB_FAIL_LIMIT_S = 60  # kill -9 of Milvus → the job reads failed
SEARCH_LIMIT_S = 30  # one search while Milvus is down
RECOVER_LIMIT_S = 300  # Milvus started again → the first search answering 200
SERVED_LAG_LIMIT_S = 5  # a fresh client's first successful search → the service's first 200
READY_LIMIT_S = 120  # a service started before Milvus → ready, once Milvus is up
RESUME_LIMIT_S = 60  # kill -9 of the service → the other process resumes the job
JOB_LIMIT_S = 900  # any load to its end
RUNNING = ("queued", "running")
SEARCH = {"collection": "drill", "text": "红色的圆形", "top_k": 10}


class Drill:
    """Checks as they are made (printed at once), services started (always stopped), numbers for the summary."""

    def __init__(self, work: Path, env: dict[str, str], database: str) -> None:
        self.work = work
        self.env = env
        self.database = database
        self.checks: list[tuple[str, bool, str]] = []
        self.services: list[tuple[subprocess.Popen, Path]] = []

    def check(self, name: str, ok: bool, detail: str) -> bool:
        self.checks.append((name, ok, detail))
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}", flush=True)
        return ok

    def start_service(self, env: dict[str, str], name: str, probe: str = "/readyz") -> tuple[subprocess.Popen, str]:
        """`imgsearch serve` with its log in a file (a pipe nobody reads would fill and block the service), once
        ``probe`` answers 200."""
        port = free_port()
        log = self.work / f"{name}.log"
        process = subprocess.Popen(
            [str(ROOT / ".venv/bin/imgsearch"), "serve", "--port", str(port)],
            env={**os.environ, **self.env, **env},
            stdout=subprocess.DEVNULL,
            stderr=log.open("w"),
        )
        self.services.append((process, log))
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(f"{base}{probe}", timeout=5).status_code == 200:
                    return process, base
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"service {name} did not start:\n{tail(log)}")

    def stop_services(self) -> None:
        for process, _ in self.services:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self.services.clear()

    def logs(self) -> str:
        return "\n".join(f"--- {log.name} (last lines)\n{tail(log)}" for _, log in self.services)


def tail(path: Path, lines: int = 25) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


def poll(fn: Callable[[], Any], until: Callable[[Any], bool], limit_s: float, every: float = 0.2) -> tuple[Any, float]:
    """Calls ``fn`` until ``until(value)``; returns the last value and the seconds it took (raises past the limit)."""
    started = time.perf_counter()
    while True:
        value = fn()
        if until(value):
            return value, time.perf_counter() - started
        if time.perf_counter() - started > limit_s:
            raise TimeoutError(f"not reached in {limit_s:.0f} s; last: {str(value)[:400]}")
        time.sleep(every)


def job(client: httpx.Client, job_id: str) -> dict:
    response = client.get(f"/jobs/{job_id}")
    response.raise_for_status()
    return response.json()


def finished(client: httpx.Client, job_id: str, limit_s: float = JOB_LIMIT_S) -> tuple[dict, float]:
    return poll(lambda: job(client, job_id), lambda j: j["state"] in ("succeeded", "failed", "cancelled"), limit_s)


def submit(client: httpx.Client, path: str, body: dict | None = None) -> str:
    response = client.post(path, json=body)
    if response.status_code != 202:
        raise RuntimeError(f"POST {path} answered {response.status_code}: {response.text[:300]}")
    return response.json()["job_id"]


def pid_of(owner: str | None) -> int | None:
    """Job owners read host:pid:tag."""
    parts = (owner or "").split(":")
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


def store_counts(milvus: LocalMilvusServer, database: str, collection: str) -> tuple[int, int, int]:
    """(Milvus vectors, MySQL rows, MySQL rows marked indexed), read behind the service's back."""
    client = MilvusClient(uri=milvus.uri, db_name=MILVUS_DB)
    try:
        client.load_collection(collection)
        rows = client.query(collection, filter="", output_fields=["count(*)"], consistency_level="Strong")
        vectors = int(rows[0]["count(*)"])
    finally:
        client.close()
    connection = pymysql.connect(host="127.0.0.1", user="root", password="", database=database)
    try:
        with connection.cursor() as cursor:
            query = "SELECT COUNT(*), COALESCE(SUM(indexed), 0) FROM images WHERE collection = %s"
            cursor.execute(query, (collection,))
            total, indexed = cursor.fetchone()
    finally:
        connection.close()
    return vectors, int(total), int(indexed)


def exact_counts(
    drill: Drill, client: httpx.Client, milvus: LocalMilvusServer, collection: str, expected: int, label: str
) -> str:
    served = client.get(f"/img/count?collection={collection}").json()["count"]
    vectors, rows, indexed = store_counts(milvus, drill.database, collection)
    drill.check(
        f"{label}exact counts in both stores",
        served == vectors == rows == indexed == expected,
        f"/img/count {served:,}, Milvus count(*) {vectors:,}, MySQL rows {rows:,} ({indexed:,} indexed), "
        f"split {expected:,}",
    )
    reconcile, took = finished(client, submit(client, f"/collections/{collection}/reconcile"))
    drill.check(
        f"{label}reconcile finds nothing to repair",
        reconcile["state"] == "succeeded" and (reconcile["message"] or "").startswith("nothing to repair"),
        f"{reconcile['state']} in {took:.1f} s: {reconcile['message']}",
    )
    return f"{served:,} = {vectors:,} = {rows:,}"


def timed_search(client: httpx.Client) -> tuple[int, str, float]:
    started = time.perf_counter()
    try:
        response = client.post("/img/search", json=SEARCH)
        status = response.status_code
        code = response.json().get("error", {}).get("code", "") if status != 200 else ""
    except httpx.HTTPError as exc:
        status, code = 0, type(exc).__name__
    return status, code, time.perf_counter() - started


def part_a(drill: Drill, milvus: LocalMilvusServer, images: int, summary: dict[str, str]) -> None:
    _, base = drill.start_service({"IMGSEARCH_LOAD_BATCH_SIZE": "200"}, "service-a")
    body = {"collection": "drill", "path": "split", "split": "drill"}
    with httpx.Client(base_url=base, timeout=120) as client:
        # 1. Milvus killed mid-load.
        job_id = submit(client, "/img/load", body)
        # Kill once a first batch is in both stores (some loaded, most still to come), polling every 50 ms.
        at_kill, _ = poll(lambda: job(client, job_id), lambda j: j["done"] > 0 or j["state"] not in RUNNING, 300, 0.05)
        milvus.kill()
        killed_at = time.perf_counter()
        print(f"      killed Milvus (kill -9) with the load at {at_kill['done']:,}/{images:,} ({at_kill['state']})")
        ended, took = finished(client, job_id, JOB_FAIL_LIMIT_S + 30)
        took = time.perf_counter() - killed_at
        message = ended["message"] or ""
        drill.check(
            "A1 load with Milvus killed ends failed, naming Milvus",
            ended["state"] in ("failed", "queued")
            and "vector store (Milvus)" in message
            and took < JOB_FAIL_LIMIT_S
            and at_kill["state"] == "running"
            and 0 < at_kill["done"] < images,
            f"{ended['state']} {took:.1f} s after the kill (limit {JOB_FAIL_LIMIT_S} s), at {ended['done']:,}/"
            f"{images:,}: {message[:160]}",
        )
        summary["job fails after Milvus kill -9"] = f"{took:.1f} s ({ended['state']})"

        # 2. While Milvus is down.
        samples = [timed_search(client) for _ in range(5)]
        statuses = sorted({s[0] for s in samples})
        codes = sorted({s[1] for s in samples})
        slowest = max(s[2] for s in samples)
        drill.check(
            "A2 searches while Milvus is down answer 503 vector_store_unavailable",
            statuses == [503] and codes == ["vector_store_unavailable"] and slowest < SEARCH_LIMIT_S,
            f"{len(samples)} searches: status {statuses}, codes {codes}, latency "
            f"{', '.join(f'{s[2] * 1000:.0f}' for s in samples)} ms (limit {SEARCH_LIMIT_S} s)",
        )
        summary["search while Milvus is down"] = f"503 in {slowest * 1000:.0f} ms (slowest of {len(samples)})"
        started = time.perf_counter()
        health = client.get("/healthz")
        health_s = time.perf_counter() - started
        stores = health.json().get("stores", {})
        drill.check(
            "A2 /healthz answers 503: vectors down, metadata up",
            health.status_code == 503
            and stores.get("vectors", {}).get("ok") is False
            and stores.get("metadata", {}).get("ok") is True,
            f"{health.status_code} in {health_s * 1000:.0f} ms, vectors ok={stores.get('vectors', {}).get('ok')} "
            f"({(stores.get('vectors', {}).get('error') or '')[:90]}…), metadata ok="
            f"{stores.get('metadata', {}).get('ok')}",
        )

        live, ready = client.get("/livez"), client.get("/readyz")
        vectors = ready.json().get("stores", {}).get("vectors", {})
        drill.check(
            "A2 /livez 200 and /readyz 503 naming the vector store",
            live.status_code == 200 and ready.status_code == 503 and vectors.get("ok") is False,
            f"/livez {live.status_code}, /readyz {ready.status_code}: vectors {(vectors.get('error') or '')[:90]}",
        )

        # 3. Milvus back: searches recover without restarting the service, as soon as the server serves again.
        started = time.perf_counter()
        milvus.start()
        up_at = time.perf_counter()
        up_s = up_at - started
        served = FreshClientWatch(milvus, "drill")
        seen: list[tuple[int, str]] = []

        def search_once() -> tuple[int, str, float]:
            sample = timed_search(client)
            seen.append(sample[:2])
            return sample

        try:
            _, recover_s = poll(search_once, lambda s: s[0] == 200, RECOVER_LIMIT_S, 0.5)
            recovered = True
        except TimeoutError:
            recover_s, recovered = float(RECOVER_LIMIT_S), False
        first_ok = time.perf_counter()
        served_s = served.wait(SERVED_LAG_LIMIT_S + 30)
        lag = first_ok - up_at - served_s if served_s is not None else float("inf")
        others = sorted({f"{s}/{c}" for s, c in seen if s != 200})
        health = client.get("/healthz").status_code
        drill.check(
            "A3 searches recover after Milvus restarts, never a 500, service untouched",
            recovered and all(s in (200, 503) for s, _ in seen) and health == 200,
            f"Milvus up in {up_s:.1f} s; first 200 {recover_s:.1f} s later after {len(seen)} searches "
            f"(others: {', '.join(others) or 'none'}); /healthz {health}",
        )
        drill.check(
            f"A3 searches succeed within {SERVED_LAG_LIMIT_S} s of the server serving the collection again",
            lag <= SERVED_LAG_LIMIT_S,
            f"a fresh client's first search succeeded {served_s if served_s is not None else float('nan'):.1f} s "
            f"after Milvus was up; the service's first 200 came {lag:.1f} s after that (searched every 0.5 s)",
        )
        summary["Milvus restart → first search 200"] = f"{recover_s:.1f} s (+{up_s:.1f} s to start Milvus)"
        summary["server serves again → service's first 200"] = f"{lag:.1f} s (limit {SERVED_LAG_LIMIT_S} s)"
        said = (drill.work / "service-a.log").read_text(errors="replace")
        down, back = said.count("is down:"), said.count("is back after")
        refused = sum("POST /img/search:" in line for line in said.splitlines())
        drill.check(
            "A3 quiet log: one line per refused search, the outage told once down and once back, no traceback",
            "Traceback" not in said and 1 <= down == back <= 2 and refused > 0,
            f"{refused} lines for refused searches, {down} 'is down', {back} 'is back', "
            f"{said.count('Traceback')} tracebacks",
        )

        # 4. The same load again: succeeded, exact counts.
        rerun, took = finished(client, submit(client, "/img/load", body))
        drill.check(
            "A4 the same load again succeeds",
            rerun["state"] == "succeeded",
            f"{rerun['state']} in {took:.1f} s: {rerun['loaded']:,} loaded + {rerun['skipped']:,} skipped, "
            f"{rerun['failed']} failed",
        )
        summary["A: counts service = Milvus = MySQL"] = exact_counts(drill, client, milvus, "drill", images, "A4 ")


class FreshClientWatch:
    """When the server serves ``collection`` again by the only measure that does not depend on the service: a
    brand-new client's search succeeds (seconds after the start of the watch)."""

    def __init__(self, milvus: LocalMilvusServer, collection: str) -> None:
        self.milvus, self.collection = milvus, collection
        self.started = time.perf_counter()
        self.served_s: float | None = None
        self._done = threading.Event()
        threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self) -> None:
        deadline = self.started + RECOVER_LIMIT_S
        while time.perf_counter() < deadline:
            with contextlib.suppress(Exception):
                client = MilvusClient(uri=self.milvus.uri, db_name=MILVUS_DB, timeout=3, dedicated=True)
                try:
                    client.search(self.collection, data=[[0.03] * 1024], limit=1, anns_field="vector", timeout=3)
                    self.served_s = time.perf_counter() - self.started
                    break
                finally:
                    client.close()
            time.sleep(0.25)
        self._done.set()

    def wait(self, limit_s: float) -> float | None:
        self._done.wait(limit_s)
        return self.served_s


def part_c(drill: Drill, milvus: LocalMilvusServer, images: int, summary: dict[str, str]) -> None:
    milvus.stop()
    process, base = drill.start_service({}, "service-c", probe="/livez")
    with httpx.Client(base_url=base, timeout=120) as client:
        ready, search = client.get("/readyz"), client.post("/img/search", json=SEARCH)
        body = ready.json()
        drill.check(
            "C  a service started before Milvus starts anyway and says what it waits for",
            process.poll() is None
            and ready.status_code == 503
            and "vectors" in body.get("stores", {})
            and search.status_code == 503
            and search.json()["error"]["code"] == "not_ready"
            and bool(search.headers.get("Retry-After")),
            f"/livez 200, /readyz {ready.status_code} ({body.get('status')}: {(body.get('message') or '')[:110]}), "
            f"search {search.status_code} {search.json()['error']['code']}",
        )
        started = time.perf_counter()
        milvus.start()
        up_s = time.perf_counter() - started
        try:
            _, ready_s = poll(lambda: client.get("/readyz").status_code, lambda s: s == 200, READY_LIMIT_S, 0.25)
            became_ready = True
        except TimeoutError:
            ready_s, became_ready = float(READY_LIMIT_S), False
        search = client.post("/img/search", json=SEARCH)
        hits = len(search.json().get("hits", [])) if search.status_code == 200 else 0
        drill.check(
            "C  it becomes ready on its own once Milvus is up, and searches",
            became_ready and search.status_code == 200 and hits == SEARCH["top_k"],
            f"Milvus up in {up_s:.1f} s; /readyz 200 {ready_s:.1f} s later; search {search.status_code}, {hits} hits",
        )
        summary["service started before Milvus → ready"] = f"{ready_s:.1f} s after Milvus was up"


def part_b(drill: Drill, milvus: LocalMilvusServer, images: int, summary: dict[str, str]) -> None:
    env = {"IMGSEARCH_JOB_WORKERS": "1", "IMGSEARCH_LOAD_BATCH_SIZE": "20"}
    first, base1 = drill.start_service(env, "service-b1")
    second, base2 = drill.start_service(env, "service-b2")
    print(f"      two service processes: pid {first.pid} on {base1}, pid {second.pid} on {base2}")
    body = {"collection": "resume", "path": "slow", "split": "slow"}
    with httpx.Client(base_url=base1, timeout=120) as one, httpx.Client(base_url=base2, timeout=120) as two:
        job_id = submit(one, "/img/load", body)
        running, _ = poll(lambda: job(one, job_id), lambda j: j["done"] > 0 and pid_of(j["owner"]) is not None, 300)
        owner_pid = pid_of(running["owner"])
        if owner_pid == second.pid:  # the queue is shared: the other process may claim first; kill the owner
            print("      process 2 claimed the job first: the drill kills it and watches process 1")
            first, second, one, two = second, first, two, one
        drill.check(
            "B  the load runs in the process it was submitted to",
            pid_of(running["owner"]) == first.pid,
            f"owner {running['owner']}, done {running['done']:,}/{running['total']:,}, attempt {running['attempts']}",
        )
        first.kill()  # SIGKILL: no shutdown hooks, the lease is simply no longer renewed
        first.wait()
        killed_at = time.perf_counter()
        print(f"      killed process {first.pid} (kill -9) with the load at {running['done']:,}/{running['total']:,}")
        resumed, resume_s = poll(
            lambda: job(two, job_id),
            lambda j: j["attempts"] >= 2 or j["state"] in ("succeeded", "failed", "cancelled"),
            RESUME_LIMIT_S,
        )
        resume_s = time.perf_counter() - killed_at
        drill.check(
            "B  the other process resumes the job after the lease runs out",
            resumed["attempts"] == 2 and pid_of(resumed["owner"]) == second.pid,
            f"attempt {resumed['attempts']} under {resumed['owner']} {resume_s:.1f} s after the kill "
            f"(lease {LEASE_S} s, limit {RESUME_LIMIT_S} s), state {resumed['state']}",
        )
        ended, _ = finished(two, job_id)
        done_s = time.perf_counter() - killed_at
        owners = [pid_of(run.get("owner")) for run in ended["runs"]]
        drill.check(
            "B  the job ends succeeded with nobody re-running it",
            ended["state"] == "succeeded" and owners == [first.pid, second.pid],
            f"{ended['state']} {done_s:.1f} s after the kill: {ended['message']}; runs: "
            + "; ".join(f"#{r['attempt']} pid {pid_of(r['owner'])} → {r['outcome'] or 'ok'}" for r in ended["runs"]),
        )
        summary["kill -9 of the job's process → resumed"] = f"{resume_s:.1f} s (lease {LEASE_S} s)"
        summary["kill -9 of the job's process → succeeded"] = f"{done_s:.1f} s"
        summary["B: counts service = Milvus = MySQL"] = exact_counts(drill, two, milvus, "resume", images, "B  ")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=4000, help="Part A: images with feature files")
    parser.add_argument("--resume-images", type=int, default=200, help="Part B: images without features (encoded)")
    parser.add_argument("--mysql", default="mysql+pymysql://root@127.0.0.1:3306/")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that the clean-up below runs
    database = f"imgsearch_faults_server_{os.getpid()}"
    summary: dict[str, str] = {}
    began = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="faults-server-"))
    drill: Drill | None = None
    milvus = LocalMilvusServer(work / "milvus")
    try:
        started = time.perf_counter()
        with contextlib.redirect_stderr(io.StringIO()):  # no progress bars in the drill's output
            generate_split(work / "datasets" / "split", "drill", args.images, encoder=None, seed=4)
            write_random_features(work / "datasets" / "split", "drill")
            generate_split(work / "datasets" / "slow", "slow", args.resume_images, encoder=None, seed=5)
        generated_s = time.perf_counter() - started
        print(f"      generated {args.images:,} + {args.resume_images:,} images in {generated_s:.1f} s")
        started = time.perf_counter()
        milvus.start()
        print(f"      Milvus server {milvus.uri} (pid {milvus.pid}) up in {time.perf_counter() - started:.1f} s")
        env = {
            "IMGSEARCH_WEIGHTS": "random",
            "IMGSEARCH_DATA_DIR": str(work / "svc"),
            "IMGSEARCH_DATA_ROOT": str(work / "datasets"),
            "IMGSEARCH_MILVUS_URI": milvus.uri,
            "IMGSEARCH_MILVUS_DB": MILVUS_DB,
            "IMGSEARCH_METADATA_URL": f"{args.mysql.rstrip('/')}/{database}?charset=utf8mb4",
            "IMGSEARCH_JOB_LEASE_SECONDS": str(LEASE_S),
            "IMGSEARCH_JOB_MAX_ATTEMPTS": "3",
            "IMGSEARCH_LOG_LEVEL": "WARNING",
        }
        drill = Drill(work, env, database)
        parts = (("A", part_a, args.images), ("B", part_b, args.resume_images), ("C", part_c, args.images))
        for name, part, size in parts:
            print(f"Part {name}", flush=True)
            try:
                if milvus.pid is None:
                    milvus.start()
                part(drill, milvus, size, summary)
            except Exception as exc:
                drill.check(f"{name}  the part ran to its end", False, f"{type(exc).__name__}: {exc}")
                print(drill.logs())
            finally:
                drill.stop_services()
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second TERM must not cut the clean-up short
        if drill is not None:
            drill.stop_services()
        milvus.stop()
        with contextlib.suppress(pymysql.MySQLError):
            drop_database(database)
    total_s = time.perf_counter() - began
    checks = drill.checks
    passed = all(ok for _, ok, _ in checks)
    if passed and checks:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"a check failed: the work folder is kept in {work} (service logs *.log, Milvus under milvus/)")
    lines = [
        "## faults-server: Milvus server killed mid-load and mid-search, a service process killed mid-job, a service "
        "started before Milvus (bench/faults_server.py)",
        "",
        f"{run_header()} · MariaDB 10.11 + Milvus standalone 2.3.5 (PyPI `milvus`, local process) · "
        f"Part A: 1 service process, {args.images:,} images with feature files · Part B: 2 service processes, "
        f"{args.resume_images:,} images encoded (RN50 random weights) · Part C: 1 service process started before "
        f"Milvus · IMGSEARCH_JOB_LEASE_SECONDS={LEASE_S} · "
        f"whole drill {total_s:.0f} s",
        "",
        "| measured | value |",
        "|---|---|",
        *(f"| {name} | {value} |" for name, value in summary.items()),
        "",
        "| check | result | measured |",
        "|---|---|---|",
        *(f"| {name} | {'pass' if ok else 'FAIL'} | {detail.replace('|', '/')} |" for name, ok, detail in checks),
    ]
    table = "\n".join(lines)
    print()
    print(table)
    write_section("faults-server", table)
    print(f"\n{sum(ok for _, ok, _ in checks)}/{len(checks)} checks passed in {total_s:.0f} s")
    return 0 if passed and checks else 1


if __name__ == "__main__":
    raise SystemExit(main())
