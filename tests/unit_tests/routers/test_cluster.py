"""ClusterRouter and spherical k-means: clusters, per-cluster counts and Bradley-Terry matrices."""

from __future__ import annotations

import numpy as np
import pytest

from langroute import RouterConfigError, load_outcomes, pairwise_counts
from langroute.embeddings import HashingEmbedder
from langroute.routers import (
    ClusterRouter,
    fit_bradley_terry,
    spherical_kmeans,
    win_probabilities,
)
from tests.conftest import shared_dataset

from .synthetic import math_prompt, poem_prompt, split_outcomes


def blobs(n_per: int, centres: int, dim: int, spread: float, seed: int):
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((centres, dim))
    x = np.repeat(means, n_per, axis=0) + spread * rng.standard_normal((centres * n_per, dim))
    return x / np.linalg.norm(x, axis=1, keepdims=True), np.repeat(np.arange(centres), n_per)


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = {(int(x), int(y)) for x, y in zip(a, b, strict=True)}
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def test_kmeans_recovers_separated_blobs_and_is_a_lloyd_fixpoint():
    x, truth = blobs(40, 5, 24, 0.15, seed=0)
    centroids, labels, inertia = spherical_kmeans(x, 5, n_init=3, random_state=0)
    assert centroids.shape == (5, 24) and labels.shape == (200,)
    np.testing.assert_allclose(np.linalg.norm(centroids, axis=1), 1.0, atol=1e-6)
    assert same_partition(labels, truth)
    sims = x @ centroids.T.astype(np.float64)
    np.testing.assert_array_equal(labels, sims.argmax(axis=1))
    assert inertia == pytest.approx(np.sum(1 - sims.max(axis=1)), rel=1e-5)


def test_kmeans_more_restarts_never_worse_and_seed_reproducible():
    x, _ = blobs(30, 6, 16, 0.8, seed=1)
    one = spherical_kmeans(x, 6, n_init=1, random_state=5)
    again = spherical_kmeans(x, 6, n_init=1, random_state=5)
    np.testing.assert_array_equal(one[0], again[0])
    many = spherical_kmeans(x, 6, n_init=8, random_state=5)
    assert many[2] <= one[2] + 1e-9


def test_kmeans_refuses_more_clusters_than_distinct_points():
    x = np.repeat(np.eye(3), 4, axis=0)
    with pytest.raises(RouterConfigError, match="only 3 distinct"):
        spherical_kmeans(x, 4, random_state=0)
    _, labels, inertia = spherical_kmeans(x, 3, random_state=0)
    assert same_partition(labels, np.repeat(np.arange(3), 4)) and inertia == pytest.approx(0.0)


def test_router_separates_topics_and_counts_per_cluster():
    train = split_outcomes(30)
    router = ClusterRouter(HashingEmbedder(dimension=128), n_clusters=2, random_state=0).fit(train)
    labels = router.predict_clusters(router.embedder.embed(train.prompts))
    topic = np.arange(len(train)) % 2  # alternating maths, poem
    assert same_partition(labels, topic)
    _, counts = pairwise_counts(train)
    for c in range(2):
        np.testing.assert_allclose(router.cluster_counts_[c], counts[labels == c].sum(axis=0))
    np.testing.assert_array_equal(router.cluster_sizes_, np.bincount(labels, minlength=2))


def test_prompt_gets_its_clusters_bradley_terry_matrix():
    train = split_outcomes(20)
    router = ClusterRouter(HashingEmbedder(dimension=128), n_clusters=3, prior=2.0,
                           random_state=1).fit(train)
    queries = [math_prompt(77), poem_prompt(78), "how do I bake sourdough bread"]
    cluster = router.predict_clusters(router.embedder.embed(queries))
    expected = win_probabilities(fit_bradley_terry(router.cluster_counts_[cluster], prior=2.0))
    np.testing.assert_allclose(router.win_matrices(queries), expected, atol=1e-9)


def test_one_cluster_is_the_global_bradley_terry_model():
    train = split_outcomes(15)
    router = ClusterRouter(HashingEmbedder(dimension=64), n_clusters=1, prior=1.0,
                           random_state=0).fit(train)
    _, counts = pairwise_counts(train)
    expected = win_probabilities(fit_bradley_terry(counts.sum(axis=0), prior=1.0))
    for win in router.win_matrices([math_prompt(1), "anything"]):
        np.testing.assert_allclose(win, expected, atol=1e-9)


@pytest.mark.parametrize(
    ("params", "message"),
    [({"n_clusters": 0}, "n_clusters"), ({"n_init": 1.5}, "n_init"), ({"max_iter": 0}, "max_iter"),
     ({"prior": -0.1}, "prior"), ({"random_state": "seed"}, "random_state"),
     ({"random_state": np.random.default_rng(0)}, "random_state")],
)
def test_bad_parameters_are_named_at_fit(params, message):
    router = ClusterRouter(HashingEmbedder(dimension=16), **params)
    with pytest.raises(RouterConfigError, match=message):
        router.fit(split_outcomes(5))


def test_too_many_clusters_for_the_data_is_an_error():
    with pytest.raises(RouterConfigError, match="lower n_clusters"):
        ClusterRouter(HashingEmbedder(dimension=16), n_clusters=11).fit(split_outcomes(5))


def test_real_routerbench_subset_eleven_models():
    data = load_outcomes(shared_dataset("routerbench-slice"))
    train = data.subset(np.arange(0, len(data), 20))
    router = ClusterRouter(HashingEmbedder(dimension=128), n_clusters=6, random_state=0).fit(train)
    assert router.cluster_ratings_.shape == (6, 11)
    assert router.cluster_sizes_.sum() == len(train)
    # Ratings rank models as their in-cluster mean scores do, where those differ clearly.
    labels = router.predict_clusters(router.embedder.embed(train.prompts))
    big = int(np.argmax(router.cluster_sizes_))
    means = np.nanmean(train.scores[labels == big], axis=0)
    best, worst = int(np.argmax(means)), int(np.argmin(means))
    assert router.cluster_ratings_[big, best] > router.cluster_ratings_[big, worst]
