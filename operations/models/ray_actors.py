"""The actors that run on a Ray cluster's nodes (``operations.models.ray_encoding`` drives them through Ray Data):
an encoder, which can read the text in each picture on the same decode (IMGSEARCH_OCR=on at ingest and sync), and
an OCR reader for the OCR job over stored pictures. Each loads its models once, in ``__init__``, with as many ONNX
Runtime threads as the actor has CPUs, and decodes its batch on as many threads."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from config import Settings


def lines_json(lines: list[Any]) -> str:
    """OCR lines as an actor returns them (a string travels in Ray Data's numpy batches as it is)."""
    return json.dumps([line.as_dict() for line in lines], ensure_ascii=False)


def lines_from_json(text: str) -> list[Any]:
    from adapters.ocr import OcrLine

    return [OcrLine(**line) for line in json.loads(text)]


class _Actor:
    def __init__(self, settings: dict[str, Any]) -> None:
        import ray

        if ray.get_runtime_context().get_assigned_resources().get("GPU", 0):
            settings = {**settings, "onnx_device": "cuda"}
        self.settings = Settings(_env_file=None, **settings)  # type: ignore[call-arg]
        # Decoding a 12 MP JPEG costs ~50 ms of one core (entropy decoding): an actor given several CPUs (a GPU
        # actor above all) decodes its batch on as many threads, or the encoder would wait on one.
        self.decoders = ThreadPoolExecutor(max_workers=self.settings.onnx_threads, thread_name_prefix="decode")
        self.node = f"{ray.util.get_node_ip_address()}/{ray.get_runtime_context().get_node_id()[:8]}"
        self.reader: Any = None

    def _load_reader(self) -> None:
        from adapters.ocr import OcrReader

        self.reader = OcrReader(threads=self.settings.onnx_threads)
        self.reader.load()  # now, so that a node without the ocr extra fails the actor, not each batch

    def _read(self, picture: Any, longest: int) -> str:
        """The picture's lines as JSON, their boxes in the pixels of an original whose longer side is ``longest``."""
        scale = longest / max(picture.size) if longest else 1.0
        return lines_json([line.scaled(scale) for line in self.reader.read(picture)])


class EncoderActor(_Actor):
    """Decodes and encodes one batch per call; with ``ocr_side`` it also reads each picture's text, from the
    picture OCR reads when it runs in the service (the preview, or the image at ``ocr_side``)."""

    def __init__(self, settings: dict[str, Any], model: str, ocr_side: int = 0) -> None:
        from operations.models.models import build_encoder

        super().__init__(settings)
        self.encoder = build_encoder(self.settings, model)
        self.encoder.load()
        self.ocr_side = ocr_side
        if ocr_side:
            self._load_reader()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        from adapters import images
        from operations.ingest.encode_stage import EncodeTask, prepare_all

        settings = self.settings
        count = len(batch["i"])

        def decode(row: int) -> tuple[Any, bytes | None, str, str]:
            task = EncodeTask(
                data=bytes(batch["data"][row]) or None,
                path=str(batch["path"][row]) or None,
                preview_size=int(batch["preview"][row]),
            )
            try:
                data = task.read(settings.max_image_bytes)
                pixels, preview, picture = prepare_all(
                    data, self.encoder, settings.max_image_pixels, task.preview_size, self.ocr_side
                )
                text = self._read(picture, images.longest_side(data)) if picture is not None else ""
            except (images.InvalidImage, OSError) as exc:
                return None, None, str(exc) or type(exc).__name__, ""
            return pixels, preview, "", text

        decoded = list(self.decoders.map(decode, range(count)))
        good = [row for row in range(count) if decoded[row][0] is not None]
        vectors = np.zeros((count, self.encoder.info.dim), dtype=np.float32)
        if good:
            vectors[good] = self.encoder.encode_pixels([decoded[row][0] for row in good])
        return {
            "i": batch["i"],
            "vector": vectors,
            "preview": np.array([entry[1] or b"" for entry in decoded], dtype=object),
            "error": np.array([entry[2] for entry in decoded], dtype=object),
            "text": np.array([entry[3] for entry in decoded], dtype=object),
            "node": np.array([self.node] * count, dtype=object),
        }


class OcrActor(_Actor):
    """Reads the text in stored pictures (the OCR job): each row's bytes and its original's longer side."""

    def __init__(self, settings: dict[str, Any]) -> None:
        super().__init__(settings)
        self._load_reader()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        from adapters import images

        settings = self.settings
        count = len(batch["i"])

        def read(row: int) -> tuple[str, str]:
            try:
                data = bytes(batch["data"][row])
                picture = images.picture_for_ocr(data, settings.max_image_pixels, settings.ocr_max_side)
                return self._read(picture, int(batch["longest"][row])), ""
            except images.InvalidImage as exc:
                return "", str(exc)

        # The reader is one pipeline whose sessions use every thread the actor has: pictures are read one by one.
        results = [read(row) for row in range(count)]
        return {
            "i": batch["i"],
            "text": np.array([text for text, _ in results], dtype=object),
            "error": np.array([error for _, error in results], dtype=object),
            "node": np.array([self.node] * count, dtype=object),
        }


class FaceActor(_Actor):
    """Finds and embeds the faces in stored pictures (the face job): each row's bytes and its original's size; the
    faces come back pickled (boxes in the original's pixels, unit vectors)."""

    def __init__(self, settings: dict[str, Any]) -> None:
        from adapters import faces

        super().__init__(settings)
        self.model = faces.build(self.settings)
        self.model.load()  # now, so that a node without the faces extra fails the actor, not each batch

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        import pickle

        from adapters import faces

        settings = self.settings
        count = len(batch["i"])

        def read(row: int) -> tuple[bytes, str]:
            found, why = faces.read_or_why(
                bytes(batch["data"][row]),
                int(batch["width"][row]),
                int(batch["height"][row]),
                settings.max_image_pixels,
                settings.face_max_side,
                self.model,
            )
            return pickle.dumps(found), why or ""

        results = [read(row) for row in range(count)]  # dlib holds the GIL: one picture at a time
        return {
            "i": batch["i"],
            "result": np.array([result for result, _ in results], dtype=object),
            "error": np.array([error for _, error in results], dtype=object),
            "node": np.array([self.node] * count, dtype=object),
        }


class VideoActor(_Actor):
    """Samples and encodes pieces of videos, each a file its node reads and a time range: the decoded frames stay on
    the node, only each sample's small JPEG and vector go back (pickled, as the service's own ``EncodedVideo``)."""

    def __init__(self, settings: dict[str, Any], model: str) -> None:
        from operations.models.models import build_encoder

        super().__init__(settings)
        self.encoder = build_encoder(self.settings, model)
        self.encoder.load()
        if self.settings.ocr == "on":  # subtitles and signs read on the node, from the frames it decoded
            self._load_reader()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        import dataclasses
        import pickle

        from adapters.video import VideoError
        from operations.ingest import videos

        results = []
        for path, start, end in zip(batch["path"], batch["start"], batch["end"], strict=True):
            try:
                end_ms = None if int(end) < 0 else int(end)
                result: Any = videos.encode(
                    str(path), self.encoder, self.settings, int(start), end_ms, reader=self.reader
                )
                result = dataclasses.replace(result, nodes=(self.node,))
            except VideoError as exc:
                result = str(exc)
            results.append(pickle.dumps(result))
        return {
            "i": batch["i"],
            "result": np.array(results, dtype=object),
            "node": np.array([self.node] * len(results)),
        }
