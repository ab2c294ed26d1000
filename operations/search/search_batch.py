"""Concurrent searches share their work end to end.

Queries that arrive together are encoded in one forward pass per model (stage 1, ``MicroBatcher``'s adaptive
window: a lone query on a quiet service goes straight through), and the queries of that pass that ask the same
collection, ``top_k`` and fields share one Milvus search (nq = the group) and one metadata query (stage 2). The
two stages run on their own threads, so the next batch is encoded while this one is searched. "More like this"
and several-image requests already hold their vectors and join stage 2 directly.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from adapters.encoders.encoder_base import EncoderBase
from adapters.encoders.micro_batch import MicroBatcher
from adapters.stores.milvus.vector_store import VectorStore
from adapters.stores.sql.metadata_store import MetadataStore
from operations.search import video_hits
from operations.search.hits import Hit, Match, SearchResult, Snippet, hits_for, hits_for_lists

__all__ = ["Hit", "Match", "Query", "QueryBatcher", "SearchResult", "Snippet", "hits_for", "search_vectors"]

logger = logging.getLogger(__name__)
_STOP = object()
MAX_DEPTH = 16384  # Milvus answers at most this many hits (top_k + offset) per search


def search_vectors(
    vectors: VectorStore,
    metadata: MetadataStore,
    collection: str,
    model: str,
    queries: np.ndarray,
    top_k: int,
    with_data: bool,
    timings: dict[str, float] | None = None,
    filter: str | None = None,
    offset: int = 0,
    vector_collection: str | None = None,
) -> list[SearchResult]:
    """One Milvus search for every query vector (``filter``: a Milvus expression over the scalar fields;
    ``offset``: the next page; ``vector_collection``: the Milvus collection serving ``collection``), one metadata
    query for every hit; a result list per query."""
    timings = dict(timings or {})
    if metadata.has_videos(collection):
        pages = _search_with_videos(
            vectors, metadata, collection, queries, top_k, with_data, timings, filter, offset, vector_collection
        )
    else:
        started = time.perf_counter()
        found = vectors.search(vector_collection or collection, queries, top_k, filter, offset)
        timings["vector_search"] = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        pages = hits_for_lists(metadata, collection, found, with_data)
        # A video another process wrote in the last moments: folded all the same (the page may come up short).
        pages = [video_hits.fold(metadata, collection, page, with_data) for page in pages]
        timings["metadata_fetch"] = (time.perf_counter() - started) * 1000
    return [
        SearchResult(collection, model, hits, dict(timings), filter=filter, vector=np.asarray(query))
        for hits, query in zip(pages, queries, strict=True)
    ]


def _search_with_videos(
    vectors: VectorStore,
    metadata: MetadataStore,
    collection: str,
    queries: np.ndarray,
    top_k: int,
    with_data: bool,
    timings: dict[str, float],
    filter: str | None,
    offset: int,
    vector_collection: str | None,
) -> list[list[Hit]]:
    """A collection with videos: the best hits from the first, deep enough that the moments they fold into still
    fill the page (deeper while they do not and more hits exist), read with a few facts per row; then the page's
    rows, tags and paths only."""
    wanted = offset + top_k
    depth = min(MAX_DEPTH, wanted * video_hits.FANOUT)
    timings["vector_search"] = timings["moments"] = 0.0
    while True:
        started = time.perf_counter()
        found = vectors.search(vector_collection or collection, queries, depth, filter, 0)
        timings["vector_search"] += (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        facts = metadata.sample_facts(collection, sorted({i for scored in found for i, _ in scored}))
        folded = [video_hits.fold_scored(scored, facts) for scored in found]
        timings["moments"] += (time.perf_counter() - started) * 1000
        short = any(len(f) < wanted and len(raw) >= depth for f, raw in zip(folded, found, strict=True))
        if not short or depth >= MAX_DEPTH:
            break
        depth = min(MAX_DEPTH, depth * video_hits.FANOUT)
    started = time.perf_counter()
    pages = [page[offset:wanted] for page in folded]
    hits = hits_for_lists(metadata, collection, [[(item.id, item.score) for item in page] for page in pages], with_data)
    shown = [
        video_hits.as_hits(page, {hit.id: hit for hit in listed}) for page, listed in zip(pages, hits, strict=True)
    ]
    timings["metadata_fetch"] = (time.perf_counter() - started) * 1000
    return shown


@dataclass
class Query:
    """One search; ``text`` or ``pixels`` (with the ``encoder`` that reads them) or an already known ``vector``."""

    collection: str
    model: str
    top_k: int
    with_data: bool
    encoder: EncoderBase | None = None
    text: str | None = None
    pixels: Any = None
    vector: np.ndarray | None = None
    filter: str | None = None  # a Milvus expression (operations/search/search_filters.py)
    offset: int = 0
    vectors: str | None = None  # the Milvus collection searched (see search.Page); None: the collection's name
    timings: dict[str, float] = field(default_factory=dict)
    submitted: float = field(default_factory=time.perf_counter)
    result: Future = field(default_factory=Future)


class QueryBatcher:
    def __init__(self, vectors: VectorStore, metadata: MetadataStore, max_size: int, max_wait_ms: float) -> None:
        self._vectors, self._metadata = vectors, metadata
        self._encode = MicroBatcher(self._encode_batch, max_size, max_wait_ms / 1000, "query-encoder")
        self._searches: queue.Queue[Any] = queue.Queue()
        self.searches = 0  # Milvus search calls made
        self.searched = 0  # queries they answered
        self._thread = threading.Thread(target=self._search_loop, name="query-search", daemon=True)
        self._thread.start()

    @property
    def stats(self) -> dict[str, Any]:
        return {
            "max_size": self._encode.max_size,
            "max_wait_ms": self._encode.max_wait_s * 1000,
            "encoder_passes": self._encode.batches,
            "encoded_queries": self._encode.items,
            "vector_searches": self.searches,
            "searched_queries": self.searched,
        }

    def search(self, query: Query) -> SearchResult:
        """Blocks until the query's results are in; raises what its batch raised."""
        if query.vector is None:
            self._encode.submit(query)
        else:
            self._searches.put([query])
        return query.result.result()

    def search_many(self, queries: Sequence[Query]) -> list[SearchResult]:
        """Queries whose vectors are known (several images of one request): one unit of stage 2."""
        self._searches.put(list(queries))
        return [query.result.result() for query in queries]

    def _encode_batch(self, batch: Sequence[Query]) -> list[None]:
        """Stage 1: one forward pass per encoder and input kind, then hand the batch on to stage 2."""
        groups: dict[tuple[int, bool], list[Query]] = defaultdict(list)
        for query in batch:
            groups[(id(query.encoder), query.text is not None)].append(query)
        for (_, is_text), group in groups.items():
            encoder = group[0].encoder
            assert encoder is not None
            try:
                if is_text:
                    rows = encoder.encode_queries([q.text or "" for q in group])
                else:
                    rows = encoder.encode_pixels([q.pixels for q in group])
            except Exception as exc:
                for query in group:
                    query.result.set_exception(exc)
                continue
            now = time.perf_counter()
            for query, row in zip(group, rows, strict=True):
                query.vector = row
                query.timings["encode"] = (now - query.submitted) * 1000
            self._searches.put(group)
        return [None] * len(batch)

    def _search_loop(self) -> None:
        while True:
            first = self._searches.get()
            if first is _STOP:
                return
            pending = list(first)
            while True:  # everything already waiting joins this round: no added wait
                try:
                    more = self._searches.get_nowait()
                except queue.Empty:
                    break
                if more is _STOP:
                    self._searches.put(_STOP)
                    break
                pending.extend(more)
            self._search_round(pending)

    def _search_round(self, queries: list[Query]) -> None:
        """Stage 2: one Milvus search and one metadata query per (collection, top_k, fields, filter, page)."""
        groups: dict[tuple[str, str | None, int, bool, str | None, int], list[Query]] = defaultdict(list)
        for q in queries:
            groups[(q.collection, q.vectors, q.top_k, q.with_data, q.filter, q.offset)].append(q)
        for (collection, vector_collection, top_k, with_data, expression, offset), group in groups.items():
            try:
                matrix = np.stack([np.asarray(q.vector, dtype=np.float32) for q in group])
                results = search_vectors(
                    self._vectors,
                    self._metadata,
                    collection,
                    group[0].model,
                    matrix,
                    top_k,
                    with_data,
                    filter=expression,
                    offset=offset,
                    vector_collection=vector_collection,
                )
            except Exception as exc:
                for query in group:
                    query.result.set_exception(exc)
                continue
            self.searches += 1
            self.searched += len(group)
            for query, result in zip(group, results, strict=True):
                result.timings_ms = {**query.timings, **result.timings_ms}
                result.model = query.model
                query.result.set_result(result)

    def close(self) -> None:
        self._encode.close()
        self._searches.put(_STOP)
        self._thread.join(timeout=10)
