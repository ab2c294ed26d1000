"""Image files for tests: every accepted format, and every kind of bad file the service must refuse."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image, ImageDraw


def photo(seed: int, size: tuple[int, int] = (320, 240)) -> Image.Image:
    """A busy, photo-like picture: a two-colour gradient, 4-7 shapes of any colour, sensor-like noise.
    Varied content matters with random weights, which see little beyond colours and textures."""
    rng = np.random.default_rng(seed)
    width, height = size
    start, end = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    ramp = np.linspace(0.0, 1.0, width)[None, :, None]
    pixels = (start + (end - start) * ramp) * np.ones((height, 1, 1)) + rng.normal(0, 6, (height, width, 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(4, 8))):
        x0, y0 = int(rng.integers(0, width - 40)), int(rng.integers(0, height - 40))
        box = (x0, y0, x0 + int(rng.integers(20, width // 2)), y0 + int(rng.integers(20, height // 2)))
        fill = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=fill)
    return image


def jpeg(seed: int) -> bytes:
    return encode(photo(seed), "JPEG", quality=88)


def picture(seed: int) -> Image.Image:
    return Image.open(io.BytesIO(jpeg(seed))).convert("RGB")


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def resized_recompressed(data: bytes) -> bytes:
    """The same picture at 60% size and a lower JPEG quality: a near duplicate, not an exact one."""
    image = Image.open(io.BytesIO(data)).convert("RGB")
    image = image.resize((int(image.width * 0.6), int(image.height * 0.6)), Image.Resampling.LANCZOS)
    return encode(image, "JPEG", quality=60)


def gif_two_frames(seed: int) -> bytes:
    first, second = picture(seed), picture(seed + 1000)
    return encode(first, "GIF", save_all=True, append_images=[second], duration=100)


def exif_rotated_jpeg(seed: int) -> bytes:
    """Pixels stored landscape with EXIF orientation 6 (display rotated 90° clockwise)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(picture(seed), "JPEG", exif=exif.tobytes())


def png_bomb(width: int = 60_000, height: int = 60_000) -> bytes:
    """A tiny PNG whose header claims billions of pixels."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = lambda kind, body: (  # noqa: E731
        struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    )
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def truncated_jpeg(seed: int) -> bytes:
    data = jpeg(seed)
    return data[: len(data) // 3]


def noisy_png(size: int = 700) -> bytes:
    """Incompressible: about 3 bytes per pixel, for size-limit tests."""
    pixels = np.random.default_rng(7).integers(0, 255, size=(size, size, 3), dtype=np.uint8)
    return encode(Image.fromarray(pixels), "PNG")


BAD_FILES = {
    "empty.jpg": (b"", "empty file"),
    "notes.jpg": (b"this is a text file, not a picture", "not an image"),
    "truncated.jpg": (truncated_jpeg(3), "truncated"),
    "bomb.png": (png_bomb(), "pixels"),
}
