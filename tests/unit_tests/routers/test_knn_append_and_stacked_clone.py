"""KNNRouter learns one event without copying its exemplars; StackedRouter's clone owns its
bases."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

from langroute import Battles, KNNRouter
from langroute.routers import StackedRouter
from langroute.routers._calibration_scores import calibration_scores_disabled

from .synthetic import (
    MODELS,
    math_prompt,
    poem_prompt,
    split_battles,
    split_outcomes,
)

QUERIES = [math_prompt(101), poem_prompt(102), "Compute nine times three", "a poem on snow"]


@pytest.fixture(autouse=True)
def _no_calibration_refits():
    with calibration_scores_disabled():
        yield


# -- KNNRouter.partial_fit ----------------------------------------------------------------------
def feedback_event(i: int, seed: int = 0) -> Battles:
    """One feedback event: one model scored on a new prompt, its battles against the other
    two imputed as fractional shares (so the pair of the other two is not compared)."""
    rng = np.random.default_rng(seed + i)
    model = i % 3
    others = [j for j in range(3) if j != model]
    prompt = math_prompt(200 + i) if i % 2 else poem_prompt(200 + i)
    return Battles(prompts=[prompt], models=MODELS, prompt_index=np.zeros(2, dtype=int),
                   model_a=np.full(2, model), model_b=np.asarray(others),
                   result=rng.random(2), source="feedback")


def joined(parts: list[Battles]) -> Battles:
    """The battles of ``parts`` as one set (what a fit on the union sees)."""
    prompts: list[str] = []
    index, a, b, result = [], [], [], []
    for part in parts:
        index.append(part.prompt_index + len(prompts))
        prompts += part.prompts
        a.append(part.model_a)
        b.append(part.model_b)
        result.append(part.result)
    return Battles(prompts=prompts, models=MODELS, prompt_index=np.concatenate(index),
                   model_a=np.concatenate(a), model_b=np.concatenate(b),
                   result=np.concatenate(result))


def assert_same_router(online: KNNRouter, full: KNNRouter) -> None:
    """Bit-identical answers (not merely close): the same neighbours, votes and matrices."""
    queries = online._resolve_embedder().embed(QUERIES)
    np.testing.assert_array_equal(online.embeddings_, full.embeddings_)
    np.testing.assert_array_equal(online.patterns_[online.pattern_index_],
                                  full.patterns_[full.pattern_index_])
    for got, want in zip(online.kneighbors(queries), full.kneighbors(queries), strict=True):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(online.vote_counts(queries), full.vote_counts(queries))
    np.testing.assert_array_equal(online.win_matrices(QUERIES), full.win_matrices(QUERIES))


def test_knn_single_events_append_in_place_and_equal_a_fit_on_the_union(hashing_embedder):
    """Each single feedback event used to copy every stored embedding (np.concatenate, plus
    a float64 copy of them all): ~200 ms per event at 100k exemplars x 384 dims."""
    base = split_battles(10)
    router = KNNRouter(hashing_embedder, k=5).fit(base)
    events = [feedback_event(i) for i in range(8)]
    router.partial_fit(events[0])  # the first append makes room
    for event in events[1:]:
        embeddings, index = router.embeddings_, router.pattern_index_
        stored = embeddings.copy()
        router.partial_fit(event)
        # The stored rows were not reallocated: the new arrays extend the old memory ...
        assert np.shares_memory(router.embeddings_, embeddings)
        assert np.shares_memory(router.pattern_index_, index)
        # ... and what was handed out before is unchanged.
        assert embeddings.shape[0] == router.embeddings_.shape[0] - 1
        np.testing.assert_array_equal(embeddings, stored)
    # No exemplar compares cheap with poet: each pair takes its own k voters (vote_counts).
    assert_same_router(router, KNNRouter(hashing_embedder, k=5).fit(joined([base, *events])))


def test_knn_outcomes_one_row_at_a_time_equal_a_fit_on_the_union(hashing_embedder):
    data = split_outcomes(15, seed=5)
    router = KNNRouter(hashing_embedder, k=7).fit(data.subset(np.arange(20)))
    for row in range(20, 30):
        router.partial_fit(data.subset([row]))
    assert_same_router(router, KNNRouter(hashing_embedder, k=7).fit(data))


def test_knn_stored_arrays_are_read_only(hashing_embedder):
    """They share memory with the buffers later appends write into."""
    router = KNNRouter(hashing_embedder, k=5).fit(split_battles(10))
    router.partial_fit(feedback_event(0))
    for array in (router.embeddings_, router.patterns_, router.pattern_index_):
        with pytest.raises(ValueError, match="read-only"):
            array[0] = 0


def test_knn_copies_that_learn_keep_their_own_exemplars(hashing_embedder):
    """A shallow copy (feedback learning's staged router) and the router both append after
    the same rows: the second must not write over the first's."""
    base = split_battles(10)
    e1, e2, e3 = (feedback_event(i) for i in range(3))
    router = KNNRouter(hashing_embedder, k=5).fit(base).partial_fit(e1)
    shallow = copy.copy(router).partial_fit(e2)
    deep = copy.deepcopy(router)
    pickled = pickle.loads(pickle.dumps(router))
    router.partial_fit(e3)
    deep.partial_fit(e2)
    pickled.partial_fit(e2)
    fit = KNNRouter(hashing_embedder, k=5).fit
    assert_same_router(router, fit(joined([base, e1, e3])))
    for twin in (shallow, deep, pickled):
        assert_same_router(twin, fit(joined([base, e1, e2])))


def test_knn_save_and_load_keep_learning_identically(hashing_embedder, tmp_path):
    base = split_battles(10)
    events = [feedback_event(i) for i in range(4)]
    router = KNNRouter(hashing_embedder, k=5).fit(base)
    for event in events[:2]:
        router.partial_fit(event)
    path = tmp_path / "knn.router"
    router.save(path)
    loaded = KNNRouter.load(path, embedder=hashing_embedder)
    assert_same_router(loaded, router)
    for event in events[2:]:
        loaded.partial_fit(event)
        router.partial_fit(event)
    assert_same_router(loaded, router)
    assert_same_router(loaded, KNNRouter(hashing_embedder, k=5).fit(joined([base, *events])))


def test_knn_learning_after_add_model_answers_as_a_loaded_copy(hashing_embedder, tmp_path):
    """add_model widens every pattern; what partial_fit then extends (which pairs each
    exemplar compared) must be what loading the file rebuilds from scratch."""
    data = split_outcomes(10)
    two = data.select_models(["cheap", "calc"])
    router = KNNRouter(hashing_embedder, k=5).fit(two.subset(np.arange(12)))
    router.partial_fit(two.subset([12]))
    router.add_model("poet", data.subset(np.arange(4)), cost=0.1)
    router.partial_fit(feedback_event(1))
    router.partial_fit(data.subset([13]))
    path = tmp_path / "knn.router"
    router.save(path)
    assert router.models == ["cheap", "calc", "poet"]
    assert_same_router(router, KNNRouter.load(path, embedder=hashing_embedder))


# -- StackedRouter.clone ------------------------------------------------------------------------
def test_stacked_clone_owns_its_bases(hashing_embedder):
    """The clone shared its ``bases`` list and params dicts with the original: changing the
    clone's in place changed what the original fits."""
    bases = [["knn", {"k": 5}], ["sw", {}]]
    router = StackedRouter(hashing_embedder, bases=bases, cv=2)
    twin = router.clone()
    assert twin.bases == bases and twin.embedder is router.embedder
    twin.bases[0][1]["k"] = 3
    twin.bases.append(["irt", {"random_state": 0}])
    assert router.bases == [["knn", {"k": 5}], ["sw", {}]]
    router.fit(split_outcomes(10))
    assert [type(b).__name__ for b in router.base_routers_] == ["KNNRouter", "SWRouter"]
    assert router.base_routers_[0].k == 5


def test_fitting_a_stacked_clone_leaves_the_original_fitted_as_it_was(hashing_embedder):
    router = StackedRouter(hashing_embedder, bases=[["knn", {"k": 5}]], cv=2)
    router.fit(split_outcomes(10))
    before = router.win_matrices(QUERIES)
    twin = router.clone().fit(split_outcomes(12, seed=3))
    assert not any(a is b for a in router.base_routers_ for b in twin.base_routers_)
    np.testing.assert_array_equal(router.win_matrices(QUERIES), before)


