"""SWRouter: RouteLLM's per-battle answer from aggregated counts; N models; exact or clustered."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks.routellm_reference import (
    battles_from_scores,
    routellm_sw_ratings,
    routellm_weights,
)
from langroute import NotFittedError, OutcomesError, RouterConfigError
from langroute._outcomes import Outcomes, load_battles, load_outcomes, pairwise_counts
from langroute.embeddings import HashingEmbedder
from langroute.routers import (
    SWRouter,
    calibration_scores_disabled,
    load_router,
    win_probabilities,
)
from tests.conftest import shared_dataset

EMBEDDER = HashingEmbedder(dimension=128)
VOCABULARY = (
    "algebra poems python history chemistry football prove integral sonnet recursion war acid "
    "goal triangle haiku loop empire base penalty matrix rhyme class treaty salt league"
)


def _synthetic(n: int, m: int, *, binary: bool, seed: int = 0) -> Outcomes:
    rng = np.random.default_rng(seed)
    scores = (rng.random((n, m)) < 0.6).astype(float) if binary else rng.random((n, m))
    scores[rng.random((n, m)) < 0.05] = np.nan  # some unmeasured cells
    scores[:, 0] = np.where(np.isnan(scores[:, 0]), 0.5, scores[:, 0])
    words = VOCABULARY.split()
    prompts = [" ".join(rng.choice(words, size=6)) + f" #{i}" for i in range(n)]
    return Outcomes(
        ids=[str(i) for i in range(n)],
        prompts=prompts,
        models=tuple(f"model-{j}" for j in range(m)),
        scores=scores,
    )


@pytest.fixture(scope="module")
def zeroeval():
    """zeroeval-gsm8k: 17 models with 0/1 scores; 400 prompts keep the per-battle fit fast."""
    return load_outcomes(shared_dataset("zeroeval-gsm8k")).subset(np.arange(400))


@pytest.fixture(scope="module")
def routellm_gsm8k():
    return load_outcomes(shared_dataset("routellm-gsm8k"))


# -- exactness against RouteLLM's per-battle fit ---------------------------------------------------
@pytest.mark.parametrize("dataset", ["zeroeval", "routellm_gsm8k"])
@pytest.mark.parametrize(("gamma", "prior"), [(10.0, 1.0), (10.0, 0.0), (1000.0, 3.0)])
def test_matches_per_battle_weighted_likelihood_on_real_data(request, dataset, gamma, prior):
    data = request.getfixturevalue(dataset)
    train = data.subset(np.arange(len(data))[:-3])
    queries = data.prompts[-3:]
    router = SWRouter(EMBEDDER, gamma=gamma, prior=prior).fit(train)
    exemplars = EMBEDDER.embed(train.prompts).astype(np.float64)
    battles = battles_from_scores(train.scores)
    ours = router.win_matrices(queries)
    for query, mine in zip(EMBEDDER.embed(queries).astype(np.float64), ours, strict=True):
        weights = routellm_weights(exemplars, query, gamma=gamma)
        ratings = routellm_sw_ratings(
            battles,
            weights[battles.exemplar],
            virtual_tie_weight=prior * weights.mean(),
            tol=1e-12,
            max_iter=10_000,
        )
        np.testing.assert_allclose(mine, win_probabilities(ratings), atol=1e-4)


def test_weights_are_routellms(zeroeval):
    router = SWRouter(EMBEDDER, gamma=10.0).fit(zeroeval)
    query = EMBEDDER.embed(["How many apples are left if Tom eats three?"])
    ours = router.exemplar_weights_from_embeddings(query)[0]
    theirs = routellm_weights(EMBEDDER.embed(zeroeval.prompts).astype(np.float64), query[0])
    np.testing.assert_allclose(ours, theirs / theirs.mean(), rtol=1e-5)
    assert ours.mean() == pytest.approx(1.0)


# -- the weighting family --------------------------------------------------------------------------
def test_larger_gamma_concentrates_weight_on_the_most_similar():
    data = _synthetic(200, 3, binary=True)
    query = EMBEDDER.embed(["question about algebra and poems"])
    spreads = []
    for gamma in (2.0, 10.0, 1e4):
        w = SWRouter(EMBEDDER, gamma=gamma).fit(data).exemplar_weights_from_embeddings(query)[0]
        spreads.append(w.max() / w.min())
        assert np.argmax(w) == np.argmax(EMBEDDER.embed(data.prompts) @ query[0])
    assert spreads[0] < spreads[1] < spreads[2]


def test_normalize_false_uses_raw_cosine():
    data = _synthetic(100, 2, binary=True)
    query = EMBEDDER.embed(["poems about football"])
    sims = (EMBEDDER.embed(data.prompts) @ query[0]).astype(np.float64)
    w = SWRouter(EMBEDDER, gamma=50.0, normalize=False).fit(data)
    expected = 50.0 ** (1.0 + sims)
    np.testing.assert_allclose(
        w.exemplar_weights_from_embeddings(query)[0], expected / expected.mean(), rtol=1e-5
    )


def test_top_k_weights_only_the_k_most_similar():
    data = _synthetic(120, 3, binary=False)
    query = EMBEDDER.embed(["python history"])
    sims = EMBEDDER.embed(data.prompts) @ query[0]
    router = SWRouter(EMBEDDER, top_k=10).fit(data)
    w = router.exemplar_weights_from_embeddings(query)[0]
    assert np.count_nonzero(w) == 10
    assert set(np.flatnonzero(w)) == set(np.argsort(-sims)[:10])
    assert w[w > 0].mean() == pytest.approx(1.0)


def test_top_k_one_counts_only_the_nearest_prompt():
    data = _synthetic(80, 4, binary=False)
    query = EMBEDDER.embed(["chemistry poems"])
    nearest = int(np.argmax(EMBEDDER.embed(data.prompts) @ query[0]))
    router = SWRouter(EMBEDDER, top_k=1).fit(data)
    _, counts = pairwise_counts(data)
    np.testing.assert_allclose(router.weighted_counts_from_embeddings(query)[0], counts[nearest])


@pytest.mark.parametrize(("m", "binary"), [(2, True), (6, True), (20, False)])
def test_weighted_counts_are_the_weighted_sum_of_every_prompts_counts(m, binary):
    data = _synthetic(300, m, binary=binary)
    router = SWRouter(EMBEDDER, gamma=30.0).fit(data)
    assert router.store_.kind == ("patterns" if m == 2 else "counts")
    queries = EMBEDDER.embed(["algebra", "history of football", "python poems"])
    weights = router.exemplar_weights_from_embeddings(queries)
    _, counts = pairwise_counts(data)
    expected = np.einsum("qk,kij->qij", weights, counts)
    np.testing.assert_allclose(router.weighted_counts_from_embeddings(queries), expected, rtol=1e-5)
    single = router.weighted_counts_from_embeddings(queries[1])
    np.testing.assert_allclose(single[0], expected[1], rtol=1e-5)


# -- N models, matrix properties -------------------------------------------------------------------
def test_seventeen_models_win_matrix_properties(zeroeval):
    router = SWRouter(EMBEDDER).fit(zeroeval)
    assert router.models == list(zeroeval.models) and len(router.models) == 17
    prompts = ["What is 12 times 7?", "A train leaves at 3 pm going 60 mph."]
    wins = router.win_matrices(prompts)
    assert wins.shape == (2, 17, 17)
    np.testing.assert_allclose(wins + np.swapaxes(wins, 1, 2), 1.0, atol=1e-12)
    np.testing.assert_allclose(np.diagonal(wins, axis1=1, axis2=2), 0.5)
    ratings = router.ratings(prompts)
    np.testing.assert_allclose(ratings.mean(axis=1), 0.0, atol=1e-9)
    np.testing.assert_allclose(win_probabilities(ratings), wins, atol=1e-12)
    np.testing.assert_allclose(router.rating(prompts[0]), ratings[0], atol=1e-6)
    # The overall best model on the training data is rated above the overall worst.
    best, worst = np.argmax(router.quality_), np.argmin(router.quality_)
    assert np.all(ratings[:, best] > ratings[:, worst])


def test_batched_equals_single_prompts():
    data = _synthetic(400, 5, binary=False)
    prompts = [f"question about poems number {i}" for i in range(5)]
    for algorithm in ("exact", "clustered"):
        router = SWRouter(EMBEDDER, algorithm=algorithm, n_clusters=12, n_probe=3).fit(data)
        together = router.win_matrices(prompts)
        one_by_one = np.stack([router.win_matrix(p) for p in prompts])
        # Per-exemplar counts are summed in float32 (relative error ~1e-6 in the counts).
        np.testing.assert_allclose(together, one_by_one, atol=1e-6)


def test_fits_pairwise_battles(tmp_path):
    rows = [
        {"prompt": "write a poem", "model_a": "big", "model_b": "small", "winner": "model_a"},
        {"prompt": "write a poem", "model_a": "small", "model_b": "big", "winner": "tie"},
        {"prompt": "add 2 and 2", "model_a": "small", "model_b": "big", "winner": "model_a"},
    ]
    path = tmp_path / "battles.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    router = SWRouter(EMBEDDER, top_k=1, prior=0.0).fit(load_battles(path))
    wins = router.win_matrix("write a poem")
    big, small = router.models.index("big"), router.models.index("small")
    assert wins[big, small] == pytest.approx(1.5 / 2.0)  # 1.5 wins out of 2 battles


# -- the clustered index ---------------------------------------------------------------------------
def test_clustered_probing_every_cluster_is_exact():
    data = _synthetic(500, 4, binary=False)
    queries = [f"question about history {i}" for i in range(4)]
    exact = SWRouter(EMBEDDER, gamma=20.0).fit(data)
    for top_k in (None, 25):
        exact.set_params(top_k=top_k)
        full = SWRouter(EMBEDDER, gamma=20.0, top_k=top_k, algorithm="clustered", n_clusters=10,
                        n_probe=10).fit(data)
        np.testing.assert_allclose(
            full.weighted_counts_from_embeddings(EMBEDDER.embed(queries)),
            exact.weighted_counts_from_embeddings(EMBEDDER.embed(queries)),
            rtol=1e-5,
        )


def test_clustered_error_is_small_on_real_data(zeroeval):
    data = load_outcomes(shared_dataset("zeroeval-gsm8k"))
    train, test = data.subset(np.arange(0, 1319, 2)), data.prompts[1::2][:100]
    exact = SWRouter(EMBEDDER).fit(train).win_matrices(test)
    approx_router = SWRouter(EMBEDDER, algorithm="clustered").fit(train)
    assert approx_router.index_.clustered
    approx = approx_router.win_matrices(test)
    # Hashed bag-of-words vectors cluster poorly (MiniLM's do better, see bench_latency.py),
    # so this bounds a bad case: 16 of 52 clusters probed, 17 models, default gamma=100.
    assert np.abs(approx - exact).max() < 0.025
    assert np.abs(approx - exact).mean() < 0.004
    # Routing decisions (P(row beats column) >= 0.5) agree almost everywhere.
    assert np.mean((approx >= 0.5) == (exact >= 0.5)) > 0.97


def test_auto_is_exact_for_small_data_and_clustered_for_large():
    router = SWRouter(EMBEDDER).fit(_synthetic(50, 2, binary=True))
    assert router.algorithm_ == "exact" and not router.index_.clustered
    # A request costs n * (dim + 2) multiply-adds with compressible outcomes, n * (dim + M^2)
    # when every exemplar keeps its own counts; above 8M, auto is clustered.
    vectors = np.random.default_rng(0).normal(size=(13_000, 256))
    with calibration_scores_disabled():  # not under test here; saves five refits each
        router = SWRouter(EMBEDDER).fit(_synthetic(13_000, 2, binary=True), embeddings=vectors)
        assert router.algorithm_ == "exact"  # 13,000 x 258 = 3.4M
        router = SWRouter(EMBEDDER).fit(_synthetic(13_000, 20, binary=False), embeddings=vectors)
    assert router.algorithm_ == "clustered" and router.index_.clustered  # 13,000 x 656 = 8.5M


# -- persistence, embeddings given -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("algorithm", "binary"), [("exact", True), ("exact", False), ("clustered", False)]
)
def test_save_load_round_trip(tmp_path, algorithm, binary):
    data = _synthetic(300, 5, binary=binary)
    router = SWRouter(EMBEDDER, gamma=30.0, algorithm=algorithm, n_probe=2).fit(data)
    router.save(tmp_path / "sw.router")
    loaded = load_router(tmp_path / "sw.router")
    assert isinstance(loaded, SWRouter) and loaded.get_params()["gamma"] == 30.0
    prompts = ["a question about chemistry", "poems"]
    np.testing.assert_array_equal(loaded.win_matrices(prompts), router.win_matrices(prompts))


def test_precomputed_embeddings_give_the_same_router():
    data = _synthetic(100, 3, binary=True)
    given = SWRouter(EMBEDDER).fit(data, embeddings=EMBEDDER.embed(data.prompts))
    embedded = SWRouter(EMBEDDER).fit(data)
    np.testing.assert_array_equal(given.win_matrix("poems"), embedded.win_matrix("poems"))


# -- errors ----------------------------------------------------------------------------------------
def test_scoring_before_fit_raises_not_fitted():
    router = SWRouter(EMBEDDER)
    for call in (
        lambda: router.win_matrix("hi"),
        lambda: router.ratings(["hi"]),
        lambda: router.weighted_counts_from_embeddings(np.ones((1, 128))),
        lambda: router.models,
    ):
        with pytest.raises(NotFittedError):
            call()


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"gamma": 1.0}, "gamma"),
        ({"gamma": 0.5}, "gamma"),
        ({"gamma": float("inf")}, "gamma"),
        ({"gamma": "10"}, "gamma"),
        ({"gamma": True}, "gamma"),
        ({"top_k": 0}, "top_k"),
        ({"top_k": 2.5}, "top_k"),
        ({"prior": -1.0}, "prior"),
        ({"normalize": "yes"}, "normalize"),
        ({"algorithm": "fast"}, "algorithm"),
        ({"n_clusters": 0}, "n_clusters"),
        ({"n_probe": 0}, "n_probe"),
        ({"random_state": "seed"}, "random_state"),
        ({"top_k": 1000}, "top_k=1000"),
        ({"algorithm": "clustered", "n_clusters": 1000}, "n_clusters=1000"),
    ],
)
def test_fit_rejects_bad_parameters(params, match):
    with pytest.raises(RouterConfigError, match=match):
        SWRouter(EMBEDDER, **params).fit(_synthetic(50, 2, binary=True))


def test_fit_rejects_bad_data_and_embeddings():
    data = _synthetic(20, 2, binary=True)
    with pytest.raises(OutcomesError, match="at least 2 models"):
        SWRouter(EMBEDDER).fit(data.select_models(["model-0"]))
    with pytest.raises(TypeError, match="Outcomes or Battles"):
        SWRouter(EMBEDDER).fit(data.scores)
    with pytest.raises(ValueError, match=r"shape \(20, dim\)"):
        SWRouter(EMBEDDER).fit(data, embeddings=np.ones((19, 8)))
    zero_row = np.ones((20, 8))
    zero_row[3] = 0.0
    with pytest.raises(ValueError, match="all-zero row"):
        SWRouter(EMBEDDER).fit(data, embeddings=zero_row)
    router = SWRouter(EMBEDDER).fit(data)
    with pytest.raises(ValueError, match=r"shape \(n, 128\)"):
        router.win_matrices_from_embeddings(np.ones((2, 64)))
