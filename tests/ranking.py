"""Comparing a service's ranking with a brute-force one over the same vectors (float32 ties may swap)."""

from __future__ import annotations

import numpy as np

TIE = 1e-6  # scores closer than this have no defined order in float32


def same_ranking(got: list[str], expected: list[str], expected_scores: np.ndarray) -> bool:
    """Equal order, except that items whose brute-force scores tie may swap places."""
    if len(got) != len(expected):
        return False
    start = 0
    while start < len(expected):
        end = start + 1
        while end < len(expected) and expected_scores[end - 1] - expected_scores[end] < TIE:
            end += 1
        if sorted(got[start:end]) != sorted(expected[start:end]):
            return False
        start = end
    return True
