"""What every ``imgsearch`` command shares: output, the process's clients, and running a job in the foreground
with a progress bar (the command modules import this; cli.py only wires them up)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

from config import Settings


def out(line: str = "") -> None:
    sys.stdout.write(line + "\n")


def refuse_when_locked(settings: Settings, exc: Exception) -> None:
    if "lock" in str(exc).lower() and settings.milvus_is_local:
        raise SystemExit(
            f"error: {settings.milvus_uri} is in use by another process (a running server?). Milvus Lite "
            "allows one process per file: stop the server, or use its HTTP API, or use a Milvus server."
        ) from exc


@contextlib.contextmanager
def _opened(settings: Settings, build: Callable[[Settings], Any]) -> Iterator:
    """What ``build`` opens from the settings, closed at the end; a Milvus Lite file another process holds is
    named as such."""
    try:
        opened = build(settings)
    except Exception as exc:
        refuse_when_locked(settings, exc)
        raise
    try:
        yield opened
    finally:
        opened.close()


@contextlib.contextmanager
def services_for(settings: Settings) -> Iterator:
    """The process's clients with the default model loaded: for commands that encode."""
    from operations.services import build_services

    with _opened(settings, build_services) as services:
        services.encoder.load()
        yield services


def run_job(services, kind: str, collection: str, params: dict, fn) -> int:  # type: ignore[no-untyped-def]
    from tqdm import tqdm

    from operations.jobs.job_progress import JobProgress
    from operations.jobs.jobs import JobRunner

    runner = JobRunner(services.jobs, None, 0, services.settings.job_lease_seconds)
    with tqdm(desc=f"{kind} {collection}", unit="img", dynamic_ncols=True) as bar:

        def listener(progress: JobProgress) -> None:
            if progress.total is not None and bar.total != progress.total:
                bar.total = progress.total
            bar.set_postfix(stored=progress.loaded, skipped=progress.skipped, bad=progress.failed, refresh=False)
            bar.update(progress.done - bar.n)

        record = runner.run_now(kind, collection, params, fn, listener)
    for error in record.errors:
        where = error.get("file") or error.get("image_id") or error.get("line") or ""
        out(f"  rejected {where}: {error['reason']}")
    if record.failed > len(record.errors):
        out(f"  … and {record.failed - len(record.errors)} more (job {record.id})")
    if record.result:
        out(f"  result: {record.result}")
    out(f"{record.state}: {record.message}")
    return 0 if record.state == "succeeded" else 1


@contextlib.contextmanager
def stores_for(settings: Settings) -> Iterator:
    """The stores the settings name, opened directly (no model): for copy and export."""
    from operations.collections.copy_collection import configured_stores

    with _opened(settings, configured_stores) as stores:
        yield stores
