"""Keyword search over the words in and about images (captions, descriptions, file names, OCR text, tags), and the
snippets that show why an image matched. adapters/text_grams.py holds the matching and scoring rules: each term
counts once per field it is in, weighted by the field, with 1 + ln(occurrences); ties go to the newer image.

A search that wants the best ``limit`` (hybrid fuses only its best ``depth``) costs what that top costs, not what
every match costs: it reads, for each term, the index entries of its rarest gram best first (the entries' weights
bound the term's score) and stops once the ``limit``-th best match found beats anything still unread (Fagin's
threshold algorithm). The result equals sorting every match, which is what the other path does: a search without
a limit, or with a one-character term (its entries are spread over every gram it starts)."""

from __future__ import annotations

from dataclasses import dataclass, field

from adapters import text_grams
from adapters.stores.sql.text_store import FIELDS, ImageTexts
from operations.errors import InvalidInput
from operations.search.search_batch import Snippet
from operations.services import Services

SNIPPET_CHARS = 48
MAX_TERMS = 16
PROBE_CAP = 128  # gram counts above this are all "common": the probe costs at most this many steps per gram
CUT_ABOVE = 64  # more candidates than this are cut on the index before their documents are read
MAX_ALSO = 8  # a stream's entries are of images holding the query's 8 rarest other grams too (the rest: checked)
FIRST_READ = 32  # entries read per term in the first round, at least the limit (then twice as many each round)


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
    matcher = _Matcher(services, collection, terms, filter, vector_collection or collection)
    if limit is None or min(len(term) for term in terms) < 2:
        scored = _every_match(matcher)
    else:
        scored = _best_matches(matcher, limit)
    scored.sort(key=lambda pair: (-pair[0], -pair[1]))
    if limit is not None:
        scored = scored[:limit]
    return [KeywordHit(image, value / text_grams.SCORE_UNIT, rank) for rank, (value, image) in enumerate(scored, 1)]


def _score(document: str, terms: list[str]) -> int:
    fields = document.split(text_grams.FIELD_SEPARATOR)
    return sum(text_grams.term_score(fields, term) for term in terms)


@dataclass
class _Matcher:
    """Decides which candidate images match, with their exact scores (in SCORE_UNITs), filters included."""

    services: Services
    collection: str
    terms: list[str]
    filter: str | None
    vector_collection: str
    grams: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.grams = sorted({gram for term in self.terms for gram in text_grams.term_grams(term)})

    def score(
        self, ids: list[int], checked: bool = False, weights: dict[int, int] | None = None
    ) -> list[tuple[int, int]]:
        """(score, image) of the images among ``ids`` that match every term and pass the filter. ``checked``: the
        ids are known to hold every gram of the query; ``weights``: their index entries' weights, for a query of
        one two-character term (whose entry weight is its score)."""
        texts = self.services.texts
        bigrams = all(len(term) == 2 for term in self.terms)
        if weights is not None and bigrams and len(self.terms) == 1:
            return self._filtered([(weights[image], image) for image in ids])
        if bigrams or (not checked and min(len(term) for term in self.terms) >= 2 and len(ids) > CUT_ABOVE):
            held = texts.holding(self.collection, self.grams, ids)  # a cheap cut on the index
            ids = [image for image in ids if len(held.get(image, ())) == len(self.grams)]
            if bigrams:  # a two-character term is its gram: its entry's weight is its score
                scored = [(sum(held[image][term] for term in self.terms), image) for image in ids]
                return self._filtered(scored)
        documents = texts.documents(self.collection, ids)
        return self._filtered(
            [
                (_score(document, self.terms), image)
                for image, document in documents.items()
                if text_grams.matches(document, self.terms)
            ]
        )

    def _filtered(self, scored: list[tuple[int, int]]) -> list[tuple[int, int]]:
        if not self.filter or not scored:
            return scored
        kept = self.services.vectors.existing_ids(self.vector_collection, [image for _, image in scored], self.filter)
        return [pair for pair in scored if pair[1] in kept]


def _every_match(matcher: _Matcher) -> list[tuple[int, int]]:
    candidates: set[int] | None = None
    for term in sorted(matcher.terms, key=len, reverse=True):  # longer terms have rarer grams: the set shrinks fast
        found = matcher.services.texts.candidates(matcher.collection, term)
        candidates = found if candidates is None else candidates & found
        if not candidates:
            return []
    return matcher.score(sorted(candidates or ()))


@dataclass
class _Stream:
    """One term's rarest gram: its index entries, read best first."""

    gram: str
    terms: int  # how many of the query's terms this gram drives (their scores are each bounded by its weight)
    read: int = 0
    last: tuple[int, int] | None = None  # (weight, image) of the last entry read
    done: bool = False


def _best_matches(matcher: _Matcher, limit: int) -> list[tuple[int, int]]:
    texts = matcher.services.texts
    counts = texts.gram_counts(matcher.collection, matcher.grams, PROBE_CAP)  # a plan only: may be minutes old
    drivers = [min(sorted(text_grams.term_grams(term)), key=lambda gram: counts[gram]) for term in matcher.terms]
    streams = [_Stream(gram, drivers.count(gram)) for gram in dict.fromkeys(drivers)]
    by_rarity = sorted(matcher.grams, key=lambda gram: counts[gram])
    checked = len(matcher.grams) - 1 <= MAX_ALSO  # every stream's entries hold every gram of the query
    seen: set[int] = set()
    found: list[tuple[int, int]] = []
    size = max(FIRST_READ, limit)
    while True:
        new: dict[int, int] = {}
        for stream in streams:
            also = [gram for gram in by_rarity if gram != stream.gram][:MAX_ALSO]
            entries = texts.postings(matcher.collection, stream.gram, stream.read, size, also)
            stream.read += len(entries)
            stream.done = len(entries) < size
            if entries:
                image, weight = entries[-1]
                stream.last = (weight, image)
            new.update((image, weight) for image, weight in entries if image not in seen)
            seen.update(new)
        found.extend(matcher.score(sorted(new), checked, new))
        if any(stream.done for stream in streams):  # every match holds that gram, and all its entries are read
            return found
        if len(found) >= limit and _beats_the_unread(found, limit, streams):
            return found
        size *= 2


def _beats_the_unread(found: list[tuple[int, int]], limit: int, streams: list[_Stream]) -> bool:
    """An image not read yet scores at most the sum of the streams' last weights and, when it ties that sum, is
    older than every stream's last image: the limit-th best found must rank above it."""
    kth_score, kth_image = sorted(found, key=lambda pair: (-pair[0], -pair[1]))[limit - 1]
    bound = sum(stream.terms * stream.last[0] for stream in streams if stream.last)
    oldest_last = min(stream.last[1] for stream in streams if stream.last)
    return kth_score > bound or (kth_score == bound and kth_image >= oldest_last)


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
