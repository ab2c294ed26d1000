"""Videos in a result list: the hits of a video's samples (and of its poster) fold into moments, each shown as one
hit of the video with its time range, ranked among the photos by its best sample's score.

``fold_scored`` works on (id, score) pairs and a few facts of each row (a search over videos reads those alone
for its deep list, then whole rows for the page only); ``fold`` does the same on hits already fetched (keyword
and hybrid lists)."""

from __future__ import annotations

import itertools
import statistics
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from adapters.stores.sql.metadata_store import FRAME, VIDEO, MetadataStore, SampleFacts
from operations.search.hits import Hit, hits_for
from operations.search.moments import Moment, SampleHit, capped, merge

PER_VIDEO = 3  # moments of one video in one result list: a long video does not fill a page
FALLBACK_EVERY_MS = 2000  # a moment of one sample is padded as if sampled every 2 s (the default interval)
MARGIN = 0.02  # cosine: adjacent samples of one scene score within this of each other; another scene drops more
FUSED_SHARE = 0.75  # hybrid: 1/(k+r) in both lists is about twice what one list gives
FANOUT = 10  # a search over videos reads this many hits per place it returns (a video gives up to 3 places of its
# many samples), and more while moments do not fill the page


@dataclass(frozen=True)
class Shown:
    """One place of a folded list: a photo (``moment`` None) or a moment of the video ``id``."""

    id: int
    score: float
    moment: Moment | None = None
    sample: int | None = None  # the row of the best sample's hit (a frame's, or the video's for its poster)


def fold_scored(
    scored: Sequence[tuple[int, float]],
    facts: Mapping[int, SampleFacts],
    margin: float | None = MARGIN,
    share: float | None = None,
) -> list[Shown]:
    """The list (best first) with each video's sample hits merged into moments. A sample joins a neighbouring
    sample's moment when it scores within ``margin`` of that moment's best (cosines), or at least ``share`` of it
    (fused ranks: a sample both lists found against one that only one did); with neither, whenever it is in the
    list (keyword matches). Else it is a moment of its own: in a small collection every sample is in the list, and
    a moment must still be where the video is like the query. Ids without facts (pending or gone rows) are left
    out."""
    samples: dict[int, list[SampleHit]] = defaultdict(list)
    rows: dict[tuple[int, int], int] = {}
    shown: list[Shown] = []
    for row, score in scored:
        fact = facts.get(row)
        if fact is None:
            continue
        video = fact.parent if fact.kind == FRAME else row if fact.kind == VIDEO else None
        if video is None:
            shown.append(Shown(row, score))
            continue
        ms = fact.at_ms or 0
        span = (fact.duration_ms or 0) if fact.kind == FRAME else 0  # a video row's duration is its length
        samples[video].append(SampleHit(video, ms, score, fact.seq if fact.kind == FRAME else 0, span))
        rows.setdefault((video, ms), row)

    def joins(score: float, best: float) -> bool:
        return (margin is None or score >= best - margin) and (share is None or score >= best * share)

    moments: list[Moment] = []
    for found in samples.values():
        moments += merge(found, {}, {}, _interval(found), joins=joins)
    for moment in capped(sorted(moments, key=lambda m: (-m.score, m.video, m.start_ms)), PER_VIDEO):
        sample = rows.get((moment.video, moment.best_sample_ms or moment.best_ms))
        shown.append(Shown(moment.video, moment.score, moment, sample))
    return sorted(shown, key=lambda item: -item.score)


def as_hits(shown: Sequence[Shown], hits: Mapping[int, Hit], samples: Mapping[int, Hit] | None = None) -> list[Hit]:
    """The folded list as hits: a moment is its video's hit (its row, tags, paths), clamped to the video's length,
    with its best sample's frame and, from ``samples``, why that sample matched."""
    out = []
    for item in shown:
        hit = hits.get(item.id)
        if hit is None:
            continue
        if item.moment is None:
            out.append(replace(hit, score=item.score))
            continue
        moment = _clamped(item.moment, hit.image.duration_ms)
        sample = (samples or {}).get(item.sample) if item.sample is not None else None
        frame = f"{hit.image.image_id}@{moment.best_sample_ms if moment.best_sample_ms is not None else 0}"
        out.append(
            replace(
                hit,
                score=item.score,
                moment=moment,
                frame=frame,
                frame_id=item.sample,
                match=sample.match if sample is not None else hit.match,
            )
        )
    return out


def fold(
    metadata: MetadataStore,
    collection: str,
    hits: Sequence[Hit],
    with_data: bool,
    margin: float | None = MARGIN,
    share: float | None = None,
) -> list[Hit]:
    """``hits`` (best first, rows fetched) with every video's frame and poster hits replaced by its moments."""
    if not any(hit.image.kind in (VIDEO, FRAME) for hit in hits):
        return list(hits)
    facts = {hit.id: SampleFacts.of(hit.image) for hit in hits}
    shown = fold_scored([(hit.id, hit.score) for hit in hits], facts, margin, share)
    known = {hit.id: hit for hit in hits if hit.image.kind != FRAME}
    missing = [item.id for item in shown if item.id not in known]
    known.update((hit.id, hit) for hit in hits_for(metadata, collection, [(i, 0.0) for i in missing], with_data))
    return as_hits(shown, known, {hit.id: hit for hit in hits})


def _interval(found: Sequence[SampleHit]) -> int:
    """A video's sampling interval, from its samples in the list that are next to each other (keyframes a second
    apart on Android)."""
    by_seq = sorted((s.seq, s.ms) for s in found if s.seq is not None)
    gaps = [b[1] - a[1] for a, b in itertools.pairwise(by_seq) if b[0] - a[0] == 1 and b[1] > a[1]]
    return int(statistics.median(gaps)) if gaps else FALLBACK_EVERY_MS


def _clamped(moment: Moment, duration: int | None) -> Moment:
    if not duration:
        return moment
    return replace(moment, end_ms=min(moment.end_ms, duration), best_ms=min(moment.best_ms, duration))
