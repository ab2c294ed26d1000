"""Where bulk ingests read from: a folder (recursive) or a .zip, confined to the data root for the API."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from adapters import file_names
from operations.errors import InvalidInput, NotFound
from operations.ingest.ingest import Candidate


def resolve_under_root(root: Path, relative: str) -> Path:
    """The data root is the only place a request may read from: no absolute paths, no ``..`` or link escapes.
    Names the file system cannot hold (NUL, a part over 255 bytes) are bad input, not an OSError later."""
    if "\x00" in relative:
        raise InvalidInput("path must not contain a NUL character")
    try:
        relative.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput("path is not valid Unicode (lone surrogate)") from exc
    if any(len(part.encode("utf-8")) > 255 for part in Path(relative).parts):
        raise InvalidInput("path has a part longer than 255 bytes, which no file system allows")
    base = root.resolve()
    candidate = (base / relative).resolve()
    if Path(relative).is_absolute() or not candidate.is_relative_to(base):
        raise InvalidInput(f"path {relative!r} is outside the data root")
    return candidate


HIDDEN = "hidden file or folder (a name starting with '.', or __MACOSX): not read"
UNSAFE = "unsafe name in the zip (absolute, or with '..' parts that would leave the archive): not read"


def _hidden(parts: tuple[str, ...]) -> bool:
    return any(part.startswith(".") or part == "__MACOSX" for part in parts)


def zip_refusal(name: str) -> str | None:
    """Why a zip entry is not read, or None. Entries are never extracted (nothing is written outside), but a
    zip-slip name marks a hostile archive, and every entry is accounted for in the job's report."""
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
        return UNSAFE
    return HIDDEN if _hidden(tuple(parts)) else None


def _file_reader(path: Path, confine_to: Path | None):  # type: ignore[no-untyped-def]
    def read(limit: int) -> bytes:
        if confine_to is not None and not path.resolve().is_relative_to(confine_to):
            raise PermissionError("the file links outside the data root")
        with path.open("rb") as handle:
            return handle.read(limit)

    return read


def _zip_reader(archive: zipfile.ZipFile, info: zipfile.ZipInfo):  # type: ignore[no-untyped-def]
    def read(limit: int) -> bytes:
        with archive.open(info) as member:  # reads at most limit bytes, whatever the header claims
            return member.read(limit)

    return read


def _refused_reader(limit: int) -> bytes:
    raise AssertionError("a refused entry is never read")


@dataclass
class FileSource:
    """A folder or zip; ``count`` is known up front so progress can show a total and an ETA. Entries are named
    as people read them (adapters/file_names.py): a folder's by its file-system names, which need not be UTF-8,
    a zip's by the names its writer meant (GBK names of Windows zips included)."""

    path: Path
    count: int
    _names: list[str]  # a folder's: file-system form; a zip's: member names
    _archive: zipfile.ZipFile | None = None
    _confine_to: Path | None = None
    _refused: dict[str, str] | None = None  # entries listed with the reason they are not read
    _members: dict[str, zipfile.ZipInfo] | None = None

    @classmethod
    def open(cls, path: Path, confine_to: Path | None = None) -> FileSource:
        if path.is_dir():
            files = sorted(p.relative_to(path) for p in path.rglob("*") if p.is_file() or p.is_symlink())
            refused = {p.as_posix(): HIDDEN for p in files if _hidden(p.parts)}
            return cls(path, len(files), [p.as_posix() for p in files], None, confine_to, refused)
        if path.is_file() and path.suffix.lower() == ".zip":
            try:
                archive = zipfile.ZipFile(path)
            except zipfile.BadZipFile as exc:
                raise InvalidInput(f"{path.name} is not a valid zip file") from exc
            members = file_names.zip_members(archive)
            refused = {name: why for name in members if (why := zip_refusal(name))}
            return cls(path, len(members), list(members), archive, confine_to, refused, members)
        if path.exists():
            raise InvalidInput(f"{path.name} is neither a folder nor a .zip file")
        raise NotFound(f"{path.name} does not exist")

    def candidates(self) -> Iterator[Candidate]:
        for name in self._names:
            shown = file_names.readable(name)
            if self._refused and name in self._refused:
                yield Candidate(shown, _refused_reader, refusal=self._refused[name])
            elif self._archive is not None and self._members is not None:
                yield Candidate(shown, _zip_reader(self._archive, self._members[name]))
            else:
                file = self.path / name
                yield Candidate(shown, _file_reader(file, self._confine_to), path=str(file))

    def close(self) -> None:
        if self._archive is not None:
            self._archive.close()
