"""Shared by the benchmarks: the run's header line and rewriting one section of bench/RESULTS.md."""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "RESULTS.md"


def run_header() -> str:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return (
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC · {platform.machine()} · {os.cpu_count()} cores · "
        f"commit {commit.stdout.strip()}"
    )


def _markers(key: str) -> tuple[str, str]:
    """Snippet markers around each section, so the docs include one section by name (docs/*.md:
    ``--8<-- "bench/RESULTS.md:KEY"``) instead of copying figures that would go stale."""
    return f"<!-- --8<-- [start:{key}] -->", f"<!-- --8<-- [end:{key}] -->"


def write_section(key: str, text: str, path: Path = RESULTS) -> None:
    """Replace the section ``key`` (between its markers, or from its heading ``## {key}:``) or append it."""
    existing = (
        path.read_text() if path.exists() else "# Benchmark results\n\nEach section is rewritten by its script.\n\n"
    )
    begin, finish = _markers(key)
    section = f"{begin}\n{text.strip(chr(10))}\n{finish}"
    start = existing.find(begin)
    if start >= 0:  # in its place: the page keeps its order
        end = existing.find(finish, start)
        path.write_text(existing[:start] + section + existing[end + len(finish) :])
        return
    start = existing.find(f"## {key}:")
    if start >= 0:
        end = existing.find("\n## ", start + 1)
        existing = existing[:start] + existing[end + 1 if end >= 0 else len(existing) :]
    path.write_text(existing.rstrip("\n") + "\n\n" + section + "\n")
