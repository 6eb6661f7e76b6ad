"""Nested cross-validation: TunedRouter chooses settings on its training data only."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from langroute import Outcomes, OutcomesError, RouterConfigError, load_router
from langroute.cli import main
from langroute.embeddings import HashingEmbedder
from langroute.evaluation import (
    DEFAULT_ROUTER,
    TunedRouter,
    evaluate,
    make_splits,
    register_router,
    tuned_router,
    validation_score,
)
from langroute.routers import KNNRouter
from tests.conftest import shared_dataset
from tests.unit_tests.routers.synthetic import math_prompt, poem_prompt

QUERIES = [math_prompt(101), poem_prompt(102)]


def easy_hard_outcomes(n_per_kind: int = 30) -> Outcomes:
    """The cheap model answers the maths prompts; only the pricey one answers the poems."""
    prompts = [p for i in range(n_per_kind) for p in (math_prompt(i), poem_prompt(i))]
    scores = np.tile([[1.0, 1.0], [0.0, 1.0]], (n_per_kind, 1))
    return Outcomes(ids=[f"p{i}" for i in range(len(prompts))], prompts=prompts,
                    models=("cheap", "pricey"), scores=scores,
                    costs=np.tile([0.001, 0.02], (len(prompts), 1)))


@pytest.fixture(scope="module")
def outcomes():
    return easy_hard_outcomes()


@pytest.fixture
def registries():
    """Undo the router names and file kinds a test registers."""
    from langroute.evaluation import _registry
    from langroute.routers import _base

    custom, kinds = dict(_registry._CUSTOM), dict(_base._REGISTRY)
    yield
    _registry._CUSTOM.clear()
    _registry._CUSTOM.update(custom)
    _base._REGISTRY.clear()
    _base._REGISTRY.update(kinds)


def _tuned(**kwargs):
    return TunedRouter("knn", embedder=HashingEmbedder(dimension=64), **kwargs)


def test_chooses_the_best_inner_score_and_refits_on_all_data(outcomes):
    router = _tuned(param_grid={"k": [3, 40]}, cv=3).fit(outcomes)
    results = router.cv_results_
    assert [p["k"] for p in results["params"]] == [3, 40]
    assert router.best_score_ == max(results["mean_score"])
    assert router.best_params_ == results["params"][int(np.argmax(results["mean_score"]))]
    # Local votes separate maths from poems; 40 of 40 training prompts cannot.
    assert router.best_params_ == {"k": 3}
    assert router.best_router_.get_params()["k"] == 3
    assert router.best_router_.embeddings_.shape[0] == len(outcomes)  # refitted on all rows
    np.testing.assert_array_equal(router.win_matrices(QUERIES),
                                  router.best_router_.win_matrices(QUERIES))


def test_grid_values_above_the_training_size_are_capped(outcomes):
    router = _tuned(param_grid={"k": [5, 500, 1000]}, cv=3)
    assert router.candidates(40) == [{"k": 5}, {"k": 40}]


def test_fixed_parameters_leave_the_grid(outcomes):
    router = tuned_router("knn", {"k": 7}, HashingEmbedder(dimension=64))
    assert router.base_params == {"k": 7} and "k" not in router.param_grid
    fitted = router.fit(outcomes)
    assert fitted.best_router_.get_params()["k"] == 7 and fitted.best_params_ == {}


def test_inner_fits_never_see_the_outer_test_fold(outcomes, registries):
    """Every fit made while evaluating one outer fold avoids that fold's test prompts."""
    seen: list[set[str]] = []

    class SpyRouter(KNNRouter):
        kind = "spy_knn"  # its own file kind: "knn" files must still load as KNNRouter

        def fit(self, data):
            seen.append(set(data.prompts))
            return super().fit(data)

    register_router("spy_knn", SpyRouter)
    template = TunedRouter("spy_knn", param_grid={"k": [3, 5]}, cv=2)
    evaluate(outcomes, {"tuned": template}, embedder=HashingEmbedder(dimension=64), folds=2)
    per_fold = 2 * 2 + 1  # 2 settings x 2 inner folds, then the refit
    splits = make_splits(outcomes.prompts, folds=2)
    assert len(seen) == per_fold * len(splits)
    for f, sp in enumerate(splits):
        test_prompts = {outcomes.prompts[i] for i in sp.test}
        for prompts in seen[f * per_fold:(f + 1) * per_fold]:
            assert not prompts & test_prompts


def test_save_load_round_trip(outcomes, tmp_path):
    router = _tuned(param_grid={"k": [3, 9]}).fit(outcomes)
    path = tmp_path / "tuned.langroute"
    router.save(path)
    loaded = load_router(path)
    assert isinstance(loaded, TunedRouter)
    assert loaded.best_params_ == router.best_params_
    assert loaded.cv_results_["mean_score"] == router.cv_results_["mean_score"]
    np.testing.assert_array_equal(loaded.win_matrices(QUERIES), router.win_matrices(QUERIES))


@pytest.mark.parametrize("kwargs, match", [
    ({"cv": 1}, "cv"),
    ({"scoring": "accuracy"}, "scoring"),
    ({"param_grid": {"k": []}}, "param_grid"),
    ({"param_grid": {"k": 5}}, "param_grid"),
])
def test_bad_settings_are_clear_errors_at_fit(outcomes, kwargs, match):
    router = _tuned(**kwargs)  # __init__ only stores
    with pytest.raises(RouterConfigError, match=match):
        router.fit(outcomes)


def test_gaps_in_the_tuning_data_are_clear_errors(outcomes):
    """Inner CV compares every model on each held-out prompt: a NaN ended as a ValueError deep
    in the metrics ("evaluation needs every model measured")."""
    scores, costs = outcomes.scores.copy(), outcomes.costs.copy()
    scores[3, 1] = np.nan
    costs[5, 0] = np.nan
    cases = [(dict(scores=scores), "score", "p3"), (dict(costs=costs), "cost", "p5")]
    for gaps, name, first in cases:
        data = dataclasses.replace(outcomes, **gaps)
        with pytest.raises(OutcomesError, match=f"1 of 60 tuning prompts lack a {name} for "
                                                f"some model .the first: id '{first}'"):
            _tuned(param_grid={"k": [3, 9]}).fit(data)
        # One setting: no inner CV, nothing compared.
        assert _tuned(param_grid={"k": [3]}).fit(data).best_params_ == {"k": 3}
    # APGR compares qualities only.
    gappy = dataclasses.replace(outcomes, costs=costs)
    assert _tuned(param_grid={"k": [3, 9]}, scoring="apgr").fit(gappy).is_fitted


def test_unknown_router_and_missing_grid_are_clear_errors(outcomes, registries):
    with pytest.raises(RouterConfigError, match="unknown router"):
        TunedRouter("nope", param_grid={"k": [1]}).fit(outcomes)
    register_router("gridless", KNNRouter)
    with pytest.raises(RouterConfigError, match="no default grid"):
        TunedRouter("gridless").fit(outcomes)


def test_validation_score_prefers_a_router_that_learned_the_split(outcomes):
    emb = HashingEmbedder(dimension=64)
    val_rows = np.arange(0, 60, 3)
    train = outcomes.subset(np.setdiff1d(np.arange(60), val_rows))
    val = outcomes.subset(val_rows)
    vectors = emb.embed(val.prompts)
    local = validation_score(KNNRouter(emb, k=3).fit(train), val, vectors)
    blind = validation_score(KNNRouter(emb, k=40).fit(train), val, vectors)  # votes of all
    assert local > blind + 0.05
    assert abs(blind) < 0.05  # prompt-blind routing is no better than the single-model hull


@pytest.mark.data
def test_cli_tune_and_default_router(capsys):
    mtbench = str(shared_dataset("routellm-mtbench"))
    assert main(["eval", mtbench, "--router", "knn", "--tune", "--embedder", "hashing",
                 "--folds", "2", "--json", "--quiet"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["routers"]) == {"knn (tuned)"}
    chosen = [f["routers"]["knn (tuned)"]["best_params"] for f in report["folds"]]
    assert all(set(c) == {"k"} for c in chosen)
    assert main(["eval", mtbench, "--embedder", "hashing", "--folds", "2", "--json",
                 "--quiet"]) == 0
    assert set(json.loads(capsys.readouterr().out)["routers"]) == {DEFAULT_ROUTER}
    assert main(["eval", mtbench, "--tune-max-prompts", "30", "--quiet"]) == 1
    assert "only with --tune" in capsys.readouterr().err


def test_tuned_router_calibrates_with_the_chosen_routers_scores(outcomes):
    router = _tuned(param_grid={"k": [3, 9]}).fit(outcomes)
    np.testing.assert_array_equal(router.calibration_win_matrices_,
                                  router.best_router_.calibration_win_matrices_)
    assert router.calibration_win_matrices_.shape == (len(outcomes), 2, 2)
