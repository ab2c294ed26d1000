"""``imgsearch sources add|list|rm`` and ``imgsearch sync``: source folders from the command line (paths are
relative to the data root, or absolute inside it)."""

from __future__ import annotations

import argparse
from pathlib import Path

from config import Settings


def _relative(settings: Settings, path: str) -> str:
    given = Path(path)
    if given.is_absolute():
        root = Path(str(settings.data_root)).resolve()
        resolved = given.resolve()
        return resolved.relative_to(root).as_posix() if resolved.is_relative_to(root) else path
    return path


def _add(args: argparse.Namespace, settings: Settings) -> int:
    from app.cli_common import out as _out
    from app.cli_common import services_for as _services
    from operations.ingest import sources

    with _services(settings) as services:
        record = sources.add(
            services, args.collection, _relative(settings, args.path), args.exclude, args.watch, args.model
        )
    _out(f"source {record.id}: {record.path} → collection {record.collection} (watched: {record.watched})")
    _out(f"excludes: {', '.join(record.excludes) or 'none'}; now run: imgsearch sync --collection {record.collection}")
    return 0


def _list(args: argparse.Namespace, settings: Settings) -> int:
    from app.cli_common import out as _out
    from app.cli_common import services_for as _services
    from operations.ingest import sources

    with _services(settings) as services:
        found = sources.summaries(services, args.collection)
    for summary in found:
        record = summary.record
        synced = record.last_sync_at.isoformat(timespec="seconds") if record.last_sync_at else "never"
        _out(f"{record.id}\t{record.path}\t{summary.files} files\twatched={record.watched}\tlast sync {synced}")
    return 0


def _remove(args: argparse.Namespace, settings: Settings) -> int:
    from app.cli_common import out as _out
    from app.cli_common import services_for as _services
    from operations.ingest import sources

    with _services(settings) as services:
        removed = sources.remove(services, args.collection, args.id, args.keep_images)
    _out(f"source {args.id} removed; {removed} images removed from both stores (files untouched)")
    return 0


def _sync(args: argparse.Namespace, settings: Settings) -> int:
    from app.cli_common import run_job as _run_job
    from app.cli_common import services_for as _services
    from operations.ingest import sources, sync

    with _services(settings) as services:
        if args.source:
            records = [sources.require(services, args.collection, args.source)]
        else:
            records = [summary.record for summary in sources.summaries(services, args.collection)]
        under = sources.validate_under(args.path)
        status = 0
        for record in records:
            params = {"collection": args.collection, "source": record.id, "path": under, "via": "cli"}
            status |= _run_job(
                services,
                "sync",
                args.collection,
                params,
                lambda progress, record=record: sync.run(services, record, progress, under),
            )
        return status


def add_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    source = commands.add_parser("sources", help="source folders of a collection (referenced in place, synced)")
    actions = source.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="register a folder under the data root")
    add.add_argument("path", help="folder, relative to the data root (or absolute inside it)")
    add.add_argument("--collection", required=True)
    add.add_argument("--exclude", action="append", help="glob of paths never read (repeatable; default: NAS folders)")
    add.add_argument("--watch", action="store_true", help="follow file-system events")
    add.add_argument("--model", help="model for a new collection (default: IMGSEARCH_MODEL_NAME)")
    add.set_defaults(handler=_add)
    listing = actions.add_parser("list", help="the collection's sources")
    listing.add_argument("--collection", required=True)
    listing.set_defaults(handler=_list)
    remove = actions.add_parser("rm", help="forget a source (its images go unless --keep-images)")
    remove.add_argument("id", type=int)
    remove.add_argument("--collection", required=True)
    remove.add_argument("--keep-images", action="store_true")
    remove.set_defaults(handler=_remove)

    sync = commands.add_parser("sync", help="make a collection equal to its source folders, with a progress bar")
    sync.add_argument("--collection", required=True)
    sync.add_argument("--source", type=int, help="one source (default: all of the collection's)")
    sync.add_argument("--path", help="only this sub-folder of the source")
    sync.set_defaults(handler=_sync)
