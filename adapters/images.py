"""Image bytes in, facts out: type from the content (never the file name), size, hash, pixels.

Pillow is asked only for the formats we serve, and the pixel limit is checked from the header
before any pixel is decoded, so a decompression bomb costs nothing.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "BMP": "image/bmp", "GIF": "image/gif"}


class InvalidImage(ValueError):
    """The bytes are not an image this service accepts; the message says why."""


@dataclass(frozen=True)
class ImageFacts:
    mime: str
    width: int
    height: int
    sha256: str
    size: int


def _open(data: bytes) -> Image.Image:
    if not data:
        raise InvalidImage("empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data), formats=list(FORMATS))
    except UnidentifiedImageError as exc:
        raise InvalidImage(f"not an image of a supported type ({', '.join(FORMATS)})") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InvalidImage(f"too many pixels: {exc}") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidImage(f"unreadable image: {exc}") from exc


def probe(data: bytes, max_bytes: int, max_pixels: int) -> ImageFacts:
    """Read the header only: cheap enough to run on every row of a bulk load."""
    if len(data) > max_bytes:
        raise InvalidImage(f"image is {len(data)} bytes, over the limit of {max_bytes}")
    image = _open(data)
    width, height = image.size
    if width <= 0 or height <= 0:
        raise InvalidImage("image has no pixels")
    if width * height > max_pixels:
        raise InvalidImage(f"image is {width}x{height} pixels, over the limit of {max_pixels}")
    return ImageFacts(FORMATS[image.format or ""], width, height, hashlib.sha256(data).hexdigest(), len(data))


def decode_rgb(data: bytes, max_pixels: int) -> Image.Image:
    """Fully decode (first frame, EXIF orientation applied) into RGB for the encoder."""
    image = _open(data)
    if image.size[0] * image.size[1] > max_pixels:
        raise InvalidImage(f"image is {image.size[0]}x{image.size[1]} pixels, over the limit of {max_pixels}")
    try:
        image.seek(0)
        image = ImageOps.exif_transpose(image)
        return image.convert("RGB")
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidImage(f"corrupt or truncated image: {exc}") from exc


def thumbnail_jpeg(data: bytes, size: int, max_pixels: int) -> bytes:
    """A JPEG whose longer side is at most ``size`` (upright, first frame): grids load these, not originals."""
    image = decode_rgb(data, max_pixels)
    image.thumbnail((size, size), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=82, optimize=True)
    return out.getvalue()
