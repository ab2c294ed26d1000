"""Pictures with Chinese text in them (receipts, signs, timetables, chat screenshots), drawn with the machine's CJK
font: OCR tests and the OCR benchmark read them back."""

from __future__ import annotations

import io
import random

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from operations.search.results_picture import find_font

SHOPS = ["星巴克咖啡", "全家便利店", "海底捞火锅", "新华书店", "华联超市", "老北京炸酱面", "喜茶", "瑞幸咖啡"]
ITEMS = ["拿铁", "美式", "矿泉水", "牛奶", "面包", "宫保鸡丁", "炸酱面", "苹果", "雨伞", "笔记本"]
STATIONS = ["人民广场", "陆家嘴", "西直门", "中关村", "五道口", "东方明珠", "徐家汇", "南京东路"]


def font(size: int) -> ImageFont.FreeTypeFont:
    path = find_font(None)
    assert path is not None, "a CJK font is needed (Debian: fonts-wqy-microhei)"
    return ImageFont.truetype(path, size)


def lines_for(kind: str, rng: random.Random) -> list[str]:
    if kind == "receipt":
        shop = rng.choice(SHOPS)
        item = rng.choice(ITEMS)
        return [
            f"{shop}",
            "增值税普通发票",
            f"{item} ¥{rng.randint(5, 99)}.00",
            f"发票号码 {rng.randint(10**7, 10**8 - 1)}",
        ]
    if kind == "timetable":
        line = rng.randint(1, 16)
        return [
            f"地铁{line}号线",
            f"开往 {rng.choice(STATIONS)}",
            f"首班车 0{rng.randint(5, 6)}:30 末班车 23:{rng.randint(10, 59)}",
        ]
    if kind == "sign":
        return [f"{rng.choice(SHOPS)}", f"营业时间 {rng.randint(7, 10)}:00-2{rng.randint(0, 3)}:00"]
    return [f"妈妈：{rng.choice(ITEMS)}买了吗", f"我：买了，在{rng.choice(STATIONS)}站", "好的 晚上见"]  # chat


def draw(lines: list[str], rng: random.Random, busy: bool = False, angle: float = 0.0) -> Image.Image:
    size = rng.randint(30, 44)
    width = max(len(line) for line in lines) * size + 120
    height = len(lines) * (size + 24) + 80
    if busy:  # a photo-like background: gradient and noise
        base = np.linspace(90, 230, width)[None, :, None] * np.ones((height, 1, 3))
        noise = np.random.default_rng(rng.randint(0, 10**6)).normal(0, 14, (height, width, 3))
        image = Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))
    else:
        image = Image.new("RGB", (width, height), (250, 248, 240))
    pen = ImageDraw.Draw(image)
    typeface = font(size)
    for row, line in enumerate(lines):
        colour = (rng.randint(0, 60), rng.randint(0, 60), rng.randint(0, 90))
        pen.text((50, 40 + row * (size + 24)), line, font=typeface, fill=colour)
    if angle:
        image = image.rotate(angle, expand=True, fillcolor=(250, 248, 240))
    return image


def jpeg_of(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=90)
    return out.getvalue()


def text_pictures(count: int, seed: int) -> tuple[dict[str, bytes], dict[str, list[str]]]:
    """``count`` JPEGs of receipts, timetables, signs and chats by file name, and the lines drawn into each. Each is
    four times its drawn size: larger than OCR reads (IMGSEARCH_OCR_MAX_SIDE), so its boxes are scaled back."""
    rng = random.Random(seed)
    pictures, texts = {}, {}
    kinds = ["receipt", "timetable", "sign", "chat"]
    for i in range(count):
        lines = lines_for(kinds[i % len(kinds)], rng)
        image = draw(lines, rng, busy=i % 2 == 1)
        pictures[f"{kinds[i % len(kinds)]}{i}.jpg"] = jpeg_of(image.resize((image.width * 4, image.height * 4)))
        texts[f"{kinds[i % len(kinds)]}{i}.jpg"] = lines
    return pictures, texts
