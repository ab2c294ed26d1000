"""Readers for Chinese-CLIP's Flickr30k-CN / MUGE files, streamed so no file is ever held whole.

- ``{split}_imgs.tsv``: ``image_id<TAB>base64(image)`` per line
- ``{split}_imgs.img_feat.jsonl``: ``{"image_id": ..., "feature": [...]}`` per line
- ``{split}_texts.jsonl``: ``{"text_id": ..., "text": ..., "image_ids": [...]}`` per line
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

# The id as JSON: a quoted string (escapes included) or an integer; decoded with json.loads.
_IMAGE_ID = re.compile(rb'"image_id"\s*:\s*("(?:[^"\\]|\\.)*"|-?\d+)')


def images_tsv(directory: Path, split: str) -> Path:
    return directory / f"{split}_imgs.tsv"


def image_features_jsonl(directory: Path, split: str) -> Path:
    return directory / f"{split}_imgs.img_feat.jsonl"


def texts_jsonl(directory: Path, split: str) -> Path:
    return directory / f"{split}_texts.jsonl"


def words_jsonl(directory: Path, split: str) -> Path:
    """This service's own addition (an export writes it): ``{"image_id", "description", "ocr", "ocr_lines"}``."""
    return directory / f"{split}_words.jsonl"


def faces_jsonl(directory: Path, split: str) -> Path:
    """This service's own addition: each image's faces, their vectors and persons (operations/people/copy_people)."""
    return directory / f"{split}_faces.jsonl"


def text_features_jsonl(directory: Path, split: str) -> Path:
    return directory / f"{split}_texts.txt_feat.jsonl"


class BadLine(ValueError):
    """One line of an input file is malformed; the load reports it and goes on."""


@dataclass(frozen=True)
class TsvRow:
    line: int
    image_id: str
    data: bytes


def count_lines(path: Path) -> int:
    count = 0
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            count += block.count(b"\n")
    return count


def iter_tsv(path: Path) -> Iterator[TsvRow | BadLine]:
    """Yields each line decoded, or a BadLine naming the line and the reason."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            raw = raw.rstrip(b"\r\n")
            if not raw.strip():
                continue
            parts = raw.split(b"\t")
            if len(parts) != 2:
                yield BadLine(f"line {number}: expected image_id<TAB>base64, got {len(parts)} field(s)")
                continue
            try:
                image_id = parts[0].decode("utf-8").strip()
            except UnicodeDecodeError:
                yield BadLine(f"line {number}: image_id is not UTF-8")
                continue
            if not image_id or len(image_id) > 255:
                yield BadLine(f"line {number}: image_id must be 1-255 characters")
                continue
            try:
                data = base64.b64decode(parts[1], validate=True)
            except (binascii.Error, ValueError):
                yield BadLine(f"line {number} ({image_id}): image is not valid base64")
                continue
            yield TsvRow(number, image_id, data)


class FeatureFile:
    """Random access to a feature JSONL by image_id through a byte-offset index built in one pass."""

    def __init__(self, path: Path, dim: int) -> None:
        self.path = path
        self.dim = dim
        self._offsets: dict[str, int] = {}
        with path.open("rb") as handle:
            offset = 0
            for raw in handle:
                match = _IMAGE_ID.search(raw, 0, 200)
                if match:
                    self._offsets.setdefault(str(json.loads(match.group(1))), offset)
                offset += len(raw)
        self._handle = path.open("rb")

    def __len__(self) -> int:
        return len(self._offsets)

    def __contains__(self, image_id: str) -> bool:
        return image_id in self._offsets

    def get(self, image_id: str) -> np.ndarray:
        """The unit-length feature of image_id; raises BadLine when it is malformed."""
        self._handle.seek(self._offsets[image_id])
        raw = self._handle.readline()
        try:
            feature = np.asarray(orjson.loads(raw)["feature"], dtype=np.float32)  # 5x json's speed here
        except (ValueError, KeyError, TypeError) as exc:
            raise BadLine(f"feature of {image_id} is malformed: {exc}") from exc
        if feature.shape != (self.dim,):
            raise BadLine(f"feature of {image_id} has shape {feature.shape}, expected ({self.dim},)")
        norm = float(np.linalg.norm(feature))
        if not np.isfinite(norm) or norm == 0.0:
            raise BadLine(f"feature of {image_id} is zero or not finite")
        return feature / norm

    def close(self) -> None:
        self._handle.close()


def feature_line(key: str, item_id: str | int, vector: Iterable[float]) -> str:
    """One line of a Chinese-CLIP feature file; numeric ids are written as integers, as Chinese-CLIP does (but
    not "007", which would come back as 7), and other ids as they are (UTF-8, not \\u escapes)."""
    text = str(item_id)
    value: str | int = int(text) if text.isascii() and text.isdigit() and str(int(text)) == text else item_id
    return json.dumps({key: value, "feature": [round(float(x), 7) for x in vector]}, ensure_ascii=False) + "\n"


def iter_jsonl(path: Path) -> Iterator[dict]:
    with path.open("r", encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


def read_captions(path: Path) -> dict[str, str]:
    """Each image's captions from a ``{split}_texts.jsonl`` (one per line, in file order), by image_id as the TSV
    spells it; a line that is not a caption record is passed over (the evaluation reports such lines)."""
    captions: dict[str, list[str]] = {}
    if not path.is_file():
        return {}
    with path.open("r", encoding="utf-8", errors="replace") as handle:
        for line in handle:
            try:
                record = json.loads(line)
                text, image_ids = str(record["text"]).strip(), record["image_ids"]
            except (ValueError, KeyError, TypeError):
                continue
            if not text or not isinstance(image_ids, list):
                continue
            for image_id in image_ids:
                captions.setdefault(str(image_id), []).append(text)
    return {image_id: "\n".join(texts) for image_id, texts in captions.items()}


def read_words(directory: Path, split: str) -> dict[str, dict[str, Any]]:
    """Words about each image of a split: its captions, and what an export of this service kept beside them."""
    words: dict[str, dict[str, Any]] = {
        image_id: {"caption": caption} for image_id, caption in read_captions(texts_jsonl(directory, split)).items()
    }
    path = words_jsonl(directory, split)
    if path.is_file():
        with path.open("r", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                try:
                    record = json.loads(line)
                    image_id = str(record["image_id"])
                except (ValueError, KeyError, TypeError):
                    continue
                kept = {k: record[k] for k in ("description", "ocr") if isinstance(record.get(k), str) and record[k]}
                lines = record.get("ocr_lines")
                if isinstance(lines, list) and lines and all(isinstance(line, dict) for line in lines):
                    kept["ocr_lines"] = lines
                words.setdefault(image_id, {}).update(kept)
    return words
