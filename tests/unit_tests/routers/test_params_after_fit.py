"""``set_params`` on a fitted router, and parameters that bound inner fits.

A parameter that shapes what ``fit`` learns takes effect at the next ``fit``
(``BaseRouter.set_params``): a fitted router keeps scoring with what it learned, saves a file
that loads, and refuses to save parameters that ``load`` would refuse.
"""

from __future__ import annotations

import numpy as np
import pytest

from langroute import RouterConfigError, load_router
from langroute.embeddings import HashingEmbedder
from langroute.routers import ClusterRouter, KNNRouter, StackedRouter, SWRouter

from .synthetic import math_prompt, poem_prompt, split_outcomes

QUERIES = [math_prompt(101), poem_prompt(102), "Something else entirely, about cooking pasta"]


@pytest.fixture(scope="module")
def outcomes():
    return split_outcomes(30)


@pytest.mark.parametrize(("fitted_as", "then"), [("bradley_terry", "quality"),
                                                 ("quality", "bradley_terry")])
def test_cluster_router_scores_with_what_it_fitted(outcomes, tmp_path, fitted_as, then):
    """Changing ``per_cluster`` after ``fit`` made a Bradley-Terry router look for cluster
    qualities it never learned (AttributeError in scoring and in ``save``)."""
    router = ClusterRouter(HashingEmbedder(64), n_clusters=4, n_probe=2, random_state=0,
                           per_cluster=fitted_as).fit(outcomes)
    before = router.win_matrices(QUERIES)
    router.set_params(per_cluster=then)
    np.testing.assert_array_equal(router.win_matrices(QUERIES), before)
    router.save(tmp_path / "cluster.router")
    loaded = load_router(tmp_path / "cluster.router")
    np.testing.assert_array_equal(loaded.win_matrices(QUERIES), before)
    # The next fit follows the parameter, and forgets what the last fit learned.
    router.fit(outcomes)
    assert hasattr(router, "cluster_quality_") == (then == "quality")
    if then == "bradley_terry":
        with pytest.raises(RouterConfigError, match="per_cluster='quality'"):
            router.predict_quality(router.embedder.embed(QUERIES))


@pytest.mark.parametrize(("router", "bad"), [
    (SWRouter(HashingEmbedder(64)), {"gamma": 0.5}),
    (KNNRouter(HashingEmbedder(64), k=5), {"prior": -1.0}),
    (ClusterRouter(HashingEmbedder(64), n_clusters=4, random_state=0), {"n_probe": 9}),
], ids=["sw", "knn", "cluster"])
def test_save_refuses_parameters_load_would_refuse(outcomes, tmp_path, router, bad):
    """A bad ``set_params`` after ``fit`` used to save a file that every ``load`` refused."""
    router.fit(outcomes).set_params(**bad)
    path = tmp_path / "bad.router"
    with pytest.raises(RouterConfigError, match=next(iter(bad))):
        router.save(path)
    assert not path.exists()


def test_stacked_caps_sw_top_k_at_the_inner_training_size(outcomes):
    """SW's ``top_k`` is valid for the 60 training prompts, but an inner fold trains on 40:
    the stack failed where SW alone (which caps it for its calibration refits) fits."""
    SWRouter(HashingEmbedder(64), top_k=50).fit(outcomes)
    router = StackedRouter(HashingEmbedder(64), bases=[["sw", {"top_k": 50}],
                                                       ["sw", {"n_clusters": None}]], cv=3)
    win = router.fit(outcomes).win_matrices(QUERIES)
    np.testing.assert_allclose(win + np.swapaxes(win, 1, 2), 1.0, atol=1e-9)
    assert router.base_routers_[0].top_k == 50


def test_stacked_fitted_without_calibration_scores_says_why(outcomes):
    """The error named an internal helper ("StackedRouter.fit did not go through
    _fit_inputs") instead of the calibration_scores_disabled() block the user fitted in."""
    from langroute import calibrate_threshold
    from langroute.routers import calibration_scores_disabled

    with calibration_scores_disabled():
        router = StackedRouter(HashingEmbedder(64), bases=[["knn", {"k": 3}]], cv=2).fit(
            outcomes)
    assert router.calibration_win_matrices_ is None
    with pytest.raises(RouterConfigError, match=r"calibration_scores_disabled\(\)"):
        calibrate_threshold(router, strong_fraction=0.5)
