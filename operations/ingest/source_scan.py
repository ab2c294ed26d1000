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

from operations.ingest.file_sources import HIDDEN, zip_refusal

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


def is_zip(location: Path) -> bool:
    return location.is_file() and location.suffix.lower() == ".zip"


def scan(folder: Path, excludes: list[str], under: str | None = None) -> Scan:
    """Every regular file below ``folder`` (or below ``folder/under``), symbolic links not followed; every file
    member of a zip source."""
    if is_zip(folder):
        return _scan_zip(folder, excludes, under)
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


def _scan_zip(archive: Path, excludes: list[str], under: str | None) -> Scan:
    result = Scan({}, [])
    prefix = f"{under.strip('/')}" if under else ""
    with zipfile.ZipFile(archive) as opened:
        for info in opened.infolist():
            name = info.filename.replace("\\", "/")
            if info.is_dir() or (prefix and name != prefix and not name.startswith(prefix + "/")):
                continue
            if (why := zip_refusal(info.filename)) is not None:
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

    def read(self, path: str, limit: int) -> bytes:
        if self.archive is None:
            with (self.location / path).open("rb") as handle:
                return handle.read(limit)
        try:
            with self.archive.open(path) as member:  # at most limit bytes, whatever the header says
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
