"""One search box for words and pictures: ``semantic`` (Chinese-CLIP alone), ``keyword`` (the words in and about
images) or ``hybrid`` (both lists fused by reciprocal-rank fusion), with relevance cutoffs.

Hybrid takes the best ``depth`` of each list (IMGSEARCH_HYBRID_DEPTH, or deeper for a deep page), scores each
image 1/(k + rank) per list it is in (k = IMGSEARCH_HYBRID_RRF_K), and orders by that sum; ties go to the image
with the better single rank, then the lower id. Every hybrid hit carries its true semantic score (computed from
its stored vector when the semantic list did not reach it), so cutoffs mean the same in both modes.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from adapters import text_grams
from adapters.stores.sql.metadata_store import CollectionRecord
from operations.collections import collections
from operations.errors import InvalidInput
from operations.search import combined_query, keyword, video_hits
from operations.search.combined_query import QueryImage, QueryPart
from operations.search.search import page_for, run_query, truncation_notice, validate_text, validate_top_k
from operations.search.search_batch import Hit, Match, Query, SearchResult, hits_for
from operations.search.search_filters import SearchFilters
from operations.services import Services

MODES = collections.SEARCH_MODES


@dataclass(frozen=True)
class Cutoffs:
    min_score: float | None = None
    relative: float | None = None  # a fraction of the best semantic score

    @property
    def any(self) -> bool:
        return self.min_score is not None or self.relative is not None


@dataclass
class Outcome:
    result: SearchResult
    parts: list[QueryPart]
    mode: str
    cut_by_min_score: int = 0
    cut_by_relative_cutoff: int = 0


def rrf(lists: Sequence[Sequence[int]], k: float) -> list[tuple[int, float]]:
    """Reciprocal-rank fusion of ranked id lists (rank 1 first): (id, Σ 1/(k + rank)), best first."""
    fused: dict[int, float] = defaultdict(float)
    best: dict[int, int] = {}
    for ranked in lists:
        for rank, item in enumerate(ranked, start=1):
            fused[item] += 1.0 / (k + rank)
            best[item] = min(best.get(item, rank), rank)
    return sorted(fused.items(), key=lambda pair: (-pair[1], best[pair[0]], pair[0]))


def choose_mode(record: CollectionRecord, mode: str | None, text: str | None, combined: bool = False) -> str:
    """A request's mode wins; without one, the collection's search_mode (semantic, the seed's top-k by cosine,
    unless a person chose otherwise) where it fits the request, else semantic."""
    if mode is not None and mode not in MODES:
        raise InvalidInput(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode is None:
        default = record.search_mode or collections.DEFAULT_SEARCH_MODE
        fits = text is not None and not (default == "keyword" and combined)
        return default if fits else "semantic"
    if mode != "semantic" and text is None:
        raise InvalidInput(f"mode {mode!r} searches words: give a text")
    return mode


def search(
    services: Services,
    collection: str,
    top_k: int,
    mode: str | None = None,
    *,
    text: str | None = None,
    image: QueryImage | None = None,
    negative_text: str | None = None,
    weights: tuple[float, float, float] = (1.0, 1.0, 1.0),
    with_data: bool = False,
    filters: SearchFilters | None = None,
    offset: int = 0,
    cutoffs: Cutoffs = Cutoffs(),
) -> Outcome:
    settings = services.settings
    validate_top_k(top_k, settings.max_top_k)
    if cutoffs.relative is not None and not 0 < cutoffs.relative <= 1:
        raise InvalidInput(f"relative_cutoff must be above 0 and at most 1, got {cutoffs.relative}")
    record = collections.require(services, collection)
    chosen = choose_mode(record, mode, text, combined=image is not None or negative_text is not None)
    query = {"text": text, "image": image, "negative_text": negative_text, "with_data": with_data, "filters": filters}
    text_w, image_w, negative_w = weights
    weighted = {"text_weight": text_w, "image_weight": image_w, "negative_weight": negative_w}
    if chosen == "keyword":
        if image is not None or negative_text is not None:
            raise InvalidInput("mode 'keyword' searches words only: leave out image_id and negative_text")
        if cutoffs.any:
            raise InvalidInput("min_score and relative_cutoff apply to semantic and hybrid searches")
        words = validate_text(text or "", settings.max_text_chars)
        page = page_for(services, record, filters, offset, top_k)
        started = time.perf_counter()
        found = keyword.ranked(services, record.name, words, page.filter, offset + top_k, page.vectors)[offset:]
        timings = {"keyword_search": (time.perf_counter() - started) * 1000}
        started = time.perf_counter()
        hits = hits_for(services.metadata, record.name, [(k.id, k.score) for k in found], with_data)
        hits = _with_matches(services, hits, words, {}, {k.id: k for k in found}, {})
        hits = video_hits.fold(services.metadata, record.name, hits, with_data, margin=None)
        timings["metadata_fetch"] = (time.perf_counter() - started) * 1000
        result = SearchResult(record.name, record.model, hits, timings, filter=page.filter)
        return Outcome(result, [QueryPart("text", 1.0, text=words)], chosen)
    if chosen == "semantic":
        result, parts = combined_query.search(services, collection, top_k, **query, **weighted, offset=offset)
        best = _best_score(services, result, offset, record) if cutoffs.relative is not None else None
        return _cut(Outcome(result, parts, chosen), cutoffs, best)
    page = page_for(services, record, filters, offset, top_k)
    depth = max(settings.hybrid_depth, offset + top_k)
    parts = combined_query.plan(text, image, negative_text, *weights, settings.max_text_chars)
    words = validate_text(text or "", settings.max_text_chars)  # a text weighted 0 still names words to find
    # A long sentence is Chinese-CLIP's to read: over keyword search's limit of words, the keyword list is empty.
    wordy = len(text_grams.query_terms(words)) <= keyword.MAX_TERMS
    timings: dict[str, float] = {}

    def keyword_list() -> list[keyword.KeywordHit]:
        started = time.perf_counter()
        found = keyword.ranked(services, record.name, words, page.filter, depth, page.vectors) if wordy else []
        timings["keyword_search"] = (time.perf_counter() - started) * 1000
        return found

    # The keyword list is read from the metadata DB while the query is encoded and Milvus searched.
    lexical_future = services.search_pool.submit(keyword_list)
    started = time.perf_counter()
    vector = combined_query.vector_of(services, record, parts, image)
    timings["encode"] = (time.perf_counter() - started) * 1000
    started = time.perf_counter()
    # Ids and scores only: rows are fetched for the page, not for the whole list.
    semantic = services.vectors.search(record.vector_collection, vector[None, :], depth, page.filter)[0]
    timings["vector_search"] = (time.perf_counter() - started) * 1000
    lexical = lexical_future.result()
    fused = rrf([[i for i, _ in semantic], [k.id for k in lexical]], settings.hybrid_rrf_k)
    started = time.perf_counter()
    if services.metadata.has_videos(record.name):  # moments fold by fused score, then the page is cut
        listed = hits_for(services.metadata, record.name, fused, with_data)
        folded = video_hits.fold(
            services.metadata, record.name, listed, with_data, margin=None, share=video_hits.FUSED_SHARE
        )
        page_hits = folded[offset : offset + top_k]
        chosen_page = [(hit.frame_id or hit.id, hit.score) for hit in page_hits]
    else:
        chosen_page = fused[offset : offset + top_k]
        page_hits = hits_for(services.metadata, record.name, [(i, math.nan) for i, _ in chosen_page], with_data)
    scores = dict(semantic)
    # The true cosine of hits the semantic list did not reach, from their stored vectors, beside the rows' fetch.
    missing = [i for i, _ in chosen_page if i not in scores]
    stored = services.search_pool.submit(services.vectors.get, record.vector_collection, missing) if missing else None
    ranks = {i: rank for rank, (i, _) in enumerate(semantic, start=1)}
    scores.update({i: float(np.dot(v, vector)) for i, v in (stored.result() if stored else {}).items()})
    # A moment's semantic score and rank are its best sample's.
    keyed = zip(page_hits, chosen_page, strict=True)
    hits = [replace(hit, id=key, score=scores.get(key, math.nan)) for hit, (key, _) in keyed]
    hits = _with_matches(services, hits, words, ranks, {k.id: k for k in lexical}, dict(chosen_page))
    hits = [replace(hit, id=shown.id) for hit, shown in zip(hits, page_hits, strict=True)]
    timings["metadata_fetch"] = (time.perf_counter() - started) * 1000
    notices = [n for p in parts if p.text is not None and (n := truncation_notice(services, p.text))]
    result = SearchResult(
        record.name, record.model, hits, timings, notices[0] if notices else None, page.filter, vector
    )
    best = semantic[0][1] if semantic else None
    return _cut(Outcome(result, parts, chosen), cutoffs, best)


def _best_score(services: Services, result: SearchResult, offset: int, record: CollectionRecord) -> float | None:
    """The best semantic score of the whole list (a later page's first hit is not it)."""
    if offset == 0 or result.vector is None:
        return result.hits[0].score if result.hits else None
    query = Query(result.collection, result.model, 1, False, vector=result.vector, filter=result.filter)
    query.vectors = record.vector_collection
    top = run_query(services, query)
    return top.hits[0].score if top.hits else None


def _cut(outcome: Outcome, cutoffs: Cutoffs, best: float | None) -> Outcome:
    hits = outcome.result.hits
    if cutoffs.min_score is not None:
        kept = [h for h in hits if not math.isnan(h.score) and h.score >= cutoffs.min_score]
        outcome.cut_by_min_score, hits = len(hits) - len(kept), kept
    if cutoffs.relative is not None and best is not None:
        kept = [h for h in hits if not math.isnan(h.score) and h.score >= cutoffs.relative * best]
        outcome.cut_by_relative_cutoff, hits = len(hits) - len(kept), kept
    outcome.result.hits = hits
    return outcome


def _with_matches(
    services: Services,
    hits: list[Hit],
    words: str,
    semantic_ranks: dict[int, int],
    lexical: dict[int, keyword.KeywordHit],
    fused: dict[int, float],
) -> list[Hit]:
    texts = services.texts.texts([hit.id for hit in hits if hit.id in lexical])
    out = []
    for hit in hits:
        found = lexical.get(hit.id)
        match = Match(
            semantic_rank=semantic_ranks.get(hit.id),
            semantic_score=None if math.isnan(hit.score) or not fused else hit.score,
            keyword_rank=found.rank if found else None,
            keyword_score=found.score if found else None,
            fused_score=round(fused[hit.id], 6) if hit.id in fused else None,
            snippets=keyword.snippets(texts[hit.id], words) if hit.id in texts else [],
        )
        out.append(replace(hit, match=match))
    return out
