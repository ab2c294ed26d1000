"""Watching a moment: one frame of a video as a JPEG, and a range of it as an MP4 that plays from its first frame.

A clip is re-encoded (H.264, from the keyframe before its start, frames before the start decoded and dropped), not
cut with stream copy: a copy can only start on a keyframe, so copied clips start early or, cut elsewhere, show no
picture until the next keyframe (MaterialSearch issues 19 and 90). The clip keeps the source's display matrix, so
players turn it as they turn the original. Sound is not carried yet.
"""

from __future__ import annotations

import io
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Any

from adapters.video import VideoError, open_video, upright_picture

CLIP_CRF = "23"


def frame_jpeg(source: str | Path, ms: int, max_side: int = 1280, quality: int = 85) -> bytes:
    """The frame shown at ``ms`` (the first at or after it; the last one when ``ms`` is past the end), upright."""
    import av

    container = open_video(source)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        container.seek(max(0, int(ms / 1000 / stream.time_base)), stream=stream, backward=True)
        chosen = None
        try:
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                chosen = frame
                if float(frame.pts * stream.time_base) * 1000 >= ms:
                    break
        except av.error.FFmpegError as exc:
            if chosen is None:
                raise VideoError(f"no frame can be decoded at {ms / 1000:.1f} s: {exc}") from exc
        if chosen is None:
            raise VideoError(f"no frame at {ms / 1000:.1f} s")
        buffer = io.BytesIO()
        upright_picture(chosen, max_side).save(buffer, "JPEG", quality=quality)
        return buffer.getvalue()
    finally:
        container.close()


def clip_mp4(source: str | Path, start_ms: int, end_ms: int, max_side: int = 1280) -> bytes:
    """An MP4 of ``[start_ms, end_ms)``: its first frame is the source's frame at ``start_ms`` (a keyframe), its
    times start at 0, its longer side at most ``max_side``."""
    import av

    if end_ms <= start_ms:
        raise VideoError("a clip must end after it starts")
    container = open_video(source)
    # A file, not memory: moving the index to the front (faststart, so a browser plays it before it has it all)
    # reopens what was written.
    with tempfile.TemporaryDirectory(prefix="clip-") as work:
        target = Path(work) / "clip.mp4"
        try:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            with av.open(str(target), "w", format="mp4", options={"movflags": "faststart"}) as output:
                written = _encode_range(container, stream, output, start_ms, end_ms, max_side)
        finally:
            container.close()
        if not written:
            raise VideoError(f"no frame between {start_ms / 1000:.1f} s and {end_ms / 1000:.1f} s")
        return target.read_bytes()


def _encode_range(container: Any, stream: Any, output: Any, start_ms: int, end_ms: int, max_side: int) -> int:
    """Decodes from the keyframe before ``start_ms`` and encodes the frames of the range; returns how many."""
    import av

    width, height = _even_size(stream.codec_context.width, stream.codec_context.height, max_side)
    encoded = output.add_stream("libx264", rate=stream.average_rate or 30)
    encoded.width, encoded.height, encoded.pix_fmt = width, height, "yuv420p"
    encoded.codec_context.time_base = encoded.time_base = Fraction(1, 1000)
    encoded.codec_context.options = {"preset": "veryfast", "crf": CLIP_CRF}
    written = 0
    container.seek(max(0, int(start_ms / 1000 / stream.time_base)), stream=stream, backward=True)
    try:
        for frame in container.decode(stream):
            at = round(float(frame.pts * stream.time_base) * 1000) if frame.pts is not None else -1
            if at < start_ms:
                continue
            if at >= end_ms:
                break
            if not written and getattr(frame, "rotation", 0):
                encoded.set_display_rotation(int(frame.rotation))
            picture = frame.reformat(width=width, height=height, format="yuv420p")
            picture.pts, picture.time_base = at - start_ms, Fraction(1, 1000)
            for packet in encoded.encode(picture):
                output.mux(packet)
            written += 1
    except av.error.FFmpegError as exc:
        if not written:
            raise VideoError(f"the video cannot be decoded from {start_ms / 1000:.1f} s: {exc}") from exc
    if written:
        for packet in encoded.encode():
            output.mux(packet)
    return written


def _even_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    scale = min(1.0, max_side / max(width, height))
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)
