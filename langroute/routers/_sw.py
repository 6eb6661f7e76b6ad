"""RouteLLM's similarity-weighted (SW) ranking router, on aggregated win counts and N models.

For a prompt with embedding ``q``, every stored exemplar ``k`` (a training prompt) gets weight
``gamma ** (1 + s_k / max_k s_k)``, ``s_k`` its cosine similarity to ``q`` -- RouteLLM's
``10 * 10 ** (s / max s)`` for gamma=10. RouteLLM then refits a weighted logistic regression over
every stored battle per request; the maximum-likelihood ratings depend on the battles only
through the weighted win counts between models, so langroute sums those into one (M, M) matrix
and fits Bradley-Terry on it: the same answer, in a fraction of the time and for any number of
models (``benchmarks/routellm_reference.py`` re-implements RouteLLM's fit; a test checks both
agree to 1e-4).

Where langroute differs from RouteLLM, and why:

* Models are rated directly. RouteLLM maps Chatbot Arena's ~64 models to 10 rating tiers first,
  because its battles rarely involve the routed pair; langroute's outcomes measure the candidate
  models themselves.
* A ``prior`` of virtual ties per model pair (RouteLLM has none) keeps ratings finite when a
  model never lost among the weighted exemplars; its strength is relative to the weights, which
  are scaled to average 1 over the exemplars that count.
* ``gamma`` defaults to 100, not RouteLLM's 10: more local weighting won the cross-validation
  on the training halves of both RouteLLM datasets. ``normalize=False`` uses raw cosine
  similarities (``gamma ** (1 + s)``); ``top_k`` keeps only the most similar exemplars (ties at
  the k-th similarity are broken arbitrarily). Both default to RouteLLM's behaviour.
* RouteLLM's unpenalised logistic regression stops at scikit-learn's default tolerance;
  langroute solves the same likelihood to convergence with Newton's method.
* When the largest similarity is not positive, ``s / max s`` would flip the order, so the raw
  similarities are used for that request.

Beyond about 20,000 MiniLM exemplars a request that scores every exemplar costs more than a
couple of milliseconds (memory bandwidth), so ``algorithm="auto"`` switches to the
``clustered`` index of ``_index.py``: exact weights for the members of the most similar
clusters, pre-summed counts for the rest. ``benchmarks/bench_latency.py`` measures its error
against exact scoring.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Self

import numpy as np

from .._exceptions import OutcomesError, RouterConfigError
from .._outcomes import Battles, Outcomes
from ..embeddings import Embedder
from ._base import BaseRouter
from ._bradley_terry import fit_bradley_terry, win_probabilities
from ._index import ExemplarIndex, OutcomeStore, default_n_clusters
from ._validation import check_int, check_number, check_random_state

__all__ = ["SWRouter"]

_ALGORITHMS = ("auto", "exact", "clustered")
#: ``algorithm="auto"`` scores every exemplar while a request costs at most this many
#: multiply-adds: ``n * (dim + 2)`` with compressible outcomes (20,000 MiniLM exemplars, about
#: 2 ms), ``n * (dim + M^2)`` when every exemplar keeps its own win counts.
EXACT_MAX_WORK = 8_000_000
#: Rows of query-by-exemplar similarities computed at once in batched exact scoring.
_QUERY_BLOCK_ELEMENTS = 1 << 22


class SWRouter(BaseRouter):
    """Similarity-weighted Bradley-Terry router (RouteLLM's SW ranking) for any number of models.

    Parameters
    ----------
    embedder : Embedder, default=None
        Turns prompts into vectors; None means all-MiniLM-L6-v2, loaded offline.
    gamma : float, default=100.0
        Base of the weights ``gamma ** (1 + s / max(s))``; larger is more local. Must be > 1.
        RouteLLM uses 10; 100 had the best inner cross-validated APGR on the training halves
        of RouteLLM's GSM8K and MMLU outcomes with MiniLM (``benchmarks/bench_quality.py``).
    top_k : int, default=None
        If set, only the ``top_k`` most similar exemplars are weighted (the rest get 0).
    prior : float, default=1.0
        Virtual ties per model pair, on the scale where the counted exemplars' weights
        average 1 (so it weighs like ``prior`` extra tied prompts).
    normalize : bool, default=True
        Divide similarities by the request's largest similarity, as RouteLLM does.
    algorithm : {"auto", "exact", "clustered"}, default="auto"
        ``exact`` weights every exemplar; ``clustered`` re-weights the members of the
        ``n_probe`` most similar k-means clusters exactly and every other cluster by its mean
        similarity (approximate, see the module docstring); ``auto`` is ``exact`` while a
        request costs at most ~8M multiply-adds (about 20,000 MiniLM exemplars with 0/1 scores).
    n_clusters : int, default=None
        Clusters of the ``clustered`` index; None means ``ceil(2 * sqrt(n_exemplars))``.
    n_probe : int, default=16
        Clusters whose members are weighted exactly per request (``clustered`` only).
    random_state : int or None, default=0
        Seeds the k-means of the ``clustered`` index, so refits give the same router.

    Attributes
    ----------
    models_, costs_, quality_ : see ``BaseRouter``.
    algorithm_ : str
        ``"exact"`` or ``"clustered"``, as resolved by ``fit``.
    n_exemplars_ : int
        Number of stored training prompts.
    index_ : ExemplarIndex
        Unit-length exemplar embeddings (float32), plus the clusters for ``clustered``.
    store_ : OutcomeStore
        The exemplars' win counts: distinct patterns, or per-exemplar uint8 half-wins when
        patterns do not compress.

    Examples
    --------
    >>> from langroute import load_outcomes
    >>> router = SWRouter().fit(load_outcomes("../shared/data/routellm-gsm8k"))  # doctest: +SKIP
    >>> router.win_matrix("What is 17 * 23?")  # doctest: +SKIP
    """

    kind = "sw"

    def __init__(
        self,
        embedder: Embedder | None = None,
        *,
        gamma: float = 100.0,
        top_k: int | None = None,
        prior: float = 1.0,
        normalize: bool = True,
        algorithm: str = "auto",
        n_clusters: int | None = None,
        n_probe: int = 16,
        random_state: int | None = 0,
    ) -> None:
        self.embedder = embedder
        self.gamma = gamma
        self.top_k = top_k
        self.prior = prior
        self.normalize = normalize
        self.algorithm = algorithm
        self.n_clusters = n_clusters
        self.n_probe = n_probe
        self.random_state = random_state

    def _validate_params(self) -> None:
        check_number("gamma", self.gamma, minimum=1.0, strict=True)
        check_int("top_k", self.top_k, optional=True)
        check_number("prior", self.prior)
        if not isinstance(self.normalize, bool):
            raise RouterConfigError(f"normalize must be True or False, got {self.normalize!r}")
        if self.algorithm not in _ALGORITHMS:
            raise RouterConfigError(
                f"algorithm must be one of {list(_ALGORITHMS)}, got {self.algorithm!r}"
            )
        check_int("n_clusters", self.n_clusters, optional=True)
        check_int("n_probe", self.n_probe)
        check_random_state(self.random_state)

    def _check_training_data(self, prompts: list[str], counts: np.ndarray | None) -> None:
        n = len(prompts)
        if n == 0:
            raise OutcomesError("no training prompts")
        if self.top_k is not None and self.top_k > n:
            raise RouterConfigError(f"top_k={self.top_k} but there are only {n} training prompts")

    # -- fitting -----------------------------------------------------------------------------------
    def fit(self, outcomes: Outcomes | Battles, *, embeddings: np.ndarray | None = None) -> Self:
        """Store the training prompts' embeddings and win counts; returns ``self``.

        Parameters
        ----------
        outcomes : Outcomes or Battles
            Scores (higher wins, equal scores tie, NaN plays no battle) or pairwise battles.
        embeddings : ndarray of shape (n_prompts, dim), default=None
            The prompts already embedded by this router's embedder (``outcomes.prompts`` for
            Outcomes, the unique battle prompts for Battles); skips embedding them again.
        """
        prompts, counts, vectors = self._fit_inputs(outcomes, embeddings, need_counts=False)
        if counts is None:
            assert isinstance(outcomes, Outcomes)
            store = OutcomeStore.from_scores(outcomes.scores)
        else:
            store = OutcomeStore.from_counts(counts)
        n = len(prompts)
        vectors = _unit_rows(vectors, "training embeddings")
        algorithm = self.algorithm
        if algorithm == "auto":
            m = len(outcomes.models)
            per_exemplar = vectors.shape[1] + (2 if store.kind == "patterns" else m * m)
            algorithm = "exact" if n * per_exemplar <= EXACT_MAX_WORK else "clustered"
        if algorithm == "exact":
            index = ExemplarIndex.build_exact(vectors)
        else:
            n_clusters = default_n_clusters(n) if self.n_clusters is None else self.n_clusters
            if n_clusters > n:
                raise RouterConfigError(f"n_clusters={n_clusters} exceeds the {n} training prompts")
            rng = np.random.default_rng(self.random_state)
            index, store = ExemplarIndex.build_clustered(vectors, store, n_clusters, rng)
        self.algorithm_ = algorithm
        self.n_exemplars_ = n
        self.index_ = index
        self.store_ = store
        self._set_common_fitted(outcomes)
        return self

    # -- scoring -----------------------------------------------------------------------------------
    def rating(self, prompt: str) -> np.ndarray:
        """Bradley-Terry ratings (natural-log scale, mean 0) of the models for ``prompt``, (M,)."""
        if not isinstance(prompt, str):
            raise TypeError(f"prompt must be a str, got {type(prompt).__name__}")
        return self.ratings([prompt])[0]

    def ratings(self, prompts: Sequence[str]) -> np.ndarray:
        """Batched ``rating``: shape (n_prompts, n_models)."""
        self._check_is_fitted()
        if isinstance(prompts, str):
            raise TypeError("ratings() takes a sequence of prompts, not a single str")
        return self.ratings_from_embeddings(self._resolve_embedder().embed(list(prompts)))

    def ratings_from_embeddings(self, embeddings: np.ndarray) -> np.ndarray:
        """``ratings`` for prompts already embedded by this router's embedder."""
        counts = self.weighted_counts_from_embeddings(embeddings)
        return fit_bradley_terry(counts, prior=float(self.prior))

    def _win_matrices(self, embeddings: np.ndarray) -> np.ndarray:
        return win_probabilities(self.ratings_from_embeddings(embeddings))

    def weighted_counts_from_embeddings(self, embeddings: np.ndarray) -> np.ndarray:
        """Similarity-weighted win counts, shape (n_queries, n_models, n_models).

        ``[q, i, j]`` is the weighted number of exemplars on which model i beat model j (ties
        count half), with the counted exemplars' weights scaled to average 1.
        """
        queries = self._queries(embeddings)
        m = len(self.models_)
        if self.algorithm_ == "exact":
            flat = self._exact_counts(queries)
        else:
            flat = np.stack([self._clustered_counts(q) for q in queries]) if len(queries) else (
                np.zeros((0, m * m))
            )
        return flat.reshape(-1, m, m)

    def exemplar_weights_from_embeddings(self, embeddings: np.ndarray) -> np.ndarray:
        """Exact weight of every exemplar per query, shape (n_queries, n_exemplars).

        In training order, scaled so the counted exemplars' weights average 1; computed exactly
        whatever ``algorithm`` is (this is the reference the clustered index approximates).
        """
        queries = self._queries(embeddings)
        sims = queries @ self.index_.embeddings.T
        weights = self._weights(sims)
        weights /= (weights.sum(axis=1) / self._n_counted(weights.shape[1]))[:, None]
        if self.index_.order is None:
            return weights
        out = np.empty_like(weights)
        out[:, self.index_.order] = weights
        return out

    def _queries(self, embeddings: np.ndarray) -> np.ndarray:
        self._check_is_fitted()
        queries = np.asarray(embeddings, dtype=np.float32)
        if queries.ndim == 1:
            queries = queries[None]
        dim = self.index_.embeddings.shape[1]
        if queries.ndim != 2 or queries.shape[1] != dim:
            raise ValueError(
                f"query embeddings must have shape (n, {dim}) like the training embeddings, "
                f"got {np.shape(embeddings)}"
            )
        return _unit_rows(queries, "query embeddings")

    def _weights(self, sims: np.ndarray) -> np.ndarray:
        """Unnormalised weights (largest 1) from similarities (b, r), top_k applied."""
        sims = np.asarray(sims, dtype=np.float64)
        top = sims.max(axis=1, keepdims=True)
        return self._weights_given_top(sims, top, apply_top_k=True)

    def _divides(self, top: np.ndarray) -> bool:
        return bool(self.normalize and float(top.max()) > 0)

    def _weights_given_top(self, sims: np.ndarray, top: np.ndarray, *, apply_top_k: bool
                           ) -> np.ndarray:
        log_gamma = math.log(float(self.gamma))
        if self.normalize:
            # gamma ** (1 + s / top), divided by its largest value gamma ** 2.
            scale = np.where(top > 0, top, 1.0)
            shift = np.where(top > 0, 1.0, top)
            weights = np.exp(log_gamma * (sims / scale - shift))
        else:
            weights = np.exp(log_gamma * (sims - top))
        if apply_top_k and self.top_k is not None and self.top_k < sims.shape[1]:
            drop = np.argpartition(-sims, self.top_k - 1, axis=1)[:, self.top_k :]
            np.put_along_axis(weights, drop, 0.0, axis=1)
        return weights

    def _n_counted(self, n: int) -> int:
        return n if self.top_k is None else min(n, self.top_k)

    def _exact_counts(self, queries: np.ndarray) -> np.ndarray:
        n = self.index_.embeddings.shape[0]
        m2 = len(self.models_) ** 2
        out = np.empty((queries.shape[0], m2))
        step = max(1, _QUERY_BLOCK_ELEMENTS // n)
        for start in range(0, queries.shape[0], step):
            block = queries[start : start + step]
            weights = self._weights(block @ self.index_.embeddings.T)
            if block.shape[0] == 1:
                counts = self.store_.weighted_sum(weights[0])[None]
            else:
                counts = self.store_.weighted_sums(weights)
            mean_weight = weights.sum(axis=1) / self._n_counted(n)
            out[start : start + step] = counts / mean_weight[:, None]
        return out

    def _clustered_counts(self, query: np.ndarray) -> np.ndarray:
        index = self.index_
        assert index.offsets is not None and index.cluster_counts is not None
        mean_sims, probed, members, sims = index.probe(query, self.n_probe, self.top_k or 0)
        top = sims.max(keepdims=True)[None]
        weights = self._weights_given_top(sims[None], top, apply_top_k=True)[0]
        counts = self.store_.weighted_sum(weights, members)
        total, counted = weights.sum(), members.shape[0]
        if self.top_k is None:
            # Every other cluster: its members' mean weight, to second order in the spread of
            # their similarities (E exp(a s) = exp(a mean(s) + a^2 var(s) / 2) if s is normal).
            far_weights = self._weights_given_top(mean_sims[None], top, apply_top_k=False)[0]
            slope = math.log(float(self.gamma)) / (float(top[0, 0]) if self._divides(top) else 1.0)
            far_weights *= np.exp(0.5 * slope**2 * index.spread(query))
            far_weights[probed] = 0.0
            sizes = np.diff(index.offsets)
            counts = counts + far_weights @ index.cluster_counts
            total += far_weights @ sizes
            counted = self.n_exemplars_
        else:
            counted = self._n_counted(counted)
        return counts / (total / counted)

    # -- persistence -------------------------------------------------------------------------------
    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        state = {"algorithm_": self.algorithm_, "n_exemplars_": self.n_exemplars_}
        return state, {**self.index_.to_arrays(), **self.store_.to_arrays()}

    def _set_state(self, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        algorithm = state["algorithm_"]
        if algorithm not in ("exact", "clustered"):
            raise ValueError(f"unknown algorithm_ {algorithm!r}")
        m = len(self.models_)
        index = ExemplarIndex.from_arrays(arrays, m)
        store = OutcomeStore.from_arrays(m, arrays)
        n = index.embeddings.shape[0]
        if len(store) != n or int(state["n_exemplars_"]) != n:
            raise ValueError("exemplar counts of the arrays do not match")
        if index.clustered != (algorithm == "clustered"):
            raise ValueError("algorithm_ does not match the stored index")
        self.algorithm_ = algorithm
        self.n_exemplars_ = n
        self.index_ = index
        self.store_ = store


def _unit_rows(vectors: np.ndarray, what: str) -> np.ndarray:
    """Rows scaled to unit length (cosine similarity); zero or non-finite rows are an error."""
    if not np.all(np.isfinite(vectors)):
        raise ValueError(f"{what} contain NaN or infinite values")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError(f"{what} contain an all-zero row; cosine similarity is undefined")
    return np.ascontiguousarray(vectors / norms, dtype=np.float32)

