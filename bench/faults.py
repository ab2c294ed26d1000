"""Fault drill against the real service (uvicorn, MySQL + Milvus Lite), on loopback:

1. kill -9 the service in the middle of a bulk load and start it again → the restarted process resumes the job
   once its lease runs out and it succeeds; the same load again adds nothing; the counts are exact in both stores
   and reconcile finds nothing to repair;
2. stop MariaDB while a client searches → searches answer 503 with a clear message (never a 500, never a
   hang), and succeed again by themselves once MariaDB is back, without restarting the service.

    .venv/bin/python bench/faults.py [--images 10000]          (`make faults`; stops and starts the local MariaDB)

Writes bench/RESULTS.md (section "faults"); exit status 1 when an expectation fails.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # see bench/core.py

import argparse
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pymysql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from core import drop_database, free_port, run_service, wait_job, write_random_features  # noqa: E402
from results_file import run_header, write_section  # noqa: E402

from operations.ingest.sample_data import generate_split  # noqa: E402

LEASE_S = 5  # a killed process's job is resumed this long after its last renewal
RESUME_LIMIT_S = 300  # restart → the resumed job has finished
STOP_DB = "mysqladmin --host=127.0.0.1 --user=root shutdown"
if Path("/etc/init.d/mariadb").exists():
    START_DB = "service mariadb start"
else:  # how .ci/run starts it where there is no init script
    START_DB = "start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd"


def db_up() -> bool:
    try:
        pymysql.connect(host="127.0.0.1", user="root", password="", connect_timeout=1).close()
        return True
    except pymysql.MySQLError:
        return False


def kill_during_load(env: dict[str, str], images: int, checks: list[tuple[str, bool]], log: Path) -> list[str]:
    lines = []
    port = free_port()
    process = run_service(env, port, log=log)
    base = f"http://127.0.0.1:{port}"
    body = {"collection": "drill", "path": "split", "split": "drill"}
    with httpx.Client(base_url=base, timeout=60) as client:
        job_id = client.post("/img/load", json=body).json()["job_id"]
        while (job := client.get(f"/jobs/{job_id}").json())["done"] < images // 3:
            time.sleep(0.05)
    process.kill()  # SIGKILL: no shutdown hooks, no flush
    process.wait()
    lines.append(f"- Killed the service (SIGKILL) with the load at {job['done']:,}/{images:,} lines.")

    started = time.perf_counter()
    process = run_service(env, port, log=log)
    lines.append(f"- Started again in {time.perf_counter() - started:.1f} s (same Milvus Lite file, same database).")
    try:
        with httpx.Client(base_url=base, timeout=120) as client:
            count_before = client.get("/img/count?collection=drill").json()["count"]
            deadline = time.monotonic() + RESUME_LIMIT_S
            while (old := client.get(f"/jobs/{job_id}").json())["state"] in ("queued", "running") and (
                time.monotonic() < deadline
            ):
                time.sleep(0.5)
            resumed = old["state"] == "succeeded" and old["attempts"] == 2
            checks.append(("the killed job is resumed by the restarted process and succeeds", resumed))
            lines.append(
                f"- The killed job was resumed (attempt {old['attempts']}, lease {LEASE_S} s) and reads "
                f"`{old['state']}`: {old['message']}"
            )
            rerun = wait_job(client, client.post("/img/load", json=body).json()["job_id"])
            count = client.get("/img/count?collection=drill").json()["count"]
            reconcile = wait_job(client, client.post("/collections/drill/reconcile").json()["job_id"])
            vectors = (reconcile["result"] or {}).get("vectors_checked")
    finally:
        process.terminate()
        process.wait(timeout=60)
    lines.append(
        f"- Searchable after the restart: {count_before:,}. The same load again: {rerun['state']}, "
        f"{rerun['loaded']:,} loaded + {rerun['skipped']:,} skipped. Now {count:,} rows and {vectors:,} vectors "
        f"for {images:,} images; reconcile: {reconcile['message']}."
    )
    checks.append(("the same load again adds nothing", rerun["state"] == "succeeded" and rerun["loaded"] == 0))
    checks.append(("exact counts in both stores", count == vectors == images))
    checks.append(("reconcile finds nothing", reconcile["message"].startswith("nothing to repair")))
    return lines


def database_outage(
    env: dict[str, str], outage_s: float, commands: tuple[str, str], checks: list[tuple[str, bool]], log: Path
) -> list[str]:
    stop_db, start_db = commands
    port = free_port()
    process = run_service(env, port, log=log)
    samples: list[tuple[float, str, int, str, float]] = []  # (seconds, phase, status, error code, finished at)
    phase = "before"
    stop = threading.Event()

    def search_loop() -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            while not stop.is_set():
                started = time.perf_counter()
                try:
                    response = client.post("/img/search", json={"collection": "drill", "text": "红色的圆形"})
                    code = response.json().get("error", {}).get("code", "") if response.status_code != 200 else ""
                    status = response.status_code
                except httpx.HTTPError as exc:
                    status, code = 0, type(exc).__name__
                samples.append((time.perf_counter() - started, phase, status, code, time.perf_counter()))
                time.sleep(0.05)

    thread = threading.Thread(target=search_loop)
    try:
        thread.start()
        time.sleep(3)
        phase = "outage"
        subprocess.run(shlex.split(stop_db), check=True, capture_output=True)
        while db_up():
            time.sleep(0.1)
        time.sleep(outage_s)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            health = client.get("/healthz")
            message = client.post("/img/search", json={"collection": "drill", "text": "猫"}).json()
        phase = "returning"
        # Debian's init script can report failure while the server does come up: what counts is a connection.
        starter = subprocess.Popen(shlex.split(start_db), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        begun = time.perf_counter()
        while not db_up():
            if time.perf_counter() - begun > 120:
                raise RuntimeError(f"MariaDB did not come back after {start_db!r}")
            time.sleep(0.05)
        up_at = time.perf_counter()
        while not any(sample[2] == 200 and sample[4] > up_at for sample in samples):
            time.sleep(0.02)
        recovered_s = min(sample[4] for sample in samples if sample[2] == 200 and sample[4] > up_at) - up_at
        db_back_s = up_at - begun
        starter.wait(timeout=120)
        phase = "after"
        time.sleep(3)
    finally:
        stop.set()
        thread.join()
        if not db_up():
            subprocess.run(shlex.split(start_db), check=False)
        process.terminate()
        process.wait(timeout=60)
    by_phase = {p: Counter(s[2] for s in samples if s[1] == p) for p in ("before", "outage", "returning", "after")}
    codes = Counter(s[3] for s in samples if s[1] == "outage" and s[2] != 200)
    slowest = max(s[0] for s in samples if s[1] == "outage")
    checks.append(("searches before the outage all succeed", set(by_phase["before"]) == {200}))
    checks.append(("searches during the outage answer 503 only", set(by_phase["outage"]) <= {200, 503}))
    checks.append(("…with the metadata_store_unavailable code", set(codes) == {"metadata_store_unavailable"}))
    checks.append(("/healthz says 503 during the outage", health.status_code == 503))
    checks.append(("searches recover without a restart", set(by_phase["after"]) == {200}))
    said = log.read_text(errors="replace")
    down, back = said.count("is down:"), said.count("is back after")
    checks.append(
        (
            "quiet log: no traceback, the outage told once down and once back",
            ("Traceback" not in said and 1 <= down == back <= 2),
        )
    )
    refused = said.count("metadata store unavailable")
    return [
        f"- Searches by phase (status: count): before {dict(by_phase['before'])}, MariaDB stopped "
        f"{dict(by_phase['outage'])}, while it starts {dict(by_phase['returning'])}, after {dict(by_phase['after'])}.",
        f'- During the outage: `{message["error"]["code"]}` — "{message["error"]["message"]}"; /healthz '
        f"{health.status_code} (`{health.json()['stores']['metadata']['error'][:80]}…`); slowest answer "
        f"{slowest * 1000:.0f} ms.",
        f"- MariaDB accepted connections {db_back_s:.1f} s after its start command; the first search to succeed "
        f"after that ended {recovered_s * 1000:.0f} ms later, with no action on the service.",
        f"- The service's log: {refused} lines for refused requests, {down} 'is down' and {back} 'is back' "
        f"line(s), {said.count('Traceback')} tracebacks.",
    ]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--outage", type=float, default=5.0, help="seconds MariaDB stays down")
    parser.add_argument("--mysql", default="mysql+pymysql://root@127.0.0.1:3306/")
    parser.add_argument("--stop-db", default=STOP_DB, help="command that stops the database")
    parser.add_argument("--start-db", default=START_DB, help="command that starts it again")
    args = parser.parse_args()
    if not db_up():
        raise SystemExit("MariaDB is not running on 127.0.0.1:3306")
    database = f"imgsearch_faults_{os.getpid()}"
    checks: list[tuple[str, bool]] = []
    work = Path(tempfile.mkdtemp(prefix="faults-"))
    try:
        generate_split(work / "datasets" / "split", "drill", args.images, encoder=None, seed=4)
        write_random_features(work / "datasets" / "split", "drill")
        env = {
            "IMGSEARCH_WEIGHTS": "random",
            "IMGSEARCH_DATA_DIR": str(work / "svc"),
            "IMGSEARCH_DATA_ROOT": str(work / "datasets"),
            "IMGSEARCH_METADATA_URL": f"{args.mysql.rstrip('/')}/{database}",
            "IMGSEARCH_JOB_LEASE_SECONDS": str(LEASE_S),
            "IMGSEARCH_LOG_LEVEL": "WARNING",
        }
        try:
            kill_lines = kill_during_load(env, args.images, checks, work / "service-kill.log")
            commands = (args.stop_db, args.start_db)
            outage_lines = database_outage(env, args.outage, commands, checks, work / "service-outage.log")
        finally:
            if db_up():
                drop_database(database)
    except BaseException:
        print(f"the drill stopped early: its work folder and the service logs are kept in {work}", flush=True)
        raise
    passed = all(ok for _, ok in checks)
    if passed:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"a check failed: the work folder and the service logs (*.log) are kept in {work}", flush=True)
    lines = [
        "## faults: kill -9 mid-load, MariaDB stopped mid-search (bench/faults.py)",
        "",
        f"{run_header()} · {args.images:,} generated images with features · MariaDB 10.11 + Milvus Lite 2.5.1 · "
        f"IMGSEARCH_JOB_LEASE_SECONDS={LEASE_S} · MariaDB down for {args.outage:.0f} s",
        "",
        "Kill during a bulk load:",
        "",
        *kill_lines,
        "",
        "MariaDB stopped during searches:",
        "",
        *outage_lines,
        "",
        "| check | result |",
        "|---|---|",
        *(f"| {name} | {'pass' if ok else 'FAIL'} |" for name, ok in checks),
    ]
    table = "\n".join(lines)
    print(table)
    write_section("faults", table)
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
