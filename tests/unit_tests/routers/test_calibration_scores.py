"""Calibration scores kept from fitting: out-of-fold, bounded, reproducible, saved."""

from __future__ import annotations

import numpy as np
import pytest

from langroute import Outcomes, load_router
from langroute.embeddings import HashingEmbedder
from langroute.routers import ClusterRouter, KNNRouter, MFRouter, SWRouter
from langroute.routers._calibration_scores import (
    CALIBRATION_MAX_PROMPTS,
    calibration_scores_disabled,
)

from .synthetic import MODELS, split_battles, split_outcomes

ROUTERS = [
    lambda: SWRouter(HashingEmbedder(64)),
    lambda: KNNRouter(HashingEmbedder(64), k=5),
    lambda: ClusterRouter(HashingEmbedder(64), n_clusters=2, random_state=0),
    lambda: MFRouter(HashingEmbedder(64), dim=8, epochs=3, random_state=0),
]


def random_outcomes(n: int, seed: int = 0) -> Outcomes:
    """Unique unrelated prompts with coin-flip outcomes: nothing to learn but the prompt itself."""
    rng = np.random.default_rng(seed)
    strong = rng.integers(0, 2, n).astype(float)
    scores = np.stack([strong, 1.0 - strong], axis=1)
    return Outcomes(
        ids=[str(i) for i in range(n)],
        prompts=[f"token{i} alpha{rng.integers(1 << 30)} beta{rng.integers(1 << 30)}"
                 for i in range(n)],
        models=("strong", "weak"), scores=scores, costs=np.tile([0.01, 0.001], (n, 1)),
    )


@pytest.mark.parametrize("make", ROUTERS, ids=["sw", "knn", "cluster", "mf"])
def test_every_router_keeps_win_matrices_of_its_training_prompts(make):
    data = split_outcomes(20)
    router = make().fit(data)
    kept = router.calibration_win_matrices_
    assert kept.dtype == np.float32
    assert kept.shape == (len(data), len(MODELS), len(MODELS))
    assert np.all((kept >= 0) & (kept <= 1))
    np.testing.assert_allclose(kept + np.swapaxes(kept, 1, 2), 1.0, atol=1e-5)


def test_kept_scores_are_out_of_fold_not_in_sample():
    # With k=1 and no prior a kNN router memorises its training prompts: in sample, every
    # prompt's score is its own outcome. Out of fold its nearest *other* prompt decides, and
    # with coin-flip outcomes that agrees only about half of the time.
    data = random_outcomes(300)
    router = KNNRouter(HashingEmbedder(256), k=1, prior=0.0).fit(data)
    own = data.scores[:, 0] > data.scores[:, 1]
    in_sample = router.win_matrices(data.prompts)[:, 0, 1] > 0.5
    assert np.mean(in_sample == own) == 1.0
    kept = router.calibration_win_matrices_[:, 0, 1] > 0.5
    assert 0.35 < np.mean(kept == own) < 0.65


def test_repeated_prompt_texts_share_a_fold():
    # Each text appears twice with the same outcome: if the copies could sit in different
    # folds, a k=1 router would find the copy and score its outcome every time.
    base = random_outcomes(150, seed=1)
    data = Outcomes(ids=[str(i) for i in range(300)], prompts=base.prompts * 2,
                    models=base.models, scores=np.concatenate([base.scores, base.scores]),
                    costs=np.concatenate([base.costs, base.costs]))
    router = KNNRouter(HashingEmbedder(256), k=1, prior=0.0).fit(data)
    own = data.scores[:, 0] > data.scores[:, 1]
    kept = router.calibration_win_matrices_[:, 0, 1] > 0.5
    assert np.mean(kept == own) < 0.7


def test_kept_scores_are_capped_and_reproducible():
    data = random_outcomes(CALIBRATION_MAX_PROMPTS + 150)
    first = SWRouter(HashingEmbedder(32)).fit(data).calibration_win_matrices_
    second = SWRouter(HashingEmbedder(32)).fit(data).calibration_win_matrices_
    assert first.shape == (CALIBRATION_MAX_PROMPTS, 2, 2)
    np.testing.assert_array_equal(first, second)


def test_battles_get_kept_scores_per_unique_prompt():
    battles = split_battles(10)
    router = SWRouter(HashingEmbedder(64)).fit(battles)
    assert router.calibration_win_matrices_.shape == (len(battles.prompts), 3, 3)
    # Out of fold, maths prompts still see other maths prompts: calc beats poet on them.
    maths = np.arange(0, len(battles.prompts), 2)
    assert np.all(router.calibration_win_matrices_[maths, 1, 2] > 0.5)


def test_small_k_is_lowered_for_the_refits_instead_of_failing():
    data = split_outcomes(5)  # 10 prompts; refits see 8
    router = KNNRouter(HashingEmbedder(32), k=10).fit(data)
    assert router.k == 10
    assert router.calibration_win_matrices_.shape == (10, 3, 3)


def test_too_little_data_keeps_none_and_says_why():
    data = split_outcomes(1).subset([0])
    router = SWRouter(HashingEmbedder(32)).fit(data)
    assert router.calibration_win_matrices_ is None
    assert "at least 2 distinct" in router._calibration_note


def test_disabled_inside_the_context_manager():
    with calibration_scores_disabled():
        router = SWRouter(HashingEmbedder(32)).fit(split_outcomes(10))
    assert router.calibration_win_matrices_ is None
    assert SWRouter(HashingEmbedder(32)).fit(split_outcomes(10)).calibration_win_matrices_ \
        is not None


@pytest.mark.parametrize("make", ROUTERS[:2], ids=["sw", "knn"])
def test_saved_and_loaded_with_the_router(make, tmp_path):
    router = make().fit(split_outcomes(15))
    router.save(tmp_path / "r.safetensors")
    back = load_router(tmp_path / "r.safetensors")
    np.testing.assert_array_equal(back.calibration_win_matrices_, router.calibration_win_matrices_)
    with calibration_scores_disabled():
        bare = make().fit(split_outcomes(15))
    bare.save(tmp_path / "bare.safetensors")
    assert load_router(tmp_path / "bare.safetensors").calibration_win_matrices_ is None


def test_clustered_sw_refits_keep_scores_too():
    data = split_outcomes(40)
    router = SWRouter(HashingEmbedder(64), algorithm="clustered", n_clusters=12, n_probe=2)
    kept = router.fit(data).calibration_win_matrices_
    assert kept.shape == (80, 3, 3)
    # Out of fold, maths prompts still find maths prompts: calc beats poet on them.
    assert np.mean(kept[0::2, 1, 2] > 0.5) > 0.9


def _sparse_model_outcomes(n: int = 40) -> Outcomes:
    """Three models, the third ("rare") scored on one of ``n`` prompts: valid data, but most
    inner folds hold no score of it."""
    base = random_outcomes(n)
    rare = np.full((n, 1), np.nan)
    rare[0, 0] = 1.0
    return Outcomes(ids=base.ids, prompts=base.prompts, models=("strong", "weak", "rare"),
                    scores=np.concatenate([base.scores, rare], axis=1),
                    costs=np.tile([0.01, 0.001, 0.005], (n, 1)))


def test_a_model_scored_on_few_prompts_keeps_calibration_scores():
    """The measured check is the user's data's, not each out-of-fold refit's."""
    data = _sparse_model_outcomes()
    router = SWRouter(HashingEmbedder(64)).fit(data)
    assert router.calibration_win_matrices_ is not None
    assert router.calibration_win_matrices_.shape == (40, 3, 3)


def test_stacked_fits_a_model_scored_on_few_prompts():
    """Its inner CV folds leave out the rare model's one score."""
    stacked = _stacked().fit(_sparse_model_outcomes())
    assert stacked.models == ["strong", "weak", "rare"]
    assert stacked.calibration_win_matrices_.shape == (40, 3, 3)


@pytest.mark.parametrize("make", [lambda: SWRouter(HashingEmbedder(64)),
                                  lambda: _stacked(), lambda: _tuned()],
                         ids=["sw", "stacked", "tuned"])
def test_a_model_never_scored_is_still_refused(make):
    from langroute import OutcomesError

    data = _sparse_model_outcomes()
    scores = data.scores.copy()
    scores[0, 2] = np.nan
    unscored = Outcomes(ids=data.ids, prompts=data.prompts, models=data.models, scores=scores,
                        costs=data.costs)
    with pytest.raises(OutcomesError, match="model 'rare' has no measured score"):
        make().fit(unscored)


def _stacked():
    from langroute.routers import StackedRouter

    return StackedRouter(HashingEmbedder(64), bases=[["knn", {"k": 5}], ["sw", {}]], cv=3)


def _tuned():
    from langroute.evaluation import TunedRouter

    return TunedRouter("knn", embedder=HashingEmbedder(64), param_grid={"k": [3, 5]}, cv=3)
