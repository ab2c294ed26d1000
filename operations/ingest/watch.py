"""Watched sources follow their folders: file-system events (inotify, or polling where events do not reach, such
as network shares) are debounced into sync jobs, with a full sync every ``IMGSEARCH_SYNC_INTERVAL`` as a safety
net. With several service processes exactly one watches each source: the one holding its lease in the metadata
DB; when it dies another takes over once the lease runs out.

One sync covers every change of a settle window (the deepest folder holding them all), so that a file moved from
one folder to another is seen as a move in one sync, and a burst of 1,000 new files makes one job, not 1,000.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver, ObservedWatch
from watchdog.observers.polling import PollingObserver

from adapters import file_names
from adapters.stores.sql.source_store import SourceRecord
from operations.ingest.source_scan import excluded, is_zip
from operations.ingest.sources import source_folder
from operations.jobs.jobs import JobRunner
from operations.services import Services

logger = logging.getLogger(__name__)

TICK_S = 0.25
LEASE_S = 30.0


@dataclass
class _Watched:
    source: SourceRecord
    watch: ObservedWatch
    pending: set[str] = field(default_factory=set)  # folders (relative, '' = the whole source) with changes
    last_event: float = 0.0
    last_full: float = field(default_factory=time.monotonic)


class _Events(FileSystemEventHandler):
    """A folder's events, or (``archive``) those of one zip file, watched through its parent folder: any change of
    the zip syncs the whole source, whose scan then reads the zip's directory."""

    def __init__(self, watcher: SourceWatcher, source_id: int, folder: str, archive: bool = False) -> None:
        self.watcher, self.source_id, self.folder, self.archive = watcher, source_id, folder, archive

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write") or (event.is_directory and event.event_type == "modified"):
            return
        for path in (event.src_path, getattr(event, "dest_path", "")):
            if path and (not self.archive or str(path) == self.folder):
                self.watcher.noticed(self.source_id, self.folder, str(path))


class SourceWatcher:
    """Runs in each service process; ``submit(source, sub_path)`` queues a sync job."""

    def __init__(self, services: Services, owner: str, submit: Callable[[SourceRecord, str | None], None]) -> None:
        settings = services.settings
        self.services, self.owner, self.submit = services, owner, submit
        self.debounce_s, self.full_every_s = settings.watch_debounce_seconds, settings.sync_interval
        self.observer: BaseObserver = PollingObserver(timeout=1) if settings.watch_polling else Observer()
        self._watched: dict[int, _Watched] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._refresh = threading.Event()
        self._thread = threading.Thread(target=self._run, name="source-watcher", daemon=True)

    def start(self) -> None:
        self.observer.start()
        self._thread.start()

    @property
    def watching(self) -> list[int]:
        return sorted(self._watched)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.observer.stop()
        self.observer.join(timeout=10)
        for source_id in list(self._watched):
            self.services.sources.release_watch(source_id, self.owner)

    # --- events (observer threads) ---------------------------------------------------------------
    def noticed(self, source_id: int, folder: str, path: str) -> None:
        relative = PurePosixPath(path).relative_to(folder).as_posix() if path.startswith(folder) else ""
        relative = "" if relative == "." else relative
        with self._lock:
            watched = self._watched.get(source_id)
            if watched is None:
                return
            parts = relative.split("/") if relative else []
            hidden = any(p.startswith(".") or p == "__MACOSX" for p in parts)
            patterns = watched.source.excludes
            if hidden or (relative and (excluded(relative, patterns) or excluded(relative + "/", patterns))):
                return
            # The folder holding the file (or folder) that changed, as the key its files are kept under (matched
            # against the excludes above in file-system form, as a scan matches them).
            watched.pending.add(file_names.stored("/".join(parts[:-1])))
            watched.last_event = time.monotonic()

    # --- the manager thread ----------------------------------------------------------------------
    def refresh(self) -> None:
        """A source was added or changed: look at the watched sources now rather than at the next renewal."""
        self._refresh.set()

    def _run(self) -> None:
        next_claim = 0.0
        while not self._stop.wait(TICK_S):
            try:
                if time.monotonic() >= next_claim or self._refresh.is_set():
                    self._refresh.clear()
                    self._claim()
                    next_claim = time.monotonic() + LEASE_S / 3
                self._submit_settled()
            except Exception:  # the metadata DB may be down for a while: try again next round
                logger.warning("source watcher: will retry", exc_info=True)

    def _claim(self) -> None:
        """Watch the watched sources whose lease this process holds or can take; let go of the others."""
        wanted = {s.id: s for s in self.services.sources.list(watched_only=True)}
        for source_id, source in wanted.items():
            held = self.services.sources.hold_watch(source_id, self.owner, LEASE_S)
            if held and source_id not in self._watched:
                self._start_watching(source)
            elif not held and source_id in self._watched:
                self._stop_watching(source_id)
        for source_id in [i for i in self._watched if i not in wanted]:
            self._stop_watching(source_id)

    def _start_watching(self, source: SourceRecord) -> None:
        try:
            folder = str(source_folder(self.services, source))
        except Exception as exc:
            logger.warning("source %d (%s) cannot be watched: %s", source.id, source.path, exc)
            return
        if is_zip(Path(folder)):
            events = _Events(self, source.id, folder, archive=True)
            watch = self.observer.schedule(events, str(Path(folder).parent), recursive=False)
        else:
            watch = self.observer.schedule(_Events(self, source.id, folder), folder, recursive=True)
        with self._lock:
            self._watched[source.id] = _Watched(source, watch, pending={""})  # catch up with what changed meanwhile
        self._watched[source.id].last_event = time.monotonic()
        logger.info("watching source %d (%s) of %s", source.id, source.path, source.collection)

    def _stop_watching(self, source_id: int) -> None:
        with self._lock:
            watched = self._watched.pop(source_id, None)
        if watched is not None:
            self.observer.unschedule(watched.watch)
            logger.info("no longer watching source %d (%s)", source_id, watched.source.path)

    def _submit_settled(self) -> None:
        now = time.monotonic()
        for watched in list(self._watched.values()):
            with self._lock:
                due = bool(watched.pending) and now - watched.last_event >= self.debounce_s
                full = now - watched.last_full >= self.full_every_s
                if not (due or full):
                    continue
                sub_path = None if full else _common_folder(watched.pending)
                pending, watched.pending = watched.pending, set()
            try:
                self.submit(watched.source, sub_path)
            except Exception as exc:  # the queue is full (429) or the DB is down: keep the changes for later
                logger.warning("sync of source %d not queued yet: %s", watched.source.id, exc)
                with self._lock:
                    watched.pending |= pending
                    watched.last_event = now
                continue
            if sub_path is None:
                watched.last_full = now


def _common_folder(folders: set[str]) -> str | None:
    """The deepest folder holding all of them (None: the whole source)."""
    split = [f.split("/") if f else [] for f in folders]
    common: list[str] = []
    for parts in zip(*split, strict=False):
        if len(set(parts)) != 1:
            break
        common.append(parts[0])
    return "/".join(common) or None


def sync_submitter(runner: JobRunner) -> Callable[[SourceRecord, str | None], None]:
    """Queues a sync job, unless one that covers it is already waiting in the queue (it will see these changes)."""

    def submit(source: SourceRecord, sub_path: str | None) -> None:
        for job in runner.store.recent(50, source.collection):
            if job.kind == "sync" and job.state == "queued" and job.params.get("source") == source.id:
                covered = job.params.get("path")
                if covered is None or (sub_path is not None and (sub_path + "/").startswith(covered + "/")):
                    return
        params = {"collection": source.collection, "source": source.id, "path": sub_path, "via": "watch"}
        runner.submit("sync", source.collection, params)

    return submit
