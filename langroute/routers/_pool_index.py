"""An inverted-file index over ``SWRouter``'s feedback pool, to find a request's neighbours.

A request counts only its ``FEEDBACK_NEIGHBOURS`` most similar feedback exemplars, but scoring
the whole pool to find them cost 8 ms per decision at 100k exemplars (memory bandwidth).
``PoolIndex`` groups the pool with spherical k-means; a request scores the centroids, then
only the members of its most similar clusters, and takes its neighbours among those. That is
approximate: a neighbour in a cluster that was not probed is missed. Each pool row's cluster
label is kept in event order in a ``Rows`` buffer, so a feedback event appends one label
(its nearest centroid) without copying the pool; ``SWRouter`` re-clusters as the pool grows.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._index import _KMEANS_ITERATIONS, _MAX_SAMPLE, _SAMPLE_PER_CLUSTER, default_n_clusters
from ._kmeans import spherical_kmeans
from ._rows import Rows

__all__ = ["PoolIndex"]


class PoolIndex:
    """k-means centroids of a feedback pool and the cluster of each of its rows.

    ``labels`` (int32, event order) lives in a ``Rows`` buffer: ``appended`` returns a new
    index and leaves this one as it was, so a shallow copy of the router may share it.
    ``n_clustered`` is the number of rows at the last k-means.
    """

    __slots__ = ("_labels", "centroids", "n_clustered", "sizes")

    def __init__(self, centroids: np.ndarray, labels: Rows, sizes: np.ndarray,
                 n_clustered: int) -> None:
        self.centroids = centroids
        self._labels = labels
        self.sizes = sizes
        self.n_clustered = n_clustered

    @property
    def labels(self) -> np.ndarray:
        """Each pool row's cluster, in event order (read-only)."""
        return self._labels.array

    @classmethod
    def build(cls, embeddings: np.ndarray, random_state: Any) -> PoolIndex:
        """k-means over the unit rows ``embeddings`` with ``default_n_clusters`` clusters, as
        the fitted exemplars' ``clustered`` index does (Lloyd on a sample, then one assignment
        of every row); clusters left empty are dropped."""
        n = embeddings.shape[0]
        n_clusters = default_n_clusters(n)
        sample_size = max(n_clusters, min(_MAX_SAMPLE, n_clusters * _SAMPLE_PER_CLUSTER))
        centroids, labels, _ = spherical_kmeans(
            embeddings, n_clusters, n_init=1, max_iter=_KMEANS_ITERATIONS,
            random_state=random_state, sample_size=sample_size, init="random")
        sizes = np.bincount(labels, minlength=n_clusters)
        keep = sizes > 0
        if not keep.all():
            labels = (np.cumsum(keep) - 1)[labels]
            centroids, sizes = centroids[keep], sizes[keep]
        return cls(np.ascontiguousarray(centroids, dtype=np.float32),
                   Rows(labels.astype(np.int32)), sizes, n)

    def appended(self, embeddings: np.ndarray) -> PoolIndex:
        """This index with new unit rows, each joining its most similar centroid."""
        new = np.argmax(embeddings @ self.centroids.T, axis=1).astype(np.int32)
        sizes = self.sizes + np.bincount(new, minlength=self.sizes.shape[0])
        return PoolIndex(self.centroids, self._labels.appended(new), sizes, self.n_clustered)

    def nearest(self, queries: np.ndarray, embeddings: np.ndarray, k: int, n_probe: int
                ) -> tuple[np.ndarray, np.ndarray]:
        """Per query, the similarities (float64) and pool rows of the ``k`` most similar
        members of its probed clusters, each (b, k).

        The probed clusters are the ``n_probe`` with the most similar centroids, extended in
        that order until they hold at least ``k`` rows; ``embeddings`` is the pool, whose rows
        ``labels`` describe. Finding the members reads 4 bytes per pool row, not a row.
        """
        n_clusters = self.sizes.shape[0]
        ranked = np.argsort(-(queries @ self.centroids.T), axis=1, kind="stable")
        held = np.cumsum(self.sizes[ranked], axis=1)
        take = np.minimum(n_clusters, np.maximum(n_probe, np.sum(held < k, axis=1) + 1))
        labels = self.labels
        sims = np.empty((queries.shape[0], k))
        rows = np.empty((queries.shape[0], k), dtype=np.int64)
        for i, query in enumerate(queries):
            probed = np.zeros(n_clusters, dtype=bool)
            probed[ranked[i, : take[i]]] = True
            members = np.flatnonzero(np.take(probed, labels))  # np.take: twice as fast here
            member_sims = (np.take(embeddings, members, axis=0) @ query).astype(np.float64)
            if k < members.shape[0]:
                best = np.argpartition(-member_sims, k - 1)[:k]
                member_sims, members = member_sims[best], members[best]
            sims[i], rows[i] = member_sims, members
        return sims, rows

    # -- persistence -------------------------------------------------------------------------------
    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"feedback_centroids": self.centroids, "feedback_labels": self.labels}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], n_clustered: Any, n_rows: int,
                    dim: int) -> PoolIndex:
        """The index a router file holds for a pool of ``n_rows`` rows of dimension ``dim``;
        ValueError naming what does not fit."""
        centroids = np.asarray(arrays["feedback_centroids"])
        labels = np.asarray(arrays["feedback_labels"])
        if centroids.ndim != 2 or centroids.shape[0] < 1 or centroids.shape[1] != dim:
            raise ValueError(f"feedback_centroids must have shape (n_clusters >= 1, {dim}), "
                             f"got {centroids.shape}")
        if not np.all(np.isfinite(centroids)):
            raise ValueError("feedback_centroids contain NaN or infinite values")
        if labels.shape != (n_rows,) or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"feedback_labels must be {n_rows} integers (one per feedback "
                             f"exemplar), got {labels.dtype} of shape {labels.shape}")
        n_clusters = centroids.shape[0]
        if labels.size and (labels.min() < 0 or labels.max() >= n_clusters):
            raise ValueError(f"feedback_labels must lie in [0, {n_clusters}) (the clusters of "
                             "feedback_centroids)")
        if (isinstance(n_clustered, bool) or not isinstance(n_clustered, int)
                or not 0 < n_clustered <= n_rows):
            raise ValueError(f"n_feedback_clustered_ {n_clustered!r} does not fit {n_rows} "
                             "feedback exemplars")
        labels = labels.astype(np.int32)
        return cls(np.ascontiguousarray(centroids, dtype=np.float32), Rows(labels),
                   np.bincount(labels, minlength=n_clusters), n_clustered)
