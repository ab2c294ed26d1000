"""Videos in a result list: the hits of a video's samples (and of its poster) fold into moments, each shown as one
hit of the video with its time range, ranked among the photos by its best sample's score."""

from __future__ import annotations

import itertools
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace

from adapters.stores.sql.metadata_store import FRAME, VIDEO, MetadataStore
from operations.search.hits import Hit, hits_for
from operations.search.moments import Moment, SampleHit, capped, merge

PER_VIDEO = 3  # moments of one video in one result list: a long video does not fill a page
FALLBACK_EVERY_MS = 2000  # a video with one sample: padded as if sampled every 2 s (the default interval)
MARGIN = 0.02  # cosine: adjacent samples of one scene score within this of each other; another scene drops more
FUSED_SHARE = 0.75  # hybrid: 1/(k+r) in both lists is about twice what one list gives
FANOUT = 4  # a search over videos reads this many hits per place it returns, and more while moments fill them


def has_video_hits(hits: Sequence[Hit]) -> bool:
    return any(hit.image.kind in (VIDEO, FRAME) for hit in hits)


def fold(
    metadata: MetadataStore,
    collection: str,
    hits: Sequence[Hit],
    with_data: bool,
    margin: float | None = MARGIN,
    share: float | None = None,
) -> list[Hit]:
    """``hits`` (best first) with every video's frame and poster hits replaced by its moments. A sample matches
    when it is in the list and scores within ``margin`` of its video's best (cosines), or at least ``share`` of
    it (fused ranks: a sample both lists found against one that only one did); with neither, anywhere in the
    list (keyword matches). In a small collection every sample is in the list: a moment must still be where the
    video is like the query."""
    if not has_video_hits(hits):
        return list(hits)
    samples: dict[int, list[SampleHit]] = defaultdict(list)
    rows: dict[int, Hit] = {}
    sample_hits: dict[tuple[int, int], Hit] = {}  # (video, ms): the hit that sample is (its row, why it matched)
    for hit in hits:
        video = hit.image.parent if hit.image.kind == FRAME else hit.id if hit.image.kind == VIDEO else None
        if video is None:
            continue
        ms = hit.image.at_ms or 0
        samples[video].append(SampleHit(video, ms, hit.score))
        sample_hits.setdefault((video, ms), hit)
        if hit.image.kind == VIDEO:
            rows[hit.id] = hit
    missing = [video for video in samples if video not in rows]
    rows.update((hit.id, hit) for hit in hits_for(metadata, collection, [(v, 0.0) for v in missing], with_data))
    times = {video: [ms for _, ms in found] for video, found in metadata.frames_of(list(samples)).items()}
    moments: list[Moment] = []
    for video, found in samples.items():
        best = max(sample.score for sample in found)
        if margin is not None:
            found = [sample for sample in found if sample.score >= best - margin]
        if share is not None:
            found = [sample for sample in found if sample.score >= best * share]
        if video in rows:  # a video deleted meanwhile has no row: its samples go
            duration = rows[video].image.duration_ms
            durations = {video: duration} if duration else {}
            moments += merge(found, {video: times.get(video, [])}, durations, _interval(times.get(video, [])))
    moments = capped(sorted(moments, key=lambda m: (-m.score, m.video, m.start_ms)), PER_VIDEO)
    shown = [
        replace(
            rows[m.video],
            score=m.score,
            moment=m,
            frame=f"{rows[m.video].image.image_id}@{m.best_ms}",
            frame_id=sample_hits[(m.video, m.best_ms)].id,
            match=sample_hits[(m.video, m.best_ms)].match,
        )
        for m in moments
    ]
    photos = [hit for hit in hits if hit.image.kind not in (VIDEO, FRAME)]
    return sorted([*photos, *shown], key=lambda hit: -hit.score)


def _interval(times: Sequence[int]) -> int:
    """A video's sampling interval: the median gap of its samples (keyframes a second apart on Android)."""
    gaps = [b - a for a, b in itertools.pairwise(times) if b > a]
    return int(statistics.median(gaps)) if gaps else FALLBACK_EVERY_MS
