"""Checks every router class must pass, in the spirit of scikit-learn's ``parametrize_with_checks``.

Each router exported by ``langroute.routers`` runs through the same estimator contract: argument
handling, fitting, the shape and consistency of win matrices, persistence and determinism. A new
router class fails ``test_every_router_class_is_checked`` until it is added to ``SMALL_PARAMS``.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import langroute.routers as routers_pkg
from langroute import NotFittedError, OutcomesError, RouterConfigError, load_router
from langroute.embeddings import HashingEmbedder
from langroute.routers import (
    BaseRouter,
    ClusterRouter,
    ContrastiveRouter,
    IRTRouter,
    KNNRouter,
    MFRouter,
    StackedRouter,
    SWRouter,
)

from .synthetic import MODELS, math_prompt, poem_prompt, split_battles, split_outcomes

#: Small, fast, non-default settings per router class (the embedder is added by ``make``).
SMALL_PARAMS: dict[type[BaseRouter], dict] = {
    SWRouter: {"gamma": 5.0, "prior": 0.5},
    KNNRouter: {"k": 7, "prior": 0.5},
    ClusterRouter: {"n_clusters": 4, "prior": 0.5, "n_init": 2, "random_state": 3},
    MFRouter: {"dim": 16, "epochs": 60, "lr": 0.01, "batch_size": 16, "random_state": 3},
    IRTRouter: {"dim": 2, "epochs": 150, "lr": 0.05, "random_state": 3},
    StackedRouter: {"bases": [["knn", {"k": 7}], ["sw", {"gamma": 5.0}]], "cv": 2},
}
#: Routers that learn from absolute scores only: fitting battles must be a clear error.
OUTCOMES_ONLY = {IRTRouter, StackedRouter}
#: A value per parameter that ``fit`` must reject (checked to be rejected at fit, not __init__).
BAD_PARAM: dict[type[BaseRouter], tuple[str, object]] = {
    SWRouter: ("gamma", 0.5),
    KNNRouter: ("k", 0),
    ClusterRouter: ("n_clusters", -2),
    MFRouter: ("lr", -1.0),
    IRTRouter: ("dim", 0),
    StackedRouter: ("cv", 1),
}
ROUTERS = list(SMALL_PARAMS)
QUERIES = [math_prompt(101), poem_prompt(102), "Something else entirely, about cooking pasta"]


def make(cls: type[BaseRouter]) -> BaseRouter:
    return cls(HashingEmbedder(dimension=64), **SMALL_PARAMS[cls])


@pytest.fixture(scope="module")
def outcomes():
    return split_outcomes(30)


@pytest.fixture(scope="module")
def fitted(outcomes):
    """One fitted router per class, shared by the read-only checks."""
    return {cls: make(cls).fit(outcomes) for cls in ROUTERS}


def test_every_router_class_is_checked():
    exported = {
        obj for name in routers_pkg.__all__
        if inspect.isclass(obj := getattr(routers_pkg, name))
        and issubclass(obj, BaseRouter) and not inspect.isabstract(obj)
    }
    # ContrastiveRouter fine-tunes MiniLM (it takes no embedder): test_contrastive.py checks it.
    assert exported - {ContrastiveRouter} == set(SMALL_PARAMS)
    assert set(BAD_PARAM) == set(SMALL_PARAMS)


# -- parameters -------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", ROUTERS, ids=lambda c: c.__name__)
def test_signature_embedder_first_then_keyword_only(cls):
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    assert params[0].name == "embedder"
    assert params[0].default is None
    assert all(p.kind is p.KEYWORD_ONLY for p in params[1:])
    assert cls.kind  # the name load_router finds it under


@pytest.mark.parametrize("cls", ROUTERS, ids=lambda c: c.__name__)
def test_init_stores_arguments_unchanged_and_nothing_else(cls):
    embedder = HashingEmbedder(dimension=64)
    given = {"embedder": embedder, **SMALL_PARAMS[cls]}
    router = cls(**given)
    params = router.get_params()
    assert set(params) == set(inspect.signature(cls.__init__).parameters) - {"self"}
    for name, value in given.items():
        assert params[name] is value
    public_state = {k for k in vars(router) if not k.startswith("_")}
    assert public_state == set(params)
    assert not router.is_fitted


@pytest.mark.parametrize("cls", ROUTERS, ids=lambda c: c.__name__)
def test_init_does_not_validate_but_fit_does(cls, outcomes):
    name, bad = BAD_PARAM[cls]
    router = make(cls).set_params(**{name: bad})  # accepted when stored ...
    assert router.get_params()[name] == bad
    with pytest.raises(RouterConfigError, match=name):
        router.fit(outcomes)  # ... refused, by name, when used
    assert not router.is_fitted


@pytest.mark.parametrize("cls", ROUTERS, ids=lambda c: c.__name__)
def test_clone_and_set_params_round_trip(cls, fitted):
    router = fitted[cls]
    twin = router.clone()
    assert type(twin) is cls and not twin.is_fitted
    assert twin.get_params().keys() == router.get_params().keys()
    for name, value in router.get_params().items():
        if name == "bases" and value is not None:  # plain data: deep-copied, as sklearn does
            assert twin.get_params()[name] == value and twin.get_params()[name] is not value
        else:
            assert twin.get_params()[name] is value
    assert repr(twin) == repr(router)
    with pytest.raises(RouterConfigError, match="no parameter"):
        twin.set_params(not_a_parameter=1)


# -- fitting ------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", ROUTERS, ids=lambda c: c.__name__)
def test_scoring_before_fit_raises_not_fitted(cls, tmp_path):
    router = make(cls)
    for call in (
        lambda: router.win_matrix("hello"),
        lambda: router.win_matrices(["hello"]),
        lambda: router.win_matrices_from_embeddings(np.ones((1, 64), dtype=np.float32) / 8),
        lambda: router.models,
        lambda: router.save(tmp_path / "r.lr"),
    ):
        with pytest.raises(NotFittedError, match="not fitted"):
            call()


@pytest.mark.parametrize("cls", ROUTERS, ids=lambda c: c.__name__)
def test_fit_returns_self_sets_common_state_and_keeps_params(cls, outcomes):
    router = make(cls)
    before = router.get_params()
    assert router.fit(outcomes) is router
    assert router.get_params() == before
    assert router.models == list(MODELS)
    np.testing.assert_allclose(router.costs_, [0.001, 0.01, 0.02])
    np.testing.assert_allclose(router.quality_, outcomes.mean_scores())


@pytest.mark.parametrize("cls", ROUTERS, ids=lambda c: c.__name__)
def test_fit_rejects_wrong_input(cls, outcomes):
    with pytest.raises(TypeError, match="Outcomes or Battles"):
        make(cls).fit({"prompts": ["x"]})
    with pytest.raises(OutcomesError, match="at least 2 models"):
        make(cls).fit(outcomes.select_models(["calc"]))
    # Empty data blamed its first model ("model 'cheap' has no measured score ... drop it").
    with pytest.raises(OutcomesError, match="no training prompts"):
        make(cls).fit(outcomes.subset(np.zeros(len(outcomes), dtype=bool)))


@pytest.mark.parametrize("cls", ROUTERS, ids=lambda c: c.__name__)
def test_fit_refuses_a_model_never_scored(cls, outcomes):
    """A model with no score would be rated from priors alone (SW put it above measured ones)."""
    scores = outcomes.scores.copy()
    scores[:, MODELS.index("poet")] = np.nan
    unscored = type(outcomes)(ids=outcomes.ids, prompts=outcomes.prompts, models=MODELS,
                              scores=scores, costs=outcomes.costs)
    with pytest.raises(OutcomesError, match=r"model 'poet' has no measured score.*add_model"):
        make(cls).fit(unscored)


@pytest.mark.parametrize("cls", sorted(set(ROUTERS) - OUTCOMES_ONLY, key=lambda c: c.__name__),
                         ids=lambda c: c.__name__)
def test_fit_refuses_a_model_that_plays_no_battle(cls):
    """Battles may name a model that never plays (``load_battles(path, models=[...])``): SW
    rated it from its prior alone, above the measured "calc"."""
    battles = split_battles(10)
    ghost = type(battles)(prompts=battles.prompts, models=(*MODELS, "ghost"),
                          prompt_index=battles.prompt_index, model_a=battles.model_a,
                          model_b=battles.model_b, result=battles.result)
    with pytest.raises(OutcomesError, match=r"model 'ghost' plays no battle.*add_model"):
        make(cls).fit(ghost)


@pytest.mark.parametrize("cls", ROUTERS, ids=lambda c: c.__name__)
def test_refit_replaces_learned_state(cls, outcomes):
    router = make(cls).fit(outcomes)
    router.fit(outcomes.select_models(["poet", "calc"]))
    assert router.models == ["poet", "calc"]
    assert router.win_matrices(QUERIES).shape == (3, 2, 2)


# -- scoring ------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", ROUTERS, ids=lambda c: c.__name__)
def test_win_matrices_are_consistent_probabilities(cls, fitted):
    win = fitted[cls].win_matrices(QUERIES)
    assert win.shape == (3, 3, 3)
    assert np.all(np.isfinite(win)) and win.min() >= 0.0 and win.max() <= 1.0
    np.testing.assert_allclose(win + np.swapaxes(win, 1, 2), 1.0, atol=1e-9)
    np.testing.assert_allclose(np.diagonal(win, axis1=1, axis2=2), 0.5, atol=1e-12)
    assert fitted[cls].win_matrices([]).shape == (0, 3, 3)


@pytest.mark.parametrize("cls", ROUTERS, ids=lambda c: c.__name__)
def test_batched_equals_single(cls, fitted):
    router = fitted[cls]
    batch = router.win_matrices(QUERIES)
    for prompt, expected in zip(QUERIES, batch, strict=True):
        # float32 embeddings: BLAS may round a lone query and a batch differently (~1e-8).
        np.testing.assert_allclose(router.win_matrix(prompt), expected, rtol=0, atol=1e-6)
    embedded = router.embedder.embed(QUERIES)
    np.testing.assert_allclose(router.win_matrices_from_embeddings(embedded), batch, atol=1e-12)


@pytest.mark.parametrize("cls", ROUTERS, ids=lambda c: c.__name__)
def test_non_finite_query_embeddings_are_refused(cls, fitted):
    """MF and IRT returned NaN win matrices for them, kNN and cluster an arbitrary answer."""
    vectors = fitted[cls].embedder.embed(QUERIES)
    for bad in (np.nan, np.inf):
        vectors[1, 3] = bad
        with pytest.raises(ValueError, match="NaN or infinite"):
            fitted[cls].win_matrices_from_embeddings(vectors)


@pytest.mark.parametrize("cls", ROUTERS, ids=lambda c: c.__name__)
def test_scoring_is_pure(cls, fitted):
    router = fitted[cls]
    first = router.win_matrices(QUERIES)
    router.win_matrices([math_prompt(7), poem_prompt(9)] * 3)
    np.testing.assert_array_equal(router.win_matrices(QUERIES), first)


@pytest.mark.parametrize("cls", ROUTERS, ids=lambda c: c.__name__)
def test_learns_which_model_wins_where(cls, fitted):
    """Unseen maths prompts favour "calc" over "poet", unseen poems the reverse."""
    router = fitted[cls]
    calc, poet = MODELS.index("calc"), MODELS.index("poet")
    maths = router.win_matrices([math_prompt(i) for i in range(200, 206)])
    poems = router.win_matrices([poem_prompt(i) for i in range(200, 206)])
    assert np.all(maths[:, calc, poet] > 0.6)
    assert np.all(poems[:, poet, calc] > 0.6)


@pytest.mark.parametrize("cls", ROUTERS, ids=lambda c: c.__name__)
def test_type_errors_for_prompts(cls, fitted):
    with pytest.raises(TypeError, match="str"):
        fitted[cls].win_matrices("a single prompt")
    with pytest.raises(TypeError, match="str"):
        fitted[cls].win_matrix(["a list"])


# -- battles, persistence, determinism -------------------------------------------------------
@pytest.mark.parametrize("cls", ROUTERS, ids=lambda c: c.__name__)
def test_fits_battles(cls):
    battles = split_battles(30)
    if cls in OUTCOMES_ONLY:
        with pytest.raises(RouterConfigError, match="battles"):
            make(cls).fit(battles)
        return
    router = make(cls).fit(battles)
    assert router.models == list(MODELS) and router.costs_ is None
    win = router.win_matrices(QUERIES)
    np.testing.assert_allclose(win + np.swapaxes(win, 1, 2), 1.0, atol=1e-9)
    calc, poet = MODELS.index("calc"), MODELS.index("poet")
    assert win[0, calc, poet] > 0.6 and win[1, poet, calc] > 0.6


@pytest.mark.parametrize("cls", ROUTERS, ids=lambda c: c.__name__)
def test_save_load_round_trip(cls, fitted, tmp_path):
    router = fitted[cls]
    path = tmp_path / f"{cls.kind}.langroute"
    router.save(path)
    for loaded in (cls.load(path), load_router(path)):
        assert type(loaded) is cls
        assert loaded.models == router.models
        np.testing.assert_array_equal(loaded.costs_, router.costs_)
        np.testing.assert_array_equal(loaded.quality_, router.quality_)
        params = loaded.get_params()
        assert params.pop("embedder").get_config() == router.embedder.get_config()
        assert params == {k: v for k, v in router.get_params().items() if k != "embedder"}
        np.testing.assert_array_equal(loaded.win_matrices(QUERIES), router.win_matrices(QUERIES))


@pytest.mark.parametrize("cls", ROUTERS, ids=lambda c: c.__name__)
def test_fit_is_deterministic(cls, outcomes, fitted):
    again = make(cls).fit(outcomes)
    np.testing.assert_array_equal(again.win_matrices(QUERIES), fitted[cls].win_matrices(QUERIES))
