"""The job queue in the metadata DB, on SQLite and the real MariaDB: claims are exclusive across processes,
leases run out when a process dies, the active-job limit holds for all processes together, cancels reach any
process. Two JobStores on separate engines stand for two service processes."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
from sqlalchemy import update

from adapters.stores.sql.job_store import JobStore, QueueFull
from adapters.stores.sql.sql_schema import create_metadata_engine, jobs


@pytest.fixture
def two_processes(metadata_url: str):
    engines = [create_metadata_engine(metadata_url) for _ in range(2)]
    yield [JobStore(engine) for engine in engines]
    for engine in engines:
        engine.dispose()


def test_progress_is_recorded_only_while_the_owner_holds_the_job(two_processes: list[JobStore]) -> None:
    store, _ = two_processes
    job = store.create("load", "c", {"path": "x"}, max_attempts=2)
    assert (job.state, job.params, job.attempts, job.runs) == ("queued", {"path": "x"}, 0, [])
    claimed = store.claim("p1", lease_s=60)
    assert claimed is not None and (claimed.id, claimed.state, claimed.owner, claimed.attempts) == (
        job.id,
        "running",
        "p1",
        1,
    )
    assert store.update(job.id, held_by="p1", total=10, done=4, errors=[{"reason": "坏的"}])
    assert not store.update(job.id, held_by="p2", done=9)  # not its job: nothing written
    got = store.get(job.id)
    assert got is not None and (got.total, got.done, got.errors) == (10, 4, [{"reason": "坏的"}])
    assert store.claim("p2", lease_s=60) is None  # nothing else queued
    assert store.finish(job.id, "p1", "succeeded", "done", message="ok")
    got = store.get(job.id)
    assert got is not None and (got.state, got.message, got.finished_at is not None) == ("succeeded", "ok", True)
    assert [(r["attempt"], r["owner"], r["outcome"]) for r in got.runs] == [(1, "p1", "done")]
    assert store.get("nope") is None


def test_each_job_is_claimed_by_exactly_one_process(two_processes: list[JobStore]) -> None:
    first, second = two_processes
    created = {first.create("load", "c", {"n": n}).id for n in range(30)}
    claims: list[tuple[str, str]] = []
    lock = threading.Lock()

    start = threading.Barrier(6)

    def worker(store: JobStore, owner: str) -> None:
        start.wait(timeout=30)  # all six claim at once, as two busy processes would
        while (record := store.claim(owner, lease_s=60)) is not None:
            with lock:
                claims.append((record.id, owner))
            time.sleep(0.02)  # runs the job a moment: the other process's claims come in meanwhile

    threads = [
        threading.Thread(target=worker, args=(s, f"{name}-{t}"))
        for name, s in (("a", first), ("b", second))
        for t in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    claimed = Counter(job_id for job_id, _ in claims)
    assert set(claimed) == created and set(claimed.values()) == {1}
    assert {owner[0] for _, owner in claims} == {"a", "b"}  # both processes got work
    assert all(first.get(job_id).state == "running" for job_id in created)  # type: ignore[union-attr]


def test_a_dead_process_lease_runs_out_and_the_job_is_queued_again_until_attempts_are_used(
    two_processes: list[JobStore],
) -> None:
    store, other = two_processes
    job = store.create("load", "c", {}, max_attempts=2)
    assert store.claim("dead-1", lease_s=0.3) is not None
    assert other.expire_leases("interrupted") == (0, 0)  # lease still valid
    time.sleep(0.5)
    assert other.expire_leases("interrupted") == (1, 0)
    requeued = other.get(job.id)
    assert requeued is not None and (requeued.state, requeued.owner) == ("queued", None)
    assert "lease expired" in requeued.runs[0]["outcome"] and "dead-1" in requeued.runs[0]["outcome"]
    assert not store.update(job.id, held_by="dead-1", done=1)  # the old owner, back from a pause, writes nothing
    assert other.claim("live-2", lease_s=0.3) is not None
    time.sleep(0.5)
    assert store.expire_leases("interrupted") == (0, 1)
    assert store.renew("live-2", [job.id], 60) == {}  # too late: the job is no longer its own
    failed = store.get(job.id)
    assert failed is not None and failed.state == "failed" and failed.message == "interrupted after 2 attempts"
    assert [r["owner"] for r in failed.runs] == ["dead-1", "live-2"]


def test_renewing_keeps_a_slow_job_and_reports_cancels(two_processes: list[JobStore]) -> None:
    store, other = two_processes
    job = store.create("ingest", "c", {})
    store.claim("p1", lease_s=0.3)
    for _ in range(4):
        time.sleep(0.15)
        assert store.renew("p1", [job.id], lease_s=0.3) == {job.id: False}
        assert other.expire_leases("interrupted") == (0, 0)
    cancelled = other.request_cancel(job.id)  # asked through the other process
    assert cancelled is not None and cancelled.state == "running" and cancelled.cancel_requested
    assert store.renew("p1", [job.id], lease_s=0.3) == {job.id: True}
    queued = store.create("ingest", "c", {})
    gone = other.request_cancel(queued.id)
    assert gone is not None and gone.state == "cancelled" and store.claim("p1", 60) is None


def test_the_active_job_limit_holds_across_processes(two_processes: list[JobStore]) -> None:
    """On MySQL a named lock makes count-and-add atomic across processes; SQLite serves one process (the service
    refuses more), where a lock in the store does it, so both "processes" share one store there."""
    first, second = two_processes
    if first.engine.dialect.name == "sqlite":
        second = first
    results: list[str] = []
    lock = threading.Lock()

    def submit(store: JobStore) -> None:
        try:
            store.create("load", "c", {}, max_active=3)
            outcome = "queued"
        except QueueFull:
            outcome = "refused"
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=submit, args=(s,)) for s in (first, second) * 5]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert Counter(results) == {"queued": 3, "refused": 7}
    assert first.active_count() == second.active_count() == 3


def test_a_database_from_before_the_queue_gains_its_columns(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import create_engine, text

    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = create_engine(url)
    with old.begin() as conn:  # the jobs table as the first release made it, with one finished job
        conn.execute(
            text(
                "CREATE TABLE jobs (id VARCHAR(32) PRIMARY KEY, kind VARCHAR(32) NOT NULL,"
                " collection VARCHAR(64) NOT NULL, state VARCHAR(16) NOT NULL, params TEXT NOT NULL, total BIGINT,"
                " done BIGINT NOT NULL, loaded BIGINT NOT NULL, skipped BIGINT NOT NULL, failed BIGINT NOT NULL,"
                " errors TEXT NOT NULL, message TEXT, result TEXT, created_at DATETIME NOT NULL,"
                " started_at DATETIME, finished_at DATETIME, heartbeat_at DATETIME)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO jobs VALUES ('j1', 'load', 'c', 'succeeded', '{}', 5, 5, 5, 0, 0, '[]', 'ok', NULL,"
                " '2026-01-01 00:00:00', NULL, NULL, NULL)"
            )
        )
    old.dispose()
    engine = create_metadata_engine(url)
    try:
        store = JobStore(engine)
        kept = store.get("j1")
        assert kept is not None and (kept.state, kept.loaded, kept.attempts, kept.runs) == ("succeeded", 5, 0, [])
        with engine.begin() as conn:
            conn.execute(update(jobs).where(jobs.c.id == "j1").values(owner="x"))
        assert store.create("load", "c", {}).state == "queued"
    finally:
        engine.dispose()
