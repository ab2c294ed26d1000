"""Real face photos that ship in PyPI packages (tests/data/faces/SOURCES.md), and what a camera does to a photo:
crops, scale 0.5-2x, ±15° rotation, JPEG quality 40-95, brightness ±30%, mirror. Tests and bench/faces.py build
their photos from these, so a face's person is known."""

from __future__ import annotations

import io
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageEnhance, ImageOps

FACES = Path(__file__).parent / "data" / "faces"
PEOPLE = {  # one face each, the person it is
    "obama.jpg": "obama",
    "obama2.jpg": "obama",
    "obama3.jpg": "obama",
    "obama_partial_face.jpg": "obama",
    "biden.jpg": "biden",
    "portrait_112.jpg": "hanks",
}
GROUP = "group_t1.jpg"  # six people in one photo
GROUP_FACES = 6


@dataclass(frozen=True)
class Variant:
    person: str
    source: str
    data: bytes
    recipe: str


def photo(name: str) -> Image.Image:
    return Image.open(FACES / name).convert("RGB")


def camera(image: Image.Image, rng: random.Random) -> tuple[Image.Image, str, int]:
    """One camera-like change of each kind, at random; the JPEG quality to save it with."""
    width, height = image.size
    keep = rng.uniform(0.8, 1.0)  # a crop that keeps the middle (the face) in
    left, top = rng.uniform(0, 1 - keep) * width, rng.uniform(0, 1 - keep) * height
    image = image.crop((round(left), round(top), round(left + keep * width), round(top + keep * height)))
    scale = rng.uniform(0.5, 2.0)
    image = image.resize((max(32, round(image.width * scale)), max(32, round(image.height * scale))))
    angle = rng.uniform(-15, 15)
    image = image.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=(128, 128, 128))
    bright = rng.uniform(0.7, 1.3)
    image = ImageEnhance.Brightness(image).enhance(bright)
    mirror = rng.random() < 0.5
    if mirror:
        image = ImageOps.mirror(image)
    quality = rng.randint(40, 95)
    recipe = f"crop {keep:.2f}, scale {scale:.2f}, {angle:+.1f}°, brightness {bright:.2f}, q{quality}"
    return image, recipe + (", mirrored" if mirror else ""), quality


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def variants(per_photo: int, seed: int, names: list[str] | None = None) -> list[Variant]:
    """``per_photo`` camera variants of each single-face photo (the untouched photo first)."""
    rng = random.Random(seed)
    found = []
    for name in names or list(PEOPLE):
        original = photo(name)
        found.append(Variant(PEOPLE[name], name, jpeg(original), "as shipped"))
        for _ in range(per_photo - 1):
            changed, recipe, quality = camera(original, rng)
            found.append(Variant(PEOPLE[name], name, jpeg(changed, quality), recipe))
    return found


def face_of_size(side: int, canvas: int = 1280) -> bytes:
    """obama.jpg's face scaled so that it is about ``side`` pixels wide, on a plain photo-sized canvas."""
    original = photo("obama.jpg")
    face_width = 269  # as dlib's HOG detector boxes it in obama.jpg
    scale = side / face_width
    small = original.resize((max(1, round(original.width * scale)), max(1, round(original.height * scale))))
    page = Image.new("RGB", (canvas, canvas * 3 // 4), (200, 190, 170))
    page.paste(small.crop((0, 0, min(small.width, page.width), min(small.height, page.height))), (0, 0))
    return jpeg(page, 92)
