"""Which collections this process has loaded on Milvus, and which the server has stopped serving: after a server
restart (or a release behind this process's back) the server reloads a collection by itself, which takes tens of
seconds. Requests meanwhile answer "still loading" at once instead of waiting for the whole load."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from pymilvus.client.types import LoadState

from adapters.stores.milvus.milvus_guard import GuardedClient, VectorStoreUnavailable

logger = logging.getLogger(__name__)


class CollectionLoads:
    def __init__(self, client: GuardedClient, on_first_load: Callable[[str], None]) -> None:
        self._client = client
        self._on_first_load = on_first_load
        self._loaded: set[str] = set()
        self._loading: set[str] = set()  # the server stopped serving them: being loaded again
        self._lock = threading.Lock()  # for the two sets; never held around a call to Milvus
        client.on_not_loaded = self.not_loaded

    @property
    def names(self) -> set[str]:
        return self._loaded | self._loading

    def ensure(self, name: str) -> None:
        """Loaded once per process (waiting for the load); reloading after the server dropped it (not waiting)."""
        if name in self._loaded:
            return
        if name in self._loading:
            self._resume(name)
            return
        self._client.load_collection(name)
        with self._lock:
            self._loaded.add(name)
        self._on_first_load(name)

    def _resume(self, name: str) -> None:
        described = self._client.get_load_state(name)
        state = described["state"]
        if state == LoadState.NotExist:
            self.forget(name)  # the next call meets the missing collection as it would have anyway
            return
        if state == LoadState.Loaded:
            with self._lock:
                self._loading.discard(name)
                self._loaded.add(name)
            logger.warning("collection %s is served by the Milvus server again", name)
            return
        if state == LoadState.NotLoad:
            self._client.load_collection(name, _async=True)
        progress = described.get("progress")
        shown = f" ({progress}% loaded)" if progress is not None else ""
        raise VectorStoreUnavailable(
            f"collection '{name}' is still loading on the Milvus server{shown}; retry shortly", "loading", name
        )

    def not_loaded(self, name: str) -> None:
        """The server refused a call because it does not serve the collection (yet): load it again."""
        with self._lock:
            if name in self._loaded:
                logger.warning("collection %s is not loaded on the Milvus server: loading it again", name)
            self._loaded.discard(name)
            self._loading.add(name)

    def forget(self, name: str) -> None:
        with self._lock:
            self._loaded.discard(name)
            self._loading.discard(name)

    def waiting(self) -> str | None:
        """Why some collection of this process cannot be searched now (still loading on the server), or None."""
        waiting = []
        for name in sorted(self.names):
            try:
                self.ensure(name)
            except VectorStoreUnavailable as exc:
                if exc.kind != "loading":
                    raise
                waiting.append(exc.message)
                continue
            state = self._client.get_load_state(name)["state"]
            if state == LoadState.NotExist:  # dropped by another process
                self.forget(name)
            elif state != LoadState.Loaded:
                self.not_loaded(name)
                waiting.append(f"collection '{name}' is not loaded on the Milvus server ({state.name})")
        return "; ".join(waiting) or None
