"""Moments made from matching samples: adjacent samples merge, one missing sample is tolerated and two are not,
padding by half the interval clamped to the video, the best sample's time and score, and a cap per video."""

from __future__ import annotations

from operations.search.moments import Moment, SampleHit, capped, merge

EVERY = 2000
TIMES = {7: list(range(0, 20001, EVERY)), 9: [0, 1500, 3100, 5000]}  # 9: keyframes at a variable spacing
DURATIONS = {7: 20500, 9: 5600}


def test_adjacent_samples_merge_and_one_missing_sample_is_tolerated() -> None:
    hits = [SampleHit(7, ms, s) for ms, s in ((4000, 0.30), (6000, 0.35), (10000, 0.31), (16000, 0.20))]
    moments = merge(hits, TIMES, DURATIONS, EVERY)
    # 4000, 6000 and (8000 missing) 10000 are one moment; 16000 is two samples away from 10000: its own.
    assert moments == [
        Moment(7, 3000, 11000, 6000, 0.35, 3),
        Moment(7, 15000, 17000, 16000, 0.20, 1),
    ]


def test_padding_is_clamped_to_the_video_and_variable_spacing_counts_samples_not_seconds() -> None:
    hits = [SampleHit(9, 0, 0.5), SampleHit(9, 3100, 0.4), SampleHit(9, 5000, 0.45)]
    moments = merge(hits, TIMES, DURATIONS, EVERY)
    assert moments == [Moment(9, 0, 5600, 0, 0.5, 3)]  # 1500 missing is tolerated; the end is the video's
    edge = merge([SampleHit(7, 20000, 0.1)], TIMES, DURATIONS, EVERY)
    assert edge == [Moment(7, 19000, 20500, 20000, 0.1, 1)]


def test_moments_of_several_videos_rank_by_their_best_sample_and_a_cap_keeps_pages_varied() -> None:
    hits = [
        SampleHit(7, 0, 0.9),
        SampleHit(7, 12000, 0.8),
        SampleHit(7, 18000, 0.7),
        SampleHit(9, 3100, 0.85),
        SampleHit(7, 0, 0.95),  # the same sample twice (two query parts): its best score counts
    ]
    moments = merge(hits, TIMES, DURATIONS, EVERY)
    assert [(m.video, m.best_ms, m.score) for m in moments] == [
        (7, 0, 0.95),
        (9, 3100, 0.85),
        (7, 12000, 0.8),
        (7, 18000, 0.7),
    ]
    assert [(m.video, m.best_ms) for m in capped(moments, per_video=2)] == [(7, 0), (9, 3100), (7, 12000)]
