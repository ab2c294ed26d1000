"""Every failure of a Milvus call becomes one exception, ``VectorStoreUnavailable``: pymilvus raises its own
exceptions for most errors but lets some gRPC ones through untouched (a deadline exceeded while a server
restarts, a channel-ready timeout), and those used to reach users as 500s."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from pymilvus.exceptions import MilvusException

from adapters.stores.store_health import StoreHealth

# What the Milvus client raises when the server is down, restarting, overloaded or not serving a collection yet.
MILVUS_ERRORS: tuple[type[Exception], ...] = (MilvusException, grpc.RpcError, grpc.FutureTimeoutError)
_CALL_ERRORS = (*MILVUS_ERRORS, ConnectionError, TimeoutError)  # and, inside a call, the socket's own
_NOT_LOADED = 101  # Milvus's CollectionNotLoaded: after a server restart, until it has reloaded the collection
_CONNECT_FAILED = 2
_OUTAGE_WORDS = ("unavailable", "connect", "deadline", "retry timeout", "channel", "not ready", "timeout")


class VectorStoreUnavailable(MilvusException):
    """The vector store cannot answer now; ``kind`` is ``down`` (unreachable or failing), ``loading`` (up, but the
    collection is not served yet) or ``error`` (it answered with an error). All are retryable: the web layer
    answers 503 with Retry-After."""

    def __init__(self, message: str, kind: str = "down", collection: str | None = None) -> None:
        super().__init__(code=_NOT_LOADED if kind == "loading" else _CONNECT_FAILED, message=message)
        self.kind = kind
        self.collection = collection


def one_line(exc: BaseException) -> str:
    """The cause in one line: gRPC's code and details, or Milvus's message, never a traceback."""
    if isinstance(exc, grpc.RpcError) and hasattr(exc, "code"):
        with contextlib.suppress(Exception):
            return f"gRPC {exc.code().name}: {exc.details()}"
    if isinstance(exc, VectorStoreUnavailable):
        return exc.message
    text = exc.message if isinstance(exc, MilvusException) else str(exc)
    text = " ".join(str(text).split())
    return f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__


def classify(exc: BaseException) -> str:
    """``loading``, ``down`` or ``error`` (see VectorStoreUnavailable)."""
    if isinstance(exc, VectorStoreUnavailable):
        return exc.kind
    if isinstance(exc, MilvusException):
        if exc.code == _NOT_LOADED or "not loaded" in str(exc.message).lower():
            return "loading"
        if exc.code == _CONNECT_FAILED:
            return "down"
        message = str(exc.message).lower()
        return "down" if any(word in message for word in _OUTAGE_WORDS) else "error"
    return "down"  # gRPC errors, timeouts, refused connections


class GuardedClient:
    """A MilvusClient whose every call reports to ``health`` and raises only ``VectorStoreUnavailable``.
    ``on_not_loaded(collection)`` hears of searches refused because the server has not loaded a collection."""

    def __init__(
        self, client: Any, health: StoreHealth, label: str, on_not_loaded: Callable[[str], None] | None = None
    ) -> None:
        self.client = client
        self.health = health
        self.label = label
        self.on_not_loaded = on_not_loaded

    @contextlib.contextmanager
    def calling(self, collection: str | None = None) -> Iterator[None]:
        try:
            yield
        except VectorStoreUnavailable:
            raise
        except _CALL_ERRORS as exc:
            raise self._unavailable(exc, collection) from exc
        self.health.succeeded()

    def _unavailable(self, exc: BaseException, collection: str | None) -> VectorStoreUnavailable:
        kind, cause = classify(exc), one_line(exc)
        if kind == "loading" and collection is not None:
            self.health.succeeded()  # the server answered: it is up, only the collection is not served yet
            if self.on_not_loaded is not None:
                self.on_not_loaded(collection)
            return VectorStoreUnavailable(
                f"collection '{collection}' is still loading on the Milvus server; retry shortly", "loading", collection
            )
        if kind == "down":
            self.health.failed(cause)
            return VectorStoreUnavailable(f"the vector store ({self.label}) is unavailable: {cause}; retry later")
        return VectorStoreUnavailable(f"the vector store ({self.label}) failed: {cause}; retry later", "error")

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.client, name)
        if not callable(attribute):
            return attribute

        @functools.wraps(attribute)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            collection = args[0] if args and isinstance(args[0], str) else kwargs.get("collection_name")
            with self.calling(collection):
                return attribute(*args, **kwargs)

        return guarded
