"""What reading one picture's faces gives, here or on a Ray face actor (a module of its own: the face job and the
Ray driver both use it, and neither imports the other)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class FaceRead:
    faces: list[Any] = field(default_factory=list)  # adapters.faces.FoundFace, boxes in the original's pixels
    error: str | None = None
    node: str = ""  # the Ray node that read it ("" here)
