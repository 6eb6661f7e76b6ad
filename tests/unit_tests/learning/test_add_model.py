"""add_model onboards a model from a few quiz prompts; quiz_prompts picks informative ones."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from langroute import KNNRouter, Outcomes, SWRouter
from langroute._exceptions import OutcomesError, RouterConfigError
from langroute.routers._calibration_scores import calibration_scores_disabled

from ..routers.synthetic import math_prompt, poem_prompt, split_outcomes

ROUTERS = {"sw": lambda e: SWRouter(e), "knn": lambda e: KNNRouter(e, k=9)}


@pytest.fixture(autouse=True)
def _no_calibration_refits():
    with calibration_scores_disabled():
        yield


@pytest.mark.parametrize("name", sorted(ROUTERS))
def test_a_model_onboarded_from_a_quiz_routes_like_one_trained_on_everything(
        name, hashing_embedder):
    data = split_outcomes(30, seed=2)
    router = ROUTERS[name](hashing_embedder).fit(data.select_models(["cheap", "calc"]))
    version = router.fit_version_
    quiz_rows = router.quiz_prompts(8)
    assert len(set(quiz_rows.tolist())) == 8
    quiz = data.subset(quiz_rows)  # poet's scores, and the others' where known
    assert router.add_model("poet", quiz, cost=0.02) is router
    assert router.models == ["cheap", "calc", "poet"] and router.fit_version_ != version
    assert router.costs_[2] == 0.02
    full = ROUTERS[name](hashing_embedder).fit(data)
    queries = [math_prompt(200), poem_prompt(201), math_prompt(202), poem_prompt(203)]
    onboarded, reference = router.win_matrices(queries), full.win_matrices(queries)
    # poet beats calc on poems and loses on maths, as when trained on full data.
    assert np.all(onboarded[[1, 3], 2, 1] > 0.6) and np.all(onboarded[[0, 2], 2, 1] < 0.4)
    assert np.sign(onboarded[:, 2, 1] - 0.5).tolist() == np.sign(
        reference[:, 2, 1] - 0.5).tolist()
    assert router.calibration_win_matrices_ is None
    # The quiz is all the shared scores the new model has: its moments count the quiz only.
    assert router.score_moments_.shape == (7, 3, 3)
    assert router.score_moments_[0, 2, 2] == 8
    np.testing.assert_array_equal(router.score_moments_[0, 2, :2], (~np.isnan(
        quiz.select_models(["cheap", "calc"]).scores)).sum(axis=0))


@pytest.mark.parametrize("name", sorted(ROUTERS))
@pytest.mark.parametrize(("cost", "expected"), [(1e-3, 1e-3), (0.0, 0.0), (None, 6e-4)])
def test_an_explicit_cost_is_the_models_cost_and_none_takes_the_quizs_mean(
        name, cost, expected, hashing_embedder):
    """``cost`` is the model's price, used as is; averaging it with the quiz's costs counted it
    as one observation among many (1e-3 with a quiz at 5e-4 gave 5.45e-4)."""
    data = split_outcomes(20, seed=3)
    router = ROUTERS[name](hashing_embedder).fit(data.select_models(["cheap", "calc"]))
    quiz = data.subset(router.quiz_prompts(10))
    costs = quiz.costs.copy()
    costs[:, 2] = np.where(np.arange(10) % 2 == 0, 5e-4, 7e-4)  # poet's costs, mean 6e-4
    costs[0, 2] = np.nan  # an unknown cost is not counted
    costs[1, 2] = 6e-4
    router.add_model("poet", dataclasses.replace(quiz, costs=costs), cost=cost)
    assert router.costs_[2] == pytest.approx(expected, abs=1e-15)
    np.testing.assert_allclose(router.costs_[:2], [0.001, 0.01])


def test_the_proxy_is_the_model_that_agrees_most(hashing_embedder):
    data = split_outcomes(20, seed=5)
    router = SWRouter(hashing_embedder).fit(data)
    # "calc2" answers exactly like calc: copied from calc, it is calc's twin everywhere.
    twin = Outcomes(ids=data.ids[:6], prompts=data.prompts[:6], models=("calc2", "calc"),
                    scores=data.scores[:6, [1, 1]])
    router.add_model("calc2", twin, cost=0.01)
    queries = [math_prompt(300), poem_prompt(301)]
    win = router.win_matrices(queries)
    np.testing.assert_allclose(win[:, 3, 2], win[:, 1, 2], atol=0.02)  # vs poet
    np.testing.assert_allclose(win[:, 3, 0], win[:, 1, 0], atol=0.02)  # vs cheap
    np.testing.assert_allclose(router.quality_[3], router.quality_[1], atol=1e-9)


@pytest.mark.parametrize("name", sorted(ROUTERS))
def test_quiz_prompts_prefer_disagreement_and_spread(name, hashing_embedder):
    data = split_outcomes(20, seed=1)
    scores = data.scores.copy()
    scores[::2] = 1.0  # every maths prompt: all models right, nothing to learn from it
    router = ROUTERS[name](hashing_embedder).fit(dataclasses.replace(data, scores=scores))
    picks = router.quiz_prompts(10)
    assert all(i % 2 == 1 for i in picks)  # poems only
    texts = router.quiz_prompts(3, prompts=data.prompts)
    assert texts == [data.prompts[i] for i in picks[:3]]
    with pytest.raises(RouterConfigError, match="n must be"):
        router.quiz_prompts(0)
    with pytest.raises(RouterConfigError, match="training order"):
        router.quiz_prompts(3, prompts=data.prompts[:5])


def test_add_model_refuses_what_cannot_work(hashing_embedder):
    data = split_outcomes(10)
    router = SWRouter(hashing_embedder).fit(data.select_models(["cheap", "calc"]))
    quiz = data.subset(np.arange(4))
    version = router.fit_version_
    with pytest.raises(RouterConfigError, match="already one of"):
        router.add_model("calc", quiz, cost=0.1)
    with pytest.raises(OutcomesError, match="no column for the new model"):
        router.add_model("gpt-9", quiz, cost=0.1)
    with pytest.raises(RouterConfigError, match="USD per call"):
        router.add_model("poet", dataclasses.replace(quiz, costs=None))
    with pytest.raises(RouterConfigError, match="USD per call"):
        router.add_model("poet", quiz, cost=float("nan"))
    unscored = dataclasses.replace(quiz, scores=np.where(np.arange(3) == 2, np.nan, quiz.scores))
    with pytest.raises(OutcomesError, match="no score for the new model"):
        router.add_model("poet", unscored, cost=0.1)
    with pytest.raises(ValueError, match="embeddings must have shape"):
        router.add_model("poet", quiz, cost=0.1, embeddings=np.ones((2, 128)))
    assert router.models == ["cheap", "calc"] and router.fit_version_ == version
    assert router.n_exemplars_ == len(data)


def same_state(router, before: dict) -> bool:
    """Every attribute is the very object it was (nothing replaced, added or dropped)."""
    return vars(router).keys() == before.keys() and all(
        value is before[key] for key, value in vars(router).items())


@pytest.mark.parametrize("name", sorted(ROUTERS))
def test_a_quiz_scoring_another_unknown_model_is_refused_up_front(name, hashing_embedder):
    """It used to fail in the final partial_fit, the new model half-onboarded, and a retry
    was refused as "already one of the router's models"."""
    data = split_outcomes(10)
    router = ROUTERS[name](hashing_embedder).fit(data.select_models(["cheap", "calc"]))
    quiz = data.subset(np.arange(4))  # cheap, calc, poet
    typo = Outcomes(ids=quiz.ids, prompts=quiz.prompts, models=(*quiz.models, "poett"),
                    scores=np.column_stack([quiz.scores, quiz.scores[:, 2]]))
    before = dict(vars(router))
    with pytest.raises(OutcomesError, match=r"models \['poett'\] the router does not know"):
        router.add_model("poet", typo, cost=0.1)
    assert same_state(router, before)
    router.add_model("poet", quiz, cost=0.1)  # the retry with a right quiz works
    assert router.models == ["cheap", "calc", "poet"]


@pytest.mark.parametrize("name", sorted(ROUTERS))
def test_an_add_model_failing_midway_leaves_the_router_as_it_was(name, hashing_embedder,
                                                                 monkeypatch):
    data = split_outcomes(10)
    router = ROUTERS[name](hashing_embedder).fit(data.select_models(["cheap", "calc"]))
    before = dict(vars(router))

    def failing(self, *args, **kwargs):
        raise MemoryError("no room for the quiz")

    monkeypatch.setattr(type(router), "partial_fit", failing)  # the last step fails
    with pytest.raises(MemoryError):
        router.add_model("poet", data.subset(np.arange(4)), cost=0.1)
    assert same_state(router, before)
    monkeypatch.undo()
    router.add_model("poet", data.subset(np.arange(4)), cost=0.1)
    assert router.models == ["cheap", "calc", "poet"]


@pytest.mark.parametrize("name", sorted(ROUTERS))
def test_a_weaker_model_is_a_shifted_copy_that_loses_to_its_proxy(name, hashing_embedder):
    data = split_outcomes(20, seed=5)
    router = ROUTERS[name](hashing_embedder).fit(data)
    # "calc-lite" is right on half the prompts calc is right on, wrong elsewhere.
    rows = np.arange(12)
    lite = data.scores[rows, 1] * (rows % 4 < 2)
    quiz = Outcomes(ids=[data.ids[i] for i in rows], prompts=[data.prompts[i] for i in rows],
                    models=("calc-lite", "calc"), scores=np.stack([lite, data.scores[rows, 1]], 1))
    router.add_model("calc-lite", quiz, cost=0.005)
    shift = float(np.mean(lite - data.scores[rows, 1]))
    assert shift < 0
    np.testing.assert_allclose(router.quality_[3], router.quality_[1] + shift)
    win = router.win_matrices([math_prompt(300), poem_prompt(301)])
    assert np.all(win[:, 1, 3] > 0.55)  # calc beats its weaker copy
    # ... and does worse against poet (on poems calc never wins: nothing left to lose there).
    assert win[0, 3, 2] < win[0, 1, 2] and np.all(win[:, 3, 2] <= win[:, 1, 2] + 1e-12)


def test_the_new_models_quality_is_calibrated_on_the_existing_models(hashing_embedder):
    # 30 easy prompts every model solves; on 10 hard ones model k solves the first 3k. The
    # quiz is the 9 hard prompts models disagree on (all but m3 fail the last): quiz means 0,
    # 1/3, 2/3, 1 for overall qualities .75, .825, .9, .975 -- a line the new model is put on.
    prompts = [math_prompt(i) for i in range(30)] + [poem_prompt(i) for i in range(10)]
    scores = np.ones((40, 4))
    for k in range(4):
        scores[30 + 3 * k:, k] = 0.0
    names = ("m0", "m1", "m2", "m3")
    data = Outcomes(ids=[f"q{i}" for i in range(40)], prompts=prompts, models=names,
                    scores=scores, costs=np.tile([1.0, 2.0, 3.0, 4.0], (40, 1)))
    router = SWRouter(hashing_embedder).fit(data)
    quiz_rows = router.quiz_prompts(9)
    assert sorted(quiz_rows.tolist()) == list(range(30, 39))
    new = (quiz_rows < 33).astype(float)  # right on 3 of 9: quiz mean 1/3, like m1
    quiz = Outcomes(ids=[f"q{i}" for i in quiz_rows], prompts=[prompts[i] for i in quiz_rows],
                    models=(*names, "new"), scores=np.column_stack([scores[quiz_rows], new]))
    router.add_model("new", quiz, cost=2.5)
    # 0.825 on the line (the quiz mean says 0.33), counted as 40 observations, then the
    # 9 quiz scores folded in.
    np.testing.assert_allclose(router.quality_[4], (0.825 * 40 + new.sum()) / 49, atol=1e-9)


@pytest.mark.parametrize("name", sorted(ROUTERS))
def test_a_router_fitted_on_battles_refuses_a_cost_it_cannot_keep(name, hashing_embedder):
    """Without ``costs_`` a given cost was never validated and counted as an observation of a
    cost never stored; now a bad cost is refused and a good one too (it could not be kept)."""
    from langroute import Battles

    prompts = [math_prompt(i) for i in range(10)] + [poem_prompt(i) for i in range(10)]
    battles = Battles(prompts=prompts, models=("cheap", "calc"), prompt_index=np.arange(20),
                      model_a=np.ones(20, dtype=np.int64), model_b=np.zeros(20, dtype=np.int64),
                      result=np.tile([1.0, 0.5], 10))
    router = ROUTERS[name](hashing_embedder).fit(battles)
    assert router.costs_ is None
    quiz = split_outcomes(10).subset(np.arange(4))
    for cost in ("abc", -1.0, float("nan"), True):
        with pytest.raises(RouterConfigError, match="USD per call"):
            router.add_model("poet", quiz, cost=cost)
    with pytest.raises(RouterConfigError, match="keeps no costs"):
        router.add_model("poet", quiz, cost=0.02)
    router.add_model("poet", quiz)
    assert router.costs_ is None
    np.testing.assert_array_equal(router.n_observations_[1], 0.0)
