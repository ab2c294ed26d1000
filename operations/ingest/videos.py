"""Videos as items of a collection: one row for the video (its poster as the picture, its vector the poster's) and
one row and vector per sample (kind "frame": its time and a small JPEG). A search finds samples and folds them into
moments (operations/search/moments.py); the original stays in its file and is streamed from there.

Reading a video here (``read_facts``) opens its container and hashes its bytes: no frame is decoded until the
content is new (a move or an unchanged file costs no decode). ``encode`` samples and encodes one video; it runs
on a decode thread, or on a Ray actor where a cluster is set (``operations.models.ray_encoding``)."""

from __future__ import annotations

import hashlib
import io
import logging
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from adapters import ocr, video
from adapters.images import ImageFacts
from adapters.ocr import OcrLine, OcrReader
from adapters.stores.sql.metadata_store import FRAME, VIDEO
from operations.ingest.streams import bounded_map
from operations.ingest.writes import ImageToWrite, delete_images, insert_rows, store_vectors
from operations.services import Services
from operations.words import ocr as words

logger = logging.getLogger(__name__)
T = TypeVar("T")

MIMES = {
    ".mp4": "video/mp4",
    ".m4v": "video/x-m4v",
    ".mov": "video/quicktime",
    ".mkv": "video/x-matroska",
    ".webm": "video/webm",
    ".avi": "video/x-msvideo",
}
SAMPLE_SIDE = 448  # what a sample is decoded to: above the encoder's 224, enough for a poster
OCR_SAMPLE_SIDE = 960  # with OCR on: subtitles of a 1080p video stay about as tall as they are shown
FRAME_SIDE = 320  # the JPEG kept per sample: a thumbnail for the page and the input of a re-embed
FRAME_QUALITY = 80
POSTER_QUALITY = 85
ENCODE_BATCH = 16


def is_video(path: str) -> bool:
    return Path(path).suffix.lower() in MIMES


@dataclass(frozen=True)
class VideoRead:
    """What a sync learns of a video file before deciding to decode it."""

    facts: ImageFacts  # mime: the container's type; width and height as shown; the file's hash and size
    video: video.VideoFacts


@dataclass(frozen=True)
class Frame:
    ms: int
    jpeg: bytes
    vector: np.ndarray
    text: list[OcrLine] | None = None  # read at sampling (IMGSEARCH_OCR=on), boxes in the video's pixels
    span: int = 0  # ms its picture lasted after it (near-copies dropped at sampling): a moment reaches that far


@dataclass(frozen=True)
class EncodedVideo:
    poster: bytes
    poster_ms: int
    poster_vector: np.ndarray
    frames: list[Frame]
    damage: str | None = None  # sampling stopped early: what is indexed ends there (the job names the reason)
    nodes: tuple[str, ...] = ("local",)  # where it was sampled and encoded (Ray nodes, or this process)


def read_facts(path: Path, max_bytes: int, sha256: str | None = None) -> VideoRead:
    """The container's facts and the file's hash; raises ``video.VideoError`` with a reason a person can act on."""
    if not video.available():
        raise video.VideoError("videos need the video extra (pip install 'imgsearch[video]')")
    size = path.stat().st_size
    if size == 0:
        raise video.VideoError("the file is empty")
    if size > max_bytes:
        raise video.VideoError(f"file is over the video limit of {max_bytes} bytes")
    facts = video.probe(path)
    if facts.duration_ms <= 0:
        raise video.VideoError(video.NO_DURATION)
    sha = sha256
    if sha is None:
        with path.open("rb") as handle:
            sha = hashlib.file_digest(handle, "sha256").hexdigest()
    mime = MIMES.get(path.suffix.lower(), "video/mp4")
    return VideoRead(
        ImageFacts(
            mime,
            facts.width,
            facts.height,
            sha,
            size,
            facts.taken_at,
            facts.taken_offset,
            facts.camera,
            facts.latitude,
            facts.longitude,
        ),
        facts,
    )


def encode(
    path: str | Path,
    encoder: Any,
    settings: Any,
    start_ms: int = 0,
    end_ms: int | None = None,
    reader: OcrReader | None = None,
) -> EncodedVideo:
    """Samples one video (or the piece ``[start_ms, end_ms)`` of it) and encodes its samples; with ``reader``, the
    text in each sample is read too (subtitles, signs: sampled larger for it). Raises ``video.VideoError`` when
    nothing can be indexed."""
    sampled = video.sample(
        path,
        every_s=settings.video_sample_seconds,
        max_samples=settings.video_max_samples,
        max_side=OCR_SAMPLE_SIDE if reader is not None else SAMPLE_SIDE,
        time_limit_s=settings.video_decode_seconds,
        start_ms=start_ms,
        end_ms=end_ms,
    )
    if not sampled.samples:
        raise video.VideoError(sampled.damage or "every sampled frame is black")
    vectors = []
    for start in range(0, len(sampled.samples), ENCODE_BATCH):
        batch = sampled.samples[start : start + ENCODE_BATCH]
        vectors.append(encoder.encode_pixels([encoder.preprocess(s.image) for s in batch]))
    matrix = np.concatenate(vectors)
    longest = max(sampled.facts.width, sampled.facts.height)
    frames = [
        Frame(s.ms, _jpeg(s.image, FRAME_SIDE, FRAME_QUALITY), matrix[i], _text(reader, s.image, longest), s.span_ms)
        for i, s in enumerate(sampled.samples)
    ]
    first = sampled.samples[0]
    return EncodedVideo(_jpeg(first.image, SAMPLE_SIDE, POSTER_QUALITY), first.ms, matrix[0], frames, sampled.damage)


def _text(reader: OcrReader | None, picture: Any, longest: int) -> list[OcrLine] | None:
    if reader is None:
        return None
    return [line.scaled(longest / max(picture.size)) for line in reader.read(picture)]


def pieces(duration_ms: int, piece_s: float, max_samples: int) -> list[tuple[int, int | None]]:
    """A long video's time ranges, sampled on several workers at once (one piece: the whole video)."""
    count = max(1, math.ceil(duration_ms / (piece_s * 1000)))
    if count == 1 or max_samples < count:
        return [(0, None)]
    bounds = [round(duration_ms * k / count) for k in range(count + 1)]
    return [(bounds[k], bounds[k + 1] if k + 1 < count else None) for k in range(count)]


def joined(parts: Sequence[EncodedVideo | str], max_samples: int) -> EncodedVideo | str:
    """The pieces of one video as one: their frames in time order (thinned evenly to ``max_samples``), the first
    piece's poster, the first damage (a piece after a damaged one is kept: the damage was local). A reason when
    no piece gave a frame."""
    good = [part for part in parts if not isinstance(part, str)]
    if not good:
        return next((part for part in parts if isinstance(part, str)), "no frame could be decoded")
    frames = sorted((frame for part in good for frame in part.frames), key=lambda frame: frame.ms)
    if len(frames) > max_samples:
        chosen = sorted(set(np.linspace(0, len(frames) - 1, max_samples).round().astype(int).tolist()))
        frames = [frames[i] for i in chosen]
    damage = next((part.damage for part in good if part.damage), None)
    if damage is None and len(good) < len(parts):
        damage = next(part for part in parts if isinstance(part, str))
    first = good[0]
    nodes = tuple(dict.fromkeys(node for part in good for node in part.nodes))
    return EncodedVideo(first.poster, first.poster_ms, first.poster_vector, frames, damage, nodes)


def encode_all(
    services: Services,
    model: str,
    items: Iterable[T],
    location_of: Callable[[T], Path],
    duration_of: Callable[[T], int],
) -> Iterator[tuple[T, EncodedVideo | str]]:
    """Each video sampled and encoded (or the reason it cannot be), in order: on the decode threads here, or with
    a Ray cluster that shares the data root (IMGSEARCH_RAY_SHARED_PATHS) on its actors, a long video in pieces
    over several of them (frames never pass through the service: only the small JPEGs and vectors come back)."""
    settings = services.settings
    if services.ray is not None and settings.ray_shared_paths:
        yield from _on_ray(services, model, items, location_of, duration_of)
        return
    encoder = services.models.get(model)
    reader = services.ocr if ocr.reads_at_write(settings) else None

    def one(item: T) -> tuple[T, EncodedVideo | str]:
        try:
            return item, encode(location_of(item), encoder, settings, reader=reader)
        except video.VideoError as exc:
            return item, str(exc)

    yield from bounded_map(services.decode_pool, one, items, lookahead=1)


@dataclass(frozen=True)
class PieceTask:
    """A piece of a video for a Ray actor: a path its node can read and a time range."""

    path: str
    start_ms: int
    end_ms: int | None

    @property
    def size(self) -> int:
        return 0  # the actor reads the file itself


def _on_ray(
    services: Services,
    model: str,
    items: Iterable[T],
    location_of: Callable[[T], Path],
    duration_of: Callable[[T], int],
) -> Iterator[tuple[T, EncodedVideo | str]]:
    settings = services.settings
    assert services.ray is not None
    listed = list(items)
    tasks: list[tuple[int, PieceTask]] = []
    for index, item in enumerate(listed):
        location = str(location_of(item))
        for start, end in pieces(duration_of(item), settings.video_piece_seconds, settings.video_max_samples):
            tasks.append((index, PieceTask(location, start, end)))
    wanted = {index: sum(1 for i, _ in tasks if i == index) for index in range(len(listed))}
    parts: dict[int, list[EncodedVideo | str]] = {}
    done = 0
    for (index, _), result in services.ray.encode_video_pieces(model, tasks):
        parts.setdefault(index, []).append(result)
        while done < len(listed) and len(parts.get(done, ())) == wanted[done]:
            yield listed[done], joined(parts.pop(done), settings.video_max_samples)
            done += 1


def _jpeg(picture: Any, side: int, quality: int) -> bytes:
    picture = picture.copy()
    picture.thumbnail((side, side))
    out = io.BytesIO()
    picture.save(out, "JPEG", quality=quality)
    return out.getvalue()


def write(
    services: Services,
    collection: str,
    model: str,
    image_id: str,
    read: VideoRead,
    encoded: EncodedVideo,
    source: str | None,
    origin: str,
    in_source: bool = True,
) -> int:
    """The video's row and its frames' rows, pending, then every vector, then all searchable at once (the write
    order of operations/ingest/writes.py). Returns the video's row id."""
    item = ImageToWrite(
        image_id,
        encoded.poster,
        read.facts,
        encoded.poster_vector,
        source,
        origin,
        preview=in_source,  # the original stays in a source folder (else the service keeps it: video_store)
        kind=VIDEO,
        at_ms=encoded.poster_ms,
        duration_ms=read.video.duration_ms,
    )
    written = insert_rows(services, collection, [item])
    if not written:
        raise RuntimeError(f"the row of video {image_id!r} was not written")
    video_id = written[0][1]
    services.metadata.note_video(collection)
    frames = _frame_rows(services, collection, video_id, image_id, read, encoded.frames, origin)
    store_vectors(services, collection, [*written, *frames], model)
    _store_text(services, collection, frames, encoded.frames)
    return video_id


def _store_text(
    services: Services, collection: str, rows: Sequence[tuple[ImageToWrite, int]], frames: Sequence[Frame]
) -> None:
    """What OCR read in the samples, as each frame's words: keyword and hybrid search find them as moments."""
    read = {row_id: frame.text for (_, row_id), frame in zip(rows, frames, strict=True) if frame.text is not None}
    if read:
        words.store(services, collection, read)


def rewrite(
    services: Services, collection: str, model: str, video_id: int, read: VideoRead, encoded: EncodedVideo
) -> None:
    """A video edited in its file: same row, id and tags; new poster, vector and frames."""
    record = services.metadata.fetch(collection, [video_id], include_pending=True)[video_id]
    old_frames = [frame for frame, _ in services.metadata.frames_of([video_id]).get(video_id, [])]
    delete_images(services, collection, old_frames)
    services.metadata.update_video(video_id, encoded.poster, read.facts, encoded.poster_ms, read.video.duration_ms)
    item = ImageToWrite(
        record.image_id, encoded.poster, read.facts, encoded.poster_vector, record.source, record.origin, True
    )
    frames = _frame_rows(services, collection, video_id, record.image_id, read, encoded.frames, record.origin or "")
    store_vectors(services, collection, [(item, video_id), *frames], model)
    _store_text(services, collection, frames, encoded.frames)


def _frame_rows(
    services: Services,
    collection: str,
    video_id: int,
    image_id: str,
    read: VideoRead,
    frames: Sequence[Frame],
    origin: str,
) -> list[tuple[ImageToWrite, int]]:
    """Pending rows of a video's samples; each row carries the video's filter facts (its type, size, capture
    time, camera, place), so a filtered search finds its moments as it finds its photos."""
    items = [
        ImageToWrite(
            f"{image_id}@{frame.ms}",
            frame.jpeg,
            ImageFacts(
                read.facts.mime,
                read.facts.width,
                read.facts.height,
                hashlib.sha256(frame.jpeg).hexdigest(),
                len(frame.jpeg),
                read.facts.taken_at,
                read.facts.taken_offset,
                read.facts.camera,
                read.facts.latitude,
                read.facts.longitude,
            ),
            frame.vector,
            None,
            origin,
            kind=FRAME,
            parent=video_id,
            at_ms=frame.ms,
            duration_ms=frame.span,
            seq=seq,
        )
        for seq, frame in enumerate(frames)
    ]
    return insert_rows(services, collection, items)
