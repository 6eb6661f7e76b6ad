"""Cluster router: k-means on prompt embeddings, one Bradley-Terry win matrix per cluster.

The clustering routers of "Lessons learned from LLM routing" and similar work split the
training prompts into k-means clusters and send a new prompt to the model that did best in its
nearest cluster. Scoring costs one (n, n_clusters) matrix product, so it is the cheapest router
at request time; the price is that prompts in one cluster are treated alike.
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np

from .._exceptions import RouterConfigError
from .._outcomes import Battles, Outcomes
from ..embeddings import Embedder
from ._base import BaseRouter
from ._bradley_terry import fit_bradley_terry, win_probabilities
from ._irt import quality_win_matrices
from ._kmeans import spherical_kmeans
from ._validation import check_int, check_number, check_random_state

__all__ = ["ClusterRouter"]

_PER_CLUSTER = ("bradley_terry", "quality")


class ClusterRouter(BaseRouter):
    """k-means cluster router with a Bradley-Terry win matrix per cluster, for any number of models.

    ``fit`` clusters the unit-length training embeddings with spherical k-means (k-means++
    seeding, Lloyd iterations, cosine similarity), sums the win counts of each cluster's prompts
    (``W[c, i, j]``: wins of model ``i`` over ``j`` in cluster ``c``, ties half) and fits
    Bradley-Terry ratings per cluster, batched over clusters. A prompt gets the win matrix
    ``sigmoid(r_i - r_j)`` of the cluster whose centroid is most similar to it.

    Deviation from the paper: it routes each cluster to its single best model; keeping the whole
    per-cluster win matrix instead lets the escalation ladder trade cost for quality (with two
    models, threshold 0.5 sends a cluster to the model that wins more often in it).

    ``per_cluster="quality"`` is the Avengers-Pro scoring (Zhang et al., 2025): many clusters,
    each model's mean quality per cluster (shrunk towards its overall mean by ``prior`` virtual
    prompts), a prompt's qualities averaged over its ``n_probe`` nearest clusters, and the win
    matrix ``1/2 + (q_i - q_j)/2``. The cost side of Avengers-Pro's performance-efficiency score
    is the escalation ladder: its threshold is the quality margin a pricier model must promise.

    Parameters
    ----------
    embedder : Embedder, default=None
        Turns prompts into vectors; None means the default embedder (all-MiniLM-L6-v2 on
        ONNX Runtime, int8, offline).
    n_clusters : int, default=4
        Number of clusters. Chosen by 5-fold cross-validation of held-out pairwise log-loss on
        six shared datasets (MiniLM embeddings; 2, 4, 8, 16, 32 tried): 4 had the lowest total,
        8 was within noise; with 1k-4k training prompts more clusters overfit. Raise it for
        larger or more varied training sets. Because that choice saw the shared datasets, the
        benchmark figures never use it: ``benchmarks/bench_eval_sweep.py`` chooses the count
        by nested cross-validation (``TunedRouter``).
    prior : float, default=1.0
        Virtual ties per model pair and cluster; keeps ratings finite in small clusters.
        With ``per_cluster="quality"``, virtual prompts at the model's overall mean quality;
        a model with no score in a cluster gets its overall mean there (also when ``prior=0``).
    n_init : int, default=4
        k-means restarts; the run with the highest total similarity is kept.
    max_iter : int, default=100
        Most Lloyd iterations per run.
    random_state : int or None, default=None
        Seeds the k-means++ initialisation; an int makes ``fit`` reproducible.
    per_cluster : {"bradley_terry", "quality"}, default="bradley_terry"
        What each cluster learns: Bradley-Terry ratings from pairwise wins, or each model's
        mean quality (Avengers-Pro; needs Outcomes, not battles).
    n_probe : int, default=1
        Number of nearest clusters whose qualities are averaged (``per_cluster="quality"``
        only; Avengers-Pro's top-p).

    Attributes
    ----------
    models_, costs_, quality_ : see ``BaseRouter``.
    centroids_ : ndarray of shape (n_clusters, dim), float32
        Unit-length cluster centres.
    cluster_counts_ : ndarray of shape (n_clusters, n_models, n_models)
        Summed win counts of each cluster's training prompts.
    cluster_ratings_ : ndarray of shape (n_clusters, n_models)
        Bradley-Terry ratings (log scale) per cluster.
    cluster_sizes_ : ndarray of shape (n_clusters,), int64
        Training prompts per cluster.
    inertia_ : float
        Sum over training prompts of ``1 - cos(prompt, its centroid)``.
    cluster_quality_ : ndarray of shape (n_clusters, n_models)
        Shrunk mean quality of each model per cluster (``per_cluster="quality"`` only).

    See Also
    --------
    spherical_kmeans : the clustering used by ``fit``.
    KNNRouter : the k nearest exemplars instead of a fixed partition.

    Examples
    --------
    >>> outcomes = load_outcomes("../shared/data/zeroeval-gsm8k")  # doctest: +SKIP
    >>> router = ClusterRouter(n_clusters=8, random_state=0).fit(outcomes)  # doctest: +SKIP
    >>> router.win_matrix("What is 2 + 2?")  # doctest: +SKIP
    """

    kind = "cluster"

    def __init__(
        self,
        embedder: Embedder | None = None,
        *,
        n_clusters: int = 4,
        prior: float = 1.0,
        n_init: int = 4,
        max_iter: int = 100,
        random_state: int | None = None,
        per_cluster: str = "bradley_terry",
        n_probe: int = 1,
    ) -> None:
        self.embedder = embedder
        self.n_clusters = n_clusters
        self.prior = prior
        self.n_init = n_init
        self.max_iter = max_iter
        self.random_state = random_state
        self.per_cluster = per_cluster
        self.n_probe = n_probe

    def _validate_params(self) -> None:
        for name in ("n_clusters", "n_init", "max_iter", "n_probe"):
            check_int(name, getattr(self, name))
        check_number("prior", self.prior)
        check_random_state(self.random_state)
        if self.per_cluster not in _PER_CLUSTER:
            raise RouterConfigError(
                f"per_cluster must be one of {_PER_CLUSTER}, got {self.per_cluster!r}"
            )
        if self.n_probe > self.n_clusters:
            raise RouterConfigError(
                f"n_probe={self.n_probe} exceeds n_clusters={self.n_clusters}"
            )

    def fit(self, outcomes: Outcomes | Battles) -> Self:
        """Cluster the training prompts and fit one Bradley-Terry model per cluster."""
        if self.per_cluster == "quality" and isinstance(outcomes, Battles):
            raise RouterConfigError(
                "per_cluster='quality' needs Outcomes with scores, not pairwise battles"
            )
        _, counts, embeddings = self._fit_inputs(outcomes)
        centroids, labels, inertia = spherical_kmeans(
            embeddings,
            self.n_clusters,
            n_init=self.n_init,
            max_iter=self.max_iter,
            random_state=self.random_state,
        )
        n, m, _ = counts.shape
        members = np.zeros((self.n_clusters, n))
        members[labels, np.arange(n)] = 1.0
        cluster_counts = (members @ counts.reshape(n, m * m)).reshape(-1, m, m)
        self.centroids_ = centroids
        self.cluster_counts_ = cluster_counts
        self.cluster_ratings_ = fit_bradley_terry(cluster_counts, prior=float(self.prior))
        self.cluster_sizes_ = np.bincount(labels, minlength=self.n_clusters).astype(np.int64)
        self.inertia_ = float(inertia)
        if self.per_cluster == "quality":
            assert isinstance(outcomes, Outcomes)
            self.cluster_quality_ = _cluster_quality(
                outcomes.scores, members, float(self.prior))
        else:
            self.__dict__.pop("cluster_quality_", None)  # a refit forgets the last one's
        self._set_common_fitted(outcomes)
        return self

    # -- scoring ---------------------------------------------------------------------------------
    def predict_clusters(self, embeddings: np.ndarray) -> np.ndarray:
        """Index of the most similar centroid for each query, shape (n_queries,)."""
        self._check_is_fitted()
        queries = np.atleast_2d(np.asarray(embeddings, dtype=np.float32))
        if queries.ndim != 2 or queries.shape[1] != self.centroids_.shape[1]:
            raise ValueError(
                f"embeddings must have shape (n, {self.centroids_.shape[1]}), "
                f"got {np.shape(embeddings)}"
            )
        # float64 so a query's cluster does not depend on the batch it is scored in.
        sims = queries.astype(np.float64) @ self.centroids_.astype(np.float64).T
        nearest: np.ndarray = np.argmax(sims.astype(np.float32), axis=1)
        return nearest

    def _fitted_quality(self) -> bool:
        """Whether the last ``fit`` (or ``load``) learned cluster qualities: scoring follows
        it, not ``per_cluster``, which ``set_params`` may have changed for the next fit."""
        return "cluster_quality_" in self.__dict__

    def _win_matrices(self, embeddings: np.ndarray) -> np.ndarray:
        if self._fitted_quality():
            return quality_win_matrices(self.predict_quality(embeddings))
        per_cluster = win_probabilities(self.cluster_ratings_)
        chosen: np.ndarray = per_cluster[self.predict_clusters(embeddings)]
        return chosen

    def predict_quality(self, embeddings: np.ndarray) -> np.ndarray:
        """Mean quality per model over each query's ``n_probe`` nearest clusters, (n, M).

        Only for a router fitted with ``per_cluster="quality"``.
        """
        self._check_is_fitted()
        if not self._fitted_quality():
            raise RouterConfigError(
                "predict_quality needs a router fitted with per_cluster='quality'")
        queries = np.atleast_2d(np.asarray(embeddings, dtype=np.float64))
        if queries.ndim != 2 or queries.shape[1] != self.centroids_.shape[1]:
            raise ValueError(
                f"embeddings must have shape (n, {self.centroids_.shape[1]}), "
                f"got {np.shape(embeddings)}"
            )
        sims = (queries @ self.centroids_.astype(np.float64).T).astype(np.float32)
        p = self.n_probe
        top = np.argpartition(-sims, p - 1, axis=1)[:, :p] if p < sims.shape[1] else (
            np.broadcast_to(np.arange(sims.shape[1]), sims.shape))
        out: np.ndarray = self.cluster_quality_[top].mean(axis=1)
        return out

    # -- persistence -----------------------------------------------------------------------------
    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        arrays = {
            "centroids": self.centroids_,
            "cluster_counts": self.cluster_counts_,
            "cluster_ratings": self.cluster_ratings_,
            "cluster_sizes": self.cluster_sizes_,
        }
        if self._fitted_quality():
            arrays["cluster_quality"] = self.cluster_quality_
        return {"inertia_": self.inertia_}, arrays

    def _set_state(self, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.centroids_ = np.ascontiguousarray(arrays["centroids"], dtype=np.float32)
        self.cluster_counts_ = np.ascontiguousarray(arrays["cluster_counts"], dtype=np.float64)
        self.cluster_ratings_ = np.ascontiguousarray(arrays["cluster_ratings"], dtype=np.float64)
        self.cluster_sizes_ = np.ascontiguousarray(arrays["cluster_sizes"], dtype=np.int64)
        self.inertia_ = float(state["inertia_"])
        c, m = self.centroids_.shape[0], len(self.models_)
        # What the saved router learned, whatever ``per_cluster`` says (see _fitted_quality).
        if "cluster_quality" in arrays:
            self.cluster_quality_ = np.ascontiguousarray(arrays["cluster_quality"],
                                                         dtype=np.float64)
            if self.cluster_quality_.shape != (c, m):
                raise ValueError("cluster_quality does not match the clusters and models")
        if (
            self.centroids_.ndim != 2
            or self.cluster_counts_.shape != (c, m, m)
            or self.cluster_ratings_.shape != (c, m)
            or self.cluster_sizes_.shape != (c,)
        ):
            raise ValueError("array shapes do not match the model list and cluster count")



def _cluster_quality(scores: np.ndarray, members: np.ndarray, prior: float) -> np.ndarray:
    """Per cluster and model, mean score shrunk towards the model's overall mean by ``prior``.

    A model with no score in a cluster gets its overall mean there: with ``prior=0`` the
    shrunk mean would be 0/0, and a NaN quality would reach the win matrix.
    """
    s = np.asarray(scores, dtype=np.float64)
    known = ~np.isnan(s)
    filled = np.where(known, s, 0.0)
    overall = filled.sum(axis=0) / np.maximum(known.sum(axis=0), 1)
    totals = members @ filled
    counts = members @ known.astype(np.float64)
    weight = counts + prior
    empty = weight <= 0.0
    quality: np.ndarray = np.where(
        empty, overall, (totals + prior * overall) / np.where(empty, 1.0, weight))
    return quality
