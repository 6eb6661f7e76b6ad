"""SWRouter's feedback pool, and feedback imputed as battle outcomes with a weight per exemplar.

Feedback battles (``source="feedback"``) are kept apart from the fitted exemplars; a request
counts only its ``FEEDBACK_NEIGHBOURS`` most similar, each weighted by SW's kernel times its
``sample_weight``. A score is imputed as the expected *outcome* of each battle (who scores
higher), and weighs the share of that outcome's variance the score explains.
"""

from __future__ import annotations

import numpy as np
import pytest

from langroute import Battles, KNNRouter, Outcomes, SWRouter
from langroute._exceptions import RouterConfigError
from langroute.feedback import DecisionRecord, FeedbackEvent, feedback_battles, feedback_training
from langroute.routers._calibration_scores import calibration_scores_disabled
from langroute.routers._incremental import (
    FEEDBACK_SOURCE,
    conditional_outcomes,
    conditional_scores,
    outcome_reliability,
    score_moments,
)
from langroute.routers._sw import FEEDBACK_NEIGHBOURS

from ..routers.synthetic import MODELS, math_prompt, poem_prompt, split_outcomes


@pytest.fixture(autouse=True)
def _no_calibration_refits():
    with calibration_scores_disabled():
        yield


def _outcomes(scores: np.ndarray, models=("cheap", "strong")) -> Outcomes:
    n = scores.shape[0]
    return Outcomes(ids=[str(i) for i in range(n)], prompts=[f"q{i}" for i in range(n)],
                    models=tuple(models), scores=np.asarray(scores, float), costs=None)


def _feedback(prompts, model_a, model_b, result) -> Battles:
    k = len(prompts)
    return Battles(prompts=list(prompts), models=MODELS, prompt_index=np.arange(k),
                   model_a=np.full(k, model_a), model_b=np.full(k, model_b),
                   result=np.full(k, float(result)), source=FEEDBACK_SOURCE)


# -- imputing the outcome --------------------------------------------------------------------
def test_for_0_1_scores_the_outcome_line_is_the_former_score_line():
    rng = np.random.default_rng(0)
    cheap = rng.integers(0, 2, 60).astype(float)
    strong = np.maximum(cheap, rng.integers(0, 2, 60))
    moments = score_moments(_outcomes(np.stack([cheap, strong], axis=1)))
    quality = np.array([cheap.mean(), strong.mean()])
    model, score = np.array([0, 0, 1, 1]), np.array([0.0, 1.0, 0.0, 1.0])
    former = (1 + score[:, None] - conditional_scores(moments[:4], quality, model, score)) / 2
    np.testing.assert_allclose(conditional_outcomes(moments, quality, model, score), former)
    # a file that kept only the score sums imputes as before
    np.testing.assert_allclose(conditional_outcomes(moments[:4], quality, model, score), former)


def test_a_graded_score_is_imputed_as_the_battle_it_wins_not_a_shrunk_difference():
    # strong always scores 0.5; cheap scores 0.6 (beats it) or 0.4 (loses): a 0.6 is a win
    cheap = np.array([0.6, 0.4] * 10)
    data = _outcomes(np.stack([cheap, np.full(20, 0.5)], axis=1))
    moments, quality = score_moments(data), np.array([0.5, 0.5])
    got = conditional_outcomes(moments, quality, np.array([0, 0]), np.array([0.6, 0.4]))
    np.testing.assert_allclose(got[:, 1], [1.0, 0.0], atol=1e-12)
    # the score difference would have called them 55% and 45% of a win
    former = conditional_outcomes(moments[:4], quality, np.array([0, 0]), np.array([0.6, 0.4]))
    np.testing.assert_allclose(former[:, 1], [0.55, 0.45])


def test_reliability_is_the_share_of_the_outcome_variance_the_score_explains():
    # strong's score says nothing about its battle with cheap when cheap always ties it...
    always = _outcomes(np.array([[1.0, 1.0], [0.0, 0.0]] * 5))
    assert outcome_reliability(score_moments(always))[1, 0] == 0.0
    # ... and everything when the outcome follows the score exactly
    exact = _outcomes(np.array([[0.0, 1.0], [0.0, 0.0]] * 5))
    assert outcome_reliability(score_moments(exact))[1, 0] == pytest.approx(1.0)
    assert outcome_reliability(score_moments(exact)[:4]) is None


def test_a_score_weighs_its_reliability_a_preference_one():
    rng = np.random.default_rng(1)
    cheap = rng.integers(0, 2, 40).astype(float)
    data = _outcomes(np.stack([cheap, np.maximum(cheap, rng.integers(0, 2, 40))], axis=1))
    from langroute.embeddings import HashingEmbedder
    router = SWRouter(HashingEmbedder(dimension=64)).fit(data)
    decisions = {d: DecisionRecord(d, f"p {d}", "cheap", ("cheap", "strong")) for d in "abc"}
    events = [FeedbackEvent("a", "score", "cheap", 1.0),
              FeedbackEvent("b", "preference", "strong", 1.0, other="cheap"),
              FeedbackEvent("c", "score", "strong", 0.0)]
    battles, weight = feedback_training(events, decisions, router)
    reliability = outcome_reliability(router.score_moments_)
    np.testing.assert_allclose(weight, [reliability[0, 1], 1.0, reliability[1, 0]])
    assert 0 < weight[0] < 1
    assert battles.result.tolist() == feedback_battles(events, decisions, router).result.tolist()
    # independence imputes from no fitted line: no weight to give
    assert feedback_training(events, decisions, router, impute="quality")[1].tolist() == [1] * 3


# -- the pool ---------------------------------------------------------------------------------
@pytest.fixture
def fitted(hashing_embedder):
    return SWRouter(hashing_embedder, algorithm="exact").fit(split_outcomes(20, seed=4))


def test_feedback_joins_the_pool_and_moves_the_requests_near_it(fitted):
    query = math_prompt(300)
    before = fitted.win_matrix(query)[2, 1]  # P(poet beats calc) on maths: low
    version = fitted.fit_version_
    fitted.partial_fit(_feedback([math_prompt(200 + i) for i in range(8)], 2, 1, 1.0))
    assert fitted.n_exemplars_ == 40 and fitted.n_feedback_ == 8
    assert fitted.fit_version_ != version
    assert fitted.win_matrix(query)[2, 1] > before + 0.05
    # measured outcomes still join the fitted exemplars
    fitted.partial_fit(split_outcomes(2, seed=9))
    assert fitted.n_exemplars_ == 44 and fitted.n_feedback_ == 8


def test_only_the_nearest_feedback_exemplars_count(fitted):
    query = math_prompt(300)
    near = [math_prompt(300 + 8 * i) for i in range(FEEDBACK_NEIGHBOURS)]
    fitted.partial_fit(_feedback(near, 2, 1, 1.0))
    with_near = fitted.weighted_counts_from_embeddings(fitted._resolve_embedder().embed([query]))
    # poems, far from the maths query, saying the opposite: not among its nearest 100
    fitted.partial_fit(_feedback([poem_prompt(400 + i) for i in range(30)], 1, 2, 1.0))
    assert fitted.n_feedback_ == FEEDBACK_NEIGHBOURS + 30
    again = fitted.weighted_counts_from_embeddings(fitted._resolve_embedder().embed([query]))
    np.testing.assert_allclose(again, with_near)


def test_sample_weight_scales_an_exemplar_and_zero_adds_no_win(fitted):
    query = math_prompt(300)
    embed = fitted._resolve_embedder().embed
    base = fitted.weighted_counts_from_embeddings(embed([query]))[0]
    prompts = [math_prompt(200 + i) for i in range(4)]
    zero = SWRouter(fitted.embedder, algorithm="exact").fit(split_outcomes(20, seed=4))
    zero.partial_fit(_feedback(prompts, 2, 1, 1.0), sample_weight=np.zeros(4))
    full = SWRouter(fitted.embedder, algorithm="exact").fit(split_outcomes(20, seed=4))
    full.partial_fit(_feedback(prompts, 2, 1, 1.0))
    got_zero = zero.weighted_counts_from_embeddings(embed([query]))[0]
    got_full = full.weighted_counts_from_embeddings(embed([query]))[0]
    # poet's wins over calc: relative to the fitted ones, the weighted feedback adds none
    assert got_zero[2, 1] / got_zero[1, 2] == pytest.approx(base[2, 1] / base[1, 2], rel=1e-6)
    assert got_full[2, 1] / got_full[1, 2] > 2 * base[2, 1] / base[1, 2]


@pytest.mark.parametrize("algorithm", ["exact", "clustered"])
def test_the_pool_never_changes_how_the_fitted_exemplars_are_weighed(hashing_embedder, algorithm):
    """Feedback nearer to a request than any fitted exemplar, at weight 0, leaves the router
    as it was; one kernel over both sets had widened the fitted kernel and diluted the prior
    (on alpacaeval2 that alone lowered SW's AIQ as feedback accumulated)."""
    params = {"algorithm": algorithm}
    if algorithm == "clustered":
        params.update(n_clusters=6, n_probe=2)
    static = SWRouter(hashing_embedder, **params).fit(split_outcomes(20, seed=4))
    online = SWRouter(hashing_embedder, **params).fit(split_outcomes(20, seed=4))
    queries = [math_prompt(300), poem_prompt(301)]
    online.partial_fit(_feedback(queries, 2, 1, 1.0), sample_weight=np.zeros(2))
    np.testing.assert_allclose(online.win_matrices(queries), static.win_matrices(queries),
                               rtol=1e-12, atol=1e-12)


def test_feedback_counts_add_on_the_fitted_exemplars_scale(fitted):
    """A feedback exemplar weighs what a fitted one at its similarity would, its kernel
    normalised by the larger of the two sets' largest similarities."""
    embed = fitted._resolve_embedder().embed
    query = embed([math_prompt(300)])
    base = fitted.weighted_counts_from_embeddings(query)[0]
    prompts = [math_prompt(300), math_prompt(200)]  # the first is the request itself
    fitted.partial_fit(_feedback(prompts, 2, 1, 1.0), sample_weight=np.array([0.5, 1.0]))
    got = fitted.weighted_counts_from_embeddings(query)[0]
    sims = (query @ fitted.index_.embeddings.T)[0].astype(float)
    fitted_weights = fitted.gamma ** (sims / sims.max() - 1)
    pool_sims = (query @ embed(prompts).T)[0].astype(float)
    pool_weights = fitted.gamma ** (pool_sims / pool_sims.max() - 1) * np.array([0.5, 1.0])
    scale = fitted_weights.sum() / fitted.n_exemplars_
    assert got[2, 1] - base[2, 1] == pytest.approx(pool_weights.sum() / scale, rel=1e-6)
    np.testing.assert_allclose(np.delete(got.ravel(), 7), np.delete(base.ravel(), 7),
                               rtol=1e-9)


@pytest.mark.parametrize("bad", [np.ones(3), -np.ones(4), np.array([1, 1, np.nan, 1])])
def test_a_bad_sample_weight_is_refused_by_name(fitted, bad):
    with pytest.raises(RouterConfigError, match="sample_weight"):
        fitted.partial_fit(_feedback([math_prompt(i) for i in range(4)], 2, 1, 1.0),
                           sample_weight=bad)
    assert fitted.n_feedback_ == 0


def test_measured_outcomes_take_no_sample_weight(fitted):
    with pytest.raises(RouterConfigError, match="measured outcomes"):
        fitted.partial_fit(split_outcomes(2, seed=9), sample_weight=np.ones(4))


def test_the_pool_survives_save_and_load(fitted, tmp_path):
    fitted.partial_fit(_feedback([math_prompt(200 + i) for i in range(5)], 2, 1, 1.0),
                       sample_weight=np.linspace(0.2, 1.0, 5))
    fitted.save(tmp_path / "router")
    loaded = SWRouter.load(tmp_path / "router", embedder=fitted.embedder)
    assert loaded.n_feedback_ == 5
    np.testing.assert_array_equal(loaded.feedback_weights_, fitted.feedback_weights_)
    queries = [math_prompt(300), poem_prompt(301)]
    np.testing.assert_allclose(loaded.win_matrices(queries), fitted.win_matrices(queries))


def test_a_file_that_lost_its_feedback_arrays_is_refused(fitted, tmp_path):
    from langroute.routers._sw import _feedback_arrays

    with pytest.raises(ValueError, match="feedback"):
        _feedback_arrays({"n_feedback_": 3}, {}, 128, 3)
    embeddings, counts, weights = _feedback_arrays({}, {}, 128, 3)  # an older file: none
    assert embeddings.shape == (0, 128) and counts.shape == (0, 9) and weights.shape == (0,)
    with pytest.raises(ValueError, match="finite"):
        _feedback_arrays({"n_feedback_": 1}, {
            "feedback_embeddings": np.ones((1, 128)), "feedback_counts": -np.ones((1, 9)),
            "feedback_weights": np.ones(1)}, 128, 3)


def test_add_model_gives_the_feedback_exemplars_the_new_model(fitted):
    fitted.partial_fit(_feedback([math_prompt(200 + i) for i in range(3)], 2, 1, 1.0))
    quiz = split_outcomes(4, seed=7)
    quiz = Outcomes(ids=quiz.ids, prompts=quiz.prompts, models=(*MODELS, "new"),
                    scores=np.concatenate([quiz.scores, quiz.scores[:, 1:2]], axis=1),
                    costs=np.concatenate([quiz.costs, quiz.costs[:, 1:2]], axis=1))
    fitted.add_model("new", quiz)
    assert fitted.feedback_counts_.shape == (3, 16)
    assert np.all(np.isfinite(fitted.win_matrices([math_prompt(300)])))


def test_a_clustered_router_counts_its_feedback_too(hashing_embedder):
    router = SWRouter(hashing_embedder, algorithm="clustered", n_clusters=6, n_probe=2).fit(
        split_outcomes(20, seed=4))
    query = math_prompt(300)
    before = router.win_matrix(query)[2, 1]
    router.partial_fit(_feedback([math_prompt(200 + i) for i in range(8)], 2, 1, 1.0))
    assert router.win_matrix(query)[2, 1] > before + 0.05


def test_knn_learns_feedback_unweighted(hashing_embedder):
    """kNN's partial_fit takes no sample_weight; feedback learning does not pass it one."""
    from langroute.feedback import open_feedback_store, record_feedback

    router = KNNRouter(hashing_embedder, k=5).fit(split_outcomes(10, seed=1))
    store = open_feedback_store("memory://")
    store.record_decision(DecisionRecord("d", math_prompt(50), "cheap", MODELS))
    record_feedback(store, "d", score=0.0, router=router)
    assert router.embeddings_.shape[0] == 21


def test_learning_one_event_appends_to_the_pool_in_place(fitted):
    """The pool grows by one row per event; copying all of it per event cost O(pool)."""
    fitted.partial_fit(_feedback([math_prompt(200)], 2, 1, 1.0))
    buffer = fitted._feedback_rows[0]._backing.array
    fitted.partial_fit(_feedback([math_prompt(201)], 2, 1, 1.0))
    assert fitted._feedback_rows[0]._backing.array is buffer and fitted.n_feedback_ == 2
    with pytest.raises(ValueError, match="read-only"):
        fitted.feedback_counts_[0] = 0


def test_a_shallow_copy_that_learns_leaves_the_pool_of_the_original(fitted):
    """Feedback learning stages a shallow copy; both then append after the same rows."""
    import copy

    fitted.partial_fit(_feedback([math_prompt(200)], 2, 1, 1.0))
    staged = copy.copy(fitted).partial_fit(_feedback([math_prompt(201)], 2, 1, 1.0))
    fitted.partial_fit(_feedback([poem_prompt(202)], 1, 2, 1.0))
    embed = fitted._resolve_embedder().embed
    np.testing.assert_allclose(staged.feedback_embeddings_,
                               embed([math_prompt(200), math_prompt(201)]), atol=1e-6)
    np.testing.assert_allclose(fitted.feedback_embeddings_,
                               embed([math_prompt(200), poem_prompt(202)]), atol=1e-6)


def test_record_feedback_gives_sw_the_weight_of_the_score(hashing_embedder):
    """The live path (record_feedback) passes feedback_training's weights on to SW."""
    from langroute.feedback import open_feedback_store, record_feedback

    router = SWRouter(hashing_embedder).fit(split_outcomes(10, seed=1))
    store = open_feedback_store("memory://")
    store.record_decision(DecisionRecord("d", math_prompt(50), "cheap", MODELS))
    record_feedback(store, "d", score=1.0, router=router)
    reliability = outcome_reliability(router.score_moments_)
    assert router.n_feedback_ == 1
    assert router.feedback_weights_.tolist() == pytest.approx([reliability[0, 1:].mean()])
    assert router.feedback_weights_[0] < 1
