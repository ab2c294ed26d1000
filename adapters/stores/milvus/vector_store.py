"""Vectors in Milvus: embedded Milvus Lite (a local *.db file) or a Milvus server, by URI alone."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from pymilvus import MilvusClient

from adapters.stores.milvus.exact_mirror import ExactMirror
from adapters.stores.milvus.milvus_connection import connect, forget_session_timestamps
from adapters.stores.milvus.milvus_guard import GuardedClient, VectorStoreUnavailable
from adapters.stores.milvus.milvus_loads import CollectionLoads
from adapters.stores.milvus.milvus_schema import (
    ID_FIELD,
    LATITUDE,
    LONGITUDE,
    VECTOR_FIELD,
    collection_schema,
    default_fields,
    has_scalar_fields,
)
from adapters.stores.store_health import StoreHealth

logger = logging.getLogger(__name__)

# A request waits at most this long for a server that accepts connections but does not answer (a network split):
# it then fails (503), never hangs. A refused connection fails at once anyway.
READ_TIMEOUT_S = 15.0
STRONG = "Strong"  # for reads that must see every earlier write, from any process: counts, reconcile
_NOT_PARAMS = {"index_type", "metric_type", "field_name", "index_name", "total_rows", "indexed_rows"}
_NOT_PARAMS |= {"pending_index_rows", "state", "params", "dim"}
# Milvus Lite returns stored vectors fast in small requests only (100 ids: ~5 ms; 2,000: ~9 s).
_LITE_GET_BATCH = 100


@dataclass(frozen=True)
class IndexInfo:
    index_type: str
    metric: str
    params: dict[str, Any]


def _number(value: Any) -> Any:
    """describe_index gives parameters as strings: '16' -> 16."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return value


class VectorStore(Protocol):
    def ping(self) -> None: ...
    def readiness(self) -> str | None: ...
    def has_collection(self, name: str) -> bool: ...
    def ensure_collection(self, name: str, dim: int) -> None: ...
    def flush(self, name: str) -> None: ...
    def index_info(self, name: str) -> IndexInfo: ...
    def search_params_for(self, name: str, top_k: int) -> dict[str, Any]: ...
    @property
    def backend(self) -> str: ...
    def server_version(self) -> str | None: ...
    def drop_collection(self, name: str) -> None: ...
    def has_scalar_fields(self, name: str) -> bool: ...
    def upsert(
        self, name: str, ids: Sequence[int], vectors: np.ndarray, fields: Sequence[dict[str, Any]] | None = None
    ) -> None: ...
    def delete(self, name: str, ids: Sequence[int]) -> None: ...
    def search(
        self, name: str, vectors: np.ndarray, top_k: int, filter: str | None = None, offset: int = 0
    ) -> list[list[tuple[int, float]]]: ...
    def get(self, name: str, ids: Sequence[int]) -> dict[int, np.ndarray]: ...
    def existing_ids(self, name: str, ids: Sequence[int], filter: str | None = None) -> set[int]: ...
    def iter_ids(self, name: str, batch: int = 1000) -> Iterator[list[int]]: ...
    def positions(self, name: str, filter: str) -> list[tuple[int, float, float]]: ...
    def count(self, name: str) -> int: ...
    def mirror_stats(self) -> dict[str, dict[str, Any]]: ...
    def warm(self, name: str, wait_s: float = 120.0) -> None: ...
    def close(self) -> None: ...


class MilvusVectorStore:
    """IP metric on unit vectors (= cosine), stable int64 primary keys chosen by the metadata store."""

    def __init__(
        self,
        uri: str,
        token: str | None = None,
        index_type: str = "FLAT",
        index_params: dict[str, Any] | None = None,
        search_ef: int = 128,
        search_nprobe: int = 16,
        search_consistency: str = "Session",
        db_name: str = "default",
        insert_batch: int | None = None,
        lite_mirror_mb: int = 0,
    ) -> None:
        self.local = local = not uri.startswith(("http://", "https://", "tcp://", "grpc://"))
        if local:
            Path(uri).parent.mkdir(parents=True, exist_ok=True)
        self.uri = uri
        self.db_name = "default" if local else db_name
        label = "Milvus Lite" if local else f"Milvus server {uri}"
        self.health = StoreHealth(f"vector store ({label})", on_back=self._store_is_back)
        # Every call reports to ``health`` and raises only VectorStoreUnavailable (answered as 503, never 500).
        self._client = GuardedClient(None, self.health, label)
        self._loads = CollectionLoads(self._client, on_first_load=self._start_mirror)
        with self._client.calling():
            self._client.client = MilvusClient(uri=uri) if local else connect(uri, token, db_name)
        self.index_type = index_type
        self.index_params = index_params or {}
        self.search_ef, self.search_nprobe = search_ef, search_nprobe
        # Searches do not wait for the server's time tick (Strong costs ~200-400 ms each on a server); Session
        # still shows this process its own writes. Reads that must see every write use STRONG explicitly.
        self.search_consistency = search_consistency
        # Milvus Lite inserts ~30x faster in 500-row batches than in 2,000-row ones; a server takes big batches
        # well (REFERENCE.md), and fewer round trips matter there.
        self.insert_batch = insert_batch or (500 if local else 2000)
        self._indexes: dict[str, IndexInfo] = {}
        self._scalars: dict[str, bool] = {}
        self._lock = threading.Lock()
        # Exact FLAT searches from an in-memory copy (adapters/exact_mirror.py); Lite only: one process owns it.
        self._mirror_budget = lite_mirror_mb * 2**20 if local else 0
        self._mirrors: dict[str, ExactMirror] = {}
        self._closing = threading.Event()
        logger.info(
            "vector store ready: %s, new collections %s %s, searches %s",
            "Milvus Lite " + uri if local else f"Milvus server {uri} (database {db_name})",
            index_type,
            self.index_params,
            search_consistency,
        )

    @property
    def backend(self) -> str:
        return "milvus-lite" if self.local else "milvus-server"

    def server_version(self) -> str | None:
        try:
            return str(self._client.get_server_version())
        except Exception:  # Lite and old servers may not say
            return None

    def ping(self) -> None:
        self._client.list_collections()

    def readiness(self) -> str | None:
        """Why searches cannot be answered now (a collection this process serves is still loading on the server),
        or None when they can. Raises VectorStoreUnavailable when the store is unreachable."""
        self._client.list_collections()
        return None if self.local else self._loads.waiting()

    def _store_is_back(self) -> None:
        if not self.local:
            forget_session_timestamps(self._client.client, self.db_name, self._loads.names)

    def has_collection(self, name: str) -> bool:
        return bool(self._client.has_collection(name))

    def ensure_collection(self, name: str, dim: int) -> None:
        with self._lock:
            if self._client.has_collection(name):
                found = self._dim(name)
                if found != dim:
                    raise ValueError(f"Milvus collection {name} has dim {found}, expected {dim}")
            else:
                schema = collection_schema(dim)
                index = self._client.prepare_index_params()
                index.add_index(
                    field_name=VECTOR_FIELD,
                    index_type=self.index_type,
                    metric_type="IP",
                    params=self.index_params,
                )
                self._client.create_collection(
                    name, schema=schema, index_params=index, consistency_level=self.search_consistency
                )
                logger.info("created Milvus collection %s (dim %d, %s/IP)", name, dim, self.index_type)
            self._loads.ensure(name)

    def has_scalar_fields(self, name: str) -> bool:
        """Whether the collection carries the filter fields (collections made before them do not; cached)."""
        known = self._scalars.get(name)
        if known is None:
            known = self._scalars[name] = has_scalar_fields(self._client.describe_collection(name))
        return known

    def _dim(self, name: str) -> int:
        for field in self._client.describe_collection(name)["fields"]:
            if field["name"] == VECTOR_FIELD:
                return int(field["params"]["dim"])
        raise ValueError(f"Milvus collection {name} has no {VECTOR_FIELD} field")

    def _start_mirror(self, name: str) -> None:
        if not self._mirror_budget or self.index_info(name).index_type != "FLAT":
            return  # an approximate index answers differently from an exact copy: leave it to Lite
        mirror = self._mirrors[name] = ExactMirror(name, self._dim(name))
        threading.Thread(target=self._fill_mirror, args=(mirror,), name=f"mirror-{name}", daemon=True).start()

    def _mirror_fits(self, mirror: ExactMirror, extra: int) -> bool:
        used = sum(m.nbytes for m in self._mirrors.values())
        if used + extra * mirror.dim * 4 <= self._mirror_budget:
            return True
        if self._mirrors.pop(mirror.name, None) is mirror:
            logger.warning(
                "collection %s no longer fits the in-memory search copy (IMGSEARCH_LITE_MIRROR_MB=%d): "
                "its searches go to Milvus Lite",
                mirror.name,
                self._mirror_budget // 2**20,
            )
        return False

    def _fill_mirror(self, mirror: ExactMirror) -> None:
        """Background: every stored vector into the copy; searches use Lite until it is ready."""
        started, name = time.monotonic(), mirror.name
        try:
            ids = [i for batch in self.iter_ids(name, 16384) for i in batch]
            if not self._mirror_fits(mirror, len(ids)):
                return
            for start in range(0, len(ids), _LITE_GET_BATCH):
                if self._closing.is_set() or self._mirrors.get(name) is not mirror:
                    return
                chunk = ids[start : start + _LITE_GET_BATCH]
                rows = self._client.get(name, ids=chunk, output_fields=[VECTOR_FIELD], timeout=READ_TIMEOUT_S)
                if rows:
                    mirror.fill([int(r[ID_FIELD]) for r in rows], np.asarray([r[VECTOR_FIELD] for r in rows]))
            mirror.finish_fill()
            logger.info(
                "collection %s: %d vectors in memory for exact search in %.1f s",
                name,
                mirror.count,
                time.monotonic() - started,
            )
        except Exception as exc:  # the copy is an accelerator: without it searches still go to Lite
            if self._mirrors.get(name) is mirror:
                self._mirrors.pop(name, None)
            if not self._closing.is_set():
                logger.warning("collection %s: no in-memory search copy (%s); searching Milvus Lite", name, exc)

    def _ready_mirror(self, name: str) -> ExactMirror | None:
        mirror = self._mirrors.get(name)
        return mirror if mirror is not None and mirror.ready else None

    def warm(self, name: str, wait_s: float = 120.0) -> None:
        """Loaded, and its in-memory copy filled (Lite), before searches are sent to it: a collection about to
        serve (a re-embed's switch) answers its first search as fast as the one it replaces."""
        self._loads.ensure(name)
        deadline = time.monotonic() + wait_s
        while (mirror := self._mirrors.get(name)) is not None and not mirror.ready and time.monotonic() < deadline:
            time.sleep(0.1)

    def mirror_stats(self) -> dict[str, dict[str, Any]]:
        """Collections searched from memory (Milvus Lite): vectors held and whether the fill has finished."""
        return {name: {"vectors": m.count, "ready": m.ready} for name, m in self._mirrors.items()}

    def index_info(self, name: str) -> IndexInfo:
        """The index a collection was built with (it may predate today's settings); read once, then cached."""
        info = self._indexes.get(name)
        if info is None:
            described = self._client.describe_index(name, index_name=VECTOR_FIELD) or {}
            params = {k: _number(v) for k, v in described.items() if k not in _NOT_PARAMS}
            index_type = str(described.get("index_type", "FLAT")).upper()
            info = IndexInfo(index_type, str(described.get("metric_type")), params)
            self._indexes[name] = info
        return info

    def search_params_for(self, name: str, top_k: int) -> dict[str, Any]:
        """``ef`` never below ``top_k`` (Milvus refuses that); IVF's ``nprobe``; nothing for exact FLAT."""
        index_type = self.index_info(name).index_type
        if index_type == "HNSW":
            return {"ef": max(self.search_ef, top_k)}
        if index_type.startswith("IVF"):
            return {"nprobe": self.search_nprobe}
        return {}

    def flush(self, name: str) -> None:
        """Seal what was written so a server builds the index on it (growing segments are searched by brute
        force); once after a bulk write, not per batch. Milvus Lite gains nothing from it."""
        if not self.local and self._client.has_collection(name):
            self._client.flush(name)

    def drop_collection(self, name: str) -> None:
        with self._lock:
            self._loads.forget(name)
            self._mirrors.pop(name, None)
            self._indexes.pop(name, None)
            self._scalars.pop(name, None)
            if self._client.has_collection(name):
                self._client.drop_collection(name)

    def upsert(
        self, name: str, ids: Sequence[int], vectors: np.ndarray, fields: Sequence[dict[str, Any]] | None = None
    ) -> None:
        """Idempotent: writing the same id twice leaves one vector. ``fields`` (one dict per id) are the filter
        fields; a collection made before them takes the vectors alone."""
        scalars = self.has_scalar_fields(name)
        if fields is not None and len(fields) != len(ids):
            raise ValueError(f"{len(fields)} field rows for {len(ids)} vectors")
        for start in range(0, len(ids), self.insert_batch):
            end = start + self.insert_batch
            rows = [
                {ID_FIELD: int(i), VECTOR_FIELD: v} for i, v in zip(ids[start:end], vectors[start:end], strict=True)
            ]
            if scalars:
                extra = fields[start:end] if fields is not None else [{}] * len(rows)
                rows = [{**default_fields(), **more, **row} for row, more in zip(rows, extra, strict=True)]
            self._client.upsert(name, rows)
            mirror = self._mirrors.get(name)
            if mirror is not None and self._mirror_fits(mirror, len(rows)):
                mirror.upsert(ids[start : start + self.insert_batch], vectors[start : start + self.insert_batch])

    def delete(self, name: str, ids: Sequence[int]) -> None:
        if ids:
            self._client.delete(name, ids=[int(i) for i in ids])
            mirror = self._mirrors.get(name)
            if mirror is not None:
                mirror.delete(ids)

    def search(
        self, name: str, vectors: np.ndarray, top_k: int, filter: str | None = None, offset: int = 0
    ) -> list[list[tuple[int, float]]]:
        """The top_k after ``offset`` (the next page), of the vectors whose fields match ``filter`` (a Milvus
        expression) when one is given: filtered inside the search, so it is the true top-k of that set."""
        self._loads.ensure(name)
        mirror = self._ready_mirror(name)
        if mirror is not None and not filter:
            return [hits[offset:] for hits in mirror.search(vectors, top_k + offset)]
        results = self._client.search(
            name,
            data=[np.asarray(v, dtype=np.float32).tolist() for v in vectors],
            limit=top_k,
            offset=offset,
            filter=filter or "",
            anns_field=VECTOR_FIELD,
            search_params={"metric_type": "IP", "params": self.search_params_for(name, top_k + offset)},
            consistency_level=self.search_consistency,
            timeout=READ_TIMEOUT_S,
        )
        return [[(int(hit["id"]), float(hit["distance"])) for hit in hits] for hits in results]

    def get(self, name: str, ids: Sequence[int]) -> dict[int, np.ndarray]:
        """Stored vectors by id (ids without a vector are absent)."""
        if not ids:
            return {}
        self._loads.ensure(name)
        mirror = self._ready_mirror(name)
        if mirror is not None:
            return mirror.get(ids)
        found: dict[int, np.ndarray] = {}
        batch = _LITE_GET_BATCH if self.local else 1000
        for start in range(0, len(ids), batch):
            chunk = [int(i) for i in ids[start : start + batch]]
            rows = self._client.get(name, ids=chunk, output_fields=[VECTOR_FIELD], timeout=READ_TIMEOUT_S)
            found.update({int(row[ID_FIELD]): np.asarray(row[VECTOR_FIELD], dtype=np.float32) for row in rows})
        return found

    def existing_ids(self, name: str, ids: Sequence[int], filter: str | None = None) -> set[int]:
        """The ids among ``ids`` that have a vector (whose fields match ``filter``, a Milvus expression, if given)."""
        if not ids:
            return set()
        self._loads.ensure(name)
        found: set[int] = set()
        for start in range(0, len(ids), 1000):
            chunk = [int(i) for i in ids[start : start + 1000]]
            rows = self._client.query(
                name,
                filter=f"{ID_FIELD} in {chunk}" + (f" and ({filter})" if filter else ""),
                output_fields=[ID_FIELD],
                consistency_level=STRONG,
            )
            found.update(int(row[ID_FIELD]) for row in rows)
        return found

    def iter_ids(self, name: str, batch: int = 1000) -> Iterator[list[int]]:
        """Every id in the collection, a batch at a time."""
        for rows in self._iter_rows(name, "", [ID_FIELD], batch):
            yield [int(row[ID_FIELD]) for row in rows]

    def positions(self, name: str, filter: str) -> list[tuple[int, float, float]]:
        """(id, latitude, longitude) of every vector whose fields match ``filter``: the exact values the search's
        filter compares, so a distance computed from them agrees with it."""
        return [
            (int(row[ID_FIELD]), float(row[LATITUDE]), float(row[LONGITUDE]))
            for rows in self._iter_rows(name, filter, [ID_FIELD, LATITUDE, LONGITUDE], 4096)
            for row in rows
        ]

    def _iter_rows(self, name: str, filter: str, fields: list[str], batch: int) -> Iterator[list[dict[str, Any]]]:
        self._loads.ensure(name)
        iterator = self._client.query_iterator(
            name, batch_size=batch, filter=filter, output_fields=fields, consistency_level=STRONG
        )
        try:
            while True:
                with self._client.calling(name):
                    rows = iterator.next()
                if not rows:
                    return
                yield rows
        finally:
            with contextlib.suppress(Exception):
                iterator.close()

    def count(self, name: str) -> int:
        if not self._client.has_collection(name):
            return 0
        self._loads.ensure(name)
        rows = self._client.query(name, filter="", output_fields=["count(*)"], consistency_level=STRONG)
        return int(rows[0]["count(*)"])

    def close(self) -> None:
        self._closing.set()
        self._mirrors.clear()
        with contextlib.suppress(VectorStoreUnavailable):
            self._client.close()
        if self.local:
            # The client leaves the embedded server process running until the interpreter exits; stopping it
            # frees its memory (a 1M-vector collection holds ~4 GB) and the db file's lock now.
            from milvus_lite.server_manager import server_manager_instance

            server_manager_instance.release_server(self.uri)
