"""Calibration scores kept from fitting: out-of-fold win matrices of the training prompts.

A threshold has to be calibrated on prompts the router was not trained on (on its own training
prompts a similarity router is over-confident). Re-embedding held-out prompts costs about a
minute per thousand prompts with MiniLM, so every router keeps calibration scores when it is
fitted: the training prompts are split into ``CALIBRATION_FOLDS`` folds (by prompt text, so a
repeated prompt never sits on both sides), a clone of the router is refitted on the other folds
from the embeddings already computed, and it scores the fold's prompts. At most
``CALIBRATION_MAX_PROMPTS`` prompts are scored (a fixed-seed subsample), which bounds the memory
to ``CALIBRATION_MAX_PROMPTS * M * M`` float32 values.

The scores are those of routers fitted on 80% of the data, so they are slightly less confident
than the full router's: the usual price of cross-validation, and far smaller than the bias of
scoring the training prompts themselves.

Evaluation and tuning loops, which fit many routers and never calibrate them, switch this off
with ``calibration_scores_disabled()``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING

import numpy as np

from .._exceptions import LangrouteError
from .._outcomes import Battles, Outcomes
from ._validation import nested_fits

if TYPE_CHECKING:
    from ._base import BaseRouter

__all__ = [
    "CALIBRATION_FOLDS",
    "CALIBRATION_MAX_PROMPTS",
    "CALIBRATION_SEED",
    "calibration_scores_disabled",
    "calibration_scores_enabled",
    "out_of_fold_win_matrices",
]

#: Folds of the out-of-fold refits.
CALIBRATION_FOLDS = 5
#: Most training prompts whose out-of-fold win matrices are kept.
CALIBRATION_MAX_PROMPTS = 2000
#: Seed of the fold assignment and of the subsample.
CALIBRATION_SEED = 0

_ENABLED: ContextVar[bool] = ContextVar("langroute_calibration_scores", default=True)


@contextmanager
def calibration_scores_disabled() -> Iterator[None]:
    """Within this block, ``fit`` keeps no calibration scores (``calibration_win_matrices_`` is
    None). For loops that fit many routers only to score held-out data (evaluation, tuning);
    it saves the ``CALIBRATION_FOLDS`` refits. Thread- and task-local (a ``ContextVar``)."""
    token = _ENABLED.set(False)
    try:
        yield
    finally:
        _ENABLED.reset(token)


def calibration_scores_enabled() -> bool:
    """False inside ``calibration_scores_disabled()``."""
    return _ENABLED.get()


def out_of_fold_win_matrices(
    router: BaseRouter,
    data: Outcomes | Battles,
    embeddings: np.ndarray,
    *,
    folds: int = CALIBRATION_FOLDS,
    max_prompts: int = CALIBRATION_MAX_PROMPTS,
    seed: int = CALIBRATION_SEED,
) -> tuple[np.ndarray | None, str]:
    """Win matrices of (a subsample of) the training prompts, each from a router not fitted on it.

    Parameters
    ----------
    router : BaseRouter
        The router being fitted; only its ``_calibration_clone`` is used.
    data : Outcomes or Battles
        Its training data.
    embeddings : ndarray of shape (n_prompts, dim)
        The training prompts' embeddings, aligned with ``data.prompts``.

    Returns
    -------
    (ndarray of shape (n, M, M) float32 or None, str)
        The matrices, in training-prompt order of the subsample, and an empty string; or None
        and the reason when the data is too small for refits (fewer than two distinct prompts,
        or a clone refused the smaller training set with a langroute error).
    """
    prompts = list(data.prompts)
    n = len(prompts)
    _, text_of = np.unique(np.asarray(prompts, dtype=object).astype(str), return_inverse=True)
    n_texts = int(text_of.max()) + 1 if n else 0
    k = min(int(folds), n_texts)
    if k < 2:
        return None, f"out-of-fold scores need at least 2 distinct training prompts, got {n_texts}"
    rng = np.random.default_rng(seed)
    fold_of = (rng.permutation(n_texts) % k)[text_of]
    kept = np.arange(n) if n <= max_prompts else np.sort(rng.choice(n, max_prompts, replace=False))
    m = len(data.models)
    out = np.empty((len(kept), m, m), dtype=np.float32)
    for fold in range(k):
        train_rows = np.flatnonzero(fold_of != fold)
        scored = np.flatnonzero(fold_of[kept] == fold)  # positions in ``kept``
        if scored.size == 0:
            continue
        clone = router._calibration_clone(len(train_rows))
        clone._calibration_embeddings = embeddings[train_rows]
        token = _ENABLED.set(False)
        try:
            with nested_fits():  # a fold may leave out every score of a sparsely scored model
                clone.fit(_subset(data, train_rows))
        except LangrouteError as exc:
            return None, (
                f"refitting {type(router).__name__} on {len(train_rows)} of {n} training prompts "
                f"failed: {exc}"
            )
        finally:
            _ENABLED.reset(token)
        win = clone.win_matrices_from_embeddings(embeddings[kept[scored]])
        out[scored] = win.astype(np.float32)
    return out, ""


def _subset(data: Outcomes | Battles, rows: np.ndarray) -> Outcomes | Battles:
    """The training data restricted to prompts ``rows`` (battles: those battles' prompts)."""
    if isinstance(data, Outcomes):
        return data.subset(rows)
    position = np.full(len(data.prompts), -1, dtype=np.int64)
    position[rows] = np.arange(len(rows))
    keep = position[data.prompt_index] >= 0
    return dataclasses.replace(
        data,
        prompts=[data.prompts[i] for i in rows],
        prompt_index=position[data.prompt_index[keep]],
        model_a=data.model_a[keep],
        model_b=data.model_b[keep],
        result=data.result[keep],
    )
