"""Sampling phone videos (adapters/video.py) on real files written with PyAV: keyframes first and seeks where
keyframes are far apart, exact times on variable frame rate, rotation applied, QuickTime metadata read, black
frames and repeats dropped, long recordings thinned; damaged, empty, audio-only and cut-short files refused or
indexed up to the damage with the reason."""

from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path

import numpy as np
import pytest

from adapters import video
from tests.videofiles import damage, scene, write_audio_only, write_video


def _second_shown(image) -> int:  # type: ignore[no-untyped-def]
    """Which second of a test video a sample shows, from its colour (the median pixel: off the bar and the corner)."""
    pixel = np.median(np.asarray(image.convert("RGB")).reshape(-1, 3), axis=0)
    distances = [np.abs(pixel - np.asarray(scene(second))).sum() for second in range(60)]
    return int(np.argmin(distances))


def test_keyframes_of_an_android_video_are_its_samples(tmp_path: Path) -> None:
    written = write_video(tmp_path / "android.mp4", seconds=6, keyframe_every_s=1)
    sampled = video.sample(written.path, every_s=2)
    times = [s.ms for s in sampled.samples]
    assert times == written.frame_ms[::30] and all(s.keyframe for s in sampled.samples)  # a keyframe each 30 frames
    assert [_second_shown(s.image) for s in sampled.samples] == [t // 1000 for t in times]
    assert sampled.decoded_frames == len(times) and sampled.damage is None  # keyframes only: nothing else decoded
    assert (sampled.facts.codec, sampled.facts.width, sampled.facts.height) == ("h264", 640, 360)
    assert abs(sampled.facts.duration_ms - 6000) <= 40


def test_a_long_gop_rotated_hevc_is_topped_up_and_shown_upright(tmp_path: Path) -> None:
    written = write_video(tmp_path / "iphone.mov", seconds=10, codec="libx265", keyframe_every_s=5, rotation_ccw=-90)
    sampled = video.sample(written.path, every_s=2)
    facts = sampled.facts
    assert (facts.codec, facts.rotation, facts.width, facts.height) == ("hevc", 90, 360, 640)
    times = [s.ms for s in sampled.samples]
    assert all(b - a <= 2100 for a, b in itertools.pairwise([0, *times]))  # no gap over the interval
    assert any(not s.keyframe for s in sampled.samples)  # found by seeking between keyframes
    assert set(times) <= set(written.frame_ms)
    assert [_second_shown(s.image) for s in sampled.samples] == [t // 1000 for t in times]
    first = np.asarray(sampled.samples[0].image.convert("RGB")).astype(int)
    assert first.shape[:2] == (448, 252)  # portrait, upright
    red = (first[..., 0] > 200) & (first[..., 1] < 60) & (first[..., 2] < 60)
    rows, columns = np.nonzero(red)
    # Turned 90° clockwise for display: the recorded top-left corner is now the top-right one.
    assert rows.max() < first.shape[0] / 3 and columns.min() > first.shape[1] * 2 / 3


def test_variable_frame_rate_times_are_exact(tmp_path: Path) -> None:
    written = write_video(tmp_path / "vfr.mp4", seconds=8, variable=True, keyframe_every_s=1)
    sampled = video.sample(written.path, every_s=1)
    times = [s.ms for s in sampled.samples]
    assert len(times) >= 6 and set(times) <= set(written.frame_ms)
    assert [_second_shown(s.image) for s in sampled.samples] == [t // 1000 for t in times]
    assert sampled.facts.fps is not None and abs(sampled.facts.fps - 30) > 5  # not a constant 30 fps


def test_quicktime_metadata_gives_capture_time_place_and_camera(tmp_path: Path) -> None:
    metadata = {
        "com.apple.quicktime.creationdate": "2024-07-01T18:30:00+0800",
        "com.apple.quicktime.location.ISO6709": "+31.2304+121.4737+004.000/",
        "com.apple.quicktime.make": "Apple",
        "com.apple.quicktime.model": "iPhone 15 Pro",
    }
    facts = video.probe(write_video(tmp_path / "meta.mov", seconds=2, metadata=metadata).path)
    assert (facts.taken_at, facts.taken_offset) == (dt.datetime(2024, 7, 1, 10, 30), "+08:00")
    assert (facts.latitude, facts.longitude) == (31.2304, 121.4737)
    assert facts.camera == "Apple iPhone 15 Pro"
    android = video.probe(
        write_video(tmp_path / "android.mp4", seconds=2, metadata={"creation_time": "2023-05-02T03:04:05.000000Z"}).path
    )
    assert (android.taken_at, android.taken_offset) == (dt.datetime(2023, 5, 2, 3, 4, 5), "+00:00")


def test_black_frames_and_repeats_are_dropped_and_long_recordings_thinned(tmp_path: Path) -> None:
    written = write_video(tmp_path / "fade.mp4", seconds=6, black_until_ms=2000)
    faded = video.sample(written.path, every_s=1)
    assert faded.dropped["black"] == sum(1 for t in written.frame_ms[::30] if t < 2000) == 3
    assert min(s.ms for s in faded.samples) >= 2000
    recording = write_video(tmp_path / "recording.mp4", seconds=6)
    thinned = video.sample(recording.path, every_s=1, max_samples=3)
    assert len(thinned.samples) == 3 and thinned.dropped["thinned"] == len(recording.frame_ms[::30]) - 3
    times = [s.ms for s in thinned.samples]
    assert times[0] == 0 and times[-1] >= 4900  # evenly over the whole recording


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.mp4", b"", "not a readable video"),
        ("notes.mp4", b"just some text, not a video" * 10, "not a readable video"),
    ],
)
def test_files_that_are_not_videos_are_refused_with_the_reason(
    tmp_path: Path, name: str, content: bytes, reason: str
) -> None:
    (tmp_path / name).write_bytes(content)
    with pytest.raises(video.VideoError, match=reason):
        video.sample(tmp_path / name)


def test_audio_only_and_cut_short_files_are_refused(tmp_path: Path) -> None:

    audio = write_audio_only(tmp_path / "voice.m4a")
    with pytest.raises(video.VideoError, match="no video stream"):
        video.sample(audio)
    whole = write_video(tmp_path / "whole.mp4", seconds=4).path.read_bytes()
    cut = tmp_path / "copy_cut_short.mp4"  # a phone copy interrupted: the moov atom (at the end) never came
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(video.VideoError):
        video.sample(cut)


def test_a_stream_damaged_part_way_keeps_what_came_before(tmp_path: Path) -> None:
    path = damage(write_video(tmp_path / "damaged.mkv", seconds=8).path)
    sampled = video.sample(path, every_s=1)
    assert sampled.samples and min(s.ms for s in sampled.samples) == 0
    assert sampled.damage is not None and "damaged after" in sampled.damage
    assert [_second_shown(s.image) for s in sampled.samples[:3]] == [s.ms // 1000 for s in sampled.samples[:3]]


def test_the_time_limit_stops_a_decode_and_says_so(tmp_path: Path) -> None:
    path = write_video(tmp_path / "long.mp4", seconds=6, keyframe_every_s=3).path
    sampled = video.sample(path, every_s=0.5, time_limit_s=0.0)
    assert sampled.damage is not None and "time limit" in sampled.damage


def test_a_frame_of_a_moment_is_the_one_shown_at_that_time(tmp_path: Path) -> None:
    import io

    from PIL import Image

    from adapters.video_clips import frame_jpeg

    written = write_video(tmp_path / "moment.mov", seconds=6, codec="libx265", keyframe_every_s=3, rotation_ccw=-90)
    for ms in (0, 2500, 4100, 99_000):
        picture = Image.open(io.BytesIO(frame_jpeg(written.path, ms)))
        assert picture.size == (360, 640)  # upright
        assert _second_shown(picture) == min(ms, written.frame_ms[-1]) // 1000


def test_a_clip_plays_from_its_first_frame_and_covers_the_range(tmp_path: Path) -> None:
    import io

    import av

    from adapters.video_clips import clip_mp4

    written = write_video(tmp_path / "long_gop.mp4", seconds=8, keyframe_every_s=4)
    data = clip_mp4(written.path, 2500, 4500)
    with av.open(io.BytesIO(data)) as clip:
        stream = clip.streams.video[0]
        frames = list(clip.decode(stream))
    times = [round(float(f.pts * stream.time_base) * 1000) for f in frames]
    expected = [t - 2500 for t in written.frame_ms if 2500 <= t < 4500]
    assert times == expected and frames[0].key_frame  # starts at 0 on a keyframe: no grey start, nothing early
    assert (
        _second_shown(frames[0].to_image())
        == written.frame_ms[len(written.frame_ms) - len([t for t in written.frame_ms if t >= 2500])] // 1000
    )
    assert _second_shown(frames[-1].to_image()) == 4
    with pytest.raises(video.VideoError):
        clip_mp4(written.path, 4000, 4000)
