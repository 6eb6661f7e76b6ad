"""Spherical k-means, shared by the cluster router and the SW router's clustered index.

One implementation serves both: ``ClusterRouter`` clusters a few thousand prompts into a
handful of clusters (every point, k-means++ seeding, several restarts), the ``clustered``
exemplar index groups up to millions of exemplars into thousands of clusters (Lloyd on a random
sample, random seeding, then one assignment pass over every point). Similarities are computed
in blocks and centroid sums by sorting, so memory stays bounded whatever ``n * n_clusters``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from .._exceptions import RouterConfigError

__all__ = ["spherical_kmeans"]

#: Elements per temporary similarity block (about 32 MB of float64).
_BLOCK_ELEMENTS = 1 << 22


def spherical_kmeans(
    embeddings: np.ndarray,
    n_clusters: int,
    *,
    n_init: int = 4,
    max_iter: int = 100,
    random_state: int | np.random.Generator | None = None,
    sample_size: int | None = None,
    init: Literal["k-means++", "random"] = "k-means++",
) -> tuple[np.ndarray, np.ndarray, float]:
    """k-means on the unit sphere (cosine similarity): seeding, then Lloyd iterations.

    Centroids are the normalised means of their members, and points join the centroid they are
    most similar to; for unit vectors this is ordinary k-means on squared Euclidean distance
    ``2 - 2 cos``. An emptied cluster is reseeded at the point farthest from its centroid.

    Parameters
    ----------
    embeddings : ndarray of shape (n, dim)
        Unit-length rows.
    n_clusters : int
        At most the number of distinct rows (of the sample, if sampling).
    n_init, max_iter, random_state
        Restarts (the best is kept), Lloyd iterations per restart, seed (or a Generator).
    sample_size : int, default=None
        Iterate on this many randomly chosen rows only (in float32), then assign every row
        once to the resulting centroids; None (or at least ``n``) iterates on all rows in
        float64.
    init : {"k-means++", "random"}, default="k-means++"
        k-means++ seeding (each new centre drawn with probability ~ squared distance), or
        distinct random points (O(n_clusters), for thousands of clusters).

    Returns
    -------
    centroids : ndarray of shape (n_clusters, dim), float32
    labels : ndarray of shape (n,), int64
    inertia : float
        ``sum(1 - cos(point, its centroid))`` over all rows.
    """
    if np.ndim(embeddings) != 2:
        raise ValueError(f"embeddings must be a finite 2-D array, got shape {np.shape(embeddings)}")
    if init not in ("k-means++", "random"):
        raise ValueError(f"init must be 'k-means++' or 'random', got {init!r}")
    rng = np.random.default_rng(random_state)
    n = embeddings.shape[0]
    sampled = sample_size is not None and sample_size < n
    if sampled:
        assert sample_size is not None
        # float32 like the final pass: the sample only shapes the clusters, and is large.
        x = np.asarray(embeddings[np.sort(rng.choice(n, size=sample_size, replace=False))],
                       dtype=np.float32)
    else:
        x = np.asarray(embeddings, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"embeddings must be a finite 2-D array, got shape {np.shape(embeddings)}")
    # scikit-learn's stopping rule: total squared centre shift below 1e-4 x mean variance.
    tol = 1e-4 * float(np.mean(np.var(x, axis=0))) if x.shape[0] else 0.0
    best: tuple[np.ndarray, np.ndarray, float] | None = None
    for _ in range(n_init):
        if init == "k-means++":
            centroids = _kmeans_plus_plus(x, n_clusters, rng)
        else:
            centroids = _random_centres(x, n_clusters, rng)
        centroids, labels, inertia = _lloyd(x, centroids, max_iter, tol)
        if best is None or inertia < best[2]:
            best = (centroids, labels, inertia)
    assert best is not None  # n_init >= 1
    centroids, labels, inertia = best
    centroids = centroids.astype(np.float32)
    if sampled:
        labels, own = _assign(np.asarray(embeddings, dtype=np.float32), centroids)
        inertia = float(np.sum(1.0 - own.astype(np.float64)))
    return centroids, labels.astype(np.int64), inertia


def _kmeans_plus_plus(x: np.ndarray, n_clusters: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding: each new centre is drawn with probability ~ squared distance."""
    n = x.shape[0]
    if n < n_clusters:
        raise RouterConfigError(
            f"n_clusters={n_clusters} but there are only {n} training prompts; lower n_clusters"
        )
    centres = np.empty((n_clusters, x.shape[1]), dtype=x.dtype)
    centres[0] = x[rng.integers(n)]
    closest = _squared_distances(x, centres[0])
    for c in range(1, n_clusters):
        total = closest.sum()
        if total <= 0:  # every point duplicates a chosen centre: they are all the distinct ones
            raise RouterConfigError(
                f"n_clusters={n_clusters} but the training prompts have only {c} distinct "
                "embeddings; lower n_clusters"
            )
        pick = rng.choice(n, p=closest / total)
        centres[c] = x[pick]
        closest = np.minimum(closest, _squared_distances(x, centres[c]))
    return centres


def _random_centres(x: np.ndarray, n_clusters: int, rng: np.random.Generator) -> np.ndarray:
    """``n_clusters`` distinct rows of ``x`` (duplicate rows are resolved by Lloyd's reseeding)."""
    n = x.shape[0]
    if n < n_clusters:
        raise RouterConfigError(
            f"n_clusters={n_clusters} but there are only {n} training prompts; lower n_clusters"
        )
    return x[rng.choice(n, size=n_clusters, replace=False)].copy()


def _squared_distances(x: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """``|x - centre|^2 = 2 - 2 cos`` for unit vectors; rounding noise below 1e-12 is zero."""
    d = 2.0 - 2.0 * (x @ centre)
    return np.where(d > 1e-12, d, 0.0)


def _assign(points: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Most similar centroid of every point and that similarity, computed in blocks."""
    n = points.shape[0]
    labels = np.empty(n, dtype=np.int64)
    own = np.empty(n, dtype=np.result_type(points, centroids))
    step = max(1, _BLOCK_ELEMENTS // max(1, centroids.shape[0]))
    for start in range(0, n, step):
        sims = points[start : start + step] @ centroids.T
        best = sims.argmax(axis=1)
        labels[start : start + step] = best
        own[start : start + step] = sims[np.arange(sims.shape[0]), best]
    return labels, own


def _centroid_sums(x: np.ndarray, labels: np.ndarray, n_clusters: int) -> np.ndarray:
    """Sum of each cluster's member rows, shape (n_clusters, dim) float64 (zero if empty)."""
    order = np.argsort(labels, kind="stable")
    present, starts = np.unique(labels[order], return_index=True)
    sums = np.zeros((n_clusters, x.shape[1]))
    if present.size:
        sums[present] = np.add.reduceat(x[order].astype(np.float64), starts, axis=0)
    return sums


def _lloyd(
    x: np.ndarray, centroids: np.ndarray, max_iter: int, tol: float
) -> tuple[np.ndarray, np.ndarray, float]:
    """Lloyd iterations from ``centroids`` until labels repeat, the shift is below ``tol`` or
    ``max_iter``; returns the centroids, final labels and inertia."""
    n_clusters = centroids.shape[0]
    labels = np.full(x.shape[0], -1)
    for _ in range(max_iter):
        new_labels, own = _assign(x, centroids)
        if np.array_equal(new_labels, labels):
            break
        labels = new_labels
        sums = _centroid_sums(x, labels, n_clusters)
        empties = np.flatnonzero(np.bincount(labels, minlength=n_clusters) == 0)
        if empties.size:
            # Reseed at the points least similar to their own centroid (ties: lowest index),
            # a different point for each emptied cluster.
            farthest = np.argsort(own, kind="stable")[: empties.size]
            sums[empties] = x[farthest]
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        previous = centroids
        centroids = (sums / np.where(norms > 0, norms, 1.0)).astype(x.dtype, copy=False)
        if np.sum((centroids - previous) ** 2) <= tol:
            break
    labels, own = _assign(x, centroids)
    inertia = float(np.sum(1.0 - own.astype(np.float64)))
    return centroids, labels, inertia
