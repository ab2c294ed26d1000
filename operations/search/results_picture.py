"""A picture of a search: the query (text or image) on top, the top-k thumbnails with rank and score
below, like the source document's search_result.png. Chinese needs a CJK font (fonts-wqy-microhei or
fonts-noto-cjk from Debian, or IMGSEARCH_FONT_PATH)."""

from __future__ import annotations

import functools
import io
import logging
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont, ImageOps

from adapters import images

logger = logging.getLogger(__name__)

CJK_FONTS = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc",
    "/System/Library/Fonts/PingFang.ttc",
    "C:/Windows/Fonts/msyh.ttc",
)
THUMB, CAPTION, PAD, HEADER = 200, 44, 12, 64
RANDOM_NOTE = "随机权重:结果没有意义 (random weights: results are meaningless)"
BACKGROUND, INK, MUTED = (250, 250, 250), (30, 30, 30), (110, 110, 110)


@dataclass(frozen=True)
class PictureHit:
    data: bytes
    score: float
    label: str


@functools.lru_cache(maxsize=8)
def find_font(configured: str | None) -> str | None:
    for path in (configured, *CJK_FONTS):
        if path and Path(path).is_file():
            return path
    logger.warning("no CJK font found: Chinese in result pictures will not render (set IMGSEARCH_FONT_PATH)")
    return None


def _font(path: str | None, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.truetype(path, size) if path else ImageFont.load_default(size)


def _thumbnail(data: bytes, max_pixels: int) -> Image.Image:
    try:
        image = images.decode_rgb(data, max_pixels)
    except images.InvalidImage:
        image = Image.new("RGB", (THUMB, THUMB), (200, 200, 200))
    return ImageOps.contain(image, (THUMB, THUMB))


def render(
    title: str,
    hits: list[PictureHit],
    query_image: bytes | None = None,
    columns: int = 5,
    font_path: str | None = None,
    max_pixels: int = 50_000_000,
    note: str | None = None,
) -> bytes:
    """PNG bytes of the query and its hits in a grid; ``note`` is a warning line under the title."""
    font_file = find_font(font_path)
    title_font, caption_font = _font(font_file, 22), _font(font_file, 15)
    columns = max(1, min(columns, max(len(hits), 1)))
    rows = max(1, -(-len(hits) // columns))
    query_block = THUMB + CAPTION + PAD if query_image is not None else 0
    width = PAD + columns * (THUMB + PAD)
    height = HEADER + query_block + rows * (THUMB + CAPTION + PAD) + PAD
    canvas = Image.new("RGB", (max(width, 480), height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    draw.text((PAD, PAD), title, font=title_font, fill=INK)
    if note:
        draw.text((PAD, PAD + 28), note, font=caption_font, fill=(190, 40, 40))
    top = HEADER
    if query_image is not None:
        canvas.paste(_thumbnail(query_image, max_pixels), (PAD, top))
        draw.text((PAD, top + THUMB + 6), "查询图片 query", font=caption_font, fill=MUTED)
        top += query_block
    if not hits:
        draw.text((PAD, top), "没有结果 (no results)", font=caption_font, fill=MUTED)
    for rank, hit in enumerate(hits):
        x = PAD + (rank % columns) * (THUMB + PAD)
        y = top + (rank // columns) * (THUMB + CAPTION + PAD)
        thumb = _thumbnail(hit.data, max_pixels)
        canvas.paste(thumb, (x + (THUMB - thumb.width) // 2, y + (THUMB - thumb.height) // 2))
        draw.text((x, y + THUMB + 4), f"#{rank + 1}  {hit.score:.4f}", font=caption_font, fill=INK)
        draw.text((x, y + THUMB + 23), hit.label[:26], font=caption_font, fill=MUTED)
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
