"""``imgsearch collections list|mode``: what each collection holds and how its searches are ranked by default.
Both read and write the metadata DB alone, so they work while a service holds Milvus Lite."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator

from app.cli_common import out
from config import Settings


@contextlib.contextmanager
def _metadata(settings: Settings) -> Iterator:
    from adapters.stores.sql.metadata_store import MetadataStore

    store = MetadataStore(str(settings.metadata_url))
    try:
        yield store
    finally:
        store.close()


def _list(args: argparse.Namespace, settings: Settings) -> int:
    from operations.collections.collections import DEFAULT_SEARCH_MODE

    with _metadata(settings) as metadata:
        for record in metadata.list_collections():
            mode = record.search_mode or DEFAULT_SEARCH_MODE
            out(f"{record.name}\t{record.model}\t{metadata.count(record.name)} images\tsearch_mode={mode}")
    return 0


def _mode(args: argparse.Namespace, settings: Settings) -> int:
    from operations.collections import collections

    with _metadata(settings) as metadata:
        record = collections.set_search_mode(metadata, args.collection, args.search_mode)
    out(f"{record.name}: searches that name no mode are {args.search_mode}")
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from operations.collections.collections import SEARCH_MODES

    parser = commands.add_parser("collections", help="list collections, or set how their searches are ranked")
    actions = parser.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="each collection, its model, size and default search mode").set_defaults(
        handler=_list
    )
    mode = actions.add_parser("mode", help="the ranking of searches that name no mode (a request's mode wins)")
    mode.add_argument("collection")
    mode.add_argument("search_mode", choices=SEARCH_MODES)
    mode.set_defaults(handler=_mode)
