"""Text vectors of zero-shot labels, cached: a label set is encoded once per model and prompt set."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from adapters.encoders.encoder_base import EncoderBase, normalise


class LabelVectors:
    """An LRU cache of label vectors, keyed by model (and its weights), prompts and label."""

    def __init__(self, max_entries: int = 50_000) -> None:
        self._cache: OrderedDict[tuple[str, tuple[str, ...], str], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.max_entries = max_entries
        self.hits = self.misses = 0

    def get(self, encoder: EncoderBase, templates: tuple[str, ...], labels: Sequence[str]) -> np.ndarray:
        """(len(labels), dim) unit vectors; labels not yet cached are encoded in one pass."""
        info = encoder.info
        model_key = f"{info.model}|{info.backend}|{info.precision}|{info.weights}|{info.source}"
        keys = [(model_key, templates, label) for label in labels]
        with self._lock:
            found = {key: self._cache[key] for key in keys if key in self._cache}
            for key in found:
                self._cache.move_to_end(key)
        missing = list(dict.fromkeys(key for key in keys if key not in found))
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        if missing:
            prompts = [template.replace("{}", label) for _, _, label in missing for template in templates]
            vectors = encoder.encode_text(prompts).reshape(len(missing), len(templates), -1)
            fresh = normalise(vectors.mean(axis=1))
            with self._lock:
                for key, vector in zip(missing, fresh, strict=True):
                    self._cache[key] = found[key] = vector
                while len(self._cache) > self.max_entries:
                    self._cache.popitem(last=False)
        return np.stack([found[key] for key in keys])
