"""What a source holds now, from directory entries and stat results alone (no file is opened): a sync of an
unchanged library costs a directory walk. A source is a folder, or a .zip whose central directory plays the
part of the walk (its members are read only when new or changed)."""

from __future__ import annotations

import calendar
import fnmatch
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

from adapters import file_names
from operations.ingest.file_sources import HIDDEN, zip_refusal

# Folders NAS systems and desktops fill with their own thumbnails and metadata: never photos of the library.
DEFAULT_EXCLUDES = ("**/@eaDir/**", "**/#recycle/**", "**/.thumbnails/**", "*.tmp", "*.part", "*.crdownload")


@dataclass(frozen=True)
class FileStat:
    size: int
    mtime_ns: int


@dataclass
class Scan:
    files: dict[str, FileStat]  # path relative to the source, '/'-separated, in stored form (adapters/file_names.py)
    skipped: list[tuple[str, str]]  # (readable path, why): hidden or excluded, for the job's report


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


def is_zip(location: Path) -> bool:
    return location.is_file() and location.suffix.lower() == ".zip"


def scan(folder: Path, excludes: list[str], under: str | None = None) -> Scan:
    """Every regular file below ``folder`` (or below ``folder/under``, a stored-form sub-path), symbolic links not
    followed; every file member of a zip source. Names are walked in file-system form and kept in stored form."""
    if is_zip(folder):
        return _scan_zip(folder, excludes, under)
    result = Scan({}, [])
    under = file_names.file_system(under.strip("/")) if under else None
    start = folder / under if under else folder
    prefix = f"{under}/" if under else ""
    if start.is_file():
        _add(result, start, under or start.name, excludes)
        return result
    stack = [(start, prefix)]
    while stack:
        directory, relative = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError as exc:
            result.skipped.append((file_names.readable(relative or "."), f"cannot list folder: {exc.strerror or exc}"))
            continue
        for entry in entries:
            path = relative + entry.name
            if entry.name.startswith(".") or entry.name == "__MACOSX":
                result.skipped.append((file_names.readable(path), HIDDEN))
            elif entry.is_dir(follow_symlinks=False):
                if excluded(path + "/", excludes):
                    result.skipped.append((file_names.readable(path) + "/", "excluded"))
                else:
                    stack.append((Path(entry.path), path + "/"))
            elif entry.is_file(follow_symlinks=False):
                if excluded(path, excludes):
                    result.skipped.append((file_names.readable(path), "excluded"))
                else:
                    stat = entry.stat(follow_symlinks=False)
                    result.files[file_names.stored(path)] = FileStat(stat.st_size, stat.st_mtime_ns)
    return result


def _add(result: Scan, path: Path, relative: str, excludes: list[str]) -> None:
    if excluded(relative, excludes):
        result.skipped.append((file_names.readable(relative), "excluded"))
    else:
        stat = path.stat()
        result.files[file_names.stored(relative)] = FileStat(stat.st_size, stat.st_mtime_ns)


def _scan_zip(archive: Path, excludes: list[str], under: str | None) -> Scan:
    result = Scan({}, [])
    prefix = f"{under.strip('/')}" if under else ""
    with zipfile.ZipFile(archive) as opened:
        for name, info in file_names.zip_members(opened).items():
            if prefix and name != prefix and not name.startswith(prefix + "/"):
                continue
            if (why := zip_refusal(name)) is not None:
                result.skipped.append((name, why))
            elif excluded(name, excludes):
                result.skipped.append((name, "excluded"))
            else:
                result.files[name] = member_stat(info)
    return result


def member_stat(info: zipfile.ZipInfo) -> FileStat:
    """A zip member's size, and as its "mtime" its timestamp (a 2-second clock) plus its CRC-32 in nanoseconds:
    content rewritten within the same two seconds still reads as changed."""
    seconds = calendar.timegm((*info.date_time, 0, 0, 0))
    return FileStat(info.file_size, seconds * 1_000_000_000 + info.CRC)


class SourceFiles:
    """Reads the files of one source during a sync: from the folder, or from the zip opened once (members of one
    archive can be read from several threads: zipfile shares the file under its own lock)."""

    def __init__(self, location: Path) -> None:
        self.location = location
        self.archive = zipfile.ZipFile(location) if is_zip(location) else None
        self.members = file_names.zip_members(self.archive) if self.archive is not None else {}

    def file(self, path: str) -> Path:
        """Where a folder source's file (by its stored-form path) is on disk."""
        return self.location / file_names.file_system(path)

    def read(self, path: str, limit: int) -> bytes:
        if self.archive is None:
            with self.file(path).open("rb") as handle:
                return handle.read(limit)
        try:
            with self.archive.open(self.members[path]) as member:  # at most limit bytes, whatever the header says
                return member.read(limit)
        except KeyError:
            raise FileNotFoundError(f"{path} is no longer in the zip") from None
        except (zipfile.BadZipFile, NotImplementedError, RuntimeError) as exc:  # damaged, odd method, encrypted
            raise OSError(str(exc)) from exc

    def close(self) -> None:
        if self.archive is not None:
            self.archive.close()

    def __enter__(self) -> SourceFiles:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
