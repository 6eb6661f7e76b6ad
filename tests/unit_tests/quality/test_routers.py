"""IRTRouter, StackedRouter and ClusterRouter's Avengers-Pro scoring: what each one learns."""

from __future__ import annotations

import numpy as np
import pytest

from langroute import RouterConfigError, load_router
from langroute.embeddings import HashingEmbedder
from langroute.routers import ClusterRouter, IRTRouter, StackedRouter
from langroute.routers._irt import quality_win_matrices
from tests.unit_tests.routers.synthetic import (
    MODELS,
    math_prompt,
    poem_prompt,
    split_battles,
    split_outcomes,
)

CALC, POET = MODELS.index("calc"), MODELS.index("poet")
MATH, POEMS = [math_prompt(200 + i) for i in range(5)], [poem_prompt(300 + i) for i in range(5)]


@pytest.fixture(scope="module")
def outcomes():
    return split_outcomes(30)


@pytest.fixture(scope="module")
def embedder():
    return HashingEmbedder(dimension=64)


def test_quality_win_matrices_are_binary_outcome_probabilities():
    win = quality_win_matrices(np.array([[0.9, 0.3]]))
    # P(i beats j) + P(tie) / 2 for independent 0/1 outcomes.
    p_win, p_tie = 0.9 * 0.7, 0.9 * 0.3 + 0.1 * 0.7
    np.testing.assert_allclose(win[0, 0, 1], p_win + p_tie / 2)
    np.testing.assert_allclose(win[0] + win[0].T, 1.0)


def test_irt_predicts_who_is_right_on_which_kind_of_prompt(outcomes, embedder):
    router = IRTRouter(embedder, dim=2, epochs=200, lr=0.05, random_state=0).fit(outcomes)
    q_math = router.predict_quality(embedder.embed(MATH))
    q_poem = router.predict_quality(embedder.embed(POEMS))
    assert np.all((q_math >= 0) & (q_math <= 1))
    assert np.all(q_math[:, CALC] > 0.8) and np.all(q_math[:, POET] < 0.2)
    assert np.all(q_poem[:, POET] > 0.8) and np.all(q_poem[:, CALC] < 0.2)
    assert router.loss_curve_[-1] < router.loss_curve_[0]
    assert router.abilities_.shape == (3, 2) and router.discrimination_weight_.shape == (2, 64)


def test_irt_skips_missing_scores(outcomes, embedder):
    scores = outcomes.scores.copy()
    scores[::2, CALC] = np.nan  # calc unmeasured on every maths prompt
    data = type(outcomes)(ids=outcomes.ids, prompts=outcomes.prompts, models=outcomes.models,
                          scores=scores, costs=outcomes.costs)
    router = IRTRouter(embedder, dim=2, epochs=50, random_state=0).fit(data)
    assert np.all(np.isfinite(router.predict_quality(embedder.embed(MATH))))


def test_irt_refuses_battles_clearly(embedder):
    with pytest.raises(RouterConfigError, match="absolute scores"):
        IRTRouter(embedder).fit(split_battles(10))


def test_avengers_scoring_averages_cluster_qualities(outcomes, embedder):
    router = ClusterRouter(embedder, n_clusters=6, per_cluster="quality", n_probe=2, prior=0.0,
                           random_state=0).fit(outcomes)
    assert router.cluster_quality_.shape == (6, 3)
    # With no shrinkage, the size-weighted mean of cluster qualities is each model's mean.
    np.testing.assert_allclose(router.cluster_sizes_ @ router.cluster_quality_ / len(outcomes),
                               outcomes.mean_scores())
    vectors = embedder.embed(MATH)
    sims = vectors @ router.centroids_.T
    top2 = np.argsort(-sims, axis=1)[:, :2]
    np.testing.assert_allclose(router.predict_quality(vectors),
                               router.cluster_quality_[top2].mean(axis=1), atol=1e-12)
    win = router.win_matrices(MATH + POEMS)
    assert np.all(win[:5, CALC, POET] > 0.5) and np.all(win[5:, POET, CALC] > 0.5)


def test_avengers_unscored_model_in_a_cluster_uses_its_overall_quality(outcomes, embedder):
    """With prior=0 a cluster where a model has no score must not give 0/0 = NaN."""
    scores = outcomes.scores.copy()
    scores[1::2, CALC] = np.nan  # calc unmeasured on every poem
    data = type(outcomes)(ids=outcomes.ids, prompts=outcomes.prompts, models=outcomes.models,
                          scores=scores, costs=outcomes.costs)
    router = ClusterRouter(embedder, n_clusters=2, per_cluster="quality", prior=0.0,
                           random_state=0).fit(data)
    assert np.all(np.isfinite(router.cluster_quality_))
    poems = router.predict_clusters(embedder.embed(POEMS[:1]))[0]
    assert router.cluster_quality_[poems, CALC] == pytest.approx(np.nanmean(scores[:, CALC]))
    win = router.win_matrices(MATH + POEMS)
    assert np.all((win >= 0) & (win <= 1))
    np.testing.assert_array_equal(np.diagonal(win, axis1=1, axis2=2), 0.5)


def test_avengers_scoring_settings_are_checked(outcomes, embedder):
    with pytest.raises(RouterConfigError, match="per_cluster"):
        ClusterRouter(embedder, per_cluster="best").fit(outcomes)
    with pytest.raises(RouterConfigError, match="n_probe"):
        ClusterRouter(embedder, n_clusters=2, per_cluster="quality", n_probe=3).fit(outcomes)
    with pytest.raises(RouterConfigError, match="battles"):
        ClusterRouter(embedder, per_cluster="quality").fit(split_battles(10))
    with pytest.raises(RouterConfigError, match="predict_quality"):
        ClusterRouter(embedder, n_clusters=2).fit(outcomes).predict_quality(embedder.embed(MATH))


def test_avengers_round_trip(outcomes, embedder, tmp_path):
    router = ClusterRouter(embedder, n_clusters=4, per_cluster="quality", n_probe=2,
                           random_state=0).fit(outcomes)
    router.save(tmp_path / "c.langroute")
    loaded = load_router(tmp_path / "c.langroute")
    np.testing.assert_array_equal(loaded.cluster_quality_, router.cluster_quality_)
    np.testing.assert_array_equal(loaded.win_matrices(MATH), router.win_matrices(MATH))


def test_stacking_trusts_the_informative_base(outcomes, embedder):
    """kNN separates maths from poems; a one-cluster router knows nothing per prompt."""
    router = StackedRouter(embedder, bases=[["knn", {"k": 5}], ["cluster", {"n_clusters": 1}]],
                           cv=3).fit(outcomes)
    assert router.weights_.shape == (2,) and router.model_bias_.shape == (3,)
    assert router.weights_[0] > 0.5 and abs(router.weights_[1]) < router.weights_[0]
    win = router.win_matrices(MATH + POEMS)
    assert np.all(win[:5, CALC, POET] > 0.7) and np.all(win[5:, POET, CALC] > 0.7)


def test_stacked_bases_are_checked(outcomes, embedder):
    for bases, match in (([], "at least one"), ([["tuned", {}]], "unknown base"),
                         ([["knn"]], "kind, params")):
        with pytest.raises(RouterConfigError, match=match):
            StackedRouter(embedder, bases=bases).fit(outcomes)


@pytest.mark.parametrize(
    ("bases", "match"),
    [(1, "bases must be a list"),
     ([[["sw"], {}]], r"unknown base router kind \['sw'\] \(base 0\)"),
     ([["knn", {"k": 5}], ["sw", {"nosuch": 1}]], "base 1 \\('sw'\\): .*no parameter 'nosuch'"),
     ([["knn", {"k": "abc"}]], r"base 0 \('knn'\): k must be"),
     ([["sw", {"embedder": None}]], "set the embedder on the StackedRouter")],
)
def test_badly_formed_stacked_bases_are_config_errors_up_front(embedder, bases, match):
    """Checked by _validate_params (as the CLI and evaluate's on_error="record" rely on), with
    the base and the parameter named, not a TypeError from deep inside fit."""
    with pytest.raises(RouterConfigError, match=match):
        StackedRouter(embedder, bases=bases)._validate_params()


def test_stacked_keeps_its_out_of_fold_scores_for_calibration(outcomes, embedder):
    router = StackedRouter(embedder, bases=[["knn", {"k": 5}]], cv=3).fit(outcomes)
    scores = router.calibration_win_matrices_
    assert scores.shape == (len(outcomes), 3, 3)
    np.testing.assert_allclose(scores + np.swapaxes(scores, 1, 2), 1.0, atol=1e-6)
    # Out of fold: less sure than the router scoring its own training prompts.
    own = router.win_matrices(outcomes.prompts)
    assert np.abs(scores - 0.5).mean() < np.abs(own - 0.5).mean()


def test_training_leaves_torchs_thread_count_alone(outcomes, embedder):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        IRTRouter(embedder, dim=2, epochs=5, random_state=0).fit(outcomes)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
