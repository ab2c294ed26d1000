"""Phone videos with PyAV (the ``video`` extra; its wheels bundle FFmpeg): what the container says (duration, size,
codec, frame rate, rotation, capture time, camera, GPS) and the frames a search should see.

Sampling decodes keyframes only first (``skip_frame="NONKEY"``: the decoder skips every other frame, ~5x cheaper
per sample than decoding everything), then tops up by seeking wherever keyframes are further apart than the
sampling interval. A sample's time is its frame's PTS × the stream's time base, exact on the variable frame rate
phones record (never frame index ÷ fps). Black frames and near-copies of the sample before are dropped, and a long
recording is thinned evenly to ``max_samples``. A file damaged part-way keeps the samples before the damage and
says why; a decode that runs past its time limit stops the same way.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import math
import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)

EXTENSIONS = (".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi")
NO_DURATION = "the video has no duration: cut short (no index), or empty"
BLACK_LUMA = 12.0  # mean luma (0-255) under which a frame is black: fades, a lens cap, the first frame of a clip
SAME_SCENE = 3.0  # mean absolute difference (0-255) of 32x32 greys under which a sample repeats the one before
_ISO6709 = re.compile(r"^([+-]\d+(?:\.\d+)?)([+-]\d+(?:\.\d+)?)")


class VideoError(Exception):
    """Not a video this service can read: the reason is shown to the user."""


def available() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class VideoFacts:
    duration_ms: int
    width: int  # as shown, after the rotation
    height: int
    codec: str
    fps: float | None  # the average rate; phones record variable frame rate
    rotation: int  # degrees the picture is turned to be shown upright
    taken_at: dt.datetime | None = None  # UTC when the offset is known
    taken_offset: str | None = None
    camera: str | None = None
    latitude: float | None = None
    longitude: float | None = None


@dataclass(frozen=True)
class Sample:
    ms: int  # the frame's presentation time
    image: Image.Image  # RGB, upright, longest side at most the sampling's max_side
    keyframe: bool
    until_ms: int | None = None  # the last sample it stands for (near-copies after it were dropped)

    @property
    def span_ms(self) -> int:
        return (self.until_ms or self.ms) - self.ms


@dataclass
class Sampled:
    facts: VideoFacts
    samples: list[Sample]
    damage: str | None = None  # why sampling stopped early (a damaged stream, the time limit)
    decoded_frames: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: {"black": 0, "repeat": 0, "thinned": 0})


def probe(source: str | Path) -> VideoFacts:
    """The facts of a video file (one keyframe decoded, for its rotation)."""
    container = open_video(source)
    try:
        stream = container.streams.video[0]
        return _facts(container, stream, _first_rotation(container, stream))
    finally:
        container.close()


def sample(
    source: str | Path,
    every_s: float = 2.0,
    max_samples: int = 600,
    max_side: int = 448,
    time_limit_s: float = 120.0,
    start_ms: int = 0,
    end_ms: int | None = None,
) -> Sampled:
    """The frames to index: keyframes first, then a frame every ``every_s`` where keyframes are further apart.
    ``start_ms``/``end_ms``: only that piece of the video (a long one is sampled in pieces, on several workers)."""
    import av

    deadline = time.monotonic() + time_limit_s
    over_time = f"decoding stopped at the time limit of {time_limit_s:.0f} s"
    container = open_video(source)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if _duration_ms(container, stream) <= 0:
            raise VideoError(NO_DURATION)
        taken: dict[int, Sample] = {}
        rotation: int | None = None  # told by the first frame (FFmpeg gives each frame the stream's matrix)
        decoded, damage = 0, None
        stream.codec_context.skip_frame = "NONKEY"
        if start_ms > 0:
            container.seek(int(start_ms / 1000 / stream.time_base), stream=stream, backward=True)
        try:
            for frame in container.decode(stream):
                decoded += 1
                if rotation is None:
                    rotation = int(getattr(frame, "rotation", 0) or 0)
                if frame.pts is not None:
                    ms = _ms(frame, stream)
                    if end_ms is not None and ms >= end_ms:
                        break
                    if ms >= start_ms:
                        taken.setdefault(ms, Sample(ms, upright_picture(frame, max_side), True))
                if time.monotonic() > deadline:
                    damage = over_time
                    break
        except av.error.FFmpegError as exc:
            if rotation is None:
                raise VideoError(f"not a readable video: {exc}") from exc
            damage = f"the stream is damaged after {max(taken, default=0) / 1000:.1f} s: {exc}"
        if rotation is None:
            raise VideoError("the video has no frame that can be decoded")
        facts = _facts(container, stream, rotation)
        if damage is None:
            stream.codec_context.skip_frame = "DEFAULT"
            piece_end = facts.duration_ms if end_ms is None else min(end_ms, facts.duration_ms)
            for target in _gaps(sorted(taken), start_ms, piece_end, every_s):
                if time.monotonic() > deadline:
                    damage = over_time
                    break
                try:
                    found, frames = _frame_at(container, stream, target, max_side)
                except av.error.FFmpegError as exc:
                    damage = f"the stream is damaged near {target / 1000:.1f} s: {exc}"
                    break
                decoded += frames
                if found is not None and start_ms <= found.ms and (end_ms is None or found.ms < end_ms):
                    taken.setdefault(found.ms, found)
        result = Sampled(facts, [], damage, decoded)
        result.samples = _kept(sorted(taken.values(), key=lambda s: s.ms), max_samples, result.dropped)
        return result
    finally:
        container.close()


def open_video(source: str | Path) -> Any:
    import av

    try:
        container = av.open(str(source), metadata_errors="replace")
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise VideoError(f"not a readable video: {exc}") from exc
    if not container.streams.video:
        container.close()
        raise VideoError("the file has no video stream (audio only?)")
    return container


def _facts(container: Any, stream: Any, rotation_ccw: int) -> VideoFacts:
    duration_ms = _duration_ms(container, stream)
    if duration_ms <= 0:
        raise VideoError(NO_DURATION)
    rotation = (-rotation_ccw) % 360  # clockwise, as people and the old 'rotate' tag say it
    width, height = stream.codec_context.width, stream.codec_context.height
    if rotation % 180:
        width, height = height, width
    meta = {k.lower(): v for k, v in {**container.metadata, **stream.metadata}.items()}
    taken_at, offset = _taken(meta)
    latitude, longitude = _location(meta)
    rate = stream.average_rate
    return VideoFacts(
        duration_ms,
        width,
        height,
        stream.codec_context.name,
        round(float(rate), 3) if rate else None,
        rotation,
        taken_at,
        offset,
        _camera(meta),
        latitude,
        longitude,
    )


def _duration_ms(container: Any, stream: Any) -> int:
    if stream.duration is not None and stream.time_base is not None:
        return int(stream.duration * stream.time_base * 1000)
    if container.duration is not None:
        return int(container.duration / 1000)  # microseconds
    return 0


def _first_rotation(container: Any, stream: Any) -> int:
    """The display matrix's rotation (degrees counter-clockwise, as FFmpeg gives it), read off the first keyframe:
    FFmpeg attaches the stream's matrix to every decoded frame."""
    import av

    stream.codec_context.skip_frame = "NONKEY"
    try:
        for frame in container.decode(stream):
            return int(getattr(frame, "rotation", 0) or 0)
    except av.error.FFmpegError as exc:
        raise VideoError(f"not a readable video: {exc}") from exc
    finally:
        container.seek(0, stream=stream, backward=True)
    raise VideoError("the video has no frame that can be decoded")


def _ms(frame: Any, stream: Any) -> int:
    return round(float(frame.pts * stream.time_base) * 1000)


def upright_picture(frame: Any, max_side: int) -> Image.Image:
    """The frame as an upright RGB picture, scaled in FFmpeg (cheaper than Pillow) to at most ``max_side``."""
    width, height = frame.width, frame.height
    scale = min(1.0, max_side / max(width, height))
    size = {"width": max(2, round(width * scale)), "height": max(2, round(height * scale))}
    image = frame.to_image(**size, interpolation="AREA")  # averages what it drops: no aliasing, and fast
    # Undo the display matrix: turn counter-clockwise by its angle (an iPhone's portrait video says -90).
    turn = {90: Image.Transpose.ROTATE_90, -270: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180}
    turn |= {-90: Image.Transpose.ROTATE_270, 270: Image.Transpose.ROTATE_270, -180: Image.Transpose.ROTATE_180}
    rotation = int(getattr(frame, "rotation", 0) or 0)
    return image.transpose(turn[rotation]) if rotation in turn else image


def _gaps(keyframes_ms: list[int], first_ms: int, last_ms: int, every_s: float) -> list[int]:
    """Times to seek to: each stretch between keyframes (and before the first, after the last) of
    ``[first_ms, last_ms]`` that is longer than ``every_s`` is cut evenly into pieces no longer than that."""
    step = every_s * 1000
    targets = []
    for start, end in itertools.pairwise(sorted({first_ms, *keyframes_ms, last_ms})):
        pieces = math.ceil((end - start) / step)
        targets.extend(round(start + (end - start) * k / pieces) for k in range(1, pieces))
    return targets


def _frame_at(container: Any, stream: Any, target_ms: int, max_side: int) -> tuple[Sample | None, int]:
    """The first frame at or after ``target_ms`` (a seek to the keyframe before it, then decoding forward), and how
    many frames that decoded."""
    container.seek(int(target_ms / 1000 / stream.time_base), stream=stream, backward=True)
    decoded = 0
    for frame in container.decode(stream):
        decoded += 1
        if frame.pts is not None and (ms := _ms(frame, stream)) >= target_ms:
            return Sample(ms, upright_picture(frame, max_side), frame.key_frame), decoded
    return None, decoded


def _kept(samples: list[Sample], max_samples: int, dropped: dict[str, int]) -> list[Sample]:
    kept: list[Sample] = []
    previous: np.ndarray | None = None
    for item in samples:
        grey = np.asarray(item.image.convert("L").resize((32, 32)), dtype=np.float32)
        if grey.mean() < BLACK_LUMA:
            dropped["black"] += 1
            continue
        if previous is not None and float(np.abs(grey - previous).mean()) < SAME_SCENE:
            dropped["repeat"] += 1
            kept[-1] = replace(kept[-1], until_ms=item.ms)  # the scene lasted: the sample kept stands for it
            continue
        kept.append(item)
        previous = grey
    if len(kept) > max_samples:
        chosen = np.linspace(0, len(kept) - 1, max_samples).round().astype(int)
        dropped["thinned"] += len(kept) - max_samples
        kept = [kept[i] for i in sorted(set(chosen.tolist()))]
    return kept


def _taken(meta: dict[str, str]) -> tuple[dt.datetime | None, str | None]:
    """Capture time: Apple's creationdate carries the offset; creation_time is UTC."""
    local = meta.get("com.apple.quicktime.creationdate")
    if local:
        try:
            parsed = dt.datetime.fromisoformat(local.replace("Z", "+00:00"))
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is not None:
            offset = parsed.strftime("%z")
            return parsed.astimezone(dt.UTC).replace(tzinfo=None), f"{offset[:3]}:{offset[3:]}"
    utc = meta.get("creation_time")
    if utc:
        try:
            parsed = dt.datetime.fromisoformat(utc.replace("Z", "+00:00"))
        except ValueError:
            return None, None
        if parsed.year > 1970:  # cameras without a clock write 1970 or 1904
            return parsed.astimezone(dt.UTC).replace(tzinfo=None) if parsed.tzinfo else parsed, "+00:00"
    return None, None


def _location(meta: dict[str, str]) -> tuple[float | None, float | None]:
    for key in ("com.apple.quicktime.location.iso6709", "location", "location-eng"):
        found = _ISO6709.match(meta.get(key, ""))
        if found:
            latitude, longitude = float(found.group(1)), float(found.group(2))
            if -90 <= latitude <= 90 and -180 <= longitude <= 180:
                return latitude, longitude
    return None, None


def _camera(meta: dict[str, str]) -> str | None:
    make = meta.get("com.apple.quicktime.make") or meta.get("com.android.manufacturer") or meta.get("make")
    model = meta.get("com.apple.quicktime.model") or meta.get("com.android.model") or meta.get("model")
    parts = [p.strip() for p in (make, model) if p and p.strip()]
    if len(parts) == 2 and parts[1].lower().startswith(parts[0].lower()):
        parts = parts[1:]
    return " ".join(parts) or None
