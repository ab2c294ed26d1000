"""Live Photos: an iPhone exports each as a still (HEIC or JPEG) and a short MOV of the same base name in the same
folder (IMG_1234.HEIC + IMG_1234.MOV). The MOV belongs to its photo: a library lists the photo once, not a photo
and a three-second video beside it."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from adapters import file_names
from operations.ingest.source_scan import Scan, is_zip

PHOTO_SUFFIXES = (".heic", ".heif", ".jpg", ".jpeg")
MOTION_SUFFIXES = (".mov",)
LIVE_PHOTO = "the motion of the Live Photo"  # IMGSEARCH_LIVE_PHOTO_VIDEOS=true indexes it as a video too


def _split(path: str) -> tuple[str, str]:
    """(folder/base name, lower-case suffix); the base keeps its case but is compared without it."""
    stem, dot, suffix = path.rpartition(".")
    return (stem, f".{suffix.lower()}") if dot else (path, "")


def pairs(paths: Iterable[str]) -> dict[str, str]:
    """For each Live Photo's motion file among ``paths``, the photo it belongs to (same folder, same base name
    whatever the case, one photo and one MOV)."""
    photos: dict[str, list[str]] = {}
    motions: dict[str, list[str]] = {}
    for path in paths:
        stem, suffix = _split(path)
        if suffix in PHOTO_SUFFIXES:
            photos.setdefault(stem.casefold(), []).append(path)
        elif suffix in MOTION_SUFFIXES:
            motions.setdefault(stem.casefold(), []).append(path)
    return {
        found[0]: photos[key][0] for key, found in motions.items() if len(found) == 1 and len(photos.get(key, ())) == 1
    }


def set_aside(scanned: Scan, folder: Path) -> None:
    """Takes each Live Photo's motion file out of a scan (listed as skipped, naming its photo). A motion file
    scanned alone (a watch event, a sync of a sub-path) finds its photo in its folder on disk."""
    motions = [path for path in scanned.files if _split(path)[1] in MOTION_SUFFIXES]
    if not motions:
        return
    found: dict[str, str] = {}
    for parent in {path.rpartition("/")[0] for path in motions}:
        listed = {*_siblings(folder, parent), *(p for p in scanned.files if p.rpartition("/")[0] == parent)}
        found.update(pairs(sorted(listed)))
    for path in motions:
        photo = found.get(path)
        if photo is not None:
            del scanned.files[path]
            scanned.skipped.append((file_names.readable(path), f"{LIVE_PHOTO} {file_names.readable(photo)}"))


def _siblings(folder: Path, parent: str) -> list[str]:
    if is_zip(folder):
        return []  # a zip's members were all scanned
    prefix = f"{parent}/" if parent else ""
    try:
        with os.scandir(folder / file_names.file_system(parent) if parent else folder) as entries:
            return [file_names.stored(prefix + entry.name) for entry in entries if entry.is_file()]
    except OSError:
        return []
