"""Bradley-Terry fitted on aggregated win counts: M parameters, not one row per battle.

The log-likelihood of ratings ``r`` given weighted win counts ``W`` (``W[i, j]``: weight of
battles row model ``i`` won against column model ``j``; a tie adds half to each side) is

    L(r) = sum_{i != j} W[i, j] * log sigmoid(r_i - r_j) - (l2 / 2) * ||r||^2

which is exactly the per-battle weighted logistic likelihood (RouteLLM's
``compute_elo_mle_with_tie`` with sample weights) summed by model pair. A ``prior`` of virtual ties
added to every pair keeps ratings finite when one model never lost. Newton's method on the
concave objective converges in a handful of steps and is vectorised over a batch of prompts;
steps are capped (``_MAX_STEP``) so lopsided counts, where the plain Newton step overshoots,
still converge.
"""

from __future__ import annotations

import numpy as np

from .._exceptions import ConvergenceError

__all__ = ["fit_bradley_terry", "win_probabilities"]

#: Largest change of any rating in one Newton step (natural-log units).
_MAX_STEP = 4.0
#: Converged when the log-likelihood left to gain is below this fraction of the battles' weight.
_DECREMENT_TOL = 1e-15


def fit_bradley_terry(
    counts: np.ndarray,
    *,
    prior: float = 0.0,
    l2: float = 1e-9,
    max_iter: int = 100,
    tol: float = 1e-12,
) -> np.ndarray:
    """Ratings (natural-log scale, mean zero) for win-count matrices.

    Parameters
    ----------
    counts : ndarray of shape (M, M) or (B, M, M)
        ``counts[..., i, j]`` = (weighted) wins of model i over model j.
    prior : float, default=0.0
        Virtual ties added to every pair of models (half a win each way).
    l2 : float, default=1e-9
        Ridge on the ratings; the tiny default only fixes the gauge of models with no battles.
    max_iter, tol : int, float
        Newton steps at most; a fit has converged when no win probability moved by more than
        ``tol`` in the last step, or the log-likelihood left to gain is at float precision
        (ratings of a model that never lost drift towards infinity without changing any
        probability that matters).

    Returns
    -------
    ndarray of shape (M,) or (B, M)

    Raises
    ------
    ValueError
        If ``counts`` is not square, has negative or non-finite entries, or ``prior`` / ``l2``
        are negative.
    ConvergenceError
        If Newton has not converged after ``max_iter`` steps (a ``LangrouteError`` and a
        ``RuntimeError``).
    """
    w = np.asarray(counts, dtype=np.float64)
    single = w.ndim == 2
    if single:
        w = w[None]
    if w.ndim != 3 or w.shape[1] != w.shape[2]:
        raise ValueError(f"counts must have shape (M, M) or (B, M, M), got {np.shape(counts)}")
    if not np.all(np.isfinite(w)) or (w.size and w.min() < 0):
        raise ValueError("counts must be finite and >= 0")
    if not (np.isfinite(prior) and prior >= 0 and np.isfinite(l2) and l2 > 0):
        raise ValueError(f"prior must be >= 0 and l2 > 0, got prior={prior!r}, l2={l2!r}")
    b, m, _ = w.shape
    eye = np.eye(m, dtype=bool)
    w = np.where(eye, 0.0, w + prior / 2.0)
    games = w + np.swapaxes(w, 1, 2)  # N_ij
    wins = w.sum(axis=2)  # sum_j W_ij
    total = np.maximum(wins.sum(axis=1), 1.0)
    r = np.zeros((b, m))
    active = np.ones(b, dtype=bool)
    for _ in range(max_iter):
        ra = r[active]
        diff = ra[:, :, None] - ra[:, None, :]
        p = 1.0 / (1.0 + np.exp(-diff))
        g_active = games[active]
        grad = wins[active] - (g_active * p).sum(axis=2) - l2 * ra
        curv = g_active * p * (1.0 - p)
        hess = curv - np.eye(m) * (curv.sum(axis=2)[:, :, None] + l2)  # negative definite
        step = np.linalg.solve(hess, grad[:, :, None])[:, :, 0]
        # Newton decrement: twice the log-likelihood still to gain. Float noise floor with large
        # counts makes it (not the step) the reliable sign of convergence.
        decrement = -(grad * step).sum(axis=1)
        biggest = np.abs(step).max(axis=1, keepdims=True)
        step *= np.minimum(1.0, _MAX_STEP / np.maximum(biggest, 1e-300))
        ra = ra - step
        ra -= ra.mean(axis=1, keepdims=True)
        r[active] = ra
        moved = np.abs(1.0 / (1.0 + np.exp(-(ra[:, :, None] - ra[:, None, :]))) - p)
        done = (moved.max(axis=(1, 2)) < tol) | (decrement <= _DECREMENT_TOL * total[active])
        idx = np.flatnonzero(active)
        active[idx[done]] = False
        if not active.any():
            break
    else:
        raise ConvergenceError(
            f"Bradley-Terry did not converge in {max_iter} Newton steps for {active.sum()} of "
            f"{b} count matrices; a larger prior (virtual ties per model pair) regularises "
            "extreme win counts"
        )
    return r[0] if single else r


def win_probabilities(ratings: np.ndarray) -> np.ndarray:
    """P(row model beats column model) from ratings of shape (M,) or (B, M)."""
    r = np.asarray(ratings, dtype=np.float64)
    diff = r[..., :, None] - r[..., None, :]
    return 1.0 / (1.0 + np.exp(-diff))
