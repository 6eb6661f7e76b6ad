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
  The default gamma was chosen on shared data, so no reported figure rests on it: the README's
  sweep re-chooses gamma inside each outer fold (nested CV, ``langroute eval --tune``).
* RouteLLM's unpenalised logistic regression stops at scikit-learn's default tolerance;
  langroute solves the same likelihood to convergence with Newton's method.
* When the largest similarity is not positive, ``s / max s`` would flip the order, so the raw
  similarities are used for that request.

Feedback is kept apart from the fitted exemplars. ``partial_fit`` with the battles
``langroute.feedback`` makes of a user's scores (``Battles.source == "feedback"``) stores
them in a feedback pool, of which only the ``FEEDBACK_NEIGHBOURS`` (100) most similar count
for a request, each weighted as SW weighs any exemplar (its similarity over the largest one of
both sets) times its ``sample_weight``, on the scale of the fitted exemplars' weights. The pool
never changes how the fitted exemplars are weighed: their kernel is normalised by *their*
largest similarity and their weights by *their* mean, exactly as without feedback. (One
kernel over both sets let the pool's nearest exemplar widen the fitted exemplars' kernel and
the pool's weights dilute the prior: on alpacaeval2 that alone, with every feedback count
ignored, lowered SW's AIQ as feedback accumulated.) A feedback exemplar holds imputed battles
of the one model the router chose, a selection-biased guess about the others; summed over
the whole kernel, thousands of far-away guesses shifted every request's ratings (on
RouteLLM's MMLU outcomes SW's AIQ fell with feedback, and with more fully-scored data too,
``benchmarks/results/datasize.md``), while the nearest ones say where a model wins, as
``KNNRouter``'s votes do. The 100 is ``KNNRouter``'s default ``k``, fixed a priori, not tuned.

Finding those 100 by scoring every feedback exemplar cost 8 ms per decision at 100k of them,
so once scanning the pool costs more than ``EXACT_MAX_WORK`` (about 20,000 MiniLM feedback
exemplars) it gets an inverted-file index (``_pool_index.PoolIndex``): k-means clusters, of
which a request scores the members of its ``n_probe`` most similar and takes its 100 nearest
among them. That is approximate -- a neighbour in a cluster not probed is missed, and the next
nearest member counts instead; ``benchmarks/bench_feedback_cost.py`` measures the recall --
while a smaller pool is scanned exactly, as before.

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

from .._exceptions import NotFittedError, OutcomesError, RouterConfigError
from .._outcomes import Battles, Outcomes, pairwise_counts
from ..embeddings import Embedder
from ._base import BaseRouter
from ._bradley_terry import fit_bradley_terry, win_probabilities
from ._incremental import (
    FEEDBACK_SOURCE,
    align_models,
    append_counts,
    embed_new,
    extend_flat_counts,
    extend_store,
    incremental_state,
    no_learned_feedback,
    observations,
    onboard,
    quiz_selection,
    score_moments,
    set_incremental_state,
    update_means,
)
from ._index import ExemplarIndex, OutcomeStore, default_n_clusters
from ._pool_index import PoolIndex
from ._rows import Rows
from ._validation import check_int, check_number, check_random_state

__all__ = ["SWRouter"]

_ALGORITHMS = ("auto", "exact", "clustered")
#: ``algorithm="auto"`` scores every exemplar while a request costs at most this many
#: multiply-adds: ``n * (dim + 2)`` with compressible outcomes (20,000 MiniLM exemplars, about
#: 2 ms), ``n * (dim + M^2)`` when every exemplar keeps its own win counts.
EXACT_MAX_WORK = 8_000_000
#: ``partial_fit`` re-clusters a ``clustered`` index once its exemplars number this many times
#: those of its last clustering (so k-means runs O(log n) times as a router grows, and the
#: cluster count keeps following ``default_n_clusters``); until then new exemplars join their
#: nearest cluster. Fixed a priori (no figure was measured to choose it).
CLUSTERED_REBUILD_GROWTH = 2.0
#: Rows of query-by-exemplar similarities computed at once in batched exact scoring.
_QUERY_BLOCK_ELEMENTS = 1 << 22
#: Feedback exemplars that count for a request: its most similar ones (``KNNRouter``'s
#: default ``k``, fixed a priori; see the module docstring).
FEEDBACK_NEIGHBOURS = 100


class SWRouter(BaseRouter):
    """Similarity-weighted Bradley-Terry router (RouteLLM's SW ranking) for any number of models.

    Parameters
    ----------
    embedder : Embedder, default=None
        Turns prompts into vectors; None means the default embedder (all-MiniLM-L6-v2 on
        ONNX Runtime, int8, offline).
    gamma : float, default=100.0
        Base of the weights ``gamma ** (1 + s / max(s))``; larger is more local. Must be > 1.
        RouteLLM uses 10; 100 had the best inner cross-validated APGR on the training halves
        of RouteLLM's GSM8K and MMLU outcomes with MiniLM (an earlier benchmark, since replaced
        by the nested sweep, which re-chooses gamma inside each outer fold).
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
        Clusters whose members are weighted exactly per request (``clustered`` only), and
        clusters of the feedback index searched for a request's feedback neighbours.
    random_state : int or None, default=0
        Seeds the k-means of the ``clustered`` index and of the feedback index, so refits
        give the same router.

    Attributes
    ----------
    models_, costs_, quality_ : see ``BaseRouter``.
    algorithm_ : str
        ``"exact"`` or ``"clustered"``, as resolved by ``fit``.
    n_exemplars_ : int
        Number of stored training prompts.
    n_clustered_ : int or None
        Exemplars at the ``clustered`` index's last k-means (``partial_fit``); None for
        ``exact``.
    index_ : ExemplarIndex
        Unit-length exemplar embeddings (float32), plus the clusters for ``clustered``.
    store_ : OutcomeStore
        The exemplars' win counts: distinct patterns, or per-exemplar uint8 half-wins when
        patterns do not compress.
    feedback_embeddings_ : ndarray of shape (n_feedback, dim), float32
        Unit-length embeddings of the feedback exemplars (``partial_fit`` on feedback
        battles); empty after ``fit``. The three feedback arrays are read-only views of
        buffers with spare room, so learning one event does not copy the pool.
    feedback_counts_ : ndarray of shape (n_feedback, n_models * n_models), float32
        Their (imputed) win counts, flattened.
    feedback_weights_ : ndarray of shape (n_feedback,)
        Their ``sample_weight``: how much of a measured exemplar each is worth.
    feedback_index_ : PoolIndex or None
        k-means clusters of the feedback pool, in which a request looks for its feedback
        neighbours (approximate: only ``n_probe`` clusters are searched); None while the pool
        is scanned exactly (at most ``EXACT_MAX_WORK`` multiply-adds). Built when the pool
        first exceeds that, each event's row joins its nearest cluster, and k-means re-runs
        once the pool numbers ``CLUSTERED_REBUILD_GROWTH`` times its rows at the last one.
    n_observations_ : ndarray of shape (2, n_models)
        How many measured scores (battles' games, for battles) and known costs ``quality_``
        and ``costs_`` average; ``partial_fit`` extends those means with it. None for a
        router file written before ``partial_fit`` existed (it must be refitted to learn).
    score_moments_ : ndarray of shape (7, n_models, n_models) or None
        Per model pair, the sums over the prompts scoring both that regress one model's score,
        and its battle's outcome, on the other's score (``_incremental.score_moments``);
        feedback on one model imputes its battles from them (``feedback_battles``). None when
        fitted on battles or loaded from a file that predates them.
    learned_feedback_ : ndarray of shape (n_events,), uint64
        Sorted fingerprints (``FeedbackEvent.fingerprint``) of the feedback events learned
        since ``fit``, kept by ``langroute.feedback`` (``record_feedback``, ``replay``), which
        skips the events listed: replaying a store is idempotent, also after ``save`` and
        ``load``. ``fit`` empties it (the router forgets what it learned); ``add_model``
        keeps it, and so does ``partial_fit`` (called directly, it learns no event). Empty
        for a file that predates it.

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

    def _calibration_clone(self, n_train: int) -> SWRouter:
        # Out-of-fold refits see fewer prompts than top_k / n_clusters may assume.
        clone = self.clone()
        if self.top_k is not None:
            clone.set_params(top_k=min(self.top_k, n_train))
        if self.n_clusters is not None:
            clone.set_params(n_clusters=min(self.n_clusters, n_train))
        return clone

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
        vectors = _unit_rows(vectors, "training embeddings")
        self._index_exemplars(vectors, store)
        self._set_common_fitted(outcomes)
        self._set_feedback(np.zeros((0, vectors.shape[1]), np.float32),
                           np.zeros((0, len(self.models_) ** 2), np.float32), np.zeros(0))
        self.n_observations_ = observations(outcomes)
        self.score_moments_ = score_moments(outcomes)
        self.learned_feedback_ = no_learned_feedback()
        return self

    def _index_exemplars(self, vectors: np.ndarray, store: OutcomeStore) -> None:
        """Lay out unit-length exemplar vectors and their win counts (training order)."""
        n = vectors.shape[0]
        algorithm = self.algorithm
        if algorithm == "auto":
            m = store.n_models
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
        self.n_clustered_ = n if algorithm == "clustered" else None
        self.index_ = index
        self.store_ = store

    def _exemplars_in_training_order(self) -> tuple[np.ndarray, OutcomeStore]:
        """The stored exemplar vectors and win counts in the order they were learned."""
        if self.index_.order is None:
            return self.index_.embeddings, self.store_
        back = np.argsort(self.index_.order)
        return self.index_.embeddings[back], self.store_.take(back)

    # -- learning after fit ------------------------------------------------------------------------
    def partial_fit(
        self, outcomes: Outcomes | Battles, *, embeddings: np.ndarray | None = None,
        sample_weight: np.ndarray | Sequence[float] | None = None,
    ) -> Self:
        """Add outcomes as new exemplars without refitting; returns ``self``.

        Measured outcomes (Outcomes, or battles not from feedback) are appended to the stored
        exemplars, so the router stores what ``fit`` on the union of everything it has seen
        would (no prompt is embedded twice), and the ``exact`` algorithm equals that fit. The
        ``clustered`` index puts each new exemplar in its nearest cluster
        (``ExemplarIndex.extend_clustered``: a pass over the centroids, not a k-means over
        every exemplar, which took seconds per feedback event at 50k exemplars) and
        re-clusters everything, as ``fit`` would, once the exemplars number
        ``CLUSTERED_REBUILD_GROWTH`` times those of the last clustering (``n_clustered_``);
        in between it partitions differently from a fit on the union, so its approximation
        error (``_index``) differs, not what it sums.

        Feedback battles (``langroute.feedback.feedback_battles``, ``source == "feedback"``)
        go to the feedback pool instead (and its index, ``feedback_index_``, once it needs
        one), of which a request counts its ``FEEDBACK_NEIGHBOURS`` most similar (see the
        module docstring); ``sample_weight`` (one weight >= 0 per battle prompt, default 1;
        ``feedback_training`` gives them) scales each one's weight. Measured outcomes take
        no ``sample_weight``.

        ``outcomes`` may score any subset of ``models_`` (feedback usually scores one model);
        ``quality_`` and ``costs_`` become the means over all observations, except that
        feedback battles never move them: feedback scores the model the router chose, a
        selection-biased sample (``_incremental.update_means``). Renews ``fit_version_``, so
        every policy built on this router rebuilds.

        ``calibration_win_matrices_`` keep the out-of-fold scores of the last ``fit``.
        """
        self._check_is_fitted()
        data = align_models(outcomes, self.models_)
        prompts, counts = pairwise_counts(data)
        if not prompts:
            raise OutcomesError("partial_fit() got no prompts")
        feedback = isinstance(data, Battles) and data.source == FEEDBACK_SOURCE
        weights = _sample_weights(sample_weight, len(prompts), feedback)
        vectors = self._embed_new(prompts, embeddings)
        if feedback:
            # appended in amortised O(new rows): a pool grows by one row per feedback event
            pool_vectors, pool_counts, pool_weights = self._feedback_rows
            pool = (pool_vectors.appended(vectors),
                    pool_counts.appended(counts.reshape(len(prompts), -1).astype(np.float32)),
                    pool_weights.appended(weights))
            index = self._grown_feedback_index(pool[0].array, vectors)
            self._feedback_rows, self._feedback_index = pool, index
        elif self.algorithm_ == "clustered" and (
                self.n_exemplars_ + len(prompts) < CLUSTERED_REBUILD_GROWTH * self.n_clustered_):
            self.index_, self.store_ = self.index_.extend_clustered(
                vectors, append_counts(self.store_, counts))
            self.n_exemplars_ += len(prompts)
        else:
            old_vectors, old_store = self._exemplars_in_training_order()
            store = append_counts(old_store, counts)
            self._index_exemplars(np.concatenate([old_vectors, vectors]), store)
        update_means(self, data)
        self._new_fit_version()
        return self

    @property
    def n_feedback_(self) -> int:
        """Number of feedback exemplars (``partial_fit`` on feedback battles)."""
        return int(self.feedback_embeddings_.shape[0])

    @property
    def feedback_embeddings_(self) -> np.ndarray:
        return self._feedback_array(0)

    @property
    def feedback_counts_(self) -> np.ndarray:
        return self._feedback_array(1)

    @property
    def feedback_weights_(self) -> np.ndarray:
        return self._feedback_array(2)

    @property
    def feedback_index_(self) -> PoolIndex | None:
        """The feedback pool's k-means index; None while the pool is scanned exactly."""
        self._feedback_array(0)  # NotFittedError before fit
        return self._feedback_index

    def _feedback_array(self, i: int) -> np.ndarray:
        """One of the feedback pool's arrays (read-only); NotFittedError (an AttributeError,
        so ``hasattr`` is False) before ``fit``."""
        rows = self.__dict__.get("_feedback_rows")
        if rows is None:
            raise NotFittedError("this SWRouter has no feedback pool before fit(outcomes) or "
                                 "SWRouter.load(path)")
        return rows[i].array

    def _set_feedback(self, embeddings: np.ndarray, counts: np.ndarray, weights: np.ndarray,
                      index: PoolIndex | None = None) -> None:
        self._feedback_rows = (Rows(embeddings), Rows(counts), Rows(weights))
        self._feedback_index = index

    def _grown_feedback_index(self, pool: np.ndarray, new: np.ndarray) -> PoolIndex | None:
        """The feedback index once the pool holds ``pool`` (its last rows ``new``): none while
        scanning the pool costs at most ``EXACT_MAX_WORK``; built by k-means when it first
        costs more (or on the first event after loading a file without one), re-built once
        the pool numbers ``CLUSTERED_REBUILD_GROWTH`` times its rows at the last k-means, and
        otherwise the new rows join their nearest clusters."""
        index = self._feedback_index
        if index is None and pool.shape[0] * pool.shape[1] <= EXACT_MAX_WORK:
            return None
        if index is None or pool.shape[0] >= CLUSTERED_REBUILD_GROWTH * index.n_clustered:
            return PoolIndex.build(pool, self.random_state)
        return index.appended(new)

    def add_model(
        self,
        name: str,
        quiz_outcomes: Outcomes,
        *,
        cost: float | None = None,
        embeddings: np.ndarray | None = None,
    ) -> Self:
        """Onboard a new model from a few quiz prompts scored for it; returns ``self``.

        Parameters
        ----------
        name : str
            The new model (not yet one of ``models_``).
        quiz_outcomes : Outcomes
            The quiz prompts (``quiz_prompts`` proposes them; about 50 suffice) with a column
            ``name`` and, where known, the existing models' scores on them.
        cost : float, default=None
            The new model's USD per call, used as is (the quiz's costs for it are then not
            averaged in). None takes the mean of the quiz's known costs for it; a router with
            ``costs_`` needs one or the other, and one without (fitted on battles) refuses a
            cost it could not keep.
        embeddings : ndarray, default=None
            The quiz prompts already embedded by this router's embedder.

        Notes
        -----
        Every stored exemplar gets battles for the new model copied from its *proxy*, the
        existing model that agrees most with it on the quiz (``_incremental.choose_proxy``),
        shifted by the difference of their overall qualities (a weaker model wins
        correspondingly less of each battle, and loses to its proxy;
        ``_incremental.extend_flat_counts``). The new model's ``quality_`` is read off a line
        through the existing models' (quiz mean, ``quality_``) pairs, since quiz prompts are
        chosen hard. The quiz prompts are then added as exemplars with their real scores
        (``partial_fit``), which correct the copy near them. ``calibration_win_matrices_``
        are dropped (the model list changed). Renews ``fit_version_``.

        The router is never empty meanwhile (``_incremental.swap_in``), but ``models_`` and
        the exemplars change one attribute at a time: threads routing with it must hold the
        lock their scoring takes (the ``RoutingPolicy``'s), or a reader may pair the new
        ``models_`` with the old exemplars.
        """
        onboard(self, name, quiz_outcomes, cost, embeddings, extend=SWRouter._extend_exemplars)
        return self

    def _extend_exemplars(self, proxy: int, shift: float) -> int:
        """``add_model``'s step: every exemplar gets the new model as a shifted ``proxy``."""
        vectors, store = self._exemplars_in_training_order()
        self._index_exemplars(vectors, extend_store(store, proxy, shift))
        self._set_feedback(self.feedback_embeddings_, extend_flat_counts(
            self.feedback_counts_, proxy, len(self.models_), shift).astype(np.float32),
            self.feedback_weights_, self._feedback_index)  # same embeddings: same index
        return len(store)

    def quiz_prompts(self, n: int = 50, *, prompts: Sequence[str] | None = None
                     ) -> np.ndarray | list[str]:
        """The ``n`` stored exemplars most worth scoring a new model on (for ``add_model``).

        Ranked by how much the existing models disagree on them (``_incremental.disagreement``),
        each next pick discounted by its similarity to those already picked, so the quiz covers
        the prompt space. Returns exemplar indices in training order (``fit``'s prompts, then
        each ``partial_fit``'s), or their texts when ``prompts`` lists those prompts (the
        router stores embeddings, not texts).
        """
        self._check_is_fitted()
        vectors, store = self._exemplars_in_training_order()
        return quiz_selection(self, vectors, store.counts(slice(None)), n, prompts)

    def _embed_new(self, prompts: list[str], embeddings: np.ndarray | None) -> np.ndarray:
        vectors = embed_new(self, prompts, embeddings, self.index_.embeddings.shape[1])
        return _unit_rows(vectors, "new embeddings")

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
        count half), with the counted fitted exemplars' weights scaled to average 1; the
        feedback neighbours' counts are added on that scale.
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
        The fitted exemplars only, as if no feedback were learned (see ``partial_fit``).
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

    def _feedback_neighbours(self, queries: np.ndarray
                             ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Per query, the similarities of its ``FEEDBACK_NEIGHBOURS`` most similar feedback
        exemplars (b, k), their row numbers (b, k), and the largest similarity (b, 1); None
        without feedback. Exact without a feedback index, else among the members of the
        probed clusters (``PoolIndex.nearest``)."""
        pool = self.feedback_embeddings_
        n = pool.shape[0]
        if n == 0:
            return None
        k = min(FEEDBACK_NEIGHBOURS, n)
        if self._feedback_index is not None:
            near, rows = self._feedback_index.nearest(queries, pool, k, self.n_probe)
            return near, rows, near.max(axis=1, keepdims=True)
        sims = (queries @ pool.T).astype(np.float64)
        rows = (np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < n
                else np.broadcast_to(np.arange(n), sims.shape))
        near = np.take_along_axis(sims, rows, axis=1)
        return near, rows, near.max(axis=1, keepdims=True)

    def _feedback_counts(self, neighbours: tuple[np.ndarray, np.ndarray, np.ndarray],
                         top: np.ndarray) -> np.ndarray:
        """The feedback neighbours' weighted win counts (b, M*M), on the fitted exemplars'
        unnormalised scale: SW's kernel with the largest similarity of both sets (``top`` is
        the fitted exemplars' own), so no feedback exemplar outweighs the nearest fitted one
        at equal similarity, times each one's ``sample_weight``."""
        near, rows, nearest = neighbours
        weights = (self._weights_given_top(near, np.maximum(top, nearest), apply_top_k=False)
                   * self.feedback_weights_[rows])
        return np.einsum("bk,bkc->bc", weights, self.feedback_counts_[rows], dtype=np.float64)

    def _exact_counts(self, queries: np.ndarray) -> np.ndarray:
        n = self.index_.embeddings.shape[0]
        m2 = len(self.models_) ** 2
        out = np.empty((queries.shape[0], m2))
        n_feedback = self.feedback_embeddings_.shape[0]
        # per query: its similarities (to the whole pool unless the index searches it, one
        # query at a time), and its feedback neighbours' win counts (k * M^2)
        scanned = n_feedback if self._feedback_index is None else 0
        width = n + scanned + (min(FEEDBACK_NEIGHBOURS, n_feedback) * m2 if n_feedback else 0)
        step = max(1, _QUERY_BLOCK_ELEMENTS // width)
        for start in range(0, queries.shape[0], step):
            block = queries[start : start + step]
            sims = np.asarray(block @ self.index_.embeddings.T, dtype=np.float64)
            top = sims.max(axis=1, keepdims=True)
            weights = self._weights_given_top(sims, top, apply_top_k=True)
            if block.shape[0] == 1:
                counts = self.store_.weighted_sum(weights[0])[None]
            else:
                counts = self.store_.weighted_sums(weights)
            neighbours = self._feedback_neighbours(block)
            if neighbours is not None:
                counts = counts + self._feedback_counts(neighbours, top)
            scale = weights.sum(axis=1) / self._n_counted(n)
            out[start : start + step] = counts / scale[:, None]
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
        neighbours = self._feedback_neighbours(query[None])
        if neighbours is not None:
            counts = counts + self._feedback_counts(neighbours, top)[0]
        return counts / (total / counted)

    # -- persistence -------------------------------------------------------------------------------
    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        learning, learning_arrays = incremental_state(self)
        state = {"algorithm_": self.algorithm_, "n_exemplars_": self.n_exemplars_, **learning}
        if self.n_clustered_ is not None:
            state["n_clustered_"] = self.n_clustered_
        state["n_feedback_"] = int(self.feedback_embeddings_.shape[0])
        feedback = {"feedback_embeddings": self.feedback_embeddings_,
                    "feedback_counts": self.feedback_counts_,
                    "feedback_weights": self.feedback_weights_}
        if self._feedback_index is not None:
            state["n_feedback_clustered_"] = self._feedback_index.n_clustered
            feedback.update(self._feedback_index.to_arrays())
        return state, {**self.index_.to_arrays(), **self.store_.to_arrays(), **learning_arrays,
                       **feedback}

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
        clustered_at = state.get("n_clustered_", n if algorithm == "clustered" else None)
        if clustered_at is not None and (
                algorithm != "clustered" or isinstance(clustered_at, bool)
                or not isinstance(clustered_at, int) or not 0 < clustered_at <= n):
            raise ValueError(f"n_clustered_ {clustered_at!r} does not fit {n} {algorithm} "
                             "exemplars")
        self.algorithm_ = algorithm
        self.n_exemplars_ = n
        self.n_clustered_ = clustered_at
        self.index_ = index
        self.store_ = store
        pool = _feedback_arrays(state, arrays, index.embeddings.shape[1], m)
        self._set_feedback(*pool, _feedback_index(state, arrays, pool[0].shape))
        set_incremental_state(self, state, arrays)


def _feedback_arrays(state: dict[str, Any], arrays: dict[str, np.ndarray], dim: int,
                     n_models: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The feedback pool of a router file, checked; a file written before SW kept feedback
    apart holds none (its feedback, if any, is among the fitted exemplars)."""
    n = state.get("n_feedback_", 0)
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n_feedback_ must be a count, got {n!r}")
    names = ("feedback_embeddings", "feedback_counts", "feedback_weights")
    if n == 0 and not any(name in arrays for name in names):
        return (np.zeros((0, dim), np.float32), np.zeros((0, n_models**2), np.float32),
                np.zeros(0))
    missing = [name for name in names if name not in arrays]
    if missing:
        raise ValueError(f"the state records {n} feedback exemplars but {missing} are missing")
    embeddings = np.ascontiguousarray(arrays["feedback_embeddings"], dtype=np.float32)
    counts = np.ascontiguousarray(arrays["feedback_counts"], dtype=np.float32)
    weights = np.ascontiguousarray(arrays["feedback_weights"], dtype=np.float64)
    if (embeddings.shape != (n, dim) or counts.shape != (n, n_models**2)
            or weights.shape != (n,)):
        raise ValueError(f"feedback arrays do not hold {n} exemplars of dimension {dim} for "
                         f"{n_models} models")
    for name, values in zip(names[1:], (counts, weights), strict=True):
        if not np.all(np.isfinite(values)) or np.any(values < 0):
            raise ValueError(f"{name} must be finite and >= 0")
    return embeddings, counts, weights


def _feedback_index(state: dict[str, Any], arrays: dict[str, np.ndarray],
                    pool_shape: tuple[int, ...]) -> PoolIndex | None:
    """The feedback pool's index of a router file, checked; None for a file without one (a
    pool within ``EXACT_MAX_WORK``, or a file that predates the index), which builds it at
    the next feedback event if the pool needs it."""
    parts = {"feedback_centroids": "feedback_centroids" in arrays,
             "feedback_labels": "feedback_labels" in arrays,
             "n_feedback_clustered_": "n_feedback_clustered_" in state}
    if not any(parts.values()):
        return None
    missing = [name for name, present in parts.items() if not present]
    if missing:
        raise ValueError(f"the feedback index lacks {missing}")
    n, dim = pool_shape
    return PoolIndex.from_arrays(arrays, state["n_feedback_clustered_"], n, dim)


def _sample_weights(sample_weight: Any, n: int, feedback: bool) -> np.ndarray:
    """``partial_fit``'s ``sample_weight`` as (n,) floats >= 0 (default 1), for feedback."""
    if sample_weight is None:
        return np.ones(n)
    if not feedback:
        raise RouterConfigError(
            "sample_weight weighs feedback exemplars (Battles from langroute.feedback); "
            "measured outcomes count in full")
    weights = np.asarray(sample_weight, dtype=np.float64)
    if weights.shape != (n,) or not np.all(np.isfinite(weights)) or np.any(weights < 0):
        raise RouterConfigError(
            f"sample_weight must be {n} finite weights >= 0 (one per battle prompt), got "
            f"shape {weights.shape}")
    return weights


def _unit_rows(vectors: np.ndarray, what: str) -> np.ndarray:
    """Rows scaled to unit length (cosine similarity); zero or non-finite rows are an error."""
    if not np.all(np.isfinite(vectors)):
        raise ValueError(f"{what} contain NaN or infinite values")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError(f"{what} contain an all-zero row; cosine similarity is undefined")
    return np.ascontiguousarray(vectors / norms, dtype=np.float32)

