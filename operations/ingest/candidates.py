"""What an ingest takes (a file to read) and gives (what became of it), shared by photos and videos."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from operations.jobs.job_progress import JobProgress

IMAGE_ID_PATTERN = r"^[^/\x00-\x1f]{1,255}$"
IMAGE_ID = re.compile(IMAGE_ID_PATTERN)


@dataclass(frozen=True)
class Candidate:
    """One file to ingest; ``read(limit)`` returns at most ``limit`` bytes."""

    name: str
    read: Callable[[int], bytes]
    image_id: str | None = None
    refusal: str | None = None  # listed, not read: why (a hidden file, an unsafe zip name)
    path: str | None = None  # a file a Ray worker may read itself (IMGSEARCH_RAY_SHARED_PATHS)


@dataclass(frozen=True)
class Outcome:
    name: str
    status: Literal["stored", "duplicate", "rejected"]
    image_id: str | None = None
    id: int | None = None
    reason: str | None = None
    too_large: bool = False


def content_image_id(sha256: str) -> str:
    """Images without an external id are named by their content: the same file always gets the same id."""
    return sha256[:24]


def count(progress: JobProgress, outcome: Outcome) -> None:
    if outcome.status == "rejected":
        progress.error(outcome.reason or "rejected", file=outcome.name)  # counts it as done
    else:
        if outcome.reason and outcome.status == "stored":  # stored in part: said, not counted as a failure
            progress.warn(outcome.reason, file=outcome.name)
        progress.done += 1
        progress.loaded += outcome.status == "stored"
        progress.skipped += outcome.status == "duplicate"
