"""The metadata database's up/down state from SQLAlchemy's own events: a failed connection or a dropped one marks
it down, the next connection made marks it back up (the pool pre-pings, so that happens on the first request
after the database returns)."""

from __future__ import annotations

from sqlalchemy import Engine, event
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import DBAPIError, OperationalError

from adapters.stores.store_health import StoreHealth


def one_line(exc: BaseException) -> str:
    """The driver's own message (``(2003, "Can't connect to MySQL server …")``), without SQLAlchemy's SQL echo."""
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    return " ".join(f"{type(cause).__name__}: {cause}".split())[:300]


def watch_engine(engine: Engine, label: str) -> StoreHealth:
    health = StoreHealth(label)

    def on_error(context: ExceptionContext) -> None:
        error = context.sqlalchemy_exception or context.original_exception
        if context.is_disconnect or isinstance(error, OperationalError):
            health.failed(one_line(error))

    event.listen(engine, "handle_error", on_error)
    event.listen(engine, "connect", lambda *_: health.succeeded())
    return health
