"""Image facts come from the content; bad files are refused with a reason, before pixels are decoded."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from adapters import images
from tests.imagefiles import BAD_FILES, encode, exif_rotated_jpeg, gif_two_frames, jpeg, photo, picture, png_bomb

LIMITS = {"max_bytes": 10 * 1024 * 1024, "max_pixels": 50_000_000}


@pytest.mark.parametrize(
    ("fmt", "mime"),
    [
        ("JPEG", "image/jpeg"),
        ("PNG", "image/png"),
        ("WEBP", "image/webp"),
        ("BMP", "image/bmp"),
        ("HEIF", "image/heic"),  # iPhone photos
        ("AVIF", "image/avif"),
    ],
)
def test_type_is_read_from_content(fmt: str, mime: str) -> None:
    facts = images.probe(encode(picture(1), fmt), **LIMITS)
    assert facts.mime == mime and (facts.width, facts.height) == picture(1).size


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
def test_phone_formats_decode_to_the_same_picture(fmt: str) -> None:
    original = picture(7)
    decoded = images.decode_rgb(encode(original, fmt, quality=90), LIMITS["max_pixels"])
    assert decoded.size == original.size and decoded.mode == "RGB"
    difference = np.abs(np.asarray(decoded, dtype=np.int16) - np.asarray(original.convert("RGB"), dtype=np.int16))
    assert difference.mean() < 6  # lossy, but the same picture
    assert images.thumbnail_jpeg(encode(original, fmt), 64, LIMITS["max_pixels"])[:2] == b"\xff\xd8"


def test_heic_pixel_limit_is_checked_before_decoding() -> None:
    data = encode(Image.new("RGB", (2000, 1500), (10, 120, 200)), "HEIF")
    with pytest.raises(images.InvalidImage, match="2000x1500 pixels, over the limit"):
        images.probe(data, max_bytes=10**7, max_pixels=1_000_000)


def test_gif_uses_its_first_frame() -> None:
    data = gif_two_frames(2)
    assert images.probe(data, **LIMITS).mime == "image/gif"
    frame = images.decode_rgb(data, LIMITS["max_pixels"])
    first = images.decode_rgb(encode(picture(2), "GIF"), LIMITS["max_pixels"])
    assert frame.size == first.size and frame.tobytes() == first.tobytes()


def test_exif_orientation_is_applied() -> None:
    stored = picture(4).size
    decoded = images.decode_rgb(exif_rotated_jpeg(4), LIMITS["max_pixels"])
    assert decoded.size == (stored[1], stored[0])


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_files_are_refused_with_a_reason(name: str) -> None:
    data, reason = BAD_FILES[name]
    with pytest.raises(images.InvalidImage, match=reason):
        images.probe(data, **LIMITS)
        images.decode_rgb(data, LIMITS["max_pixels"])  # truncated files pass the header check, not decoding


def test_pixel_limit_is_checked_from_the_header_without_decoding() -> None:
    data = png_bomb(8000, 8000)  # 64 M pixels in under 100 bytes
    assert len(data) < 200
    with pytest.raises(images.InvalidImage, match="over the limit"):
        images.probe(data, max_bytes=1024, max_pixels=50_000_000)


def test_size_limit() -> None:
    with pytest.raises(images.InvalidImage, match=r"over the limit of 100$"):
        images.probe(jpeg(5), max_bytes=100, max_pixels=10**9)


def test_a_preview_keeps_the_picture_at_its_size() -> None:
    decoded = photo(7, (2016, 1512))  # a 12 MP photo's draft decode
    fast = images.preview(decoded, 1280)
    assert fast.size == (1280, 960) and fast.mode == "RGB"
    careful = np.asarray(images.fit(decoded, 1280, Image.Resampling.LANCZOS), dtype=np.float32)
    assert np.abs(np.asarray(fast, dtype=np.float32) - careful).mean() < 4  # of 255: the same picture
    assert images.preview(decoded, 4000) is decoded  # never enlarged
    assert images.preview(photo(8, (4032, 3024)), 1280).size == (1280, 960)  # beyond 2x: the box filter
