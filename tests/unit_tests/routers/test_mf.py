"""MFRouter: RouteLLM's bilinear scores, trained on pairwise outcomes (ties as half a win)."""

from __future__ import annotations

import numpy as np
import pytest

from langroute import Outcomes, OutcomesError, RouterConfigError, load_outcomes
from langroute.embeddings import HashingEmbedder
from langroute.routers import MFRouter, calibration_scores_disabled
from tests.conftest import shared_dataset

from .synthetic import math_prompt, poem_prompt, split_outcomes

FAST = {"dim": 16, "epochs": 80, "lr": 0.01, "batch_size": 16, "noise": 0.0, "random_state": 0}


def scored(prompts: list[str], scores) -> Outcomes:
    scores = np.asarray(scores, dtype=float)
    return Outcomes(
        ids=[f"q{i}" for i in range(len(prompts))],
        prompts=prompts,
        models=("a", "b", "c")[: scores.shape[1]],
        scores=scores,
    )


def test_win_matrix_is_sigmoid_of_score_differences():
    router = MFRouter(HashingEmbedder(dimension=64), **FAST).fit(split_outcomes(20))
    queries = [math_prompt(90), poem_prompt(91)]
    s = router.model_scores(router.embedder.embed(queries))
    assert s.shape == (2, 3)
    expected = 1 / (1 + np.exp(-(s[:, :, None] - s[:, None, :])))
    np.testing.assert_allclose(router.win_matrices(queries), expected, atol=1e-12)
    # RouteLLM's form: s = w2 . (v_m * W1 q) with unit-length model embeddings.
    q = router.embedder.embed(queries).astype(np.float64)
    projected = q @ router.projection_.T
    manual = np.einsum("d,md,nd->nm", router.head_, router.model_embeddings_, projected)
    np.testing.assert_allclose(s, manual, atol=1e-10)
    np.testing.assert_allclose(np.linalg.norm(router.model_embeddings_, axis=1), 1.0)


def test_training_loss_decreases_on_a_learnable_split():
    router = MFRouter(HashingEmbedder(dimension=64), **FAST).fit(split_outcomes(20))
    curve = router.loss_curve_
    assert curve.shape == (80,)
    assert curve[0] == pytest.approx(np.log(2), abs=0.05)  # starts near chance
    assert curve[-1] < 0.6 * curve[0]


def test_ties_count_as_half_so_all_ties_give_even_odds():
    prompts = [math_prompt(i) for i in range(20)] + [poem_prompt(i) for i in range(20)]
    router = MFRouter(HashingEmbedder(dimension=64), **FAST).fit(
        scored(prompts, np.ones((40, 2)))
    )
    win = router.win_matrices([math_prompt(60), poem_prompt(61)])
    np.testing.assert_allclose(win, 0.5, atol=0.05)


def test_a_model_that_always_wins_is_preferred_everywhere():
    prompts = [math_prompt(i) for i in range(15)] + [poem_prompt(i) for i in range(15)]
    scores = np.tile([0.2, 0.9, 0.5], (30, 1))
    router = MFRouter(HashingEmbedder(dimension=64), **FAST).fit(scored(prompts, scores))
    win = router.win_matrices([math_prompt(40), poem_prompt(41), "a question about taxes"])
    assert np.all(win[:, 1, 0] > 0.8) and np.all(win[:, 1, 2] > 0.8) and np.all(win[:, 2, 0] > 0.6)


def test_unmeasured_pairs_carry_no_signal():
    prompts = [math_prompt(i) for i in range(20)] + [poem_prompt(i) for i in range(20)]
    # c is only measured on a few prompts where it ties; a always beats b.
    scores = np.tile([1.0, 0.0, np.nan], (40, 1))
    scores[:4, 2] = [1.0, 1.0, 1.0, 1.0]
    router = MFRouter(HashingEmbedder(dimension=64), **FAST).fit(scored(prompts, scores))
    win = router.win_matrix(math_prompt(70))
    assert win[0, 1] > 0.8


def test_nothing_to_compare_is_an_error():
    prompts = [math_prompt(i) for i in range(4)]
    scores = np.array([[1.0, np.nan], [np.nan, 0.0], [np.nan, np.nan], [0.5, np.nan]])
    with pytest.raises(OutcomesError, match="nothing to learn"):
        MFRouter(HashingEmbedder(dimension=16), **FAST).fit(scored(prompts, scores))


def test_seed_controls_the_result():
    data = split_outcomes(10)
    params = {**FAST, "epochs": 3, "noise": 0.05}
    a = MFRouter(HashingEmbedder(dimension=32), **params).fit(data)
    b = MFRouter(HashingEmbedder(dimension=32), **params).fit(data)
    c = MFRouter(HashingEmbedder(dimension=32), **{**params, "random_state": 1}).fit(data)
    np.testing.assert_array_equal(a.projection_, b.projection_)
    assert not np.allclose(a.projection_, c.projection_)


@pytest.mark.parametrize(
    ("params", "message"),
    [({"dim": 0}, "dim"), ({"epochs": 2.0}, "epochs"), ({"batch_size": 0}, "batch_size"),
     ({"lr": 0.0}, "lr"), ({"weight_decay": -1e-3}, "weight_decay"),
     ({"noise": float("inf")}, "noise"), ({"random_state": -1}, "random_state"),
     ({"random_state": 1.5}, "random_state")],
)
def test_bad_parameters_are_named_at_fit(params, message):
    router = MFRouter(HashingEmbedder(dimension=16), **params)
    with pytest.raises(RouterConfigError, match=message):
        router.fit(split_outcomes(5))


def test_wrong_embedding_width_is_an_error():
    router = MFRouter(HashingEmbedder(dimension=16), **{**FAST, "epochs": 1}).fit(split_outcomes(5))
    with pytest.raises(ValueError, match=r"shape \(n, 16\)"):
        router.model_scores(np.ones((2, 8)))


def test_real_mmlu_subset_learns_the_overall_stronger_model():
    data = load_outcomes(shared_dataset("routellm-mmlu"))
    train = data.subset(np.arange(0, len(data), 20))  # ~700 prompts across all subjects
    with calibration_scores_disabled():  # not under test here; saves five refits
        router = MFRouter(HashingEmbedder(dimension=128), epochs=10, random_state=0).fit(train)
    strong = data.models.index("gpt-4-1106-preview")
    weak = 1 - strong
    held_out = data.subset(np.arange(3, len(data), 150))
    p_strong = router.win_matrices(held_out.prompts)[:, strong, weak]
    # GPT-4 wins far more often than it loses on MMLU; the router must say so on average.
    wins = np.mean(held_out.scores[:, strong] > held_out.scores[:, weak])
    losses = np.mean(held_out.scores[:, strong] < held_out.scores[:, weak])
    assert wins > losses and p_strong.mean() > 0.55
