"""SWRouter's feedback pool index: an inverted file that finds a request's feedback neighbours
without scoring the whole pool, once scanning it costs more than ``EXACT_MAX_WORK``.

``EXACT_MAX_WORK`` is lowered so that a few hundred synthetic 128-d rows cross it; the pool's
rows come from a few well separated topics, as prompts do.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from langroute import Battles, Outcomes, SWRouter
from langroute._exceptions import RouterFileError
from langroute.routers import _sw
from langroute.routers._calibration_scores import calibration_scores_disabled
from langroute.routers._incremental import FEEDBACK_SOURCE
from langroute.routers._index import default_n_clusters
from langroute.routers._sw import CLUSTERED_REBUILD_GROWTH, FEEDBACK_NEIGHBOURS

DIM = 128
MODELS = ("cheap", "calc", "poet")
#: Feedback rows the lowered budget scans exactly; one more builds the index.
BUDGET_ROWS = 200


@pytest.fixture(autouse=True)
def _small_budget(monkeypatch):
    monkeypatch.setattr(_sw, "EXACT_MAX_WORK", BUDGET_ROWS * DIM)
    with calibration_scores_disabled():
        yield


def _topics(n: int, seed: int, n_topics: int = 6) -> np.ndarray:
    """Unit rows around ``n_topics`` random directions (same-topic cosine about 0.5)."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).normal(size=(n_topics, DIM))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    rows = centres[rng.integers(0, n_topics, n)] + rng.normal(size=(n, DIM)) / np.sqrt(DIM)
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def _router(hashing_embedder, **params) -> SWRouter:
    rng = np.random.default_rng(3)
    n = 60
    scores = np.stack([rng.integers(0, 2, n), rng.integers(0, 2, n), rng.integers(0, 2, n)],
                      axis=1).astype(float)
    outcomes = Outcomes(ids=[f"s{i}" for i in range(n)], prompts=[f"fit {i}" for i in range(n)],
                        models=MODELS, scores=scores, costs=np.tile([0.001, 0.01, 0.02], (n, 1)))
    return SWRouter(hashing_embedder, **{"algorithm": "exact", **params}).fit(
        outcomes, embeddings=_topics(n, seed=1))


def _learn(router: SWRouter, vectors: np.ndarray, start: int) -> SWRouter:
    """One feedback event per row: calc beat poet, or poet beat calc, by row parity."""
    for i, vector in enumerate(vectors, start):
        router.partial_fit(Battles(
            prompts=[f"feedback {i}"], models=MODELS, prompt_index=np.array([0]),
            model_a=np.array([1]), model_b=np.array([2]), result=np.array([float(i % 2)]),
            source=FEEDBACK_SOURCE), embeddings=vector[None])
    return router


def _learn_all(router: SWRouter, vectors: np.ndarray) -> SWRouter:
    """The rows as one ``partial_fit`` of several feedback prompts."""
    k = vectors.shape[0]
    return router.partial_fit(Battles(
        prompts=[f"bulk {i}" for i in range(k)], models=MODELS, prompt_index=np.arange(k),
        model_a=np.ones(k, int), model_b=np.full(k, 2), result=(np.arange(k) % 2).astype(float),
        source=FEEDBACK_SOURCE), embeddings=vectors)


def _exact_rows(router: SWRouter, queries: np.ndarray) -> np.ndarray:
    sims = queries @ router.feedback_embeddings_.T
    return np.argsort(-sims, axis=1, kind="stable")[:, :FEEDBACK_NEIGHBOURS]


def test_a_pool_within_the_budget_is_scanned_exactly(hashing_embedder, monkeypatch):
    """Up to the budget nothing changes, bit for bit; one more row builds the index."""
    pool = _topics(BUDGET_ROWS + 1, seed=2)
    queries = _topics(5, seed=3)
    router = _learn_all(_router(hashing_embedder), pool[:BUDGET_ROWS])
    assert router.feedback_index_ is None
    monkeypatch.setattr(_sw, "EXACT_MAX_WORK", 10**9)
    unbounded = _learn_all(_router(hashing_embedder), pool[:BUDGET_ROWS])
    np.testing.assert_array_equal(router.win_matrices_from_embeddings(queries),
                                  unbounded.win_matrices_from_embeddings(queries))
    monkeypatch.setattr(_sw, "EXACT_MAX_WORK", BUDGET_ROWS * DIM)
    _learn(router, pool[BUDGET_ROWS:], BUDGET_ROWS)
    assert router.feedback_index_ is not None
    assert router.feedback_index_.labels.shape == (BUDGET_ROWS + 1,)


def _recall(router: SWRouter, queries: np.ndarray) -> float:
    rows = router._feedback_neighbours(queries)[1]
    return float(np.mean([np.intersect1d(got, want).size / FEEDBACK_NEIGHBOURS
                          for got, want in zip(rows, _exact_rows(router, queries), strict=True)]))


def test_above_the_budget_the_index_finds_nearly_the_exact_neighbours(hashing_embedder):
    pool = _topics(1200, seed=2)
    router = _learn_all(_router(hashing_embedder), pool)
    index = router.feedback_index_
    assert index is not None and index.centroids.shape == (default_n_clusters(1200), DIM)
    queries = _topics(40, seed=3)
    sims, rows, nearest = router._feedback_neighbours(queries)
    assert sims.shape == rows.shape == (40, FEEDBACK_NEIGHBOURS)
    np.testing.assert_allclose(sims, np.take_along_axis(
        queries @ router.feedback_embeddings_.T, rows, axis=1), rtol=1e-5)
    np.testing.assert_array_equal(nearest[:, 0], sims.max(axis=1))
    # measured: 1.00 with the default 16 of 70 clusters probed, 0.68 with 4 (200-row topics)
    assert _recall(router, queries) >= 0.95
    assert _recall(_learn_all(_router(hashing_embedder, n_probe=4), pool), queries) < 0.9
    # batched scoring searches each query as scoring it alone does
    batched = router.weighted_counts_from_embeddings(queries)
    alone = np.concatenate([router.weighted_counts_from_embeddings(q[None]) for q in queries])
    np.testing.assert_allclose(batched, alone, rtol=1e-5)  # float32 gemm vs gemv


def test_each_event_appends_one_label_until_the_pool_doubles(hashing_embedder):
    pool = _topics(2 * (BUDGET_ROWS + 1) + 1, seed=2)
    router = _learn_all(_router(hashing_embedder), pool[: BUDGET_ROWS + 1])
    built = router.feedback_index_
    assert built is not None and built.n_clustered == BUDGET_ROWS + 1
    for n in range(BUDGET_ROWS + 2, 2 * (BUDGET_ROWS + 1)):
        _learn(router, pool[n - 1 : n], n)
        index = router.feedback_index_
        assert index.centroids is built.centroids and index.labels.shape == (n,)
        assert index.labels[-1] == np.argmax(built.centroids @ pool[n - 1])
        np.testing.assert_array_equal(index.sizes, np.bincount(index.labels, minlength=len(
            built.centroids)))
    assert CLUSTERED_REBUILD_GROWTH == 2.0
    _learn(router, pool[-2:-1], 2 * (BUDGET_ROWS + 1))
    rebuilt = router.feedback_index_
    assert rebuilt.n_clustered == 2 * (BUDGET_ROWS + 1)
    assert rebuilt.centroids.shape == (default_n_clusters(2 * (BUDGET_ROWS + 1)), DIM)


@pytest.mark.parametrize("algorithm", ["exact", "clustered"])
def test_a_saved_router_routes_and_learns_like_the_live_one(hashing_embedder, tmp_path,
                                                            algorithm):
    pool = _topics(400, seed=2)
    router = _router(hashing_embedder, algorithm=algorithm, n_clusters=6, n_probe=2)
    router = _learn(_learn_all(router, pool[:300]), pool[300:310], 300)
    assert router.algorithm_ == algorithm
    router.save(tmp_path / "router")
    loaded = SWRouter.load(tmp_path / "router", embedder=router.embedder)
    np.testing.assert_array_equal(loaded.feedback_index_.labels, router.feedback_index_.labels)
    np.testing.assert_array_equal(loaded.feedback_index_.centroids,
                                  router.feedback_index_.centroids)
    queries = _topics(30, seed=3)
    np.testing.assert_array_equal(loaded.win_matrices_from_embeddings(queries),
                                  router.win_matrices_from_embeddings(queries))
    for learner in (router, loaded):
        _learn(learner, pool[310:320], 310)
    np.testing.assert_array_equal(loaded.win_matrices_from_embeddings(queries),
                                  router.win_matrices_from_embeddings(queries))


def test_a_file_without_the_index_loads_exact_and_builds_it_at_the_next_event(
        hashing_embedder, tmp_path, monkeypatch):
    """A file written before the index existed: its pool is scanned until it learns."""
    pool = _topics(301, seed=2)
    router = _learn_all(_router(hashing_embedder), pool[:300])
    state, arrays = router._get_state()
    del state["n_feedback_clustered_"], arrays["feedback_centroids"], arrays["feedback_labels"]
    monkeypatch.setattr(router, "_get_state", lambda: (state, arrays))
    router.save(tmp_path / "router")
    loaded = SWRouter.load(tmp_path / "router", embedder=router.embedder)
    assert loaded.feedback_index_ is None
    _learn(loaded, pool[300:], 300)
    assert loaded.feedback_index_.n_clustered == 301


def _tamper(arrays, state, what):
    if what == "feedback_labels":
        arrays["feedback_labels"] = arrays["feedback_labels"][:-1]
    elif what == "out of range":
        labels = arrays["feedback_labels"].copy()
        labels[0] = arrays["feedback_centroids"].shape[0]
        arrays["feedback_labels"] = labels
    elif what == "feedback_centroids":
        centroids = arrays["feedback_centroids"].copy()
        centroids[0, 0] = np.nan
        arrays["feedback_centroids"] = centroids
    elif what == "n_feedback_clustered_":
        state["n_feedback_clustered_"] = 10**6
    else:
        del arrays["feedback_labels"]


@pytest.mark.parametrize(("what", "message"), [
    ("feedback_labels", "feedback_labels must be 300 integers"),
    ("out of range", "feedback_labels must lie in"),
    ("feedback_centroids", "feedback_centroids contain NaN"),
    ("n_feedback_clustered_", "n_feedback_clustered_ 1000000"),
    ("missing", "lacks \\['feedback_labels'\\]"),
])
def test_a_corrupt_index_is_refused_by_name(hashing_embedder, tmp_path, monkeypatch, what,
                                            message):
    router = _learn_all(_router(hashing_embedder), _topics(300, seed=2))
    state, arrays = router._get_state()
    arrays = dict(arrays)
    _tamper(arrays, state, what)
    monkeypatch.setattr(router, "_get_state", lambda: (state, arrays))
    router.save(tmp_path / "router")
    with pytest.raises(RouterFileError, match=message):
        SWRouter.load(tmp_path / "router", embedder=router.embedder)


@pytest.mark.parametrize("rebuild", [False, True], ids=["append", "re-cluster"])
def test_a_shallow_copy_that_learns_leaves_the_index_of_the_original(hashing_embedder,
                                                                     rebuild):
    """Feedback learning stages ``copy.copy(router).partial_fit``; the original keeps its
    labels, and both then append after the same rows without writing into each other's."""
    pool = _topics(2 * BUDGET_ROWS + 10, seed=2)
    n = 2 * BUDGET_ROWS - 1 if rebuild else BUDGET_ROWS + 5
    router = _learn_all(_router(hashing_embedder), pool[: BUDGET_ROWS + 1])
    _learn(router, pool[BUDGET_ROWS + 1 : n], BUDGET_ROWS + 1)
    before = router.feedback_index_
    labels, sizes = before.labels.copy(), before.sizes.copy()
    staged = _learn(copy.copy(router), pool[n + 1 : n + 4], n)
    assert router.feedback_index_ is before
    np.testing.assert_array_equal(before.labels, labels)
    np.testing.assert_array_equal(before.sizes, sizes)
    assert (staged.feedback_index_.n_clustered > before.n_clustered) == rebuild
    _learn(router, pool[n : n + 1], n)
    staged_labels = staged.feedback_index_.labels
    assert staged_labels.shape == (n + 3,)
    if not rebuild:
        np.testing.assert_array_equal(staged_labels[:n], labels)
        np.testing.assert_array_equal(
            staged_labels[n:], np.argmax(pool[n + 1 : n + 4] @ before.centroids.T, axis=1))
    assert router.feedback_index_.labels[-1] == np.argmax(before.centroids @ pool[n])


def test_add_model_keeps_the_index(hashing_embedder):
    router = _learn_all(_router(hashing_embedder), _topics(300, seed=2))
    index = router.feedback_index_
    rng = np.random.default_rng(5)
    scores = rng.integers(0, 2, (8, 4)).astype(float)
    quiz = Outcomes(ids=[f"q{i}" for i in range(8)], prompts=[f"quiz {i}" for i in range(8)],
                    models=(*MODELS, "new"), scores=scores,
                    costs=np.tile([0.001, 0.01, 0.02, 0.005], (8, 1)))
    router.add_model("new", quiz, embeddings=_topics(8, seed=6))
    assert router.feedback_index_ is index
    assert router.feedback_counts_.shape == (300, 16)
    assert np.all(np.isfinite(router.win_matrices_from_embeddings(_topics(3, seed=7))))
