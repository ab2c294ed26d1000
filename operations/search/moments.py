"""Moments: the stretches of a video that match a query, made at query time from its matching samples.

Adjacent matching samples of one video merge into one moment; one missing sample between two matches is tolerated
(a camera pan, a face turned away). A moment runs from its first sample to its last, padded by half the sampling
interval on each side (clamped to the video), scores its best sample, and shows that sample's frame. MaterialSearch
does the same on whole seconds computed from rounded fps; here every time is a frame's own time in milliseconds.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple


class SampleHit(NamedTuple):  # a tuple: made a hundred times per search
    video: int  # the video's image id
    ms: int  # the sample's time
    score: float
    seq: int | None = None  # its place among the video's samples (None: found from ``sample_times``)
    span: int = 0  # how long the picture it shows lasted (near-copies after it were dropped at sampling)


@dataclass(frozen=True)
class Moment:
    video: int
    start_ms: int
    end_ms: int
    best_ms: int
    score: float
    samples: int  # how many matching samples it spans
    best_sample_ms: int | None = field(default=None, compare=False)  # the time of the best sample itself


def merge(
    hits: Iterable[SampleHit],
    sample_times: dict[int, Sequence[int]],
    durations: dict[int, int],
    every_ms: int,
    max_missing: int = 1,
    joins: Callable[[float, float], bool] | None = None,
) -> list[Moment]:
    """Moments of the matching samples ``hits``, best first (ties: the earlier moment of the lower video id).
    ``sample_times``: every sample time of each video, sorted (what "adjacent" means); ``durations``: each video's
    length in ms, to clamp the padding."""
    by_video: dict[int, dict[int, float]] = defaultdict(dict)
    seqs: dict[int, dict[int, int]] = defaultdict(dict)
    spans: dict[tuple[int, int], int] = {}
    for hit in hits:
        known = by_video[hit.video].get(hit.ms)
        by_video[hit.video][hit.ms] = hit.score if known is None else max(known, hit.score)
        if hit.seq is not None:
            seqs[hit.video][hit.ms] = hit.seq
        spans[(hit.video, hit.ms)] = max(spans.get((hit.video, hit.ms), 0), hit.span)
    moments: list[Moment] = []
    for video, matched in by_video.items():
        position = seqs[video] or {ms: i for i, ms in enumerate(sample_times.get(video) or sorted(matched))}
        for run in _runs(matched, position, max_missing, joins):
            moments.append(_moment(video, run, matched, durations.get(video), every_ms, spans))
    return sorted(moments, key=lambda m: (-m.score, m.video, m.start_ms))


def _runs(
    matched: dict[int, float],
    position: dict[int, int],
    max_missing: int,
    joins: Callable[[float, float], bool] | None,
) -> list[list[int]]:
    """The matched sample times in runs of neighbours. With ``joins(score, best)``, best samples first: a sample
    joins a run it neighbours when ``joins`` says its score is close enough to that run's best, else it starts a
    run of its own (another moment of the same video)."""
    last = len(position)
    place = lambda ms: position.get(ms, last)  # noqa: E731
    if joins is None:
        runs: list[list[int]] = []
        for ms in sorted(matched, key=lambda t: (place(t), t)):
            if runs and place(ms) - place(runs[-1][-1]) <= max_missing + 1:
                runs[-1].append(ms)
            else:
                runs.append([ms])
        return runs
    bests: list[float] = []  # each run's best score (runs start best first: its first sample)
    runs = []
    holders: dict[int, list[int]] = defaultdict(list)  # place: the runs holding it
    reach = range(-(max_missing + 1), max_missing + 2)
    for ms in sorted(matched, key=lambda t: (-matched[t], t)):
        here = place(ms)
        near = sorted({run for step in reach for run in holders.get(here + step, ())})
        run = next((r for r in near if joins(matched[ms], bests[r])), None)  # the oldest run it may join
        if run is None:
            run = len(runs)
            bests.append(matched[ms])
            runs.append([])
        runs[run].append(ms)
        if run not in holders[here]:
            holders[here].append(run)
    return [sorted(times, key=lambda t: (place(t), t)) for times in runs]


def _moment(
    video: int,
    run: list[int],
    scores: dict[int, float],
    duration: int | None,
    every_ms: int,
    spans: dict[tuple[int, int], int],
) -> Moment:
    """A sample stands for the stretch its picture lasted (its span): the moment runs to the end of its last
    sample's, and its best time is the middle of the best sample's."""
    best = max(run, key=lambda ms: (scores[ms], -ms))
    pad = every_ms // 2
    end = run[-1] + spans.get((video, run[-1]), 0) + pad
    best_ms = best + spans.get((video, best), 0) // 2
    return Moment(
        video,
        max(0, run[0] - pad),
        min(duration, end) if duration is not None else end,
        min(best_ms, duration) if duration is not None else best_ms,
        scores[best],
        len(run),
        best,
    )


def capped(moments: Sequence[Moment], per_video: int) -> list[Moment]:
    """At most ``per_video`` moments of each video, keeping the order: one long video does not fill a page."""
    taken: dict[int, int] = defaultdict(int)
    kept = []
    for moment in moments:
        if taken[moment.video] < per_video:
            kept.append(moment)
            taken[moment.video] += 1
    return kept
