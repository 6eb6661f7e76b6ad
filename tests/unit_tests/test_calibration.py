"""Threshold calibration: the realised share or cost on the calibration prompts meets the target."""

from __future__ import annotations

import numpy as np
import pytest

from langroute import (
    EscalationLadder,
    KNNRouter,
    NotFittedError,
    Outcomes,
    RouterConfigError,
    SWRouter,
    load_outcomes,
    load_router,
)
from langroute._calibration import (
    calibrate_threshold,
    routing_ladder,
    threshold_for_win_matrices,
)
from langroute.embeddings import HashingEmbedder
from langroute.routers._calibration_scores import calibration_scores_disabled
from tests.conftest import shared_dataset


def split(outcomes, n_train, seed=0):
    order = np.random.default_rng(seed).permutation(len(outcomes))
    return outcomes.subset(order[:n_train]), outcomes.subset(order[n_train:])


@pytest.fixture(scope="module")
def pair():
    train, test = split(load_outcomes(shared_dataset("routellm-gsm8k")), 800)
    router = SWRouter(HashingEmbedder(128)).fit(train)
    ladder = routing_ladder(router)
    levels = ladder.levels(router.win_matrices(test.prompts))
    return router, test.prompts, ladder, levels


@pytest.fixture(scope="module")
def many():
    train, test = split(load_outcomes(shared_dataset("zeroeval-gsm8k")), 800)
    router = SWRouter(HashingEmbedder(128)).fit(train)
    ladder = routing_ladder(router)
    levels = ladder.levels(router.win_matrices(test.prompts))
    return router, test.prompts, ladder, levels


@pytest.mark.data
@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.25, 0.5, 0.8, 1.0])
def test_strong_fraction_is_realised_within_one_prompt(pair, fraction):
    router, prompts, ladder, levels = pair
    threshold = calibrate_threshold(router, prompts, strong_fraction=fraction)
    chosen = ladder.choose(levels, threshold)
    share = np.mean(chosen == ladder.rungs[-1])
    assert abs(share - fraction) <= 1.0 / len(prompts)
    # RouteLLM's rule: strong iff P(strong wins) >= threshold, i.e. the (1 - f) score quantile
    scores = ladder.strong_scores(levels)
    assert np.mean(scores >= threshold) == share
    if 0 < fraction < 1:
        assert abs(threshold - np.quantile(scores, 1 - fraction)) <= np.ptp(scores) / 20


@pytest.mark.data
def test_threshold_and_realised_share_are_monotone(pair):
    router, prompts, ladder, levels = pair
    fractions = np.linspace(0, 1, 11)
    thresholds = [calibrate_threshold(router, prompts, strong_fraction=f) for f in fractions]
    assert np.all(np.diff(thresholds) <= 0)
    shares = [np.mean(ladder.choose(levels, t) == ladder.rungs[-1]) for t in thresholds]
    assert np.all(np.diff(shares) >= 0)


@pytest.mark.data
def test_two_model_cost_target(pair):
    router, prompts, ladder, levels = pair
    costs = ladder.costs  # mean USD per call of each model on the training prompts
    step = costs.max() / len(prompts)
    for fraction in (0.2, 0.6):
        target = costs.min() + fraction * (costs.max() - costs.min())
        threshold = calibrate_threshold(router, prompts, target_cost=target)
        realised = costs[ladder.choose(levels, threshold)].mean()
        assert abs(realised - target) <= step


@pytest.mark.data
def test_a_cost_target_above_every_setting_gives_the_dearest_one(pair):
    """The tie tolerance once grew with the target: at $1e9 a step within $0.001 of the
    dearest tied with it, and the cheaper one was taken."""
    router, prompts, ladder, levels = pair
    dearest = ladder.costs[ladder.choose(levels, 0.0)].mean()  # every prompt to the top rung
    for target in (10 * ladder.costs.max(), 1e9):
        threshold = calibrate_threshold(router, prompts, target_cost=target)
        assert ladder.costs[ladder.choose(levels, threshold)].mean() == dearest


@pytest.mark.data
@pytest.mark.parametrize("fraction", [0.05, 0.3, 0.7])
def test_n_model_cost_target_is_realised_within_one_prompt(many, fraction):
    router, prompts, ladder, levels = many
    rung_costs = ladder.costs[ladder.rungs]
    target = rung_costs[0] + fraction * (rung_costs[-1] - rung_costs[0])
    threshold = calibrate_threshold(router, prompts, target_cost=target)
    chosen = ladder.choose(levels, threshold)
    realised = ladder.costs[chosen].mean()
    # one prompt moving between two rungs changes the mean by at most this much
    assert abs(realised - target) <= (rung_costs[-1] - rung_costs[0]) / len(prompts)
    assert len(set(chosen.tolist())) >= 2


@pytest.mark.data
def test_n_model_cost_is_monotone_and_brute_force_optimal(many):
    router, prompts, ladder, levels = many
    rung_costs = ladder.costs[ladder.rungs]
    targets = np.linspace(rung_costs[0], rung_costs[-1], 7)
    thresholds = [calibrate_threshold(router, prompts, target_cost=t) for t in targets]
    realised = [ladder.costs[ladder.choose(levels, t)].mean() for t in thresholds]
    assert np.all(np.diff(thresholds) <= 0) and np.all(np.diff(realised) >= -1e-15)
    # no threshold at any level value does better than the calibrated one
    candidates = np.unique(levels[np.isfinite(levels)])
    probe = np.concatenate([candidates, np.nextafter(candidates, np.inf)])
    all_costs = ladder.costs[ladder.choose(levels[None], probe[:, None])].mean(axis=1)
    for target, got in zip(targets, realised, strict=True):
        assert abs(got - target) <= np.abs(all_costs - target).min() + 1e-15


@pytest.mark.data
def test_n_model_strong_fraction(many):
    router, prompts, ladder, levels = many
    threshold = calibrate_threshold(router, prompts, strong_fraction=0.3)
    share = np.mean(ladder.choose(levels, threshold) == ladder.rungs[-1])
    assert abs(share - 0.3) <= 1.0 / len(prompts)


@pytest.mark.data
def test_models_and_costs_restrict_and_price_the_ladder(many):
    router, prompts, _, _ = many
    names = ["gpt-4o-mini-2024-07-18", "gpt-4o-2024-08-06"]
    costs = {"gpt-4o-mini-2024-07-18": 0.0002, "gpt-4o-2024-08-06": 0.003}
    ladder = routing_ladder(router, models=names, costs=costs)
    assert ladder.rung_names == names
    threshold = calibrate_threshold(router, prompts, target_cost=0.001, models=names, costs=costs)
    chosen = ladder.choose(ladder.levels(router.win_matrices(prompts)), threshold)
    realised = np.array([0.0002, 0.003])[chosen].mean()
    assert abs(realised - 0.001) <= 0.003 / len(prompts)
    same = calibrate_threshold(router, prompts, target_cost=0.001, models=names,
                               costs=[0.0002, 0.003])
    assert same == threshold


# -- validation (synthetic, no data needed) ------------------------------------------------------
@pytest.fixture(scope="module")
def small_router():
    prompts = [f"question {i} about {topic}" for i, topic in
               enumerate(["maths", "poems", "code", "history"] * 5)]
    scores = np.random.default_rng(0).integers(0, 2, size=(20, 2)).astype(float)
    scores[:, 0] = np.maximum(scores[:, 0], scores[:, 1])  # the pricier model is better
    outcomes = Outcomes(ids=[str(i) for i in range(20)], prompts=prompts, models=("big", "small"),
                        scores=scores, costs=np.tile([0.01, 0.001], (20, 1)))
    return SWRouter(HashingEmbedder(32)).fit(outcomes)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one"),
        ({"strong_fraction": 0.5, "target_cost": 0.01}, "exactly one"),
        ({"strong_fraction": 1.5}, r"in \[0, 1\]"),
        ({"strong_fraction": -0.1}, r"in \[0, 1\]"),
        ({"strong_fraction": True}, r"in \[0, 1\]"),
        ({"target_cost": 0.0}, "positive"),
        ({"target_cost": float("nan")}, "positive"),
        ({"target_cost": 0.0001}, "below the cheapest"),
        ({"strong_fraction": 0.5, "models": ["big", "huge"]}, "unknown"),
        ({"strong_fraction": 0.5, "models": ["big", "big"]}, "twice"),
        ({"strong_fraction": 0.5, "models": ["big"]}, "one rung"),
        ({"strong_fraction": 0.5, "costs": [0.1]}, "1 values for 2 models"),
        ({"strong_fraction": 0.5, "costs": {"big": 0.1}}, "no entry for"),
        ({"strong_fraction": 0.5, "costs": [0.1, -1.0]}, ">= 0"),
    ],
)
def test_invalid_arguments(small_router, kwargs, message):
    with pytest.raises(RouterConfigError, match=message):
        calibrate_threshold(small_router, ["a prompt"], **kwargs)


def test_a_cost_target_at_the_cheapest_models_price_is_reachable():
    # 0.001 averaged over 40 calls rounds to 3 ulps above 0.001: that target was refused as
    # "below the cheapest model's cost 0.001".
    data = synthetic_outcomes(40)
    router = SWRouter(HashingEmbedder(64)).fit(data)
    assert router.costs_[1] > 0.001
    threshold = calibrate_threshold(router, data.prompts, target_cost=0.001)
    ladder = routing_ladder(router)
    chosen = ladder.choose(ladder.levels(router.win_matrices(data.prompts)), threshold)
    assert np.all(chosen == ladder.models.index("small"))
    with pytest.raises(RouterConfigError, match="below the cheapest"):
        calibrate_threshold(router, data.prompts, target_cost=0.000999)


def test_prompts_must_be_a_non_empty_sequence(small_router):
    with pytest.raises(RouterConfigError, match="at least one prompt"):
        calibrate_threshold(small_router, [], strong_fraction=0.5)
    with pytest.raises(TypeError, match="not a single str"):
        calibrate_threshold(small_router, "a prompt", strong_fraction=0.5)


def test_unfitted_router_and_missing_costs():
    with pytest.raises(NotFittedError):
        calibrate_threshold(SWRouter(HashingEmbedder()), ["x"], strong_fraction=0.5)
    router = SWRouter(HashingEmbedder(16)).fit(
        Outcomes(ids=["a", "b"], prompts=["x y", "z w"], models=("m", "n"),
                 scores=np.array([[1.0, 0.0], [1.0, 1.0]])))
    with pytest.raises(RouterConfigError, match="pass costs="):
        calibrate_threshold(router, ["x"], strong_fraction=0.5)
    threshold = calibrate_threshold(router, ["x", "z", "y"], strong_fraction=1 / 3,
                                    costs={"m": 1.0, "n": 0.5})
    assert isinstance(threshold, float)


# -- kept calibration scores (prompts=None) ------------------------------------------------------
class CountingEmbedder(HashingEmbedder):
    """Hashing vectors, no cache, counting every text it embeds."""

    def __init__(self) -> None:
        super().__init__(64, cache_size=0)
        self.embedded = 0

    def _embed_batch(self, texts):
        self.embedded += len(texts)
        return super()._embed_batch(texts)


def synthetic_outcomes(n: int, seed: int = 0) -> Outcomes:
    rng = np.random.default_rng(seed)
    topics = ["maths", "poems", "code", "history", "law", "cooking"]
    prompts = [f"question {i} on {topics[i % 6]} {rng.integers(1000)}" for i in range(n)]
    strong = (np.arange(n) % 6 < 3) | (rng.random(n) < 0.3)
    scores = np.stack([strong.astype(float), (rng.random(n) < 0.5).astype(float)], axis=1)
    return Outcomes(ids=[str(i) for i in range(n)], prompts=prompts, models=("big", "small"),
                    scores=scores, costs=np.tile([0.01, 0.001], (n, 1)))


def test_without_prompts_the_kept_scores_are_used_and_nothing_is_embedded():
    embedder = CountingEmbedder()
    router = SWRouter(embedder).fit(synthetic_outcomes(200))
    assert embedder.embedded == 200  # fit embeds once; the out-of-fold refits reuse the vectors
    kept = router.calibration_win_matrices_
    threshold = calibrate_threshold(router, strong_fraction=0.3)
    assert embedder.embedded == 200
    ladder = routing_ladder(router)
    assert threshold == threshold_for_win_matrices(ladder, kept, strong_fraction=0.3)
    share = np.mean(ladder.choose(ladder.levels(kept), threshold) == ladder.rungs[-1])
    assert abs(share - 0.3) <= 1 / len(kept)
    cost = calibrate_threshold(router, target_cost=0.005, costs={"big": 0.01, "small": 0.001})
    realised = np.array([0.01, 0.001])[ladder.choose(ladder.levels(kept), cost)].mean()
    assert abs(realised - 0.005) <= 0.01 / len(kept)
    # The same router and the same numbers after a save/load round trip.
    assert embedder.embedded == 200


def test_kept_scores_survive_save_and_load(tmp_path):
    router = SWRouter(HashingEmbedder(64)).fit(synthetic_outcomes(120))
    router.save(tmp_path / "r.safetensors")
    back = load_router(tmp_path / "r.safetensors")
    assert calibrate_threshold(back, strong_fraction=0.4) == calibrate_threshold(
        router, strong_fraction=0.4)


def test_without_kept_scores_the_error_says_to_pass_prompts():
    with calibration_scores_disabled():
        router = SWRouter(HashingEmbedder(64)).fit(synthetic_outcomes(60))
    with pytest.raises(RouterConfigError, match="kept no calibration scores.*pass representative"):
        calibrate_threshold(router, strong_fraction=0.3)
    assert 0 <= calibrate_threshold(router, ["a new prompt", "another"], strong_fraction=0.5) <= 1


def test_kept_scores_of_another_model_count_are_refused():
    router = SWRouter(HashingEmbedder(64)).fit(synthetic_outcomes(60))
    router.calibration_win_matrices_ = np.full((5, 3, 3), 0.5, dtype=np.float32)
    with pytest.raises(RouterConfigError, match="cover 3 models but the router now has 2"):
        calibrate_threshold(router, strong_fraction=0.3)


# -- thresholds stay in [0, 1] -------------------------------------------------------------------
def test_threshold_is_never_above_one_when_some_level_is_one():
    # Regression: a kNN router with prior=0 gives P(strong wins) = 1.0 on unanimous prompts, and
    # strong_fraction=0 used to return nextafter(1.0) = 1.0000000000000002.
    ladder = EscalationLadder.build(["strong", "weak"], [1.0, 0.1])
    p_strong = np.array([1.0, 1.0, 0.7, 0.4, 0.2, 0.9, 1.0, 0.55])
    win = np.empty((len(p_strong), 2, 2))
    win[:, 0, 1], win[:, 1, 0] = p_strong, 1 - p_strong
    win[:, 0, 0] = win[:, 1, 1] = 0.5
    threshold = threshold_for_win_matrices(ladder, win, strong_fraction=0.0)
    assert 0.9 < threshold <= 1.0  # midway between the two highest scores
    # The closest share reachable in [0, 1]: the three certain prompts still go to strong.
    assert np.mean(ladder.choose(ladder.levels(win), threshold) == 0) == 3 / 8
    assert threshold_for_win_matrices(ladder, win, strong_fraction=1.0) == 0.2


def test_knn_prior_zero_strong_fraction_zero_is_a_valid_threshold():
    data = synthetic_outcomes(120)
    router = KNNRouter(HashingEmbedder(64), k=5, prior=0.0).fit(data)
    assert np.any(router.win_matrices(data.prompts)[:, 0, 1] == 1.0)
    for prompts in (data.prompts, None):
        threshold = calibrate_threshold(router, prompts, strong_fraction=0.0)
        assert 0.0 <= threshold <= 1.0


def test_kept_scores_with_a_subset_of_models_and_their_prices():
    # What RoutedChatModel(strong_fraction=...) calls: no prompts, its own candidates and prices.
    rng = np.random.default_rng(3)
    n = 150
    scores = rng.integers(0, 2, (n, 3)).astype(float)
    scores[:, 0] = np.maximum(scores[:, 0], scores[:, 1])  # the pricey "a" is the better one
    topics = ["sums", "verse", "code"]
    data = Outcomes(ids=[str(i) for i in range(n)],
                    prompts=[f"task {i} about {topics[i % 3]}" for i in range(n)],
                    models=("a", "b", "c"), scores=scores,
                    costs=np.tile([0.03, 0.002, 0.01], (n, 1)))
    router = SWRouter(HashingEmbedder(64)).fit(data)
    costs = {"a": 0.03, "b": 0.002}
    threshold = calibrate_threshold(router, strong_fraction=0.25, models=["a", "b"], costs=costs)
    ladder = routing_ladder(router, models=["a", "b"], costs=costs)
    assert ladder.rung_names == ["b", "a"]
    chosen = ladder.choose(ladder.levels(router.calibration_win_matrices_), threshold)
    assert abs(np.mean(chosen == ladder.models.index("a")) - 0.25) <= 1 / n


def test_a_model_outside_models_may_have_unknown_costs():
    """``models=`` restricts the candidates, so the ladder prices only them: a model left out
    whose costs were never recorded (NaN) used to fail the whole ladder."""
    outcomes = synthetic_outcomes(60)
    costs = np.c_[outcomes.costs, np.full(len(outcomes), np.nan)]
    scores = np.c_[outcomes.scores, np.ones(len(outcomes))]
    outcomes = Outcomes(ids=outcomes.ids, prompts=outcomes.prompts,
                        models=("big", "small", "local"), scores=scores, costs=costs)
    router = KNNRouter(HashingEmbedder(32), k=5).fit(outcomes)
    assert np.isnan(router.costs_[2])
    ladder = routing_ladder(router, models=["big", "small"])
    assert ladder.rung_names == ["small", "big"]
    assert isinstance(calibrate_threshold(router, models=["small", "big"], strong_fraction=0.5),
                      float)
    # A candidate without a known cost is still an error, which says how to price it.
    with pytest.raises(RouterConfigError, match=r"'local'.*costs="):
        routing_ladder(router)
