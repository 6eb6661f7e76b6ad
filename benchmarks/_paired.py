"""Paired per-fold differences: two figures measured on the same folds, compared fold by fold."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["paired_difference"]


def paired_difference(before: Sequence[float], after: Sequence[float]) -> tuple[np.ndarray, float]:
    """Per-fold ``after - before`` and the standard error of its mean (NaN from one fold)."""
    diff = np.asarray(after, dtype=np.float64) - np.asarray(before, dtype=np.float64)
    se = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else float("nan")
    return diff, se
