"""Synthetic splits in the exact Flickr30k-CN formats: real JPEGs of varied content, Chinese captions
with ground-truth image_ids, and feature files made by the service's own encoder."""

from __future__ import annotations

import base64
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from adapters.encoders.encoder_base import EncoderBase
from operations.ingest.flickr_format import (
    feature_line,
    image_features_jsonl,
    images_tsv,
    text_features_jsonl,
    texts_jsonl,
)

logger = logging.getLogger(__name__)

COLORS = {
    "红色": (214, 39, 40),
    "橙色": (255, 127, 14),
    "黄色": (240, 220, 30),
    "绿色": (44, 160, 44),
    "蓝色": (31, 119, 180),
    "紫色": (148, 103, 189),
    "粉色": (247, 150, 200),
    "棕色": (140, 86, 75),
    "灰色": (127, 127, 127),
    "黑色": (20, 20, 20),
    "白色": (245, 245, 245),
}
SHAPES = ("圆形", "方块", "三角形", "横条")
SIZES = ((320, 240), (300, 300), (400, 300), (240, 320))
COUNT_WORDS = ("一个", "两个", "三个")


@dataclass(frozen=True)
class SampleReport:
    directory: Path
    split: str
    images: int
    texts: int
    features: bool


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, box: tuple[int, int, int, int], fill) -> None:  # type: ignore[no-untyped-def]
    x0, y0, x1, y1 = box
    if shape == "圆形":
        draw.ellipse(box, fill=fill)
    elif shape == "方块":
        draw.rectangle(box, fill=fill)
    elif shape == "三角形":
        draw.polygon([((x0 + x1) // 2, y0), (x0, y1), (x1, y1)], fill=fill)
    else:
        draw.rectangle((x0, (y0 + y1) // 2 - 8, x1, (y0 + y1) // 2 + 8), fill=fill)


def make_image(rng: np.random.Generator) -> tuple[bytes, list[str]]:
    """One JPEG of coloured shapes on a textured background, and its Chinese captions."""
    names = list(COLORS)
    background = names[rng.integers(len(names))]
    width, height = SIZES[rng.integers(len(SIZES))]
    base = np.array(COLORS[background], dtype=np.float32)
    pixels = base + rng.normal(0, 12, size=(height, width, 3))  # texture: real photos are not flat
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    shape = SHAPES[rng.integers(len(SHAPES))]
    color = names[rng.integers(len(names))]
    count = int(rng.integers(1, 4))
    for _ in range(count):
        w, h = int(rng.integers(30, width // 2)), int(rng.integers(30, height // 2))
        x, y = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
        _draw_shape(draw, shape, (x, y, x + w, y + h), COLORS[color])
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=int(rng.integers(70, 92)))
    captions = [
        f"{background}背景上有{COUNT_WORDS[count - 1]}{color}的{shape}",
        f"一张图片,画面中是{color}{shape},底色是{background}",
    ]
    return buffer.getvalue(), captions[: int(rng.integers(1, 3))]


def _write_features(path: Path, key: str, ids: list, vectors: np.ndarray) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        handle.writelines(feature_line(key, item_id, vector) for item_id, vector in zip(ids, vectors, strict=True))
    tmp.replace(path)


def generate_split(
    directory: Path,
    split: str,
    count: int,
    encoder: EncoderBase | None = None,
    seed: int = 0,
    batch_size: int = 16,
) -> SampleReport:
    """Write ``{split}_imgs.tsv`` and ``{split}_texts.jsonl`` (+ both feature files with an encoder)."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    image_ids: list[int] = []
    taken: set[int] = set()
    while len(image_ids) < count:  # Flickr-like 9-10 digit ids, unique
        candidate = int(rng.integers(10**8, 10**10))
        if candidate not in taken:
            taken.add(candidate)
            image_ids.append(candidate)
    image_vectors: list[np.ndarray] = []
    texts: list[dict] = []
    text_id = 100000
    with images_tsv(directory, split).open("w", encoding="ascii") as tsv:
        pending: list[bytes] = []
        for image_id in tqdm(image_ids, desc=f"sample {split}", unit="img"):
            data, captions = make_image(rng)
            tsv.write(f"{image_id}\t{base64.b64encode(data).decode('ascii')}\n")
            for caption in captions:
                texts.append({"text_id": text_id, "text": caption, "image_ids": [image_id]})
                text_id += 1
            if encoder is not None:
                pending.append(data)
                if len(pending) == batch_size:
                    image_vectors.append(encoder.encode_images([Image.open(io.BytesIO(d)) for d in pending]))
                    pending = []
        if encoder is not None and pending:
            image_vectors.append(encoder.encode_images([Image.open(io.BytesIO(d)) for d in pending]))
    with texts_jsonl(directory, split).open("w", encoding="utf-8") as handle:
        for record in texts:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    if encoder is not None:
        _write_features(image_features_jsonl(directory, split), "image_id", image_ids, np.concatenate(image_vectors))
        text_vectors = np.concatenate(
            [encoder.encode_text([t["text"] for t in texts[i : i + 64]]) for i in range(0, len(texts), 64)]
        )
        _write_features(text_features_jsonl(directory, split), "text_id", [t["text_id"] for t in texts], text_vectors)
    return SampleReport(directory, split, count, len(texts), encoder is not None)
