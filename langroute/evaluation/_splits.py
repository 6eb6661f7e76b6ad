"""Deterministic train/test splits of outcome rows, grouped by prompt text.

A router scored on prompts it was trained on looks better than it is, and logged traffic often
repeats a prompt verbatim; rows with the same text therefore always land on the same side. Every
split is a pure function of the prompts, the scheme and the seed, so a report can be reproduced.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from .._exceptions import RouterConfigError

__all__ = ["SPLIT_SCHEMES", "Split", "make_splits"]

#: ``kfold``: each seed shuffles, then every fold is the test set once (k results per seed).
#: ``halves``: each seed draws one random 50/50 split, as in RouteLLM's evaluation.
SPLIT_SCHEMES = ("kfold", "halves")
DEFAULT_FOLDS = 5


@dataclass(frozen=True)
class Split:
    """One train/test partition: row indices (ascending) into the outcomes."""

    seed: int
    fold: int
    train: np.ndarray
    test: np.ndarray


def _seed_list(seeds: int | Sequence[int]) -> list[int]:
    if isinstance(seeds, bool):
        raise RouterConfigError(f"seeds must be a count or a list of ints, got {seeds!r}")
    if isinstance(seeds, (int, np.integer)):
        if seeds < 1:
            raise RouterConfigError(f"seeds must be >= 1 (a count of repetitions), got {seeds}")
        return list(range(int(seeds)))
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Iterable):
        raise RouterConfigError(f"seeds must be a count or a list of ints, got {seeds!r}")
    values = list(seeds)
    if not values or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0
                         for s in values):
        raise RouterConfigError(f"seeds must be non-negative ints, got {values!r}")
    if len(set(values)) != len(values):
        raise RouterConfigError(f"seeds lists a seed twice: {values}")
    return [int(s) for s in values]


def make_splits(
    prompts: Sequence[str],
    *,
    scheme: str = "kfold",
    folds: int | None = None,
    seeds: int | Sequence[int] = 1,
) -> list[Split]:
    """Train/test splits of ``prompts`` (rows with equal text stay together).

    Parameters
    ----------
    prompts : sequence of str
        The outcomes' prompts, one per row.
    scheme : {"kfold", "halves"}, default="kfold"
        See ``SPLIT_SCHEMES``.
    folds : int, default=None
        Number of folds for ``kfold`` (None means 5, at least 2); must be None for ``halves``.
    seeds : int or sequence of int, default=1
        A count ``n`` (seeds ``0..n-1``) or the seeds themselves; each reshuffles the groups.
    """
    if scheme not in SPLIT_SCHEMES:
        raise RouterConfigError(f"unknown split scheme {scheme!r}; choose one of {SPLIT_SCHEMES}")
    if scheme == "halves" and folds is not None:
        raise RouterConfigError("folds= applies to scheme='kfold' only; 'halves' is always 50/50")
    k = DEFAULT_FOLDS if folds is None else folds
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
        raise RouterConfigError(f"folds must be an int >= 2, got {folds!r}")
    seed_values = _seed_list(seeds)
    if isinstance(prompts, str):
        raise TypeError("prompts must be a sequence of str, not a single str")
    ids: dict[str, int] = {}
    group = np.fromiter((ids.setdefault(p, len(ids)) for p in prompts), dtype=np.int64)
    n_groups = len(ids)
    parts = 2 if scheme == "halves" else int(k)
    if n_groups < parts:
        raise RouterConfigError(
            f"{n_groups} distinct prompts cannot be split into {parts} parts"
        )
    splits = []
    for seed in seed_values:
        permuted = np.random.default_rng(seed).permutation(n_groups)
        part_of_group = np.empty(n_groups, dtype=np.int64)
        for index, chunk in enumerate(np.array_split(permuted, parts)):
            part_of_group[chunk] = index
        part = part_of_group[group]
        test_parts = [1] if scheme == "halves" else range(parts)
        for fold, test_part in enumerate(test_parts):
            is_test = part == test_part
            splits.append(
                Split(seed, fold, np.flatnonzero(~is_test), np.flatnonzero(is_test))
            )
    return splits
