"""Zero-shot labels (the source document's 1.1): one image against candidate labels, a probability per label.

Probabilities are ``softmax(logit_scale * cosine)`` over the labels, as ``model.get_similarity`` computes them.
A label's vector is the normalised mean of its prompts' unit vectors (Chinese-CLIP's zero-shot evaluation);
label vectors are cached per model, prompt set and label, so a label set is encoded once.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from adapters import images
from adapters.encoders.encoder_base import EncoderBase
from operations.collections import collections
from operations.errors import Conflict, InvalidInput
from operations.labels.zero_shot_prompts import PROMPT_SETS
from operations.search.search import validate_text
from operations.services import Services

MAX_LABELS, MIN_LABELS = 1000, 2
MAX_TEMPLATES = 100


@dataclass(frozen=True)
class LabelScore:
    label: str
    probability: float
    cosine: float


@dataclass
class Classification:
    model: str
    templates: tuple[str, ...]
    labels: list[LabelScore]  # best first
    logit_scale: float
    timings_ms: dict[str, float]


def resolve_templates(prompts: str, template: Sequence[str] | None, max_chars: int) -> tuple[str, ...]:
    """A named prompt set, or the caller's own templates, each with one ``{}`` where the label goes."""
    if template:
        if len(template) > MAX_TEMPLATES:
            raise InvalidInput(f"at most {MAX_TEMPLATES} templates, got {len(template)}")
        for item in template:
            if item.count("{}") != 1:
                raise InvalidInput(f"template {item!r} must hold {{}} exactly once, where the label goes")
        return tuple(validate_text(item, max_chars) for item in template)
    if prompts not in PROMPT_SETS:
        raise InvalidInput(f"unknown prompt set {prompts!r}; choose one of {', '.join(PROMPT_SETS)}")
    return PROMPT_SETS[prompts]


def validate_labels(labels: Sequence[str], max_chars: int) -> list[str]:
    cleaned = [validate_text(label, max_chars) for label in labels]
    if not MIN_LABELS <= len(cleaned) <= MAX_LABELS:
        raise InvalidInput(f"give {MIN_LABELS} to {MAX_LABELS} labels, got {len(cleaned)}")
    duplicates = sorted({label for label in cleaned if cleaned.count(label) > 1})
    if duplicates:
        raise InvalidInput(f"labels must differ; repeated: {', '.join(duplicates[:5])}")
    return cleaned


def label_probabilities(
    image_vectors: np.ndarray, label_vectors: np.ndarray, logit_scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """(cosines, probabilities), one row per image: softmax over the labels of logit_scale x cosine, as
    ``model.get_similarity`` computes it (the tag job scores a batch of images the same way)."""
    cosines = np.atleast_2d(np.asarray(image_vectors, dtype=np.float32)) @ label_vectors.T
    logits = logit_scale * cosines.astype(np.float64)
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    return cosines, probabilities


def score(
    image_vector: np.ndarray, label_vectors: np.ndarray, labels: Sequence[str], logit_scale: float
) -> list[LabelScore]:
    cosine_rows, probability_rows = label_probabilities(image_vector, label_vectors, logit_scale)
    cosines, probabilities = cosine_rows[0], probability_rows[0]
    order = np.argsort(-probabilities, kind="stable")
    return [LabelScore(labels[i], float(probabilities[i]), float(cosines[i])) for i in order]


def classify(
    services: Services,
    labels: Sequence[str],
    *,
    image: bytes | None = None,
    collection: str | None = None,
    image_id: str | None = None,
    prompts: str = "photo",
    template: Sequence[str] | None = None,
    model: str | None = None,
) -> Classification:
    """An uploaded image (encoded by ``model``, default the service's) or a stored one (its stored vector, the
    collection's model: no re-encoding)."""
    settings = services.settings
    started = time.perf_counter()
    labels = validate_labels(labels, settings.max_text_chars)
    templates = resolve_templates(prompts, template, settings.max_text_chars)
    timings: dict[str, float] = {}
    if (image is None) == (collection is None or image_id is None):
        raise InvalidInput("give an image file, or a collection and an image_id, not both")
    if image is not None:
        encoder = services.models.get(model)
        require_text_model(encoder)
        images.probe(image, settings.max_image_bytes, settings.max_image_pixels)
        vector = encoder.encode_images([images.decode_rgb(image, settings.max_image_pixels)])[0]
    else:
        assert collection is not None and image_id is not None
        record = collections.require(services, collection)
        if model is not None and model != record.model:
            raise InvalidInput(f"collection {collection!r} is encoded with {record.model}, not {model}")
        encoder = collections.encoder_for(services, record)
        require_text_model(encoder)
        stored = collections.require_image(services, collection, image_id)
        found = services.vectors.get(record.vector_collection, [stored.id]).get(stored.id)
        if found is None:
            raise Conflict(f"image {image_id!r} has no vector; run reconcile on {collection!r}")
        vector = found
    timings["image"] = (time.perf_counter() - started) * 1000
    begun = time.perf_counter()
    label_vectors = services.label_vectors.get(encoder, templates, labels)
    timings["labels"] = (time.perf_counter() - begun) * 1000
    scale = encoder.info.logit_scale
    assert scale is not None  # every text model has one; _require_text refused the others
    begun = time.perf_counter()
    ranked = score(vector, label_vectors, labels, scale)
    timings["score"] = (time.perf_counter() - begun) * 1000
    return Classification(encoder.model_name, templates, ranked, scale, timings)


def require_text_model(encoder: EncoderBase) -> None:
    if not encoder.has_text:
        raise Conflict(f"{encoder.model_name} has no text encoder: labels need a Chinese-CLIP model")
    if encoder.info.logit_scale is None:
        raise Conflict(
            f"the ONNX export of {encoder.model_name} predates labels (no logit scale in its manifest): "
            "run `imgsearch export-onnx` again"
        )
