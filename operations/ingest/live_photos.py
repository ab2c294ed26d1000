"""Live Photos: an iPhone exports each as a still (HEIC or JPEG) and a short MOV of the same base name in the same
folder (IMG_1234.HEIC + IMG_1234.MOV). The MOV belongs to its photo: a library lists the photo once, not a photo
and a three-second video beside it."""

from __future__ import annotations

from collections.abc import Iterable

PHOTO_SUFFIXES = (".heic", ".heif", ".jpg", ".jpeg")
MOTION_SUFFIXES = (".mov",)


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
