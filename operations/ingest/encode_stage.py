"""The encode stage every bulk job shares (ingest, sync, load without features, re-embed): a stream of images in,
their vectors out in the same order. Here it decodes on the process's decode pool while the encoder runs the
previous batch; with ``IMGSEARCH_RAY_ADDRESS`` set, the same work (``prepare``, then the encoder) runs in encoder
actors on a Ray cluster (``operations.models.ray_encoding``). Either way the caller keeps what it does today:
the job's lease, accounting, the ordered writes, cancel and resume."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from adapters import images, ocr
from adapters.ocr import OcrLine
from operations.ingest.streams import batched, bounded_map, run_ahead
from operations.jobs.job_progress import JobProgress

if TYPE_CHECKING:  # the services hold the Ray encoding, which makes this module's Encoded: no import at run time
    from operations.services import Services

logger = logging.getLogger(__name__)
T = TypeVar("T")
LOCAL = "local"


@dataclass(frozen=True)
class EncodeTask:
    """One image to encode: its bytes, or a path that whoever encodes it can read (a source's file)."""

    data: bytes | None = None
    path: str | None = None
    preview_size: int = 0  # also make a preview JPEG of this longest side (an image of a source folder)

    @property
    def size(self) -> int:
        return len(self.data) if self.data is not None else 0

    def read(self, max_bytes: int) -> bytes:
        if self.data is not None:
            return self.data
        assert self.path is not None
        with Path(self.path).open("rb") as handle:
            return handle.read(max_bytes + 1)


@dataclass(frozen=True)
class Encoded:
    vector: np.ndarray | None  # None when the image could not be decoded (``error`` says why)
    preview: bytes | None = None
    error: str | None = None
    node: str = LOCAL
    text: list[OcrLine] | None = None  # the lines read on a Ray node (``read_text``); None: not read there


def prepare(data: bytes, encoder: Any, max_pixels: int, preview_size: int = 0) -> tuple[Any, bytes | None]:
    """The model's input (and the preview JPEG, when asked) from image bytes: one decode at the smallest JPEG scale
    that still gives the preview its size and the model twice its input, the model reading it (or the preview,
    when that is twice its input too) box-reduced (its vector matches a full decode's: bench/sync.py). A picture
    that small already is decoded whole, as before."""
    pixels, preview, _ = prepare_all(data, encoder, max_pixels, preview_size)
    return pixels, preview


def prepare_all(
    data: bytes, encoder: Any, max_pixels: int, preview_size: int = 0, ocr_side: int = 0
) -> tuple[Any, bytes | None, images.Image.Image | None]:
    """``prepare``, and with ``ocr_side`` the picture OCR reads, from the same decode: the preview when there is
    one (what OCR reads of a stored source image), else the image at ``ocr_side`` (``images.picture_for_ocr``)."""
    resolution = encoder.info.input_resolution
    if not preview_size:
        image = images.decode_rgb(data, max_pixels, min_longest=ocr_side, min_shortest=2 * resolution)
        picture = images.fit(image, ocr_side) if ocr_side else None
        return encoder.preprocess(images.shrink_for_model(image, resolution)), None, picture
    image = images.decode_rgb(data, max_pixels, min_longest=preview_size, min_shortest=resolution)
    preview = images.preview(image, preview_size)
    model_input = preview if min(preview.size) >= 2 * resolution else image  # the smaller one, when big enough
    pixels = encoder.preprocess(images.shrink_for_model(model_input, resolution))
    return pixels, images.jpeg_bytes(preview), preview if ocr_side else None


def encode_stream(
    services: Services,
    model: str,
    items: Iterable[T],
    task_of: Callable[[T], EncodeTask | None],
    progress: JobProgress | None = None,
    on_cluster: bool = True,
    read_text: bool = False,
) -> Iterator[tuple[T, Encoded]]:
    """Each item with its vector (or why it has none), in order; ``progress.encoded_by`` counts where. An item
    whose task is None passes through unencoded (``Encoded(None)``, no error): it needs no vector. With
    ``on_cluster`` false it is encoded here even when a Ray cluster is configured (an upload is answered now).
    ``read_text``: the images are about to be read by OCR (IMGSEARCH_OCR=on at ingest and sync); on Ray the
    encoder actors read them on the same decode (``Encoded.text``), here OCR reads them once they are stored."""
    if services.ray is not None and on_cluster:
        read_text = read_text and ocr.reads_at_write(services.settings)
        stream = services.ray.encode(model, items, task_of, read_text)  # Ray Data streams ahead of the writes
    else:
        stream = run_ahead(_encode_here(services, model, items, task_of), 2 * services.settings.encode_batch_size)
    for item, encoded in stream:
        if progress is not None and encoded.vector is not None:
            progress.encoded_by[encoded.node] += 1
        yield item, encoded


def _encode_here(
    services: Services, model: str, items: Iterable[T], task_of: Callable[[T], EncodeTask | None]
) -> Iterator[tuple[T, Encoded]]:
    encoder = services.models.get(model)
    settings = services.settings
    size = settings.encode_batch_size

    def decode(item: T) -> tuple[T, Any, bytes | None, str | None]:
        task = task_of(item)
        if task is None:
            return item, None, None, None
        try:
            pixels, preview = prepare(
                task.read(settings.max_image_bytes), encoder, settings.max_image_pixels, task.preview_size
            )
        except (images.InvalidImage, OSError) as exc:
            return item, None, None, str(exc)
        return item, pixels, preview, None

    for batch in batched(bounded_map(services.decode_pool, decode, items, lookahead=2 * size + 2), size):
        good = [entry for entry in batch if entry[1] is not None]
        vectors = iter(encoder.encode_pixels([pixels for _, pixels, _, _ in good]) if good else [])
        for item, pixels, preview, error in batch:
            if pixels is None:
                yield item, Encoded(None, error=error)
            else:
                yield item, Encoded(next(vectors), preview)
