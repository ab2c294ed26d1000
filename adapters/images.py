"""Image bytes in, facts out: type from the content (never the file name), size, hash, pixels.

Pillow is asked only for the formats we serve, and the pixel limit is checked from the header
before any pixel is decoded, so a decompression bomb costs nothing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import re
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError
from pillow_heif import register_heif_opener

try:  # in the ocr extra (rapidocr's dependency): faster previews when present
    import cv2
except ImportError:  # pragma: no cover - the serving install without the extra
    cv2 = None

# Phone cameras write HEIC (iPhone) and increasingly AVIF; Pillow reads AVIF itself and HEIC through pillow-heif
# (libheif inside its wheel). Both are told from their content, like the rest, with the same limits.
register_heif_opener()
FORMATS = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "BMP": "image/bmp",
    "GIF": "image/gif",
    "AVIF": "image/avif",  # before HEIF: both are ISO media files, and AVIF is the more specific reader
    "HEIF": "image/heic",
}


class InvalidImage(ValueError):
    """The bytes are not an image this service accepts; the message says why."""


@dataclass(frozen=True)
class ImageFacts:
    mime: str
    width: int
    height: int
    sha256: str
    size: int
    # From EXIF, when the camera wrote them (never a reason to refuse an image):
    taken_at: dt.datetime | None = None  # naive; UTC when the photo says its offset, else the camera's clock
    taken_offset: str | None = None  # "+08:00"
    camera: str | None = None  # "Apple iPhone 15 Pro"
    latitude: float | None = None
    longitude: float | None = None


_EXIF_IFD, _GPS_IFD = 0x8769, 0x8825
_DATE_ORIGINAL, _DATE_DIGITIZED, _DATE = 0x9003, 0x9004, 0x0132
_OFFSET_ORIGINAL, _OFFSET_DIGITIZED, _OFFSET = 0x9011, 0x9012, 0x9010
_MAKE, _MODEL = 0x010F, 0x0110
_OFFSET_FORMAT = re.compile(r"^([+-])(\d\d):(\d\d)$")


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = str(value).replace("\x00", "").strip() if value is not None else ""
    return text or None


def _degrees(value: Any, ref: Any) -> float | None:
    try:
        d, m, s = (float(part) for part in value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    degrees = d + m / 60 + s / 3600
    return -degrees if _text(ref) in ("S", "W") else degrees


def photo_facts(image: Image.Image) -> dict[str, Any]:
    """Capture time (with its offset), camera and position from EXIF: read from the header, no pixel decoded."""
    try:
        exif = image.getexif()
        details = exif.get_ifd(_EXIF_IFD)
        gps = exif.get_ifd(_GPS_IFD)
    except Exception:  # broken EXIF: the image is still an image
        return {}
    facts: dict[str, Any] = {}
    raw = _text(details.get(_DATE_ORIGINAL) or details.get(_DATE_DIGITIZED) or exif.get(_DATE))
    with contextlib.suppress(TypeError, ValueError):
        taken = dt.datetime.strptime(raw or "", "%Y:%m:%d %H:%M:%S")
        offset = _text(details.get(_OFFSET_ORIGINAL) or details.get(_OFFSET_DIGITIZED) or details.get(_OFFSET))
        match = _OFFSET_FORMAT.match(offset or "")
        if match:
            sign = 1 if match.group(1) == "+" else -1
            taken -= sign * dt.timedelta(hours=int(match.group(2)), minutes=int(match.group(3)))
            facts["taken_offset"] = offset
        facts["taken_at"] = taken
    make, model = _text(exif.get(_MAKE)), _text(exif.get(_MODEL))
    camera = (
        model if model and make and model.lower().startswith(make.lower()) else " ".join(filter(None, (make, model)))
    )
    if camera:
        facts["camera"] = camera[:128]
    latitude, longitude = _degrees(gps.get(2), gps.get(1)), _degrees(gps.get(4), gps.get(3))
    if latitude is not None and longitude is not None and abs(latitude) <= 90 and abs(longitude) <= 180:
        facts["latitude"], facts["longitude"] = round(latitude, 6), round(longitude, 6)
    return facts


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
    sha256 = hashlib.sha256(data).hexdigest()
    return ImageFacts(FORMATS[image.format or ""], width, height, sha256, len(data), **photo_facts(image))


def decode_rgb(data: bytes, max_pixels: int, min_longest: int = 0, min_shortest: int = 0) -> Image.Image:
    """Decode (first frame, EXIF orientation applied) into RGB for the encoder.

    With ``min_longest``/``min_shortest`` a JPEG is decoded at the smallest of libjpeg's scales (1/2, 1/4, 1/8)
    that still gives that many pixels: a 12-megapixel photo decodes ~3x faster at 1/2 and the encoder, which
    resizes to 224 anyway, sees the same picture."""
    image = _open(data)
    width, height = image.size
    if width * height > max_pixels:
        raise InvalidImage(f"image is {width}x{height} pixels, over the limit of {max_pixels}")
    try:
        if image.format == "JPEG" and (min_longest or min_shortest):
            scale = _draft_scale(width, height, min_longest, min_shortest)
            if scale > 1:
                image.draft("RGB", (-(-width // scale), -(-height // scale)))
        image.seek(0)
        if image.getexif().get(ExifTags.Base.Orientation, 1) != 1:
            image = ImageOps.exif_transpose(image)
        else:
            image.load()  # decoded here, so a broken file fails here; exif_transpose would only copy the pixels
        return image if image.mode == "RGB" else image.convert("RGB")
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidImage(f"corrupt or truncated image: {exc}") from exc


def _draft_scale(width: int, height: int, min_longest: int, min_shortest: int) -> int:
    for scale in (8, 4, 2):
        if max(width, height) // scale >= min_longest and min(width, height) // scale >= min_shortest:
            return scale
    return 1


def fit(image: Image.Image, size: int, resample: Image.Resampling = Image.Resampling.LANCZOS) -> Image.Image:
    """``image`` scaled down so that its longer side is at most ``size`` (a new image; ``image`` is unchanged)."""
    if max(image.size) <= size:
        return image
    scale = size / max(image.size)
    target = (max(1, round(image.size[0] * scale)), max(1, round(image.size[1] * scale)))
    return image.resize(target, resample, reducing_gap=2.0)


def preview(image: Image.Image, size: int) -> Image.Image:
    """A preview of at most ``size`` on its longer side, made fast: the draft decode is already within 2x of it,
    so a bilinear resize (OpenCV's, ~4 ms on a 2016x1512 decode against ~16 ms for Pillow's box filter) shows no
    aliasing at that ratio. OpenCV comes with the ``ocr`` extra; without it, Pillow's box filter."""
    if max(image.size) <= size:
        return image
    if cv2 is None or image.mode != "RGB" or max(image.size) > 2 * size:
        return fit(image, size, Image.Resampling.BOX)
    scale = size / max(image.size)
    target = (max(1, round(image.size[0] * scale)), max(1, round(image.size[1] * scale)))
    return Image.fromarray(cv2.resize(np.asarray(image), target, interpolation=cv2.INTER_LINEAR))


def shrink_for_model(image: Image.Image, resolution: int) -> Image.Image:
    """``image`` box-averaged by the largest whole factor that keeps its shorter side at least twice ``resolution``:
    the model's own bicubic resize then costs a quarter as much on a preview, and sees the same picture
    (bench/sync.py compares the vectors with a full decode's)."""
    factor = min(image.size) // (2 * resolution)
    return image.reduce(factor) if factor >= 2 else image


def jpeg_bytes(image: Image.Image, quality: int = 82) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return out.getvalue()


def jpeg_of(image: Image.Image, size: int, quality: int = 82) -> bytes:
    """A JPEG of ``image`` whose longer side is at most ``size``."""
    return jpeg_bytes(fit(image, size), quality)


def longest_side(data: bytes) -> int:
    """The longer side of the image in ``data``, from its header (no pixel decoded)."""
    return max(_open(data).size)


def picture_for_ocr(data: bytes, max_pixels: int, max_side: int) -> Image.Image:
    """What OCR reads: the image upright, scaled to at most ``max_side`` on its longer side."""
    return fit(decode_rgb(data, max_pixels, min_longest=max_side), max_side)


def thumbnail_jpeg(data: bytes, size: int, max_pixels: int) -> bytes:
    """A JPEG whose longer side is at most ``size`` (upright, first frame): grids load these, not originals."""
    return jpeg_of(decode_rgb(data, max_pixels, min_longest=size), size)
