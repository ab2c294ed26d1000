"""Start-up that waits for its stores: an orchestrator may start the service before Milvus or MySQL answers. The
first attempt runs inside the lifespan (so a service whose stores are up is ready when it starts, as before);
when a store is unreachable, the service starts anyway, answers 503 (``/readyz`` says which store it waits for)
and keeps trying in the background until it can build its clients. Any other error (a bad setting, missing
weights) still stops the start, as it should."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy.exc import DBAPIError

from adapters.stores.milvus.milvus_guard import MILVUS_ERRORS
from adapters.stores.milvus.milvus_guard import one_line as milvus_one_line
from adapters.stores.sql.sql_health import one_line as sql_one_line

logger = logging.getLogger(__name__)

RETRY_EVERY_S = 2.0


@dataclass
class StartupState:
    """What ``/readyz`` and the 503s say while the service waits for a store."""

    ready: bool = False
    waiting_for: str | None = None  # "metadata" or "vectors"
    reason: str | None = None
    attempts: int = 0
    since: float = 0.0

    def message(self) -> str:
        store = {"metadata": "the metadata database", "vectors": "the vector store (Milvus)"}.get(
            self.waiting_for or "", "its stores"
        )
        return f"the service is starting: waiting for {store}: {self.reason}; retry later"


def unreachable_store(exc: BaseException) -> str | None:
    """Which store an exception says is unreachable, or None when it is some other failure."""
    if isinstance(exc, DBAPIError):
        return "metadata"
    if isinstance(exc, MILVUS_ERRORS):
        return "vectors"
    return None


def describe(exc: BaseException) -> str:
    return sql_one_line(exc) if isinstance(exc, DBAPIError) else milvus_one_line(exc)


async def start_when_stores_answer(
    state: StartupState, attempt: Callable[[], Awaitable[None]], retry_every_s: float = RETRY_EVERY_S
) -> asyncio.Task | None:
    """Runs ``attempt`` once; if a store is unreachable, returns a task that retries it until it succeeds."""
    state.since = time.monotonic()
    if await _try(state, attempt):
        return None

    async def keep_trying() -> None:
        try:
            while not await _try(state, attempt):
                await asyncio.sleep(retry_every_s)
        except Exception as exc:  # not a store: nothing to wait for; the service keeps answering 503 with why
            logger.exception("start-up failed once the stores answered")
            state.waiting_for, state.reason = None, f"start-up failed: {type(exc).__name__}: {exc}"

    return asyncio.create_task(keep_trying(), name="startup")


async def _try(state: StartupState, attempt: Callable[[], Awaitable[None]]) -> bool:
    state.attempts += 1
    try:
        await attempt()
    except Exception as exc:
        store = unreachable_store(exc)
        if store is None:
            raise
        if state.attempts == 1 or store != state.waiting_for:
            reason = describe(exc)
            logger.warning("not ready: %s store unreachable (%s); retrying every %.0f s", store, reason, RETRY_EVERY_S)
        state.waiting_for, state.reason = store, describe(exc)
        return False
    if state.attempts > 1:
        logger.warning("ready after waiting %.1f s for the %s store", time.monotonic() - state.since, state.waiting_for)
    state.ready, state.waiting_for, state.reason = True, None, None
    return True
