"""Tags: a job labels every image of a collection from a label set (zero-shot, from the stored vectors: no image
is re-encoded), and people set tags by hand. Tags come back with each hit and are counted per collection."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from adapters.stores.sql.tag_store import MAX_TAG_CHARS, MAX_TAGS_PER_IMAGE, Tag, TagStore
from operations.collections import collections
from operations.errors import InvalidInput
from operations.ingest import vector_fields
from operations.jobs.job_progress import JobProgress
from operations.labels.classify import label_probabilities, require_text_model, resolve_templates, validate_labels
from operations.search.search import validate_text
from operations.services import Services

logger = logging.getLogger(__name__)
BATCH = 1000


@dataclass(frozen=True)
class TagRule:
    """Keep each image's ``top_n`` most probable labels, and of those only the ones at ``min_probability`` or above;
    either may be left out, not both."""

    top_n: int | None = 3
    min_probability: float | None = None


def validate_rule(top_n: int | None, min_probability: float | None, labels: int) -> TagRule:
    if top_n is None and min_probability is None:
        raise InvalidInput("give top_n, min_probability or both")
    if top_n is not None and not 1 <= top_n <= min(labels, MAX_TAGS_PER_IMAGE):
        raise InvalidInput(f"top_n must be between 1 and {min(labels, MAX_TAGS_PER_IMAGE)}, got {top_n}")
    if min_probability is not None and (not math.isfinite(min_probability) or not 0 < min_probability <= 1):
        raise InvalidInput(f"min_probability must be above 0 and at most 1, got {min_probability}")
    return TagRule(top_n, min_probability)


def choose(probabilities: np.ndarray, labels: Sequence[str], rule: TagRule) -> list[list[Tag]]:
    """Per image (a row of label probabilities): the labels the rule keeps, most probable first."""
    limit = rule.top_n or min(len(labels), MAX_TAGS_PER_IMAGE)
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :limit]
    chosen = []
    for row, columns in zip(probabilities, order, strict=True):
        keep = [c for c in columns if rule.min_probability is None or row[c] >= rule.min_probability]
        chosen.append([Tag(labels[c], "auto", round(float(row[c]), 6)) for c in keep])
    return chosen


def tag_collection(
    services: Services,
    collection: str,
    labels: Sequence[str],
    rule: TagRule,
    progress: JobProgress,
    prompts: str = "photo",
    template: Sequence[str] | None = None,
) -> str:
    """The job: label probabilities of every image from its stored vector; each image's earlier automatic tags are
    replaced, its manual ones kept."""
    settings = services.settings
    labels = validate_labels(labels, MAX_TAG_CHARS)  # each label becomes a tag
    templates = resolve_templates(prompts, template, settings.max_text_chars)
    record = collections.require(services, collection)
    encoder = collections.encoder_for(services, record)
    require_text_model(encoder)
    label_vectors = services.label_vectors.get(encoder, templates, labels)
    scale = float(encoder.info.logit_scale or 1.0)
    store = TagStore(services.metadata.engine)
    ids = [i for batch in services.vectors.iter_ids(record.vector_collection) for i in batch]
    progress.total = len(ids)
    progress.flush()
    tagged = 0
    for start in range(0, len(ids), BATCH):
        if progress.should_stop():
            return f"stopped after {tagged} images"
        chunk = ids[start : start + BATCH]
        vectors = services.vectors.get(record.vector_collection, chunk)
        present = [i for i in chunk if i in vectors]
        if present:
            _, probabilities = label_probabilities(np.stack([vectors[i] for i in present]), label_vectors, scale)
            store.replace(collection, "auto", dict(zip(present, choose(probabilities, labels, rule), strict=True)))
            vector_fields.refresh(services, collection, present)  # tag filters run inside the vector search
            services.texts.refresh(present)  # and keyword search finds images by their tags
            tagged += len(present)
        progress.done += len(chunk)
        progress.loaded = tagged
        progress.flush()
    counts = dict(store.counts(collection))
    used = sum(1 for label in labels if counts.get(label))
    return f"{tagged} images tagged with {used} of {len(labels)} labels"


def set_manual(services: Services, collection: str, image_id: str, tags: Sequence[str]) -> list[Tag]:
    """Replaces the image's manual tags (its automatic ones stay); returns all its tags."""
    cleaned = list(dict.fromkeys(t.strip() for t in tags if t.strip()))
    if len(cleaned) > MAX_TAGS_PER_IMAGE:
        raise InvalidInput(f"at most {MAX_TAGS_PER_IMAGE} tags per image, got {len(cleaned)}")
    cleaned = [validate_text(tag, MAX_TAG_CHARS) for tag in cleaned]  # length and Unicode, as for search texts
    image = collections.require_image(services, collection, image_id)
    store = TagStore(services.metadata.engine)
    store.replace(collection, "manual", {image.id: [Tag(t, "manual") for t in cleaned]})
    vector_fields.refresh(services, collection, [image.id])
    services.texts.refresh([image.id])
    return store.tags_of([image.id]).get(image.id, [])


def of_image(services: Services, collection: str, image_id: str) -> list[Tag]:
    image = collections.require_image(services, collection, image_id)
    return TagStore(services.metadata.engine).tags_of([image.id]).get(image.id, [])


def counts(services: Services, collection: str) -> list[tuple[str, int]]:
    collections.require(services, collection)
    return TagStore(services.metadata.engine).counts(collection)
