"""Videos for tests and benchmarks, written with PyAV as phones write them: H.264 with a keyframe a second (Android's
recorder), HEVC turned by a display matrix (a portrait iPhone video), variable frame rate, QuickTime metadata.
Each second shows its own scene (a colour field with a moving bar), so a sample's picture tells its time."""

from __future__ import annotations

import colorsys
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Written:
    path: Path
    frame_ms: list[int]  # every frame's presentation time, as written
    keyframe_every_s: float


def scene(second: int, offset: int = 0) -> tuple[int, int, int]:
    """The colour of a second of video (distinct hues, pale enough that no channel is under 110: never black, and
    never the pure red of the top-left marker)."""
    hue = ((second + offset) * 0.137) % 1.0
    red, green, blue = colorsys.hsv_to_rgb(hue, 0.5, 0.9)
    return int(red * 255), int(green * 255), int(blue * 255)


def pattern(second: int, size: tuple[int, int], offset: int = 0) -> np.ndarray:
    """A planted scene: a coarse grid of bright colours drawn from the second's own seed, as different from the
    next second's as two places are (a random-weight encoder tells them apart, as it would not tell two hues)."""
    width, height = size
    rng = np.random.default_rng(10_000 + second + offset)
    grid = rng.integers(60, 256, (4, 6, 3), dtype=np.uint8)
    rows = np.arange(height) * 4 // height
    columns = np.arange(width) * 6 // width
    return grid[rows][:, columns]


def write_video(
    path: Path,
    seconds: float = 6.0,
    fps: int = 30,
    size: tuple[int, int] = (640, 360),
    codec: str = "libx264",
    keyframe_every_s: float = 1.0,
    rotation_ccw: int = 0,
    variable: bool = False,
    metadata: dict[str, str] | None = None,
    black_until_ms: int = 0,
    scene_offset: int = 0,
    seed: int = 0,
    texture: float = 0.0,
    bitrate: int | None = None,
    patterned: bool = False,
    subtitles: dict[int, str] | None = None,
    planted: dict[int, int] | None = None,
) -> Written:
    """``texture``: the strength (0-1) of a fixed grain that drifts across the picture, so a phone-sized video has
    the detail (and the decode cost) of a real one; ``bitrate``: bits/s asked of the encoder; ``patterned``: each
    second a planted scene of its own (``pattern``) instead of a hue; ``subtitles``: a line shown during each of
    those seconds; ``planted``: the seconds that show a planted scene (``pattern`` of the given number)."""
    import av

    rng = np.random.default_rng(seed)
    options = {"movflags": "use_metadata_tags"} if metadata and path.suffix in (".mp4", ".mov", ".m4v") else {}
    output = av.open(str(path), "w", options=options)
    for key, value in (metadata or {}).items():
        output.metadata[key] = value
    stream = output.add_stream(codec, rate=fps)
    width, height = size
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    stream.codec_context.gop_size = max(1, round(keyframe_every_s * fps))
    stream.codec_context.time_base = Fraction(1, 1000)  # times in milliseconds: exact for variable frame rates
    stream.time_base = Fraction(1, 1000)
    if codec == "libx264":
        stream.codec_context.options = {"x264-params": "scenecut=0:keyint_min=1", "preset": "ultrafast"}
    elif codec == "libx265":
        stream.codec_context.options = {"x265-params": "scenecut=0:log-level=error", "preset": "ultrafast"}
    if rotation_ccw:
        stream.set_display_rotation(rotation_ccw)
    if bitrate:
        stream.codec_context.bit_rate = bitrate
    # Sensor-like grain: a few noise fields taken in turn and drifting, so no frame predicts the next one exactly
    # (a fixed drifting pattern would make every frame but the keyframes nearly free to decode).
    noise = (height, width + 64, 1)
    grains = [rng.normal(0, 40 * texture, noise).astype(np.int16) for _ in range(3)] if texture else []
    times, at = [], 0
    while at < seconds * 1000:
        times.append(at)
        at += int(rng.choice([16, 33, 41, 66, 100])) if variable else round(1000 / fps)
    for ms in times:
        pixels = np.empty((height, width, 3), np.uint8)
        if ms < black_until_ms:
            pixels[:] = (0, 0, 0)
        elif planted and ms // 1000 in planted:
            pixels[:] = pattern(planted[ms // 1000], size)
        elif patterned:
            pixels[:] = pattern(ms // 1000, size, scene_offset)
        else:
            pixels[:] = scene(ms // 1000, scene_offset)
        if grains and ms >= black_until_ms:
            shift, grain = (ms // 33) % 64, grains[(ms // 33) % len(grains)]
            pixels[:] = np.clip(pixels + grain[:, shift : shift + width], 0, 255).astype(np.uint8)
        bar = int((ms % 1000) / 1000 * (width - 20))
        if ms >= black_until_ms:
            pixels[:, bar : bar + 20] = 255
            pixels[: height // 8, : width // 8] = (255, 0, 0)  # a red corner: top-left as recorded
        if subtitles and ms // 1000 in subtitles:
            pixels = _subtitled(pixels, subtitles[ms // 1000])
        frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
        frame.pts = ms
        for packet in stream.encode(frame):
            output.mux(packet)
    for packet in stream.encode():
        output.mux(packet)
    output.close()
    return Written(path, times, keyframe_every_s)


def write_audio_only(path: Path, seconds: float = 1.0) -> Path:
    """An MP4 with sound and no picture (a voice memo, a song)."""
    import av

    with av.open(str(path), "w", format="mp4" if path.suffix in (".mp4", ".m4a") else None) as output:
        stream = output.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        for i in range(int(seconds * 16000 / 1024) + 1):
            frame.pts = i * 1024
            for packet in stream.encode(frame):
                output.mux(packet)
        for packet in stream.encode():
            output.mux(packet)
    return path


def damage(path: Path, run: int = 20000) -> Path:
    """A run of zeros in the middle of the stream, as a bad sector or a broken copy leaves."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + run] = bytes(run)
    path.write_bytes(bytes(data))
    return path


def _subtitled(pixels: np.ndarray, text: str) -> np.ndarray:
    """A subtitle as a film shows it: white text on a dark band at the bottom."""
    from PIL import Image, ImageDraw

    from tests.text_pictures import font

    height, width = pixels.shape[:2]
    picture = Image.fromarray(pixels)
    draw = ImageDraw.Draw(picture)
    size = max(18, height // 12)
    draw.rectangle((0, height - size * 2, width, height), fill=(20, 20, 20))
    draw.text((width // 10, height - size * 2 + size // 2), text, font=font(size), fill=(255, 255, 255))
    return np.asarray(picture)


def android_1080p(path: Path, seconds: float, **more: object) -> Written:
    """As Android's recorder writes: 1080p30 H.264 at 16 Mbps with a keyframe a second, and sensor grain."""
    return write_video(path, seconds, size=(1920, 1080), texture=0.6, bitrate=16_000_000, **more)  # type: ignore[arg-type]


def iphone_4k(path: Path, seconds: float, **more: object) -> Written:
    """As an iPhone writes a portrait video: 4K30 HEVC at 40 Mbps, turned by a display matrix, a keyframe each 2 s."""
    options: dict = {"size": (3840, 2160), "codec": "libx265", "keyframe_every_s": 2, "rotation_ccw": -90}
    return write_video(path, seconds, texture=0.6, bitrate=40_000_000, **{**options, **more})
