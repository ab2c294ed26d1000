"""Keyword search over the words in and about images (captions, descriptions, file names, OCR text, tags), and the
snippets that show why an image matched. adapters/text_grams.py holds the matching rules; the ranking is here:
each term counts once per field it is in, weighted by the field (a description or OCR text says more about an
image than a caption of a similar one), with 1 + log(occurrences); ties go to the newer image."""

from __future__ import annotations

import math
from dataclasses import dataclass

from adapters import text_grams
from adapters.stores.sql.text_store import FIELDS, ImageTexts
from operations.errors import InvalidInput
from operations.search.search_batch import Snippet
from operations.services import Services

FIELD_WEIGHTS = {"name": 2.0, "caption": 1.0, "description": 3.0, "ocr": 2.0, "tags": 2.0}
SNIPPET_CHARS = 48
MAX_TERMS = 16


@dataclass(frozen=True)
class KeywordHit:
    id: int
    score: float
    rank: int  # 1 = best


def terms_of(text: str) -> list[str]:
    terms = text_grams.query_terms(text)
    if not terms:
        raise InvalidInput("the keyword query has no words")
    if len(terms) > MAX_TERMS:
        raise InvalidInput(f"at most {MAX_TERMS} words in a keyword query, got {len(terms)}")
    return terms


def ranked(
    services: Services,
    collection: str,
    text: str,
    filter: str | None = None,
    limit: int | None = None,
    vector_collection: str | None = None,
) -> list[KeywordHit]:
    """Every searchable image of the collection that matches (or the best ``limit``), best first; ``filter`` is the
    Milvus expression of the search's filters, checked on the vectors' fields (of ``vector_collection``, the Milvus
    collection serving it) as a semantic search does."""
    terms = terms_of(text)
    candidates: set[int] | None = None
    for term in sorted(terms, key=len, reverse=True):  # longer terms have rarer grams: the set shrinks fast
        found = services.texts.candidates(collection, term)
        candidates = found if candidates is None else candidates & found
        if not candidates:
            return []
    documents = services.texts.documents(collection, sorted(candidates or ()))
    scored = sorted(
        (
            (score(document, terms), image)
            for image, document in documents.items()
            if text_grams.matches(document, terms)
        ),
        key=lambda pair: (-pair[0], -pair[1]),
    )
    if filter:
        kept = services.vectors.existing_ids(vector_collection or collection, [image for _, image in scored], filter)
        scored = [pair for pair in scored if pair[1] in kept]
    if limit is not None:
        scored = scored[:limit]
    return [KeywordHit(image, value, rank) for rank, (value, image) in enumerate(scored, start=1)]


def score(document: str, terms: list[str]) -> float:
    total = 0.0
    for name, text in zip(FIELDS, document.split(text_grams.FIELD_SEPARATOR), strict=False):
        for term in terms:
            count = text.count(term)
            if count:
                total += FIELD_WEIGHTS[name] * (1 + math.log(count))
    return round(total, 6)


def snippets(texts: ImageTexts, query: str) -> list[Snippet]:
    """One snippet per field that holds a term: a window of the field around its first match, every match inside
    the window highlighted (positions in the snippet's text, which is the field in NFKC form)."""
    terms = text_grams.query_terms(query)
    found = []
    for name in FIELDS:
        raw = texts.field_text(name)
        if not raw:
            continue
        shown, folded = text_grams.display_text(raw), text_grams.normalise(raw)
        spans = sorted(span for term in terms for span in _spans(folded, term))
        if not spans:
            continue
        start = max(0, spans[0][0] - SNIPPET_CHARS // 3)
        end = min(len(shown), start + SNIPPET_CHARS)
        prefix, suffix = ("…" if start > 0 else ""), ("…" if end < len(shown) else "")
        window = [(a, b) for a, b in _merged(spans) if a >= start and b <= end]
        shift = len(prefix) - start
        text = prefix + shown[start:end].replace("\n", " ") + suffix
        found.append(Snippet(name, text, [(a + shift, b + shift) for a, b in window]))
    return found


def _spans(text: str, term: str) -> list[tuple[int, int]]:
    spans, at = [], text.find(term)
    while at >= 0:
        spans.append((at, at + len(term)))
        at = text.find(term, at + 1)
    return spans


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for a, b in spans:
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
        else:
            merged.append((a, b))
    return merged
