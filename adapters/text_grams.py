"""How words in and about pictures are matched: normalisation, the character bigrams that are indexed, and the
terms of a query.

Matching semantics (docs and tests hold to these):
- Text is normalised with NFKC (full-width Ｌａｔｉｎ and ２ become Latin and 2, ㈱ becomes (株)), lower-cased
  character by character, and every whitespace or control character becomes a space.
- A query is split on whitespace into terms. An image matches when every term is a substring of one of its
  normalised fields (a term never spans two fields, nor a space inside one).
- That holds for any script and any length: 发票, 号线, 2号线, img_20, a single character 票.

The index holds, per image, every pair of adjacent characters inside each space-separated piece of its fields,
and the last character of each piece alone. A term of two or more characters can only be in an image that has
all of the term's bigrams; a single character only in one with a gram that starts with it. The candidates are then
checked against the normalised text, so the index finds candidates and never decides a match by itself.

Ranking: a term scores, per field that holds it, the field's weight × (1 + ln occurrences), in whole micro-units so
that sums compare exactly. Each index entry keeps the score its gram would get as a term, and that is an upper
bound of the score of every longer term holding the gram (a field that holds the term holds the gram at least as
often): the keyword search reads an entry list best first and stops when nothing unread can beat its top.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Sequence

FIELD_SEPARATOR = "\x1e"  # between an image's fields in its normalised document; never in normalised text
FIELDS = ("name", "caption", "description", "ocr", "tags")  # the order of the fields in a document
# What a field says about an image: a description or OCR text more than a caption of a similar one.
FIELD_WEIGHTS = {"name": 2.0, "caption": 1.0, "description": 3.0, "ocr": 2.0, "tags": 2.0}
SCORE_UNIT = 1_000_000


def normalise(text: str) -> str:
    """Same length as ``unicodedata.normalize("NFKC", text)``, position for position (so a match found here can be
    highlighted in the NFKC text a person reads)."""
    folded = []
    for char in unicodedata.normalize("NFKC", text):
        if char.isspace() or unicodedata.category(char)[0] == "C":
            folded.append(" ")
            continue
        lower = char.lower()
        folded.append(lower if len(lower) == 1 else char)
    return "".join(folded)


def display_text(text: str) -> str:
    """The text a snippet shows: NFKC, so its positions are those of ``normalise``."""
    return unicodedata.normalize("NFKC", text)


def grams_of(document: str) -> set[str]:
    """The index entries of a normalised document (fields joined by FIELD_SEPARATOR)."""
    grams: set[str] = set()
    for piece in document.replace(FIELD_SEPARATOR, " ").split():
        grams.update(piece[i : i + 2] for i in range(len(piece) - 1))
        grams.add(piece[-1])
    return grams


def term_score(fields: Sequence[str], term: str) -> int:
    """The score of one term in a document's normalised fields (in FIELDS order), in SCORE_UNITs."""
    total = 0
    for name, text in zip(FIELDS, fields, strict=False):
        count = text.count(term)
        if count:
            total += round(FIELD_WEIGHTS[name] * (1 + math.log(count)) * SCORE_UNIT)
    return total


def gram_weights(document: str) -> dict[str, int]:
    """The index entries of a normalised document with each one's score as a term (see the module's ranking)."""
    fields = document.split(FIELD_SEPARATOR)
    return {gram: term_score(fields, gram) for gram in grams_of(document)}


def query_terms(query: str) -> list[str]:
    """The distinct terms of a query, in order."""
    return list(dict.fromkeys(normalise(query).split()))


def term_grams(term: str) -> set[str]:
    """Bigrams of a term of two or more characters; the term itself when it is one character (then matched as a
    prefix of the indexed grams)."""
    if len(term) == 1:
        return {term}
    return {term[i : i + 2] for i in range(len(term) - 1)}


def matches(document: str, terms: list[str]) -> bool:
    """The reference rule: every term inside one field (fields and pieces are separated, so ``in`` suffices)."""
    return all(term in document for term in terms)
