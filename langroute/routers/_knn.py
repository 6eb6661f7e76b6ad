"""OrchestraLLM's exemplar-pool router: the k nearest training prompts vote on who wins.

OrchestraLLM (Lee et al., 2023) labels every training prompt with the model that answered it
more reliably, retrieves the k exemplars nearest to a new prompt and routes by majority vote.
Here each exemplar votes on every *pair* of models instead of naming one winner, so the vote
works for any number of models and yields the win matrix every langroute router answers with.

Each pair's vote comes from the ``k`` nearest exemplars *that compared that pair*. With every
model scored on every prompt (a benchmark) those are simply the k nearest exemplars. Feedback
scores one model (``langroute.feedback``), so its exemplars vote only on that model's pairs; if
they took neighbour slots from every pair, learning about the cheap model would thin out the
votes on, say, the two strong models, where nothing new was learned. Counting per pair keeps
every pair's vote at k (the "k nearest users who rated this item" of collaborative
filtering).

Feedback arrives one event at a time, so ``partial_fit`` appends in amortised O(new rows):
the exemplar arrays grow inside buffers with spare room (``_Rows``) and what is derived from
them is extended, not rebuilt; copying 100k stored embeddings per event took ~200 ms.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any, Self

import numpy as np

from .._exceptions import NotFittedError, OutcomesError, RouterConfigError
from .._outcomes import Battles, Outcomes, pairwise_counts
from ..embeddings import Embedder
from ._base import BaseRouter
from ._incremental import (
    align_models,
    embed_new,
    extend_flat_counts,
    incremental_state,
    new_patterns,
    no_learned_feedback,
    observations,
    onboard,
    quiz_selection,
    score_moments,
    set_incremental_state,
    update_means,
)
from ._rows import Rows as _Rows
from ._validation import check_int, check_number

__all__ = ["KNNRouter"]

#: Similarity entries computed at once when scoring many prompts (bounds memory, ~32 MB).
_CHUNK_ENTRIES = 1 << 22


def _pairs_compared(patterns: np.ndarray) -> np.ndarray:
    """Which pairs each flattened (n, M*M) win-count pattern compared, as (n, M*M) bools."""
    m = math.isqrt(patterns.shape[1])
    counts = patterns.reshape(-1, m, m)
    compared: np.ndarray = ((counts + np.swapaxes(counts, 1, 2)) > 0).reshape(-1, m * m)
    return compared


class KNNRouter(BaseRouter):
    """k-nearest-exemplar majority-vote router (OrchestraLLM) for any number of models.

    Every training prompt is an exemplar holding its win counts (``W[i, j]``: times
    model ``i`` beat model ``j`` on it, ties counting half). For a prompt, the ``k`` exemplars
    with the highest cosine similarity are retrieved (exact search: one matrix product and
    ``argpartition``), their counts are summed, and

        P(i beats j) = (W_ij + prior) / (W_ij + W_ji + 2 * prior),

    i.e. the share of the neighbours' pairwise votes won by ``i``, smoothed towards 1/2. With
    outcomes measured for every model this is ``(wins + ties / 2 + prior) / (k + 2 * prior)``.
    An exemplar that did not compare ``i`` and ``j`` (feedback on a third model) does not count
    towards their ``k``: each pair is voted on by its own k nearest exemplars that compared it
    (all of them, if fewer did). Ties in similarity are broken arbitrarily.

    Deviations from the paper: OrchestraLLM puts each exemplar in one pool (the cheaper model's
    when it was good enough) and routes to the majority pool of the neighbours. Here exemplars
    vote on every pair, a tie counting half to each side rather than going to the cheaper model,
    and the escalation ladder's threshold sets how large a share of the vote a pricier model
    needs (the paper's fixed majority is one point on that cost-quality curve). The paper
    fine-tunes its sentence embedding; here any ``Embedder`` is used.

    Parameters
    ----------
    embedder : Embedder, default=None
        Turns prompts into vectors; None means the default embedder (all-MiniLM-L6-v2 on
        ONNX Runtime, int8, offline).
    k : int, default=100
        Number of neighbours that vote; at most the number of training prompts. Chosen by
        5-fold cross-validation of held-out pairwise log-loss on six shared datasets (MiniLM
        embeddings; k in 10, 30, 50, 100, 200): 100 had the lowest total, 100-200 also ranked
        held-out pairs best, and k = 10 did worse than one global Bradley-Terry model on
        every dataset. Chosen on shared data, so no reported figure rests on it: the README's
        sweep re-chooses k inside each outer fold (nested CV, ``langroute eval --tune``).
    prior : float, default=1.0
        Virtual ties per model pair added to the vote; keeps probabilities off 0 and 1.

    Attributes
    ----------
    models_, costs_, quality_ : see ``BaseRouter``.
    embeddings_ : ndarray of shape (n_exemplars, dim), float32
        Unit-length exemplar embeddings (read-only).
    patterns_ : ndarray of shape (n_patterns, n_models * n_models), float32
        Distinct per-exemplar win-count matrices (flattened; read-only). ``fit`` sorts them;
        ``partial_fit`` appends the new ones (past 4096 patterns without matching them).
    pattern_index_ : ndarray of shape (n_exemplars,), int32
        Which pattern each exemplar has (read-only).
    n_observations_ : ndarray of shape (2, n_models)
        How many measured scores (battles' games, for battles) and known costs ``quality_``
        and ``costs_`` average; ``partial_fit`` extends those means with it. None for a
        router file written before ``partial_fit`` existed (it must be refitted to learn).
    score_moments_ : ndarray of shape (7, n_models, n_models) or None
        Per model pair, the sums over the prompts scoring both that regress one model's score
        on the other's (``_incremental.score_moments``); feedback on one model imputes the
        others from them (``langroute.feedback.feedback_battles``). None when fitted on
        battles or loaded from a file that predates them.
    learned_feedback_ : ndarray of shape (n_events,), uint64
        Fingerprints of the feedback events learned since ``fit``, as
        ``SWRouter.learned_feedback_`` (replay skips them).

    See Also
    --------
    SWRouter : weighs every exemplar by similarity instead of keeping the k nearest.

    Examples
    --------
    >>> outcomes = load_outcomes("../shared/data/routellm-gsm8k")  # doctest: +SKIP
    >>> router = KNNRouter(k=100).fit(outcomes)  # doctest: +SKIP
    >>> router.win_matrix("What is 17 * 23?")  # doctest: +SKIP
    """

    kind = "knn"

    # Learned arrays (behind the read-only properties) and what is derived from them.
    _embedding_rows: _Rows
    _pattern_rows: _Rows
    _index_rows: _Rows
    _exemplar64_rows: _Rows
    _compared_rows: _Rows
    _pair_voters: np.ndarray
    _complete: bool

    def __init__(
        self,
        embedder: Embedder | None = None,
        *,
        k: int = 100,
        prior: float = 1.0,
    ) -> None:
        self.embedder = embedder
        self.k = k
        self.prior = prior

    def _validate_params(self) -> None:
        check_int("k", self.k)
        check_number("prior", self.prior)

    def _check_training_data(self, prompts: list[str], counts: np.ndarray | None) -> None:
        if self.k > len(prompts):
            raise RouterConfigError(
                f"k={self.k} neighbours requested but the training data has only "
                f"{len(prompts)} prompts; lower k"
            )

    def _calibration_clone(self, n_train: int) -> KNNRouter:
        # Out-of-fold refits see fewer prompts; a k that fits the full data may not fit them.
        return self.clone().set_params(k=min(self.k, n_train))

    def fit(self, outcomes: Outcomes | Battles) -> Self:
        """Embed the training prompts and store their win counts as exemplars; returns ``self``."""
        _, counts, embeddings = self._fit_inputs(outcomes)
        n, m, _ = counts.shape
        patterns, inverse = np.unique(counts.reshape(n, m * m), axis=0, return_inverse=True)
        self._embedding_rows = _Rows(np.asarray(embeddings, dtype=np.float32))
        self._pattern_rows = _Rows(patterns.astype(np.float32))
        self._index_rows = _Rows(inverse.reshape(-1).astype(np.int32))
        self._set_common_fitted(outcomes)
        self._derive()
        self.n_observations_ = observations(outcomes)
        self.score_moments_ = score_moments(outcomes)
        self.learned_feedback_ = no_learned_feedback()
        return self

    def partial_fit(
        self, outcomes: Outcomes | Battles, *, embeddings: np.ndarray | None = None
    ) -> Self:
        """Add outcomes as new exemplars without refitting; returns ``self``.

        The new prompts' embeddings and win counts are appended, so the router equals ``fit``
        on the union of everything it has seen. ``outcomes`` may score any subset of
        ``models_`` (feedback usually scores one model); ``quality_`` and ``costs_`` become
        the means over all observations, except that feedback battles never move them
        (selection bias; ``_incremental.update_means``). Renews ``fit_version_``, so
        policies rebuild.
        ``calibration_win_matrices_`` keep the out-of-fold scores of the last ``fit``.
        """
        self._check_is_fitted()
        data = align_models(outcomes, self.models_)
        prompts, counts = pairwise_counts(data)
        if not prompts:
            raise OutcomesError("partial_fit() got no prompts")
        vectors = self._embed_new(prompts, embeddings)
        self._append_exemplars(vectors, counts.reshape(len(prompts), -1))
        update_means(self, data)
        self._new_fit_version()
        return self

    def add_model(
        self,
        name: str,
        quiz_outcomes: Outcomes,
        *,
        cost: float | None = None,
        embeddings: np.ndarray | None = None,
    ) -> Self:
        """Onboard a new model from a few quiz prompts scored for it; returns ``self``.

        As ``SWRouter.add_model``: every exemplar's votes for the new model are copied from
        the existing model that agrees most with it on the quiz, shifted by their quality
        difference (calibrated on the existing models' quiz means), then the quiz prompts
        are added as exemplars with their real scores. ``cost`` is its USD per call, used as is;
        None takes the mean of the quiz's known costs for it (a router fitted on battles keeps
        no costs and refuses one). Threads routing meanwhile must hold the routing lock, as
        for ``SWRouter.add_model``.
        """
        onboard(self, name, quiz_outcomes, cost, embeddings, extend=KNNRouter._extend_exemplars)
        return self

    def _extend_exemplars(self, proxy: int, shift: float) -> int:
        """``add_model``'s step: every exemplar gets the new model as a shifted ``proxy``."""
        self._pattern_rows = _Rows(
            extend_flat_counts(self.patterns_, proxy, len(self.models_), shift))
        self._derive_votes()
        return int(self.embeddings_.shape[0])

    def _append_exemplars(self, vectors: np.ndarray, flat: np.ndarray) -> None:
        """Store new exemplars (float32 rows, flattened win counts) in amortised O(new rows),
        however many are stored: the arrays grow in place (``_Rows``) and the derived ones are
        extended; new patterns come from ``_incremental.new_patterns``, which never renumbers
        a stored one. Every attribute is replaced, none changed in place: a shallow copy
        learning meanwhile keeps its own."""
        fresh, index = new_patterns(self.patterns_, flat)
        compared = self._compared_rows.appended(_pairs_compared(fresh))
        voters = self._pair_voters + compared.array[index].sum(axis=0, dtype=np.int64)
        n = self.embeddings_.shape[0] + vectors.shape[0]
        embedding_rows = self._embedding_rows.appended(vectors)
        exemplar64_rows = self._exemplar64_rows.appended(vectors.astype(np.float64))
        pattern_rows = self._pattern_rows.appended(fresh)
        index_rows = self._index_rows.appended(index)
        self._embedding_rows, self._exemplar64_rows = embedding_rows, exemplar64_rows
        self._pattern_rows, self._index_rows = pattern_rows, index_rows
        self._compared_rows, self._pair_voters = compared, voters
        self._complete = self._all_compared(voters, n)

    def _embed_new(self, prompts: list[str], embeddings: np.ndarray | None) -> np.ndarray:
        return embed_new(self, prompts, embeddings, self.embeddings_.shape[1])

    def quiz_prompts(self, n: int = 50, *, prompts: Sequence[str] | None = None
                     ) -> np.ndarray | list[str]:
        """The ``n`` exemplars most worth scoring a new model on (see
        ``SWRouter.quiz_prompts``): indices in training order, or texts given ``prompts``."""
        self._check_is_fitted()
        flat = self.patterns_[self.pattern_index_]
        return quiz_selection(self, self.embeddings_, flat, n, prompts)

    # -- scoring ---------------------------------------------------------------------------------
    def kneighbors(self, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest exemplars of each query, most similar first (a pair that some of
        them did not compare takes its votes from farther ones: ``vote_counts``).

        Returns ``(indices, similarities)``, both of shape (n_queries, k): rows of
        ``embeddings_`` and their cosine similarities to the query.
        """
        self._check_is_fitted()
        queries = self._check_queries(embeddings)
        chunks = [(idx, sims) for idx, sims, _ in self._neighbour_chunks(queries)]
        if not chunks:
            k = min(self.k, self.embeddings_.shape[0])
            return np.empty((0, k), dtype=np.int64), np.empty((0, k), dtype=np.float32)
        return (np.concatenate([idx for idx, _ in chunks]),
                np.concatenate([sims for _, sims in chunks]))

    def vote_counts(self, embeddings: np.ndarray) -> np.ndarray:
        """Summed win counts of each query's neighbours, shape (n_queries, M, M): per pair, of
        the ``k`` nearest exemplars that compared it (the ``k`` nearest, when all did)."""
        self._check_is_fitted()
        queries = self._check_queries(embeddings)
        m = len(self.models_)
        out = np.empty((queries.shape[0], m * m), dtype=np.float64)
        start = 0
        for indices, _, sims in self._neighbour_chunks(queries):
            rows = slice(start, start + len(indices))
            per_neighbour = self.patterns_[self.pattern_index_[indices]]  # (rows, k, M*M)
            out[rows] = per_neighbour.sum(axis=1, dtype=np.float64)
            if not self._complete:
                self._vote_short_pairs(sims, indices, out[rows])
            start += len(indices)
        return out.reshape(-1, m, m)

    def _vote_short_pairs(self, similarities: np.ndarray, top: np.ndarray, out: np.ndarray
                          ) -> None:
        """Re-count, in place, the queries whose ``k`` nearest exemplars leave some pair with
        fewer than ``k`` votes while farther exemplars compared it: every pair then takes its
        own ``k`` nearest that compared it (the top ``k`` first, in their order, then the rest
        by similarity). Candidates grow fourfold from ``4 k`` until every pair has its votes,
        so a request reads ``O(n_exemplars + candidates * M^2)``, not a sort of everything."""
        k = top.shape[1]
        need = np.minimum(k, self._pair_voters)
        got = self._compared[self.pattern_index_[top]].sum(axis=1)  # (rows, M*M)
        n = self.embeddings_.shape[0]
        for row in np.flatnonzero((got < need).any(axis=1)):
            sims = similarities[row]
            size = min(n, 4 * k)
            while True:
                candidates = (np.argpartition(-sims, size - 1)[:size] if size < n
                              else np.arange(n))
                rest = np.setdiff1d(candidates, top[row], assume_unique=True)
                order = np.concatenate([top[row], rest[np.argsort(-sims[rest], kind="stable")]])
                compared = self._compared[self.pattern_index_[order]]  # (candidates, M*M)
                rank = np.cumsum(compared, axis=0)
                if size >= n or bool((rank[-1] >= need).all()):
                    break
                size = min(n, 4 * size)
            take = compared & (rank <= k)
            out[row] = (self.patterns_[self.pattern_index_[order]] * take).sum(
                axis=0, dtype=np.float64)

    @property
    def embeddings_(self) -> np.ndarray:
        return self._learned("_embedding_rows", "embeddings_")

    @property
    def patterns_(self) -> np.ndarray:
        return self._learned("_pattern_rows", "patterns_")

    @property
    def pattern_index_(self) -> np.ndarray:
        return self._learned("_index_rows", "pattern_index_")

    def _learned(self, rows: str, name: str) -> np.ndarray:
        """The array of learned attribute ``name``; NotFittedError (an AttributeError, so
        ``hasattr`` is False) before ``fit``."""
        stored: _Rows | None = self.__dict__.get(rows)
        if stored is None:
            raise NotFittedError(f"this KNNRouter has no {name} before fit(outcomes) or "
                                 "KNNRouter.load(path)")
        return stored.array

    @property
    def _compared(self) -> np.ndarray:
        return self._compared_rows.array

    def _derive(self) -> None:
        """Arrays derived from the learned ones (built by ``fit`` and ``load``, extended by
        ``partial_fit``; not saved): the float64 exemplars the neighbour search multiplies
        with, then ``_derive_votes``."""
        self._exemplar64_rows = _Rows(self.embeddings_.astype(np.float64))
        self._derive_votes()

    def _derive_votes(self) -> None:
        """Which pairs each pattern compared, how many exemplars compared each pair, and
        whether every exemplar compared every pair (then the plain k nearest are every
        pair's voters)."""
        self._compared_rows = _Rows(_pairs_compared(self.patterns_))
        per_pattern = np.bincount(self.pattern_index_, minlength=self.patterns_.shape[0])
        self._pair_voters = per_pattern @ self._compared.astype(np.int64)  # (M*M,)
        self._complete = self._all_compared(self._pair_voters, self.embeddings_.shape[0])

    @staticmethod
    def _all_compared(pair_voters: np.ndarray, n_exemplars: int) -> bool:
        m = math.isqrt(pair_voters.shape[0])
        off_diagonal = ~np.eye(m, dtype=bool).reshape(-1)
        return bool((pair_voters[off_diagonal] == n_exemplars).all())

    def _neighbour_chunks(self, queries: np.ndarray
                          ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Top-k indices and similarities, and every exemplar's similarity, for successive
        blocks of queries (bounded memory)."""
        n_exemplars = self.embeddings_.shape[0]
        k = min(self.k, n_exemplars)
        width = max(n_exemplars, k * self.patterns_.shape[1])
        rows = max(1, _CHUNK_ENTRIES // width)
        exemplars = self._exemplar64_rows.array
        for start in range(0, queries.shape[0], rows):
            block = queries[start : start + rows].astype(np.float64)
            # float64 product rounded to float32: the same query gets the same neighbours
            # whether it is scored alone or in a batch (BLAS rounding differs between them).
            sims = (block @ exemplars.T).astype(np.float32)
            if k < n_exemplars:
                top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            else:
                top = np.broadcast_to(np.arange(n_exemplars), sims.shape).copy()
            top_sims = np.take_along_axis(sims, top, axis=1)
            order = np.argsort(-top_sims, axis=1, kind="stable")
            yield (np.take_along_axis(top, order, axis=1),
                   np.take_along_axis(top_sims, order, axis=1), sims)

    def _win_matrices(self, embeddings: np.ndarray) -> np.ndarray:
        votes = self.vote_counts(embeddings)
        prior = float(self.prior)
        won = votes + prior
        games = votes + np.swapaxes(votes, 1, 2) + 2.0 * prior
        # No vote at all on a pair (prior 0, never compared nearby): an even chance.
        win: np.ndarray = np.divide(won, games, out=np.full_like(won, 0.5), where=games > 0)
        diag = np.arange(win.shape[1])
        win[:, diag, diag] = 0.5
        return win

    def _check_queries(self, embeddings: np.ndarray) -> np.ndarray:
        queries = np.atleast_2d(np.asarray(embeddings, dtype=np.float32))
        if queries.ndim != 2 or queries.shape[1] != self.embeddings_.shape[1]:
            raise ValueError(
                f"embeddings must have shape (n, {self.embeddings_.shape[1]}), "
                f"got {np.shape(embeddings)}"
            )
        return queries

    # -- persistence -----------------------------------------------------------------------------
    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        arrays = {
            "embeddings": self.embeddings_,
            "patterns": self.patterns_,
            "pattern_index": self.pattern_index_,
        }
        learning, learning_arrays = incremental_state(self)
        return learning, {**arrays, **learning_arrays}

    def _set_state(self, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self._embedding_rows = _Rows(np.asarray(arrays["embeddings"], dtype=np.float32))
        self._pattern_rows = _Rows(np.asarray(arrays["patterns"], dtype=np.float32))
        self._index_rows = _Rows(np.asarray(arrays["pattern_index"], dtype=np.int32))
        m = len(self.models_)
        if (
            self.embeddings_.ndim != 2
            or self.patterns_.ndim != 2
            or self.patterns_.shape[1] != m * m
            or self.pattern_index_.shape != (self.embeddings_.shape[0],)
        ):
            raise ValueError("array shapes do not match the model list")
        if self.pattern_index_.size and (
            self.pattern_index_.min() < 0 or self.pattern_index_.max() >= self.patterns_.shape[0]
        ):
            raise ValueError("pattern_index points outside patterns")
        self._derive()
        set_incremental_state(self, state, arrays)
