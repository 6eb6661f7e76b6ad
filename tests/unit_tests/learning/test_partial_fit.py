"""partial_fit: appending outcomes equals fitting on the union, and renews fit_version_.

A clustered SWRouter re-clusters only once its exemplars have doubled since the last k-means
(``CLUSTERED_REBUILD_GROWTH``); in between, new exemplars join their nearest cluster, which
stores the same exemplars and counts but partitions them differently (tested below).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from langroute import Battles, KNNRouter, SWRouter
from langroute._exceptions import OutcomesError, RouterConfigError
from langroute.routers._calibration_scores import calibration_scores_disabled
from langroute.routers._incremental import align_models

from ..routers.synthetic import MODELS, math_prompt, poem_prompt, split_battles, split_outcomes

ROUTERS = {
    "sw-exact": lambda e: SWRouter(e, algorithm="exact"),
    "sw-clustered": lambda e: SWRouter(e, algorithm="clustered", n_clusters=6, n_probe=2),
    "knn": lambda e: KNNRouter(e, k=9),
}
QUERIES = [math_prompt(101), poem_prompt(102), "Compute nine times three", "a poem on snow"]


@pytest.fixture(autouse=True)
def _no_calibration_refits():
    with calibration_scores_disabled():
        yield


def patchy_outcomes(seed: int = 3):
    """Synthetic outcomes with continuous scores, a third unmeasured, costs partly unknown."""
    data = split_outcomes(40, seed=seed)
    rng = np.random.default_rng(seed)
    scores = np.clip(data.scores + rng.normal(0, 0.2, data.scores.shape), 0, 1)
    scores[rng.random(scores.shape) < 0.3] = np.nan
    costs = data.costs * rng.uniform(0.5, 1.5, data.costs.shape)
    costs[rng.random(costs.shape) < 0.2] = np.nan
    return dataclasses.replace(data, scores=scores, costs=costs)


@pytest.mark.parametrize("name", sorted(ROUTERS))
def test_partial_fit_equals_fit_on_the_union(name, hashing_embedder):
    data = patchy_outcomes()
    cut = 35 if name == "sw-clustered" else 45  # 80 >= 2 x 35: the clustered index rebuilds
    first, second = data.subset(np.arange(cut)), data.subset(np.arange(cut, 80))
    make = ROUTERS[name]
    online = make(hashing_embedder).fit(first)
    version = online.fit_version_
    assert online.partial_fit(second) is online
    assert online.fit_version_ != version
    full = make(hashing_embedder).fit(data)
    np.testing.assert_allclose(online.win_matrices(QUERIES), full.win_matrices(QUERIES),
                               atol=1e-6)
    np.testing.assert_allclose(online.quality_, full.quality_, rtol=1e-12)
    np.testing.assert_allclose(online.costs_, full.costs_, rtol=1e-12)
    np.testing.assert_array_equal(online.n_observations_, full.n_observations_)
    np.testing.assert_allclose(online.score_moments_, full.score_moments_, rtol=1e-12)


@pytest.mark.parametrize("name", sorted(ROUTERS))
def test_partial_fit_in_several_steps_with_a_subset_of_models(name, hashing_embedder):
    data = split_outcomes(30, seed=1)
    make = ROUTERS[name]
    if name == "sw-clustered":  # every cluster probed: how 40 -> 60 partitions cannot matter
        make = lambda e: SWRouter(e, algorithm="clustered", n_clusters=6, n_probe=6)  # noqa: E731
    online = make(hashing_embedder).fit(data.subset(np.arange(20)))
    # New outcomes may score fewer models, in another order: the rest count as unmeasured.
    part = data.subset(np.arange(20, 40)).select_models(["poet", "calc"])
    online.partial_fit(part)
    online.partial_fit(data.subset(np.arange(40, 60)))
    scores = data.scores.copy()
    scores[20:40, 0] = np.nan
    full = make(hashing_embedder).fit(dataclasses.replace(data, scores=scores))
    np.testing.assert_allclose(online.win_matrices(QUERIES), full.win_matrices(QUERIES),
                               atol=1e-6)
    np.testing.assert_allclose(online.quality_, full.quality_, rtol=1e-12)
    np.testing.assert_allclose(online.score_moments_, full.score_moments_, rtol=1e-12)


def with_answers(data):
    """``data`` with answers, as real datasets carry them (``answers.csv``)."""
    answers = np.array([[f"{model}:{i}" for model in data.models] for i in range(len(data))])
    return dataclasses.replace(data, answers=answers)


def test_aligned_answers_follow_their_models():
    """Answers were left as given: wrong columns after reordering, wrong shape for a subset."""
    data = with_answers(split_outcomes(4, seed=1))
    part = data.select_models(["poet", "calc"])
    aligned = align_models(part, MODELS)
    np.testing.assert_array_equal(aligned.answers[:, [2, 1]], part.answers)
    assert (aligned.answers[:, 0] == "").all()  # "" is no answer
    reordered = align_models(data.select_models(MODELS[::-1]), MODELS)
    np.testing.assert_array_equal(reordered.answers, data.answers)


@pytest.mark.parametrize("name", sorted(ROUTERS))
def test_partial_fit_takes_outcomes_with_answers_for_a_subset_of_models(name,
                                                                       hashing_embedder):
    data = with_answers(split_outcomes(30, seed=1))
    online = ROUTERS[name](hashing_embedder).fit(data.subset(np.arange(20)))
    online.partial_fit(data.subset(np.arange(20, 40)).select_models(["poet", "calc"]))
    scores = data.scores[:40].copy()
    scores[20:40, 0] = np.nan
    full = ROUTERS[name](hashing_embedder).fit(
        dataclasses.replace(data.subset(np.arange(40)), scores=scores))
    np.testing.assert_allclose(online.win_matrices(QUERIES), full.win_matrices(QUERIES),
                               atol=1e-6)


@pytest.mark.parametrize("name", sorted(ROUTERS))
def test_score_moments_regress_each_model_on_each_other_and_round_trip(
        name, hashing_embedder, tmp_path):
    from langroute.routers._incremental import conditional_scores

    data = patchy_outcomes()
    router = ROUTERS[name](hashing_embedder).fit(data)
    s = data.scores
    both = ~np.isnan(s[:, 0]) & ~np.isnan(s[:, 2])
    x, y = s[both, 0], s[both, 2]
    slope, intercept = np.polyfit(x, y, 1)  # least squares of poet's score on cheap's
    got = conditional_scores(router.score_moments_, router.quality_, np.array([0, 0]),
                             np.array([0.2, 0.9]))
    np.testing.assert_allclose(got[:, 2], np.clip(intercept + slope * np.array([0.2, 0.9]),
                                                  0, 1), rtol=1e-9)
    # Feedback (selection-biased, one model scored) never moves them; a file keeps them.
    moments = router.score_moments_.copy()
    feedback = Battles(prompts=[math_prompt(7)], models=MODELS, prompt_index=np.array([0]),
                       model_a=np.array([1]), model_b=np.array([0]), result=np.array([0.8]),
                       source="feedback")
    router.partial_fit(feedback)
    np.testing.assert_array_equal(router.score_moments_, moments)
    router.save(tmp_path / "r.lr")
    loaded = type(router).load(tmp_path / "r.lr", embedder=hashing_embedder)
    np.testing.assert_array_equal(loaded.score_moments_, moments)


def test_without_shared_scores_the_imputation_is_the_mean_quality():
    from langroute.routers._incremental import conditional_scores

    quality = np.array([0.3, 0.8])
    moments = np.zeros((4, 2, 2))
    got = conditional_scores(moments, quality, np.array([0, 1]), np.array([1.0, 0.0]))
    np.testing.assert_array_equal(got, [[0.3, 0.8], [0.3, 0.8]])
    np.testing.assert_array_equal(conditional_scores(None, quality, np.array([1]),
                                                     np.array([1.0])), [[0.3, 0.8]])


@pytest.mark.parametrize("name", sorted(ROUTERS))
def test_partial_fit_on_battles(name, hashing_embedder):
    battles = split_battles(30)
    half = 30  # the first 15 maths + 15 poem prompts; battles come 2 per prompt
    first = dataclasses.replace(
        battles, prompts=battles.prompts[:half],
        prompt_index=battles.prompt_index[: 2 * half], model_a=battles.model_a[: 2 * half],
        model_b=battles.model_b[: 2 * half], result=battles.result[: 2 * half])
    second = dataclasses.replace(
        battles, prompts=battles.prompts[half:],
        prompt_index=battles.prompt_index[2 * half :] - half,
        model_a=battles.model_a[2 * half :], model_b=battles.model_b[2 * half :],
        result=battles.result[2 * half :])
    make = ROUTERS[name]
    online = make(hashing_embedder).fit(first).partial_fit(second)
    full = make(hashing_embedder).fit(battles)
    np.testing.assert_allclose(online.win_matrices(QUERIES), full.win_matrices(QUERIES),
                               atol=1e-6)
    np.testing.assert_allclose(online.quality_, full.quality_, rtol=1e-12)
    assert online.costs_ is None
    assert online.score_moments_ is None  # battles hold no scores to regress


def test_fractional_battles_turn_half_counts_into_patterns(hashing_embedder):
    # Continuous scores on 3 models do not compress: the SW store keeps uint8 half-counts,
    # which cannot hold an expected (fractional) battle; the store switches to patterns.
    data = patchy_outcomes()
    router = SWRouter(hashing_embedder, algorithm="exact").fit(data)
    assert router.store_.kind == "counts"
    before = router.win_matrices(QUERIES)
    feedback = Battles(prompts=[math_prompt(7)], models=MODELS, prompt_index=np.array([0]),
                       model_a=np.array([1]), model_b=np.array([0]), result=np.array([0.8]))
    router.partial_fit(feedback)
    assert router.store_.kind == "patterns" and router.n_exemplars_ == len(data) + 1
    after = router.win_matrices(QUERIES)
    assert after[0, 1, 0] > before[0, 1, 0]  # calc beats cheap more on maths


def test_partial_fit_refuses_what_it_cannot_learn(hashing_embedder, tmp_path):
    data = split_outcomes(20)
    router = SWRouter(hashing_embedder).fit(data)
    renamed = dataclasses.replace(data, models=("cheap", "calc", "gpt-9"))
    with pytest.raises(OutcomesError, match="unknown to the router.*add_model"):
        router.partial_fit(renamed)
    with pytest.raises(ValueError, match="embeddings must have shape"):
        router.partial_fit(data.subset([0, 1]), embeddings=np.ones((3, 128)))
    with pytest.raises(OutcomesError, match="no prompts"):
        router.partial_fit(data.subset(np.array([], dtype=int)))
    with pytest.raises(TypeError):
        router.partial_fit("not outcomes")
    # Saved and loaded routers keep learning, with the same running means.
    path = tmp_path / "r.router"
    router.save(path)
    loaded = SWRouter.load(path)
    loaded.set_params(embedder=hashing_embedder)
    loaded.partial_fit(data.subset([0]))
    router.partial_fit(data.subset([0]))
    np.testing.assert_allclose(loaded.quality_, router.quality_)
    np.testing.assert_allclose(loaded.win_matrices(QUERIES), router.win_matrices(QUERIES))


def test_router_files_without_observation_counts_refuse_partial_fit(hashing_embedder):
    router = KNNRouter(hashing_embedder, k=5).fit(split_outcomes(10))
    router.n_observations_ = None  # what a file saved before partial_fit existed loads as
    with pytest.raises(RouterConfigError, match="refit it once"):
        router.partial_fit(split_outcomes(10).subset([0]))
    assert not math.isnan(router.quality_[0])


def test_many_distinct_patterns_are_appended_not_resorted(hashing_embedder, monkeypatch):
    from langroute.routers import _incremental

    monkeypatch.setattr(_incremental, "_DEDUPE_LIMIT", 2)
    data = split_outcomes(20, seed=7)
    online = KNNRouter(hashing_embedder, k=7).fit(data.subset(np.arange(20)))
    n_patterns = online.patterns_.shape[0]
    assert n_patterns > 2
    online.partial_fit(data.subset(np.arange(20, 40)))
    assert online.patterns_.shape[0] > n_patterns  # appended, duplicates allowed
    full = KNNRouter(hashing_embedder, k=7).fit(data)
    np.testing.assert_allclose(online.win_matrices(QUERIES), full.win_matrices(QUERIES))


def _clustered(embedder, n_probe=2):
    return SWRouter(embedder, algorithm="clustered", n_clusters=6, n_probe=n_probe)


def test_a_clustered_index_takes_new_exemplars_in_without_reclustering(hashing_embedder):
    """One feedback event once re-ran k-means over every exemplar (seconds at 50k)."""
    data = split_outcomes(40, seed=2)  # 80 prompts
    online = _clustered(hashing_embedder).fit(data.subset(np.arange(40)))
    means_before = online.index_.means.copy()
    online.partial_fit(data.subset(np.arange(40, 60)))
    index = online.index_
    assert online.n_clustered_ == 40 and online.n_exemplars_ == 60
    assert index.means.shape == means_before.shape  # the same six clusters
    # It stores exactly what a fit on the union stores ...
    full = _clustered(hashing_embedder).fit(data.subset(np.arange(60)))
    vectors, store = online._exemplars_in_training_order()
    full_vectors, full_store = full._exemplars_in_training_order()
    np.testing.assert_array_equal(vectors, full_vectors)
    np.testing.assert_array_equal(store.counts(slice(None)), full_store.counts(slice(None)))
    # ... each new exemplar in the cluster whose mean points nearest to it ...
    labels = np.repeat(np.arange(6), np.diff(index.offsets))
    new = index.order >= 40
    directions = means_before / np.linalg.norm(means_before, axis=1, keepdims=True)
    np.testing.assert_array_equal(
        labels[new], np.argmax(index.embeddings[new] @ directions.T, axis=1))
    # ... and every cluster's mean and summed counts are its members' again.
    for c in range(6):
        members = slice(index.offsets[c], index.offsets[c + 1])
        np.testing.assert_allclose(index.means[c], index.embeddings[members].mean(axis=0),
                                   atol=1e-6)
        np.testing.assert_allclose(index.cluster_counts[c],
                                   online.store_.counts(members).sum(axis=0), atol=1e-9)


def test_a_clustered_index_probing_every_cluster_still_equals_the_exact_one(hashing_embedder):
    data = split_outcomes(40, seed=2)
    online = _clustered(hashing_embedder, n_probe=6).fit(data.subset(np.arange(40)))
    online.partial_fit(data.subset(np.arange(40, 70)))
    exact = SWRouter(hashing_embedder, algorithm="exact").fit(data.subset(np.arange(70)))
    np.testing.assert_allclose(online.win_matrices(QUERIES), exact.win_matrices(QUERIES),
                               atol=1e-6)


def test_a_clustered_index_reclusters_once_its_exemplars_doubled(hashing_embedder, tmp_path):
    data = split_outcomes(40, seed=2)
    online = _clustered(hashing_embedder).fit(data.subset(np.arange(30)))
    online.partial_fit(data.subset(np.arange(30, 50)))
    assert online.n_clustered_ == 30
    # a file keeps where it stands: the loaded copy learns on exactly as the original does
    path = tmp_path / "clustered.sw"
    online.save(path)
    loaded = SWRouter.load(path, embedder=hashing_embedder)
    assert loaded.n_clustered_ == 30
    for router in (online, loaded):
        router.partial_fit(data.subset(np.arange(50, 60)))  # 60 >= 2 x 30: k-means again
    full = _clustered(hashing_embedder).fit(data.subset(np.arange(60)))
    assert online.n_clustered_ == loaded.n_clustered_ == 60
    for router in (online, loaded):
        np.testing.assert_allclose(router.win_matrices(QUERIES), full.win_matrices(QUERIES),
                                   atol=1e-6)


@pytest.mark.parametrize("until", [50, 60], ids=["joins-clusters", "reclusters"])
def test_partial_fit_leaves_the_arrays_of_a_shallow_copy_alone(hashing_embedder, until):
    """Feedback learns on a shallow copy while routing goes on with the router it was copied
    from: no array they share may change in place."""
    import copy

    data = split_outcomes(40, seed=2)
    router = _clustered(hashing_embedder).fit(data.subset(np.arange(30)))
    before = router.win_matrices(QUERIES)
    shared = {name: value for name, value in vars(router).items()
              if isinstance(value, np.ndarray)}
    shared.update({f"index.{k}": v for k, v in router.index_.to_arrays().items()})
    shared.update({f"store.{k}": v for k, v in router.store_.to_arrays().items()})
    kept = {name: value.copy() for name, value in shared.items()}
    copy.copy(router).partial_fit(data.subset(np.arange(30, until)))
    for name, value in shared.items():
        np.testing.assert_array_equal(value, kept[name], err_msg=name)
    np.testing.assert_array_equal(router.win_matrices(QUERIES), before)
