"""What ``partial_fit`` and ``add_model`` share: aligning new data, and running means.

Refit schedule of the routers without ``partial_fit``
----------------------------------------------------
``SWRouter`` and ``KNNRouter`` store exemplars, so new outcomes are appended (win counts
and embeddings) without touching what is stored; for measured outcomes the result equals a
``fit`` on the union (``SWRouter`` keeps feedback battles in a pool of their own).
The others summarise their data in ways that cannot be updated exactly (``ClusterRouter``:
k-means centroids and per-cluster quality; ``MFRouter`` / ``IRTRouter`` / ``StackedRouter``:
gradient-trained embeddings and a stacked combination), so they are refitted on a schedule:
``langroute.feedback.FeedbackRefitter(store, router, training, policy=DEFAULT_REFIT)``
refits a clone on the training data plus the feedback when the feedback reaches 10% of the
training prompts or daily (``RefitEvery(share=0.1, seconds=86400)``), and swaps the new fit
into the router, so ``fit_version_`` changes and every policy built on it rebuilds.
"""

from __future__ import annotations

import copy
import dataclasses
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .._checks import is_number
from .._exceptions import OutcomesError, RouterConfigError
from .._outcomes import Battles, Outcomes
from ._index import OutcomeStore

#: Distinct patterns up to which ``new_patterns`` matches new rows against them.
_DEDUPE_LIMIT = 4096
#: Rows of scores per block when summing battle outcomes (bounds memory at rows * M^2).
_MOMENT_ROWS = 4096
#: Rows of ``score_moments_``: the score sums, and the outcome sums kept since (4 + 3).
_MOMENT_SHAPES = (4, 7)

__all__ = [
    "FEEDBACK_SOURCE",
    "align_models",
    "append_counts",
    "append_patterns",
    "check_new_model",
    "choose_proxy",
    "conditional_outcomes",
    "conditional_scores",
    "disagreement",
    "embed_new",
    "extend_flat_counts",
    "extend_store",
    "finish_onboarding",
    "incremental_state",
    "learned_feedback_from_arrays",
    "learned_feedback_to_arrays",
    "learned_feedback_to_json",
    "no_learned_feedback",
    "onboard",
    "onboarding_copy",
    "outcome_reliability",
    "new_patterns",
    "moments_to_arrays",
    "moments_to_json",
    "observation_counts",
    "observations",
    "observations_from_json",
    "observations_to_json",
    "pick_quiz",
    "quiz_selection",
    "score_moments",
    "score_moments_from_arrays",
    "set_incremental_state",
    "swap_in",
    "update_means",
]


def observations(data: Outcomes | Battles) -> np.ndarray:
    """``n_observations_`` of a router fitted on ``data``: shape (2, n_models)."""
    return np.stack(observation_counts(data))


def score_moments(data: Outcomes | Battles) -> np.ndarray | None:
    """``score_moments_`` of a router fitted on ``data``: shape (7, n_models, n_models).

    For each ordered pair (m, j), over the prompts that score both: how many, and the sums
    of ``s_m``, ``s_m ** 2`` and ``s_m * s_j`` -- the sufficient statistics of regressing
    one model's score on another's (``conditional_scores``) -- then the sums of ``o``,
    ``o * s_m`` and ``o ** 2``, ``o`` the battle's outcome for m (1 if ``s_m > s_j``, 0.5 on
    a tie, else 0): those regress the outcome routers count on the score feedback observes
    (``conditional_outcomes``). They add up over new data, so ``partial_fit`` keeps them
    exact. None for Battles, which hold no scores. (Files written before the outcome sums
    were kept hold the first four rows.)
    """
    if not isinstance(data, Outcomes):
        return None
    seen = (~np.isnan(data.scores)).astype(np.float64)
    x = np.where(seen > 0, data.scores, 0.0)
    m = x.shape[1]
    outcome = np.zeros((3, m, m))
    for start in range(0, x.shape[0], _MOMENT_ROWS):
        s, both = x[start:start + _MOMENT_ROWS], seen[start:start + _MOMENT_ROWS]
        pair = both[:, :, None] * both[:, None, :]
        o = pair * ((s[:, :, None] > s[:, None, :]) + 0.5 * (s[:, :, None] == s[:, None, :]))
        outcome += np.stack([o.sum(axis=0), (o * s[:, :, None]).sum(axis=0),
                             (o * o).sum(axis=0)])
    return np.concatenate([np.stack([seen.T @ seen, x.T @ seen, (x * x).T @ seen, x.T @ x]),
                           outcome])


def moments_to_arrays(router: object) -> dict[str, np.ndarray]:
    """``score_moments_`` as a router file array (none when the router keeps none)."""
    moments = getattr(router, "score_moments_", None)
    return {} if moments is None else {"score_moments": np.asarray(moments, dtype=np.float64)}


def moments_to_json(router: object) -> bool:
    """Whether the file holds ``score_moments`` (so a file that lost the array is refused)."""
    return getattr(router, "score_moments_", None) is not None


def score_moments_from_arrays(state: dict, arrays: dict[str, np.ndarray], n_models: int
                              ) -> np.ndarray | None:
    """``score_moments_`` from a router file (None: fitted on battles, or saved before
    they were kept)."""
    raw = arrays.get("score_moments")
    if state.get("score_moments_") and raw is None:
        raise ValueError("the state records score_moments but the array is missing")
    if raw is None:
        return None
    moments = np.asarray(raw, dtype=np.float64)
    if (moments.shape not in [(k, n_models, n_models) for k in _MOMENT_SHAPES]
            or not np.all(np.isfinite(moments))):
        raise ValueError(f"score_moments must be finite, shape (7, {n_models}, {n_models}) "
                         f"(or (4, {n_models}, {n_models}) from an older file), got "
                         f"{moments.shape}")
    return moments


def no_learned_feedback() -> np.ndarray:
    """``learned_feedback_`` of a router that has learned no feedback event yet."""
    return np.zeros(0, dtype=np.uint64)


def learned_feedback_to_arrays(router: object) -> dict[str, np.ndarray]:
    """``learned_feedback_`` (the fingerprints of the feedback events learned, sorted) as a
    router file array."""
    learned = getattr(router, "learned_feedback_", None)
    learned = no_learned_feedback() if learned is None else learned
    return {"learned_feedback": np.asarray(learned, dtype=np.uint64)}


def learned_feedback_to_json(router: object) -> int:
    """How many fingerprints the file holds (so a file that lost the array is refused)."""
    learned = getattr(router, "learned_feedback_", None)
    return 0 if learned is None else len(learned)


def learned_feedback_from_arrays(state: dict, arrays: dict[str, np.ndarray]) -> np.ndarray:
    """``learned_feedback_`` from a router file; a file written before routers kept it holds
    none, and loads as having learned no feedback event."""
    count = state.get("learned_feedback_")
    raw = arrays.get("learned_feedback")
    if count is None and raw is None:
        return no_learned_feedback()
    if raw is None:
        raise ValueError("the state records learned_feedback but the array is missing")
    learned = np.asarray(raw)
    if (learned.dtype != np.uint64 or learned.ndim != 1 or count != len(learned)
            or bool(np.any(learned[1:] <= learned[:-1]))):
        raise ValueError(f"learned_feedback must be {count} sorted, distinct uint64 fingerprints")
    return np.ascontiguousarray(learned)


def incremental_state(router: object) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The router file's state and arrays of what ``partial_fit`` and ``add_model`` keep
    (``n_observations_``, ``score_moments_``, ``learned_feedback_``), for ``_get_state``."""
    state = {"n_observations_": observations_to_json(router),
             "score_moments_": moments_to_json(router),
             "learned_feedback_": learned_feedback_to_json(router)}
    return state, {**moments_to_arrays(router), **learned_feedback_to_arrays(router)}


def set_incremental_state(router: object, state: dict, arrays: dict[str, np.ndarray]) -> None:
    """Inverse of ``incremental_state``, for ``_set_state`` (after ``models_`` is set); older
    files without some of them load as ``observations_from_json`` and the others say."""
    r: Any = router
    m = len(r.models_)
    r.n_observations_ = observations_from_json(state, m)
    r.score_moments_ = score_moments_from_arrays(state, arrays, m)
    r.learned_feedback_ = learned_feedback_from_arrays(state, arrays)


def conditional_scores(moments: np.ndarray | None, quality: np.ndarray, model: np.ndarray,
                       score: np.ndarray) -> np.ndarray:
    """Expected score of every model given that ``model[i]`` scored ``score[i]``: (k, M).

    The least-squares line of ``s_j`` on ``s_m`` over the prompts both were scored on
    (``score_moments``); for 0/1 scores it gives exactly the conditional success rates
    ``P(j succeeds | m succeeded)`` and ``P(j succeeds | m failed)``. Where ``s_m`` never
    varied (or fewer than two prompts score both) the line is flat at ``j``'s mean on the
    shared prompts; where no prompt scores both, or ``moments`` is None (a router fitted on
    battles, or saved before they were kept), it is ``quality[j]``: independence.
    """
    k, m = len(model), quality.shape[0]
    fallback = np.broadcast_to(quality, (k, m))
    if moments is None:
        return np.array(fallback)
    n, sums, squares, cross = (moments[i][model] for i in range(4))  # each (k, M)
    col_sums = moments[1].T[model]  # sums of s_j over the same shared prompts
    expected = _line_at(score, n, sums, squares, col_sums, cross)
    return np.clip(np.where(n > 0, expected, fallback), 0.0, 1.0)


def _spread(n: np.ndarray, x_sums: np.ndarray, x_squares: np.ndarray, y_sums: np.ndarray,
            xy_sums: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Means of x and y, x's variance and their covariance, from sums over ``n`` pairs
    (NaN where ``n`` is 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_x, mean_y = x_sums / n, y_sums / n
        return mean_x, mean_y, x_squares / n - mean_x**2, xy_sums / n - mean_x * mean_y


def _line_at(x: np.ndarray, n: np.ndarray, x_sums: np.ndarray, x_squares: np.ndarray,
             y_sums: np.ndarray, xy_sums: np.ndarray) -> np.ndarray:
    """The least-squares line of y on x, from their sums over ``n`` pairs (each (k, M)), at
    ``x[i]`` (k,); flat at y's mean where x never varied or fewer than two pairs count."""
    mean_x, mean_y, var, cov = _spread(n, x_sums, x_squares, y_sums, xy_sums)
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = np.where((n >= 2) & (var > 1e-12), cov / var, 0.0)
    out: np.ndarray = mean_y + slope * (x[:, None] - mean_x)
    return out


def conditional_outcomes(moments: np.ndarray | None, quality: np.ndarray, model: np.ndarray,
                         score: np.ndarray) -> np.ndarray:
    """Expected outcome of ``model[i]``'s battle with every model given its score ``score[i]``:
    (k, M), the share of the battle it wins (ties half), as routers count battles.

    The least-squares line of the outcome on ``s_m`` over the prompts both were scored on
    (``score_moments``' outcome sums). For 0/1 scores it equals ``(1 + s_m - e_j) / 2`` with
    ``e_j`` from ``conditional_scores``; for graded scores the score difference is not the
    outcome counted (a 0.7 against a 0.5 is a win, not 60% of one), which shrank every
    imputed battle towards a tie. Moments without outcome sums (an older file) give
    ``(1 + s_m - e_j) / 2``; where no prompt scores both, or ``moments`` is None, ``e_j`` is
    ``quality[j]``.
    """
    if moments is None or moments.shape[0] < 7:
        return (1.0 + score[:, None] - conditional_scores(moments, quality, model, score)) / 2.0
    n, sums, squares, outcome_sums, outcome_cross = (
        moments[i][model] for i in (0, 1, 2, 4, 5))
    expected = _line_at(score, n, sums, squares, outcome_sums, outcome_cross)
    fallback = (1.0 + score[:, None] - np.broadcast_to(quality, expected.shape)) / 2.0
    return np.clip(np.where(n > 0, expected, fallback), 0.0, 1.0)


def outcome_reliability(moments: np.ndarray | None) -> np.ndarray | None:
    """(M, M): the share of the variance of m's battle outcome against j that ``s_m``
    explains (R^2 of ``conditional_outcomes``' line), over the prompts scoring both; 0 where
    either never varied. None without outcome sums (``moments`` None or from an older file).

    An imputed battle is worth that share of a measured one: it is the weight
    ``langroute.feedback.feedback_training`` gives a score's exemplar.
    """
    if moments is None or moments.shape[0] < 7:
        return None
    n, sums, squares, outcome_sums, outcome_cross, outcome_squares = (
        moments[i] for i in (0, 1, 2, 4, 5, 6))
    _, mean_o, var_m, cov = _spread(n, sums, squares, outcome_sums, outcome_cross)
    with np.errstate(divide="ignore", invalid="ignore"):
        var_o = outcome_squares / n - mean_o**2
        share = np.where((n >= 2) & (var_m > 1e-12) & (var_o > 1e-12),
                         cov**2 / (var_m * var_o), 0.0)
    return np.clip(np.nan_to_num(share), 0.0, 1.0)


def align_models(data: Outcomes | Battles, models: Sequence[str]) -> Outcomes | Battles:
    """``data`` with its model axis laid out as ``models`` (unmeasured models become NaN
    scores and costs, and "" answers).

    New outcomes may name any subset of the router's models, in any order (feedback usually
    scores one model); a model the router does not know is an error (``add_model`` first).
    """
    if not isinstance(data, (Outcomes, Battles)):
        raise TypeError(f"expected Outcomes or Battles, got {type(data).__name__}")
    names = list(models)
    unknown = [name for name in data.models if name not in names]
    if unknown:
        raise OutcomesError(
            f"models {unknown} are unknown to the router (it knows {names}); "
            "onboard a new model with add_model() first"
        )
    if tuple(data.models) == tuple(names):
        return data
    cols = np.array([names.index(name) for name in data.models], dtype=np.int64)
    if isinstance(data, Battles):
        return dataclasses.replace(
            data, models=tuple(names),
            model_a=cols[np.asarray(data.model_a)], model_b=cols[np.asarray(data.model_b)],
        )
    n, m = len(data), len(names)
    scores = np.full((n, m), np.nan)
    scores[:, cols] = data.scores
    costs = None
    if data.costs is not None:
        costs = np.full((n, m), np.nan)
        costs[:, cols] = data.costs
    answers = None
    if data.answers is not None:  # "" is no answer (``Outcomes.answers``)
        answers = np.full((n, m), "", dtype=data.answers.dtype)
        answers[:, cols] = data.answers
    return dataclasses.replace(data, models=tuple(names), scores=scores, costs=costs,
                               answers=answers)


def embed_new(router: Any, prompts: Sequence[str], embeddings: np.ndarray | None,
              dim: int) -> np.ndarray:
    """``prompts`` embedded by ``router``'s embedder (or the caller's ``embeddings``, checked
    to be one ``dim``-vector per prompt), as float32 rows; before the router changes."""
    if embeddings is None:
        embeddings = router._resolve_embedder().embed(list(prompts))
    vectors = np.ascontiguousarray(embeddings, dtype=np.float32)
    if vectors.shape != (len(prompts), dim):
        raise ValueError(
            f"embeddings must have shape ({len(prompts)}, {dim}) for {len(prompts)} new "
            f"prompts, got {vectors.shape}"
        )
    return vectors


def observation_counts(data: Outcomes | Battles) -> tuple[np.ndarray, np.ndarray]:
    """Per model: how many observations ``quality_`` and ``costs_`` average.

    Measured scores and known costs for Outcomes; games played (and no costs) for Battles.
    """
    m = len(data.models)
    if isinstance(data, Outcomes):
        scored = (~np.isnan(data.scores)).sum(axis=0).astype(np.float64)
        costed = (np.zeros(m) if data.costs is None
                  else (~np.isnan(data.costs)).sum(axis=0).astype(np.float64))
        return scored, costed
    games = np.zeros(m)
    np.add.at(games, np.asarray(data.model_a), 1.0)
    np.add.at(games, np.asarray(data.model_b), 1.0)
    return games, np.zeros(m)


def _merge(mean: np.ndarray | None, count: np.ndarray, new_sum: np.ndarray,
           new_count: np.ndarray) -> np.ndarray:
    old = np.where(count > 0, np.nan_to_num(mean if mean is not None else 0.0), 0.0) * count
    total = count + new_count
    return np.divide(old + new_sum, total, out=np.full(count.shape, np.nan), where=total > 0)


#: ``Battles.source`` of the battles ``langroute.feedback.feedback_battles`` makes from feedback.
FEEDBACK_SOURCE = "feedback"


def update_means(router: object, data: Outcomes | Battles) -> None:
    """Fold ``data`` (aligned to the router's models) into ``quality_``, ``costs_`` and
    ``score_moments_``.

    The result is what ``fit`` on the union computes. Scores update a router fitted on
    Outcomes; battles update the win rates of a router fitted on battles. Battles given to a
    router fitted on scores change its win counts only (a win rate is not a quality score).

    Feedback battles (``source == FEEDBACK_SOURCE``) never move the means: feedback scores
    the model the router *chose*, and it chose the cheap model where it expected the cheap
    model to do well, so the scores a model collects are a biased sample of its quality (a
    naive mean drifts upwards for every model the router uses selectively). ``quality_``
    ranks the models on the ladder's frontier and imputes the unobserved battles of later
    feedback; it stays the unbiased mean of the fully observed training outcomes. An
    unbiased update (inverse propensity weighting) needs every model to have a positive
    chance of being chosen on every prompt; routing is deterministic at a given threshold
    (propensity 0 or 1), so there is no propensity to weight by without random exploration.
    """
    counts = getattr(router, "n_observations_", None)
    if counts is None:
        raise RouterConfigError(
            f"this {type(router).__name__} was saved before partial_fit existed and does not "
            "record how many observations its means average; refit it once with fit()"
        )
    if isinstance(data, Battles) and data.source == FEEDBACK_SOURCE:
        return
    scored, costed = np.asarray(counts, dtype=np.float64)
    on_battles = router.costs_ is None  # type: ignore[attr-defined]
    if isinstance(data, Outcomes):
        if on_battles:
            return  # quality_ is a win rate there; the win counts were updated by the caller
        new_scored, new_costed = observation_counts(data)
        sums = np.where(np.isnan(data.scores), 0.0, data.scores).sum(axis=0)
        router.quality_ = _merge(router.quality_, scored, sums, new_scored)  # type: ignore
        if data.costs is not None:
            cost_sums = np.where(np.isnan(data.costs), 0.0, data.costs).sum(axis=0)
            router.costs_ = _merge(router.costs_, costed, cost_sums, new_costed)  # type: ignore
            costed = costed + new_costed
        router.n_observations_ = np.stack([scored + new_scored, costed])  # type: ignore
        moments = getattr(router, "score_moments_", None)
        if moments is not None:
            router.score_moments_ = moments + score_moments(data)  # type: ignore
        return
    if not on_battles:
        return
    m = len(data.models)
    wins = np.zeros(m)
    np.add.at(wins, np.asarray(data.model_a), np.asarray(data.result, dtype=np.float64))
    np.add.at(wins, np.asarray(data.model_b), 1.0 - np.asarray(data.result, dtype=np.float64))
    games, _ = observation_counts(data)
    router.quality_ = _merge(router.quality_, scored, wins, games)  # type: ignore
    router.n_observations_ = np.stack([scored + games, costed])  # type: ignore


def observations_to_json(router: object) -> list[list[float]] | None:
    """``n_observations_`` as JSON for router files (None: saved before it existed)."""
    counts = getattr(router, "n_observations_", None)
    return None if counts is None else np.asarray(counts, dtype=np.float64).tolist()


def observations_from_json(state: dict, n_models: int) -> np.ndarray | None:
    """Inverse of ``observations_to_json``; a file written before it holds None."""
    raw = state.get("n_observations_")
    if raw is None:
        return None
    counts = np.asarray(raw, dtype=np.float64)
    if counts.shape != (2, n_models) or not np.all(np.isfinite(counts)) or counts.min() < 0:
        raise ValueError(f"n_observations_ must be 2 x {n_models} counts >= 0")
    return counts


def new_patterns(patterns: np.ndarray, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of ``flat`` (n, M*M) that ``patterns`` lacks, and each row's pattern
    id in ``patterns`` followed by them: (new patterns float32, (n,) int32 ids).

    Stored patterns keep their ids (so nothing derived from them needs renumbering); new ones
    are matched against them while there are at most ``_DEDUPE_LIMIT``, beyond that appended
    unmatched (fractional feedback does not repeat, and duplicates are harmless).
    """
    n_old = patterns.shape[0]
    fresh, inverse = np.unique(np.asarray(flat, dtype=np.float32), axis=0, return_inverse=True)
    ids = n_old + np.arange(fresh.shape[0])
    if n_old <= _DEDUPE_LIMIT:
        known = _find_rows(patterns, fresh)
        new = known < 0
        ids = np.where(new, n_old + np.cumsum(new) - 1, known)
        fresh = fresh[new]
    return fresh, ids[inverse.reshape(-1)].astype(np.int32)


def _find_rows(table: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Per row of ``rows``, the index of an equal row of ``table``, or -1."""
    both = np.concatenate([table, rows])
    _, first, inverse = np.unique(both, axis=0, return_index=True, return_inverse=True)
    found = first[inverse.reshape(-1)[table.shape[0]:]]
    out: np.ndarray = np.where(found < table.shape[0], found, -1)
    return out


def append_patterns(
    patterns: np.ndarray, index: np.ndarray, counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Distinct win-count patterns and per-exemplar indices after appending ``counts``
    (n, M*M): the stored ones as they are, then ``new_patterns``."""
    fresh, new_index = new_patterns(patterns, np.asarray(counts).reshape(counts.shape[0], -1))
    return np.concatenate([patterns, fresh]), np.concatenate([index, new_index])


def append_counts(store: OutcomeStore, counts: np.ndarray) -> OutcomeStore:
    """``store`` with the exemplars of win-count matrices ``counts`` (n, M, M) appended.

    Patterns stay patterns; uint8 half-counts stay half-counts while the new counts are whole
    or half battles, else (fractional feedback) the store becomes patterns.
    """
    m = store.n_models
    flat = np.asarray(counts, dtype=np.float64).reshape(counts.shape[0], m * m)
    if store.patterns is not None:
        assert store.pattern_index is not None
        patterns, index = append_patterns(store.patterns, store.pattern_index, flat)
        return OutcomeStore(m, patterns=patterns, pattern_index=index)
    assert store.half_counts is not None
    half = 2.0 * flat
    if np.all((half == np.round(half)) & (half >= 0) & (half <= 2)):
        stacked = np.concatenate([store.half_counts, half.astype(np.uint8)])
        return OutcomeStore(m, half_counts=stacked)
    everything = np.concatenate([store.counts(slice(None)).astype(np.float64), flat])
    return OutcomeStore.from_counts(everything.reshape(-1, m, m))


# -- onboarding a new model ------------------------------------------------------------------------
def extend_flat_counts(flat: np.ndarray, proxy: int, n_models: int,
                       shift: float = 0.0) -> np.ndarray:
    """Win counts (n, M*M) with model ``M`` appended as a copy of model ``proxy``, shifted.

    The new model plays every stored battle its proxy played, and meets the proxy wherever the
    proxy was measured. ``shift`` is the new model's mean score minus the proxy's: for scores
    in [0, 1] a battle's expected result is ``(1 + s_a - s_b) / 2``, so a model whose score is
    its proxy's plus ``shift`` wins ``shift / 2`` more of each of the proxy's battles, and
    ``(1 + shift) / 2`` of its battle with the proxy (a tie when ``shift`` is 0). Shares are
    clipped to [0, 1]. With ``shift == 0`` the dtype is kept (uint8 half-counts too).
    """
    m = n_models
    counts = flat.reshape(-1, m, m)
    out = np.zeros((counts.shape[0], m + 1, m + 1), dtype=flat.dtype)
    out[:, :m, :m] = counts
    won, lost = counts[:, proxy, :], counts[:, :, proxy]
    games = won + lost
    played = games.sum(axis=1) > 0
    if shift == 0.0:
        out[:, m, :m], out[:, :m, m] = won, lost
        # A tie is half a win each: 0.5 in counts, 1 in uint8 half-counts.
        tie = 1 if flat.dtype == np.uint8 else 0.5
        out[played, m, proxy] = tie
        out[played, proxy, m] = tie
        return out.reshape(-1, (m + 1) * (m + 1))
    share = np.clip(won + 0.5 * shift * games, 0.0, games)
    out[:, m, :m], out[:, :m, m] = share, games - share
    versus = float(np.clip((1.0 + shift) / 2.0, 0.0, 1.0))
    out[played, m, proxy] = versus
    out[played, proxy, m] = 1.0 - versus
    out[:, m, m] = 0.0
    out[:, proxy, proxy] = 0.0
    return out.reshape(-1, (m + 1) * (m + 1))


def extend_store(store: OutcomeStore, proxy: int, shift: float = 0.0) -> OutcomeStore:
    """``store`` with one more model, a shifted copy of ``proxy`` (``extend_flat_counts``).

    Half-counts cannot hold a shifted (fractional) battle; the store then becomes patterns.
    """
    m = store.n_models
    if store.patterns is not None:
        assert store.pattern_index is not None
        patterns = extend_flat_counts(store.patterns, proxy, m, shift)
        return OutcomeStore(m + 1, patterns=patterns, pattern_index=store.pattern_index)
    assert store.half_counts is not None
    if shift == 0.0:
        return OutcomeStore(m + 1, half_counts=extend_flat_counts(store.half_counts, proxy, m))
    extended = extend_flat_counts(store.counts(slice(None)), proxy, m, shift)
    return OutcomeStore.from_counts(extended.reshape(-1, m + 1, m + 1))


def choose_proxy(router: object, name: str, quiz: Outcomes) -> tuple[int, float]:
    """The existing model that agrees most with ``name`` on the quiz, and the score shift.

    Agreement is the mean of ``1 - |s_new - s_j|`` over quiz prompts scored for both (ties:
    the model whose quiz mean is closest to the new model's). The new model is taken to be its
    proxy shifted by ``quality_new - quality_proxy`` (``extend_flat_counts``).

    ``quality_new`` is *calibrated on the existing models*: quiz prompts are chosen where
    models disagree, so quiz means are far from overall quality; a least-squares line through
    the existing models' (quiz mean, ``quality_``) pairs maps the new model's quiz mean to its
    overall quality. With fewer than three existing models scored on the quiz (or no spread
    in their quiz means) the proxy's quality plus the quiz mean difference is used instead.
    """
    models = list(router.models_)  # type: ignore[attr-defined]
    quality = np.asarray(router.quality_, dtype=np.float64)  # type: ignore[attr-defined]
    new = quiz.scores[:, list(quiz.models).index(name)]
    measured = ~np.isnan(new)
    if not measured.any():
        raise OutcomesError(f"the quiz outcomes hold no score for the new model {name!r}")
    new_mean = float(new[measured].mean())
    best, best_key, best_gap = -1, (-np.inf, -np.inf), 0.0
    reference: list[tuple[float, float]] = []  # (quiz mean, quality_) of existing models
    for j, other in enumerate(models):
        if other not in quiz.models:
            continue
        theirs = quiz.scores[:, list(quiz.models).index(other)]
        both = measured & ~np.isnan(theirs)
        if not both.any() or not np.isfinite(quality[j]):
            continue
        gap = float(np.mean(new[both] - theirs[both]))
        reference.append((float(theirs[both].mean()), float(quality[j])))
        key = (float(np.mean(1.0 - np.abs(new[both] - theirs[both]))), -abs(gap))
        if key > best_key:
            best, best_key, best_gap = j, key, gap
    if best < 0:
        finite = np.where(np.isfinite(quality), quality, np.inf)
        best = int(np.argmin(np.abs(finite - new_mean)))
        return best, new_mean - float(quality[best])
    quiz_means, qualities = np.asarray(reference).T
    if len(reference) >= 3 and np.ptp(quiz_means) > 0:
        slope, intercept = np.polyfit(quiz_means, qualities, 1)
        estimate = float(np.clip(intercept + slope * new_mean, 0.0, 1.0))
        return best, estimate - float(quality[best])
    return best, best_gap


def check_new_model(router: object, name: str, quiz: Outcomes, cost: float | None) -> None:
    """Refuse an ``add_model`` that cannot work, before anything changes."""
    if not isinstance(name, str) or not name:
        raise RouterConfigError(f"the new model's name must be a non-empty str, got {name!r}")
    if name in router.models_:  # type: ignore[attr-defined]
        raise RouterConfigError(f"model {name!r} is already one of the router's models")
    if not isinstance(quiz, Outcomes):
        raise TypeError(f"quiz_outcomes must be Outcomes, got {type(quiz).__name__}")
    if name not in quiz.models:
        raise OutcomesError(f"the quiz outcomes have no column for the new model {name!r}")
    known = [*router.models_, name]  # type: ignore[attr-defined]
    unknown = [model for model in quiz.models if model not in known]
    if unknown:
        raise OutcomesError(
            f"the quiz outcomes score models {unknown} the router does not know (it knows "
            f"{known[:-1]}, and {name!r} is being added); onboard one model at a time"
        )
    if cost is not None and (not is_number(cost)  # numpy's too
                             or not np.isfinite(cost) or cost < 0):
        raise RouterConfigError(
            f"cost must be the new model's USD per call (a finite number >= 0), got {cost!r}"
        )
    if router.costs_ is None:  # type: ignore[attr-defined]
        if cost is not None:
            # Refused, not ignored: the caller would believe the router now knows the price.
            raise RouterConfigError(
                f"this {type(router).__name__} keeps no costs (it was fitted on battles), so "
                f"it cannot store a cost for {name!r}; call add_model without cost="
            )
    elif cost is None:
        column = quiz.models.index(name)
        if quiz.costs is None or np.isnan(quiz.costs[:, column]).all():
            raise RouterConfigError(
                f"the router needs a cost for {name!r}: pass cost= (its USD per call) or "
                "give the quiz outcomes its costs"
            )


def quiz_to_learn(quiz: Outcomes, name: str, cost: float | None) -> Outcomes:
    """The quiz as ``add_model`` learns it: without the new model's costs if ``cost`` was given.

    An explicit ``cost`` is the model's price and is used as is; averaged with the quiz's
    costs it would count as one observation among many and be mostly ignored.
    """
    if cost is None or quiz.costs is None:
        return quiz
    costs = quiz.costs.copy()
    costs[:, quiz.models.index(name)] = np.nan
    return dataclasses.replace(quiz, costs=costs)


def disagreement(flat: np.ndarray, n_models: int) -> np.ndarray:
    """How much the models disagree on each exemplar: decisive share of its measured pairs.

    ``sum_{i<j} |W_ij - W_ji| / #measured pairs`` from win counts (n, M*M): 0 when every
    measured pair tied (all right or all wrong), 1 when every pair was decided. For 0/1
    scores with k of M models right it is k (M - k) / (M (M - 1) / 2), largest at k = M / 2:
    the prompts where a new model's result says most about which models it resembles (the
    item information of a two-parameter IRT item is largest there too).
    """
    counts = flat.reshape(-1, n_models, n_models).astype(np.float64)
    upper = np.triu(np.ones((n_models, n_models), dtype=bool), k=1)
    decided = np.abs(counts - np.swapaxes(counts, 1, 2))[:, upper].sum(axis=1)
    measured = (counts + np.swapaxes(counts, 1, 2))[:, upper]
    pairs = (measured > 0).sum(axis=1)
    total = measured.sum(axis=1)
    return np.divide(decided, total, out=np.zeros(len(counts)), where=pairs > 0)


def pick_quiz(vectors: np.ndarray, informative: np.ndarray, n: int) -> np.ndarray:
    """``n`` exemplar indices: most informative first, each next one far from those chosen.

    Greedy: pick ``argmax informative * (1 - max cosine similarity to the picked)``; one
    matrix-vector product per pick keeps the running maximum similarity. Once no exemplar left
    has a positive gain (every one left is one the models agree on), the one farthest from
    those picked comes next, so the rest of the quiz still covers the prompt space.
    """
    count = vectors.shape[0]
    n = min(n, count)
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    closest = np.zeros(count)
    chosen = np.zeros(count, dtype=bool)
    picks = []
    for _ in range(n):
        spread = 1.0 - np.clip(closest, 0.0, 1.0)
        gain = np.where(chosen, -np.inf, informative * spread)
        k = int(np.argmax(gain))
        if not gain[k] > 0.0:
            k = int(np.argmax(np.where(chosen, -np.inf, spread)))
        picks.append(k)
        chosen[k] = True
        closest = np.maximum(closest, unit @ unit[k])
    return np.asarray(picks, dtype=np.int64)


def quiz_selection(router: object, vectors: np.ndarray, flat: np.ndarray, n: int,
                   prompts: Sequence[str] | None) -> np.ndarray | list[str]:
    """Shared body of ``quiz_prompts``: check ``n`` and ``prompts``, pick, map to texts."""
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, numbers.Integral) or n < 1:
        raise RouterConfigError(f"n must be an int >= 1, got {n!r}")
    n = int(n)  # numpy's ints too (a share of a router's exemplars)
    count = vectors.shape[0]
    if prompts is not None and (isinstance(prompts, str) or len(prompts) != count):
        raise RouterConfigError(
            f"prompts must list the router's {count} exemplar prompts in training order "
            "(fit's prompts, then each partial_fit's)"
        )
    m = len(router.models_)  # type: ignore[attr-defined]
    picks = pick_quiz(vectors, disagreement(flat, m), n)
    return picks if prompts is None else [prompts[int(i)] for i in picks]


def onboarding_copy(router: Any) -> Any:
    """A shallow copy of ``router`` for ``add_model`` to change in steps, or for feedback
    learning to ``partial_fit`` outside the routing lock; ``swap_in`` makes it the router only
    once every step succeeded, so an error leaves the router as it was (its attributes are
    replaced, never changed in place, so sharing them is safe)."""
    return copy.copy(router)


def swap_in(router: Any, staged: Any) -> None:
    """Make ``router`` hold ``staged``'s state (``onboarding_copy``), attribute by attribute.

    The router is never empty (no reader finds an attribute missing), but its attributes
    change one at a time, so a reader without the routing lock may see new ``models_`` with
    the old index: whoever swaps holds the lock routing takes (the ``RoutingPolicy``'s).
    """
    state, new = vars(router), vars(staged)
    state.update(new)
    for name in [name for name in state if name not in new]:
        del state[name]


def finish_onboarding(router: object, name: str, proxy: int, quality: float,
                      cost: float | None, imputed: int) -> None:
    """Append the new model's name, quality, cost and observation counts to the router.

    Without ``cost`` the new model's cost is unknown (NaN, no observation) until the quiz's
    costs are learned (``partial_fit``), which then set it to their mean. A router without
    ``costs_`` (fitted on battles) records no cost observation (``check_new_model`` refused
    a ``cost`` for it).
    """
    r: Any = router
    r.models_ = [*r.models_, name]
    r.quality_ = np.append(np.asarray(r.quality_, dtype=np.float64), quality)
    if r.costs_ is not None:
        given = np.nan if cost is None else float(cost)
        r.costs_ = np.append(np.asarray(r.costs_, dtype=np.float64), given)
    counts = np.asarray(r.n_observations_, dtype=np.float64)
    costed = 0.0 if cost is None or r.costs_ is None else 1.0
    r.n_observations_ = np.concatenate([counts, [[float(imputed)], [costed]]], axis=1)
    if getattr(r, "score_moments_", None) is not None:
        # Nothing yet scores the new model beside the others; the quiz (partial_fit) adds it.
        r.score_moments_ = np.pad(r.score_moments_, ((0, 0), (0, 1), (0, 1)))
    # Out-of-fold win matrices of the old model list no longer fit the router.
    r.calibration_win_matrices_ = None
    r._calibration_note = (f"add_model({name!r}) changed the model list since fit; pass "
                           "prompts to calibrate_threshold")


def onboard(router: Any, name: str, quiz: Outcomes, cost: float | None,
            embeddings: np.ndarray | None, *,
            extend: Callable[[Any, int, float], int]) -> None:
    """``add_model`` of the exemplar routers (``SWRouter``, ``KNNRouter``), which differ only
    in how their stored exemplars get the new model's battles.

    ``extend(staged, proxy, shift)`` appends the new model to the exemplars of ``staged`` as
    a copy of ``proxy`` shifted by ``shift`` (``extend_flat_counts``) and returns how many
    exemplars it imputed. Everything is checked and embedded before anything changes, and
    every step changes a copy (``onboarding_copy``), swapped in at the end: an error leaves
    the router as it was.
    """
    router._check_is_fitted()
    check_new_model(router, name, quiz, cost)
    if getattr(router, "n_observations_", None) is None:
        update_means(router, quiz)  # raises: the file predates partial_fit
    vectors = router._embed_new(list(quiz.prompts), embeddings)
    proxy, shift = choose_proxy(router, name, quiz)
    quality = float(np.clip(router.quality_[proxy] + shift, 0.0, 1.0))
    staged = onboarding_copy(router)
    imputed = extend(staged, proxy, shift)
    finish_onboarding(staged, name, proxy, quality, cost, imputed)
    staged.partial_fit(quiz_to_learn(quiz, name, cost), embeddings=vectors)
    swap_in(router, staged)
