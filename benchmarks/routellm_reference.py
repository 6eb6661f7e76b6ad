"""A faithful per-battle re-implementation of RouteLLM's similarity-weighted (SW) ranking fit.

RouteLLM (lm-sys/RouteLLM, ``routellm/routers/routers.py`` ``SWRankingRouter`` and
``routellm/routers/similarity_weighted/utils.py`` ``compute_elo_mle_with_tie``) does, per
request:

1. cosine similarity of the prompt to every stored battle's embedding (float64, norms computed
   per request), weights ``10 * 10 ** (s / max s)``;
2. duplicate the battle table; design matrix ``X`` with ``+log(10)`` for model a and
   ``-log(10)`` for model b; ``Y = 1`` for both copies of an "a wins", ``0`` for both copies of a
   "b wins", and ``1`` then ``0`` for the two copies of a tie;
3. an unpenalised scikit-learn ``LogisticRegression(fit_intercept=False)`` with the weights
   (duplicated) as sample weights; Elo = 400 * coefficient + 1000.

Here the pandas bookkeeping is replaced by the equivalent numpy (pandas is not installed and it
is not where the time goes), ``gamma`` generalises the base 10, and two options exist only for
the equivalence test: ``virtual_tie_weight`` adds virtual ties per model pair as extra weighted
battles (the objective langroute solves), and ``tol`` / ``max_iter`` let the solver run to
convergence (RouteLLM keeps scikit-learn's defaults, 1e-4 and 100 iterations). Used by
``benchmarks/bench_latency.py`` (timing) and ``tests/unit_tests/routers/test_sw.py`` (exactness).
Ratings are returned on the natural-log scale, centred, so ``sigmoid(r_i - r_j)`` is
P(i beats j).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression

__all__ = ["BattleTable", "battles_from_scores", "routellm_sw_ratings", "routellm_weights"]

_A_WINS, _B_WINS, _TIE = 0, 1, 2


@dataclass(frozen=True)
class BattleTable:
    """One row per battle: which exemplar (prompt) it came from, the two models, the winner."""

    exemplar: np.ndarray
    model_a: np.ndarray
    model_b: np.ndarray
    winner: np.ndarray  # 0: model_a, 1: model_b, 2: tie
    n_models: int

    def __len__(self) -> int:
        return int(self.exemplar.shape[0])


def battles_from_scores(scores: np.ndarray) -> BattleTable:
    """Every measured model pair of every prompt as a battle (higher score wins, equal ties)."""
    s = np.asarray(scores, dtype=np.float64)
    n, m = s.shape
    ia, ib = np.triu_indices(m, k=1)
    a = s[:, ia]
    b = s[:, ib]
    measured = ~(np.isnan(a) | np.isnan(b))
    rows, pairs = np.nonzero(measured)
    winner = np.where(a[rows, pairs] > b[rows, pairs], _A_WINS,
                      np.where(a[rows, pairs] < b[rows, pairs], _B_WINS, _TIE))
    return BattleTable(rows, ia[pairs], ib[pairs], winner.astype(np.int8), m)


def routellm_weights(
    battle_embeddings: np.ndarray, prompt_embedding: np.ndarray, *, gamma: float = 10.0
) -> np.ndarray:
    """RouteLLM's ``get_weightings``: ``gamma * gamma ** (s / max s)`` of cosine similarities."""
    similarities = np.dot(battle_embeddings, prompt_embedding) / (
        np.linalg.norm(battle_embeddings, axis=1) * np.linalg.norm(prompt_embedding)
    )
    max_sim = np.max(similarities)
    return gamma * gamma ** (similarities / max_sim)


def routellm_sw_ratings(
    battles: BattleTable,
    sample_weight: np.ndarray,
    *,
    virtual_tie_weight: float = 0.0,
    tol: float = 1e-4,
    max_iter: int = 100,
) -> np.ndarray:
    """RouteLLM's ``compute_elo_mle_with_tie`` with per-battle weights; natural-log ratings (M,).

    ``virtual_tie_weight`` > 0 adds, for every model pair, one tie battle of that weight.
    langroute's ``prior`` is stated on the scale where the exemplars' weights average 1, so it
    corresponds to ``virtual_tie_weight = prior * mean(exemplar weights)``.
    """
    m = battles.n_models
    a, b, winner, w = battles.model_a, battles.model_b, battles.winner, sample_weight
    if virtual_tie_weight > 0:
        ia, ib = np.triu_indices(m, k=1)
        a = np.concatenate([a, ia])
        b = np.concatenate([b, ib])
        winner = np.concatenate([winner, np.full(ia.shape, _TIE, dtype=np.int8)])
        w = np.concatenate([w, np.full(ia.shape, float(virtual_tie_weight))])
    # duplicate battles
    a2 = np.concatenate([a, a])
    b2 = np.concatenate([b, b])
    n = a2.shape[0]
    x = np.zeros([n, m])
    x[np.arange(n), a2] = +math.log(10)
    x[np.arange(n), b2] = -math.log(10)
    # one A win => two A win; one tie => one A win + one B win
    y = np.zeros(n)
    y[np.concatenate([winner, winner]) == _A_WINS] = 1.0
    tie_first = np.concatenate([winner == _TIE, np.zeros(winner.shape, dtype=bool)])
    y[tie_first] = 1.0
    lr = LogisticRegression(fit_intercept=False, C=np.inf, tol=tol, max_iter=max_iter)
    lr.fit(x, y, sample_weight=np.concatenate([w, w]))
    ratings = math.log(10) * lr.coef_[0]
    return ratings - ratings.mean()
