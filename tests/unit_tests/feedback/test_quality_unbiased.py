"""Feedback is selection-biased: it teaches where a model wins, never its overall quality_.

The router sends the cheap model the prompts it expects the cheap model to handle, so the
scores the cheap model collects are mostly successes. A naive running mean of them would
push ``quality_`` (the ladder's frontier, the imputation of later feedback) far above the
cheap model's real success rate; ``quality_`` must stay the mean of the fully observed
training outcomes.
"""

from __future__ import annotations

import numpy as np
import pytest

from langroute import Battles, SWRouter
from langroute.feedback import DecisionRecord, open_feedback_store, record_feedback
from langroute.routers import KNNRouter
from langroute.routers._calibration_scores import calibration_scores_disabled

from ..routers.synthetic import MODELS, math_prompt, split_battles, split_outcomes


@pytest.fixture(autouse=True)
def _no_calibration_refits():
    with calibration_scores_disabled():
        yield


def _routed_easy_prompts(store, router, n: int) -> list[str]:
    """Record ``n`` decisions the router sent to "cheap", on prompts cheap got right."""
    ids = []
    for i in range(n):
        prompt = math_prompt(500 + i)
        ids.append(f"easy{i}")
        store.record_decision(DecisionRecord(ids[-1], prompt, "cheap", MODELS))
    return ids


@pytest.mark.parametrize("make", [SWRouter, lambda e: KNNRouter(e, k=10)], ids=["sw", "knn"])
def test_bandit_feedback_leaves_quality_at_the_training_mean(make, hashing_embedder):
    train = split_outcomes(20, seed=4)
    router = make(hashing_embedder).fit(train)
    truth = np.nanmean(train.scores, axis=0)  # every model scored on every training prompt
    np.testing.assert_allclose(router.quality_, truth)
    before_win = router.win_matrices([math_prompt(503)])[0]
    store = open_feedback_store("memory://")
    n = 40
    for decision_id in _routed_easy_prompts(store, router, n):
        record_feedback(store, decision_id, score=1.0, router=router)
    # The feedback is a biased sample: a running mean over it would be far off the truth.
    naive = (truth[0] * len(train) + 1.0 * n) / (len(train) + n)
    assert naive - truth[0] > 0.1
    # quality_ (and costs_) did not move; the router still learned where cheap wins.
    np.testing.assert_array_equal(router.quality_, truth)
    np.testing.assert_allclose(router.costs_, np.nanmean(train.costs, axis=0))
    after_win = router.win_matrices([math_prompt(503)])[0]
    assert after_win[0, 1] > before_win[0, 1] + 0.05  # cheap vs calc, on a fed-back prompt


def test_feedback_does_not_move_a_battle_fitted_routers_win_rates(hashing_embedder):
    router = SWRouter(hashing_embedder).fit(split_battles(20))
    win_rates = router.quality_.copy()
    games = router.n_observations_.copy()
    store = open_feedback_store("memory://")
    for decision_id in _routed_easy_prompts(store, router, 30):
        record_feedback(store, decision_id, score=1.0, router=router)
    np.testing.assert_array_equal(router.quality_, win_rates)
    np.testing.assert_array_equal(router.n_observations_, games)
    # Ordinary battles (not feedback) still update the win rates, as fit on the union would.
    calc_wins = Battles(prompts=[math_prompt(700)], models=MODELS, prompt_index=np.zeros(4, int),
                        model_a=np.ones(4, int), model_b=np.zeros(4, int), result=np.ones(4))
    router.partial_fit(calc_wins)
    assert router.quality_[1] > win_rates[1] and router.quality_[0] < win_rates[0]
