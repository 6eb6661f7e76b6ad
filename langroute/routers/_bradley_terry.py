"""Bradley-Terry fitted on aggregated win counts: M parameters, not one row per battle.

The log-likelihood of ratings ``r`` given weighted win counts ``W`` (``W[i, j]``: weight of
battles row model ``i`` won against column model ``j``; a tie adds half to each side) is

    L(r) = sum_{i != j} W[i, j] * log sigmoid(r_i - r_j) - (l2 / 2) * ||r||^2

which is exactly the per-battle weighted logistic likelihood (RouteLLM's
``compute_elo_mle_with_tie`` with sample weights) summed by model pair. A ``prior`` of virtual ties
added to every pair keeps ratings finite when one model never lost. Newton's method on the
concave objective converges in a handful of steps and is vectorised over a batch of prompts.
"""

from __future__ import annotations

import numpy as np

__all__ = ["fit_bradley_terry", "win_probabilities"]


def fit_bradley_terry(
    counts: np.ndarray,
    *,
    prior: float = 0.0,
    l2: float = 1e-9,
    max_iter: int = 100,
    tol: float = 1e-10,
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

    Returns
    -------
    ndarray of shape (M,) or (B, M)
    """
    w = np.asarray(counts, dtype=np.float64)
    single = w.ndim == 2
    if single:
        w = w[None]
    if w.ndim != 3 or w.shape[1] != w.shape[2]:
        raise ValueError(f"counts must have shape (M, M) or (B, M, M), got {np.shape(counts)}")
    b, m, _ = w.shape
    eye = np.eye(m, dtype=bool)
    w = np.where(eye, 0.0, w + prior / 2.0)
    games = w + np.swapaxes(w, 1, 2)  # N_ij
    wins = w.sum(axis=2)  # sum_j W_ij
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
        ra = ra - step
        ra -= ra.mean(axis=1, keepdims=True)
        r[active] = ra
        done = np.abs(step).max(axis=1) < tol
        idx = np.flatnonzero(active)
        active[idx[done]] = False
        if not active.any():
            break
    return r[0] if single else r


def win_probabilities(ratings: np.ndarray) -> np.ndarray:
    """P(row model beats column model) from ratings of shape (M,) or (B, M)."""
    r = np.asarray(ratings, dtype=np.float64)
    diff = r[..., :, None] - r[..., None, :]
    return 1.0 / (1.0 + np.exp(-diff))
