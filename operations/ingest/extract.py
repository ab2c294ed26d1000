"""Chinese-CLIP feature files from a split, on CPU or GPU (Chinese-CLIP's own extractor needs CUDA):
``{split}_imgs.img_feat.jsonl`` from ``{split}_imgs.tsv`` and ``{split}_texts.txt_feat.jsonl`` from
``{split}_texts.jsonl``, streamed in batches with progress."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters import images
from adapters.encoders.encoder_base import EncoderBase
from operations.ingest.flickr_format import (
    BadLine,
    TsvRow,
    count_lines,
    feature_line,
    image_features_jsonl,
    images_tsv,
    iter_jsonl,
    iter_tsv,
    text_features_jsonl,
    texts_jsonl,
)
from operations.ingest.streams import batched, bounded_map

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExtractReport:
    images: int
    texts: int
    failed: list[str]


def _decode(row: TsvRow | BadLine, encoder: EncoderBase, max_pixels: int) -> tuple[str, Any] | str:
    if isinstance(row, BadLine):
        return str(row)
    try:
        return row.image_id, encoder.preprocess(images.decode_rgb(row.data, max_pixels))
    except images.InvalidImage as exc:
        return f"line {row.line} ({row.image_id}): {exc}"


def extract(
    encoder: EncoderBase,
    directory: Path,
    split: str,
    batch_size: int = 32,
    workers: int = 2,
    max_pixels: int = 50_000_000,
    on_progress: Callable[[int, int], None] | None = None,
) -> ExtractReport:
    """Writes both feature files next to the inputs (through a temporary file, so a crash leaves none half-written)."""
    tsv, texts = images_tsv(directory, split), texts_jsonl(directory, split)
    total = (count_lines(tsv) if tsv.is_file() else 0) + (count_lines(texts) if texts.is_file() else 0)
    done, failed, counts = 0, [], [0, 0]
    if tsv.is_file():
        out = image_features_jsonl(directory, split)
        tmp = out.with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8") as handle, ThreadPoolExecutor(workers) as pool:
            decoded = bounded_map(pool, lambda r: _decode(r, encoder, max_pixels), iter_tsv(tsv), 2 * batch_size)
            for batch in batched(decoded, batch_size):
                good = [item for item in batch if isinstance(item, tuple)]
                failed += [item for item in batch if isinstance(item, str)]
                if good:
                    vectors = encoder.encode_pixels([pixels for _, pixels in good])
                    handle.writelines(feature_line("image_id", i, v) for (i, _), v in zip(good, vectors, strict=True))
                counts[0] += len(good)
                done += len(batch)
                if on_progress:
                    on_progress(done, total)
        tmp.replace(out)
    if texts.is_file():
        out = text_features_jsonl(directory, split)
        tmp = out.with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8") as handle:
            for batch in batched(iter_jsonl(texts), batch_size):
                vectors = encoder.encode_text([row["text"] for row in batch])
                handle.writelines(feature_line("text_id", r["text_id"], v) for r, v in zip(batch, vectors, strict=True))
                counts[1] += len(batch)
                done += len(batch)
                if on_progress:
                    on_progress(done, total)
        tmp.replace(out)
    logger.info("extracted %d image and %d text features in %s (%d failed)", *counts, directory, len(failed))
    return ExtractReport(counts[0], counts[1], failed)
