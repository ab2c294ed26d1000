"""What a search returns: hits with their rows, tags, paths and words (one metadata query for many lists)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from adapters import file_names
from adapters.stores.sql.metadata_store import ImageRecord, MetadataStore
from adapters.stores.sql.source_store import SourceStore
from adapters.stores.sql.tag_store import TagStore
from adapters.stores.sql.text_store import TextStore
from operations.search.moments import Moment


@dataclass(frozen=True)
class Snippet:
    """Where a keyword query matched: a window of one field, the matched words at [start, end) of ``text``."""

    field: str
    text: str
    highlights: list[tuple[int, int]] = field(default_factory=list)


@dataclass(frozen=True)
class Match:
    """Why a hit of a keyword or hybrid search is there (ranks start at 1; None: not in that list)."""

    semantic_rank: int | None = None
    semantic_score: float | None = None
    keyword_rank: int | None = None
    keyword_score: float | None = None
    fused_score: float | None = None
    snippets: list[Snippet] = field(default_factory=list)


@dataclass(frozen=True)
class Hit:
    id: int
    score: float
    image: ImageRecord
    tags: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()  # where an image of a source folder lives: "<source folder>/<path>"
    match: Match | None = None
    words: tuple[str | None, str | None, str | None] = (None, None, None)  # caption, description, OCR text
    moment: Moment | None = None  # a video's hit: the matching stretch (``image`` is the video's row)
    frame: str | None = None  # the image_id of the frame row at the moment's best time (its thumbnail)
    frame_id: int | None = None  # the row id of the hit that time is (a frame's, or the video's for its poster)


@dataclass
class SearchResult:
    collection: str
    model: str
    hits: list[Hit]
    timings_ms: dict[str, float] = field(default_factory=dict)
    notice: str | None = None  # e.g. the query was longer than the model reads
    filter: str | None = None  # the Milvus expression the search's filters became
    vector: np.ndarray | None = None  # the query vector, when the search had one


def hits_for(
    metadata: MetadataStore, collection: str, scored: Sequence[tuple[int, float]], with_data: bool
) -> list[Hit]:
    return hits_for_lists(metadata, collection, [scored], with_data)[0]


def hits_for_lists(
    metadata: MetadataStore, collection: str, lists: Sequence[Sequence[tuple[int, float]]], with_data: bool
) -> list[list[Hit]]:
    """Hits for each list of (id, score) pairs, in their order, with their rows, tags, paths and words (one query for
    all the lists); an id whose row is pending or gone (a load in flight, a half-dropped collection) is left out."""
    ids = sorted({i for scored in lists for i, _ in scored})
    rows = metadata.fetch(collection, ids, with_data=with_data)
    tags = {i: tuple(t.tag for t in found_tags) for i, found_tags in TagStore(metadata.engine).tags_of(ids).items()}
    placed = [i for i in ids if i in rows and rows[i].preview]  # no query at all for uploads and loads
    paths = {
        i: tuple(f"{source.path}/{file_names.readable(path)}" for source, path in found)
        for i, found in (SourceStore(metadata.engine).paths_of(placed).items() if placed else ())
    }
    words = TextStore(metadata.engine).written(ids)
    return [
        [
            Hit(i, score, rows[i], tags.get(i, ()), paths.get(i, ()), words=words.get(i, (None, None, None)))
            for i, score in scored
            if i in rows
        ]
        for scored in lists
    ]
