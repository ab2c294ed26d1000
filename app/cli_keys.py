"""``imgsearch keys create|list|revoke`` and ``imgsearch audit``: they open only the metadata DB, so they work
while the server runs (on Milvus Lite too, whose file one process holds)."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
from collections.abc import Iterator

from sqlalchemy.engine import Engine

from config import Settings


@contextlib.contextmanager
def _engine(settings: Settings) -> Iterator[Engine]:
    from adapters.stores.sql.sql_schema import create_metadata_engine

    engine = create_metadata_engine(str(settings.metadata_url))
    try:
        yield engine
    finally:
        engine.dispose()


def _when(value: dt.datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else "-"


def _create(args: argparse.Namespace, settings: Settings) -> int:
    from adapters.stores.sql.key_store import KeyStore
    from app.cli_common import out as _out
    from operations.access import keys

    expires = None
    if args.expires_days is not None:
        expires = dt.datetime.now(dt.UTC) + dt.timedelta(days=args.expires_days)
    collections = [c for part in args.collections or [] for c in part.split(",")] or None
    scopes = [s for part in args.scope for s in part.split(",")]
    with _engine(settings) as engine:
        created = keys.create(KeyStore(engine), args.name, scopes, collections, expires, args.rate_limit)
    record = created.record
    _out(created.key)
    _out(
        f"# key {record.name!r} (id {record.id}): scopes {','.join(record.scopes)}, collections "
        f"{','.join(record.collections) if record.collections else 'all'}, expires {_when(record.expires_at)} UTC. "
        "It is shown this once: only its hash is stored."
    )
    return 0


def _list(args: argparse.Namespace, settings: Settings) -> int:
    from adapters.stores.sql.key_store import KeyStore
    from app.cli_common import out as _out

    with _engine(settings) as engine:
        records = KeyStore(engine).listed(include_revoked=args.all)
    _out("id\tname\tprefix\tscopes\tcollections\texpires\tlast used\trevoked")
    for r in records:
        collections = ",".join(r.collections) if r.collections is not None else "all"
        _out(
            f"{r.id}\t{r.name}\t{r.prefix}…\t{','.join(r.scopes)}\t{collections}\t{_when(r.expires_at)}\t"
            f"{_when(r.last_used_at)}\t{_when(r.revoked_at)}"
        )
    return 0


def _revoke(args: argparse.Namespace, settings: Settings) -> int:
    from adapters.stores.sql.key_store import KeyStore
    from app.cli_common import out as _out
    from operations.access import keys

    with _engine(settings) as engine:
        record = keys.revoke(KeyStore(engine), args.name)
    _out(f"key {record.name!r} (id {record.id}) revoked: every service process refuses it within a few seconds")
    return 0


def _audit(args: argparse.Namespace, settings: Settings) -> int:
    from adapters.stores.sql.audit_store import AuditFilter, AuditStore
    from app.cli_common import out as _out

    since = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(hours=args.hours) if args.hours else None
    wanted = AuditFilter(args.key, args.collection, args.outcome, args.route, since, None, args.before)
    with _engine(settings) as engine:
        entries = AuditStore(engine).page(wanted, args.limit)
    _out("id\tat (UTC)\tkey\tstatus\toutcome\tmethod\tpath\tcollection\ttarget\tclient")
    for e in entries:
        _out(
            f"{e.id}\t{_when(e.at)}\t{e.key_name or '-'}\t{e.status}\t{e.outcome}\t{e.method}\t{e.path}\t"
            f"{e.collection or '-'}\t{e.target or '-'}\t{e.client or '-'}"
        )
    if len(entries) == args.limit:
        _out(f"# more: --before {entries[-1].id}")
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    keys = commands.add_parser("keys", help="API keys with scopes, collections, expiry and quota")
    actions = keys.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="create a key and print it (once)")
    create.add_argument("--name", required=True)
    create.add_argument("--scope", action="append", required=True, help="read, write or admin (each includes the last)")
    create.add_argument("--collections", action="append", help="comma-separated collections it may touch (default all)")
    create.add_argument("--expires-days", type=float, help="expires after this many days (default: never)")
    create.add_argument("--rate-limit", type=int, help="requests per quota window (default: by scope; 0: none)")
    create.set_defaults(handler=_create)
    listing = actions.add_parser("list", help="the keys (never the keys themselves)")
    listing.add_argument("--all", action="store_true", help="revoked keys too")
    listing.set_defaults(handler=_list)
    revoke = actions.add_parser("revoke", help="revoke a key by name or id")
    revoke.add_argument("name")
    revoke.set_defaults(handler=_revoke)

    audit = commands.add_parser("audit", help="the audit trail: who changed what, and refused requests")
    audit.add_argument("--key", help="a key's name")
    audit.add_argument("--collection")
    audit.add_argument("--outcome", choices=["ok", "refused", "failed"])
    audit.add_argument("--route", help="a route as declared, e.g. /img/{collection}/{image_id}")
    audit.add_argument("--hours", type=float, help="only the last hours")
    audit.add_argument("--before", type=int, help="entries older than this id (the next page)")
    audit.add_argument("--limit", type=int, default=50)
    audit.set_defaults(handler=_audit)
