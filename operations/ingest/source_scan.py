"""What a source folder holds now, from directory entries and stat results alone (no file is opened): a sync of
an unchanged library costs a directory walk."""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from pathlib import Path

from operations.ingest.file_sources import HIDDEN

# Folders NAS systems and desktops fill with their own thumbnails and metadata: never photos of the library.
DEFAULT_EXCLUDES = ("**/@eaDir/**", "**/#recycle/**", "**/.thumbnails/**", "*.tmp", "*.part", "*.crdownload")


@dataclass(frozen=True)
class FileStat:
    size: int
    mtime_ns: int


@dataclass
class Scan:
    files: dict[str, FileStat]  # path relative to the source, '/'-separated
    skipped: list[tuple[str, str]]  # (path, why): hidden or excluded, for the job's report


def excluded(path: str, patterns: tuple[str, ...] | list[str]) -> bool:
    """Globs on the path relative to the source: ``*`` crosses folders, ``**/x/**`` also matches x at the top,
    and a pattern without '/' also matches the file name alone (``*.tmp``)."""
    name = path.rsplit("/", 1)[-1]
    for pattern in patterns:
        if fnmatch.fnmatchcase(path, pattern) or ("/" not in pattern and fnmatch.fnmatchcase(name, pattern)):
            return True
        if pattern.startswith("**/") and fnmatch.fnmatchcase(path, pattern[3:]):
            return True
    return False


def scan(folder: Path, excludes: list[str], under: str | None = None) -> Scan:
    """Every regular file below ``folder`` (or below ``folder/under``), symbolic links not followed."""
    result = Scan({}, [])
    start = folder / under if under else folder
    prefix = f"{under.strip('/')}/" if under else ""
    if start.is_file():
        _add(result, start, under.strip("/") if under else start.name, excludes)
        return result
    stack = [(start, prefix)]
    while stack:
        directory, relative = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError as exc:
            result.skipped.append((relative or ".", f"cannot list folder: {exc.strerror or exc}"))
            continue
        for entry in entries:
            path = relative + entry.name
            if entry.name.startswith(".") or entry.name == "__MACOSX":
                result.skipped.append((path, HIDDEN))
            elif entry.is_dir(follow_symlinks=False):
                if excluded(path + "/", excludes):
                    result.skipped.append((path + "/", "excluded"))
                else:
                    stack.append((Path(entry.path), path + "/"))
            elif entry.is_file(follow_symlinks=False):
                if excluded(path, excludes):
                    result.skipped.append((path, "excluded"))
                else:
                    stat = entry.stat(follow_symlinks=False)
                    result.files[path] = FileStat(stat.st_size, stat.st_mtime_ns)
    return result


def _add(result: Scan, path: Path, relative: str, excludes: list[str]) -> None:
    if excluded(relative, excludes):
        result.skipped.append((relative, "excluded"))
    else:
        stat = path.stat()
        result.files[relative] = FileStat(stat.st_size, stat.st_mtime_ns)
