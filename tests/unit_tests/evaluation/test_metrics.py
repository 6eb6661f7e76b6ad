"""Metric functions on small arrays whose answers can be checked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from langroute import EscalationLadder
from langroute.evaluation import (
    aiq,
    apgr,
    convex_hull_nondecreasing,
    cost_to_reach,
    cpt,
    oracle_choices,
    pgr_curve,
    routed_cost_quality,
    strong_share_curve,
    threshold_sweep,
)


def test_oracle_picks_cheapest_among_best():
    scores = np.array([[1.0, 1.0, 0.0], [0.0, 0.5, 0.5], [0.2, 0.1, 0.0]])
    costs = np.array([[3.0, 1.0, 0.5], [1.0, 2.0, 1.0], [9.0, 1.0, 1.0]])
    assert oracle_choices(scores, costs).tolist() == [1, 2, 0]
    cost, quality = routed_cost_quality(oracle_choices(scores, costs), scores, costs)
    assert cost == pytest.approx((1 + 1 + 9) / 3)
    assert quality == pytest.approx((1 + 0.5 + 0.2) / 3)


def test_routed_cost_quality_rejects_nan_and_bad_choices():
    scores = np.array([[np.nan, 1.0]])
    with pytest.raises(ValueError, match="NaN"):
        routed_cost_quality(np.array([0]), scores, np.ones((1, 2)))
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        routed_cost_quality(np.array([2]), np.ones((1, 2)), np.ones((1, 2)))


def test_hull_drops_dominated_and_concave_points():
    costs = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 1.0])
    quals = np.array([0.2, 0.3, 0.8, 0.9, 0.5, 0.1])
    hx, hy = convex_hull_nondecreasing(costs, quals)
    # (2, .3) lies below the chord (1, .2)-(3, .8); (5, .5) is worse than (4, .9); the
    # second point at cost 1 is worse than the first.
    assert hx.tolist() == [1.0, 3.0, 4.0]
    assert hy.tolist() == [0.2, 0.8, 0.9]
    assert np.all(np.diff(hy) >= 0)


def test_aiq_of_known_shapes():
    assert aiq([0.0, 1.0], [0.0, 1.0]) == pytest.approx(0.5)  # a diagonal line
    # rise from (0, .5) to (.5, 1), then flat to cost 1: 0.375 + 0.5
    assert aiq([0.0, 0.5, 1.0], [0.5, 1.0, 0.2]) == pytest.approx(0.875)
    # a curve starting at cost .5 counts zero quality left of it
    assert aiq([0.5], [1.0], cost_range=(0.0, 1.0)) == pytest.approx(0.5)
    # a point below the hull does not change it
    assert aiq([0.0, 0.5, 1.0], [0.0, 0.1, 1.0]) == pytest.approx(0.5)


def test_aiq_validates_range():
    with pytest.raises(ValueError, match="c_min <= c_max"):
        aiq([0.0, 1.0], [0.0, 1.0], cost_range=(1.0, 0.0))


def test_perfect_and_random_ranking_apgr_and_cpt():
    weak = np.zeros(4)
    strong = np.array([1.0, 1.0, 0.0, 0.0])
    shares, pgr = pgr_curve(np.array([0.9, 0.8, 0.1, 0.2]), weak, strong)
    assert shares.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert pgr.tolist() == [0.0, 0.5, 1.0, 1.0, 1.0]
    assert apgr(shares, pgr) == pytest.approx(0.75)
    assert cpt(shares, pgr, 0.5) == pytest.approx(0.25)
    assert cpt(shares, pgr, 0.8) == pytest.approx(0.4)
    # all tied = random routing: the straight line, APGR 1/2, CPT(p) = p
    shares, pgr = pgr_curve(np.zeros(4), weak, strong)
    assert shares.tolist() == [0.0, 1.0]
    assert apgr(shares, pgr) == pytest.approx(0.5)
    assert cpt(shares, pgr, 0.8) == pytest.approx(0.8)
    # the worst ranking recovers the gap last
    shares, pgr = pgr_curve(np.array([0.1, 0.2, 0.9, 0.8]), weak, strong)
    assert apgr(shares, pgr) == pytest.approx(0.25)


def test_pgr_is_undefined_without_a_gap():
    shares, pgr = pgr_curve(np.arange(3.0), np.ones(3), np.ones(3))
    assert np.all(np.isnan(pgr))
    assert np.isnan(cpt(shares, pgr, 0.5))


def test_strong_share_curve_ends_at_single_models():
    rng = np.random.default_rng(0)
    weak, strong = rng.random(50), rng.random(50)
    shares, quality = strong_share_curve(rng.random(50), weak, strong)
    assert quality[0] == pytest.approx(weak.mean())
    assert quality[-1] == pytest.approx(strong.mean())
    assert shares[-1] == 1.0


def test_cost_to_reach():
    assert cost_to_reach([3.0, 1.0, 2.0], [0.9, 0.5, 0.9], 0.9) == 2.0
    assert np.isnan(cost_to_reach([1.0], [0.5], 0.6))


def test_threshold_sweep_matches_choose_at_every_point():
    rng = np.random.default_rng(1)
    n, m = 40, 4
    scores = rng.integers(0, 2, size=(n, m)).astype(float)
    costs = rng.random((n, m)) * np.array([1.0, 2.0, 4.0, 8.0])
    wins = rng.random((n, m, m))
    wins = wins / (wins + np.swapaxes(wins, 1, 2))
    ladder = EscalationLadder.build([f"m{j}" for j in range(m)], [1.0, 2.0, 4.0, 8.0])
    levels = ladder.levels(wins)
    curve = threshold_sweep(levels, ladder.columns[ladder.rungs], scores, costs)
    assert len(curve) > 10
    assert np.all(np.diff(curve.thresholds) > 0)
    for t, c, q, s in zip(curve.thresholds, curve.costs, curve.qualities, curve.strong_shares,
                          strict=True):
        chosen = ladder.columns[ladder.choose(levels, t)]
        cost, quality = routed_cost_quality(chosen, scores, costs)
        assert cost == pytest.approx(c) and quality == pytest.approx(q)
        assert np.mean(chosen == ladder.columns[ladder.rungs[-1]]) == pytest.approx(s)
    # the ends are "always the top rung" and "always the cheapest rung"
    assert curve.strong_shares[0] == 1.0 and curve.strong_shares[-1] == 0.0
    assert curve.qualities[-1] == pytest.approx(scores[:, 0].mean())


def test_threshold_sweep_single_rung_is_one_point():
    curve = threshold_sweep(np.full((3, 1), -np.inf), np.array([1]), np.eye(3)[:, :2],
                            np.ones((3, 2)))
    assert len(curve) == 1
    assert curve.qualities[0] == pytest.approx(1 / 3)
