"""The escalation ladder: RouteLLM's two-model rule, and a monotone knob for N models."""

from __future__ import annotations

import numpy as np
import pytest

from langroute import EscalationLadder, RouterConfigError
from langroute.routers import win_probabilities


def _random_wins(rng: np.random.Generator, batch: int, m: int) -> np.ndarray:
    return win_probabilities(rng.normal(size=(batch, m)))


def test_two_models_strong_iff_p_strong_at_least_threshold():
    ladder = EscalationLadder.build(["strong", "weak"], [10.0, 0.1])
    assert ladder.rung_names == ["weak", "strong"]
    rng = np.random.default_rng(0)
    wins = _random_wins(rng, 500, 2)
    p_strong = wins[:, 0, 1]
    for threshold in (0.0, 0.2, 0.5, 0.77, 1.0):
        chosen = ladder.choose(ladder.levels(wins), threshold)
        expected = np.where(p_strong >= threshold, 0, 1)
        np.testing.assert_array_equal(chosen, expected)
    np.testing.assert_allclose(EscalationLadder.strong_scores(ladder.levels(wins)), p_strong)


def test_threshold_zero_is_top_rung_and_raising_it_never_costs_more():
    costs = np.array([5.0, 0.2, 1.0, 0.05, 2.0])
    ladder = EscalationLadder.build(list("abcde"), costs)
    wins = _random_wins(np.random.default_rng(1), 300, 5)
    levels = ladder.levels(wins)
    assert np.all(ladder.choose(levels, 0.0) == 0)  # "a" is the priciest rung
    previous = np.full(300, np.inf)
    for threshold in np.linspace(0, 1, 41):
        spent = costs[ladder.choose(levels, threshold)]
        assert np.all(spent <= previous + 1e-12)
        previous = spent


def test_chosen_rung_is_not_beaten_by_any_pricier_rung_at_threshold():
    costs = [3.0, 1.0, 2.0, 0.5]
    ladder = EscalationLadder.build(list("wxyz"), costs)
    wins = _random_wins(np.random.default_rng(2), 200, 4)
    chosen = ladder.choose(ladder.levels(wins), 0.6)
    order = list(ladder.rungs)
    for row, pick in enumerate(chosen):
        above = order[order.index(pick) + 1 :]
        assert all(wins[row, e, pick] < 0.6 for e in above)
        below = order[: order.index(pick)]
        # every cheaper rung was rejected: some pricier rung beats it with P >= threshold
        for cheap in below:
            pricier = order[order.index(cheap) + 1 :]
            assert max(wins[row, e, cheap] for e in pricier) >= 0.6


def test_dominated_models_are_left_off_the_ladder():
    ladder = EscalationLadder.build(
        ["cheap", "mid", "pricey-but-worse", "best"],
        [0.1, 1.0, 3.0, 5.0],
        quality=[0.5, 0.7, 0.6, 0.9],
    )
    assert ladder.rung_names == ["cheap", "mid", "best"]


def test_candidates_restrict_the_ladder_and_unknown_names_are_rejected():
    ladder = EscalationLadder.build(["a", "b", "c"], [1.0, 2.0, 3.0], candidates=["c", "a"])
    assert ladder.rung_names == ["a", "c"]
    wins = _random_wins(np.random.default_rng(3), 10, 3)
    assert ladder.levels(wins).shape == (10, 2)
    with pytest.raises(RouterConfigError, match="unknown to the router"):
        EscalationLadder.build(["a", "b"], [1.0, 2.0], candidates=["a", "zeta"])
    with pytest.raises(RouterConfigError, match="one finite cost per router model"):
        EscalationLadder.build(["a", "b"], [1.0, float("nan")])


def test_equal_cost_candidates_keep_only_the_best():
    # Regression: ties in cost were ordered by router order, so the worse "a" (listed first)
    # became a rung and the equally priced, better "b" was kept above it.
    ladder = EscalationLadder.build(["a", "b", "c"], [1.0, 1.0, 2.0], quality=[0.5, 0.7, 0.9])
    assert ladder.rung_names == ["b", "c"]
    ladder = EscalationLadder.build(["b", "a", "c"], [1.0, 1.0, 2.0], quality=[0.7, 0.5, 0.9])
    assert ladder.rung_names == ["b", "c"]
    # Equal cost and equal quality: one of them (the first in router order) is enough.
    ladder = EscalationLadder.build(["x", "y", "z"], [1.0, 1.0, 2.0], quality=[0.6, 0.6, 0.9])
    assert ladder.rung_names == ["x", "z"]


def test_quality_must_align_with_the_router_models():
    with pytest.raises(RouterConfigError, match="one quality per router model"):
        EscalationLadder.build(["a", "b"], [1.0, 2.0], quality=[0.5, 0.6, 0.7])
