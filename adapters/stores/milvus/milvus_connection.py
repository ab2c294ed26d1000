"""A Milvus server connection that comes back quickly after an outage."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable

from pymilvus import MilvusClient
from pymilvus.client.cache import GlobalCache
from pymilvus.exceptions import MilvusException

logger = logging.getLogger(__name__)

# A new connection gives up after this long (pymilvus waits 10 s): a service starting before its Milvus server
# retries instead, and a refused connection is known sooner.
CONNECT_TIMEOUT_S = 5.0
# gRPC backs off between reconnection attempts, exponentially up to 2 minutes: after an outage of half a minute a
# client could wait tens of seconds more before it even tries the restarted server. Capped at 1 s here.
GRPC_OPTIONS = {
    "grpc.initial_reconnect_backoff_ms": 250,
    "grpc.min_reconnect_backoff_ms": 250,
    "grpc.max_reconnect_backoff_ms": 1000,
}


def connect(uri: str, token: str | None, db_name: str) -> MilvusClient:
    """Several service processes start at once: one creates the database, and the others may briefly be told it
    does not exist (or already does) until the server's caches agree."""
    attempt = 0
    while True:
        try:
            if db_name != "default":
                admin = MilvusClient(uri=uri, token=token or "", timeout=CONNECT_TIMEOUT_S, dedicated=True)
                try:
                    if db_name not in admin.list_databases():
                        admin.create_database(db_name)
                        logger.info("created Milvus database %s", db_name)
                finally:
                    admin.close()
            # A connection of its own (pymilvus shares one per address by default), with the capped back-off.
            client = MilvusClient(
                uri=uri,
                token=token or "",
                db_name=db_name,
                timeout=CONNECT_TIMEOUT_S,
                dedicated=True,
                grpc_options=GRPC_OPTIONS,
            )
            client.list_collections()  # the database is usable from here
            return client
        except MilvusException as exc:
            attempt += 1
            if attempt == 10 or "database" not in str(exc):
                raise
            time.sleep(0.5)


def forget_session_timestamps(client: MilvusClient, db_name: str, collections: Iterable[str]) -> None:
    """After an outage, searches ask no more than a fresh client would. With Session consistency pymilvus makes
    each search wait until the server has caught up with this process's last write; after a server restart that
    replay took ~20 s while a fresh client searched at once. The writes before the outage were either acknowledged
    (and are replayed) or failed (and their job reports it); writes made from now on are read back as before."""
    with contextlib.suppress(Exception):  # pymilvus's cache of last-write timestamps, keyed by server address
        endpoint = client._get_connection().server_address
        for name in collections:
            GlobalCache.collection_ts.invalidate(endpoint, db_name, name)
