"""The videos the service keeps itself (uploaded, or ingested from a folder or a zip): one file per content under
``IMGSEARCH_DATA_DIR/videos/<collection>/<sha256><ext>``, written to a temporary name in the same folder and
renamed into place, so a file under its final name is always whole. A video of a source folder stays in its
folder and is never copied here."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

logger = logging.getLogger(__name__)

CHUNK = 1 << 20


class TooLarge(Exception):
    """The video is over the byte limit (nothing is kept)."""


class VideoStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, collection: str, sha256: str, suffix: str) -> Path:
        return self.root / collection / f"{sha256}{suffix.lower()}"

    def find(self, collection: str, sha256: str) -> Path | None:
        """The kept file of this content, whatever its suffix."""
        folder = self.root / collection
        return next(iter(sorted(folder.glob(f"{sha256}.*"))), None) if folder.is_dir() else None

    @contextlib.contextmanager
    def incoming(
        self, collection: str, suffix: str, source: Path | Callable[[int], bytes], max_bytes: int
    ) -> Iterator[tuple[Path, str]]:
        """Copies ``source`` (a file, read a chunk at a time, or ``read(n)`` giving at most n bytes and b"" at the
        end) into a temporary file of the collection's folder, hashing as it goes; yields (the file, its sha256).
        The file is removed on leaving unless ``keep`` moved it."""
        folder = self.root / collection
        folder.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=".incoming-", suffix=suffix.lower(), dir=folder)
        path = Path(name)
        try:
            with os.fdopen(handle, "wb") as out, contextlib.ExitStack() as stack:
                read = stack.enter_context(source.open("rb")).read if isinstance(source, Path) else source
                sha = _copy(read, out, max_bytes)
            yield path, sha
        finally:
            path.unlink(missing_ok=True)

    def keep(self, incoming: Path, collection: str, sha256: str, suffix: str) -> Path:
        target = self.path(collection, sha256, suffix)
        if not target.exists():
            os.replace(incoming, target)
        return target

    def remove(self, collection: str, sha256: str) -> None:
        found = self.find(collection, sha256)
        if found is not None:
            found.unlink(missing_ok=True)
            logger.info("removed the kept video %s", found)

    def drop_collection(self, collection: str) -> None:
        shutil.rmtree(self.root / collection, ignore_errors=True)


def _copy(read: Callable[[int], bytes], out: BinaryIO, max_bytes: int) -> str:
    digest, size = hashlib.sha256(), 0
    while chunk := read(CHUNK):
        size += len(chunk)
        if size > max_bytes:
            raise TooLarge(f"file is over the video limit of {max_bytes} bytes")
        digest.update(chunk)
        out.write(chunk)
    return digest.hexdigest()
