"""KNNRouter: exact neighbours, the smoothed pairwise vote, and its edge cases."""

from __future__ import annotations

import numpy as np
import pytest

from langroute import Battles, Outcomes, RouterConfigError, load_outcomes, pairwise_counts
from langroute.embeddings import HashingEmbedder
from langroute.routers import KNNRouter
from tests.conftest import shared_dataset

from .synthetic import math_prompt, poem_prompt, split_outcomes


def outcomes_from(prompts: list[str], scores: list[list[float]]) -> Outcomes:
    return Outcomes(
        ids=[f"q{i}" for i in range(len(prompts))],
        prompts=prompts,
        models=("a", "b", "c")[: len(scores[0])],
        scores=np.asarray(scores, dtype=float),
    )


def brute_force_vote(train: Outcomes, embedder, queries: list[str], k: int, prior: float,
                     counts: np.ndarray | None = None):
    """The documented formula, computed the slow obvious way: per pair, the votes of the k
    most similar exemplars that compared it."""
    if counts is None:
        _, counts = pairwise_counts(train)
    exemplars = embedder.embed(train.prompts).astype(np.float64)
    m = counts.shape[1]
    out = []
    for q in embedder.embed(queries).astype(np.float64):
        order = np.argsort(-(exemplars @ q), kind="stable")
        votes = np.zeros((m, m))
        for i in range(m):
            for j in range(m):
                voters = [e for e in order if counts[e, i, j] + counts[e, j, i] > 0][:k]
                votes[i, j] = counts[voters, i, j].sum()
        with np.errstate(invalid="ignore"):  # the diagonal, 0 / 0 at prior 0
            win = (votes + prior) / (votes + votes.T + 2 * prior)
        np.fill_diagonal(win, 0.5)
        out.append(win)
    return np.asarray(out)


def test_win_matrix_is_the_smoothed_neighbour_vote():
    train = split_outcomes(20, seed=1)
    embedder = HashingEmbedder(dimension=96)
    # The third query is off-topic; its 9th and 10th neighbours are not tied (a tie at the
    # boundary is broken arbitrarily, and numpy 1.x and 2.x break it differently).
    queries = [math_prompt(50), poem_prompt(51), "which soil suits tomatoes best in a small garden"]
    router = KNNRouter(embedder, k=9, prior=0.7).fit(train)
    sims = np.sort(embedder.embed(queries) @ embedder.embed(train.prompts).T, axis=1)[:, ::-1]
    assert np.all(sims[:, 8] - sims[:, 9] > 1e-4)
    np.testing.assert_allclose(
        router.win_matrices(queries), brute_force_vote(train, embedder, queries, 9, 0.7),
        atol=1e-12,
    )


def test_kneighbors_are_exact_and_sorted():
    train = split_outcomes(25)
    router = KNNRouter(HashingEmbedder(dimension=64), k=6).fit(train)
    queries = router.embedder.embed([math_prompt(70), poem_prompt(71)])
    indices, sims = router.kneighbors(queries)
    assert indices.shape == sims.shape == (2, 6)
    all_sims = queries @ router.embeddings_.T
    for row in range(2):
        assert np.all(np.diff(sims[row]) <= 0)
        np.testing.assert_allclose(sims[row], all_sims[row, indices[row]], atol=1e-6)
        kth = np.sort(all_sims[row])[::-1][5]
        assert sims[row, -1] >= kth - 1e-6 and len(set(indices[row])) == 6


def test_training_prompt_with_one_neighbour_and_no_prior_gets_its_own_outcome():
    prompts = ["alpha beta gamma", "delta epsilon zeta", "eta theta iota"]
    train = outcomes_from(prompts, [[1, 0, 0.5], [0, 1, 1], [0.3, 0.3, np.nan]])
    router = KNNRouter(HashingEmbedder(dimension=256), k=1, prior=0.0).fit(train)
    win = router.win_matrices(prompts)
    np.testing.assert_array_equal(win[0], [[0.5, 1, 1], [0, 0.5, 0], [0, 1, 0.5]])
    np.testing.assert_array_equal(win[1], [[0.5, 0, 0], [1, 0.5, 0.5], [1, 0.5, 0.5]])
    # Model c was not measured on the third prompt: a and b tie there, and c's pairs are voted
    # on by the nearest exemplar that compared them (k=1), not left at an even chance.
    assert win[2][0, 1] == win[2][1, 0] == 0.5
    np.testing.assert_array_equal(win[2], brute_force_vote(train, router.embedder, prompts[2:],
                                                           1, 0.0)[0])
    assert win[2][0, 2] in (0.0, 1.0) and win[2][0, 2] + win[2][2, 0] == 1.0


def test_k_equal_to_the_pool_gives_every_prompt_the_global_vote():
    train = split_outcomes(10)
    router = KNNRouter(HashingEmbedder(dimension=64), k=len(train), prior=0.0).fit(train)
    _, counts = pairwise_counts(train)
    total = counts.sum(axis=0)
    np.fill_diagonal(total, 1.0)  # the diagonal is 0/0; it is defined as 1/2
    expected = total / (total + total.T)
    for win in router.win_matrices([math_prompt(99), "anything at all"]):
        np.testing.assert_allclose(win, expected, atol=1e-12)


def test_prior_pulls_towards_one_half():
    train = split_outcomes(15)
    query = [math_prompt(40)]
    sharp = KNNRouter(HashingEmbedder(dimension=64), k=5, prior=0.0).fit(train)
    smooth = KNNRouter(HashingEmbedder(dimension=64), k=5, prior=5.0).fit(train)
    p_sharp, p_smooth = sharp.win_matrix(query[0])[1, 2], smooth.win_matrix(query[0])[1, 2]
    assert p_sharp == 1.0  # all five nearest maths prompts: calc beat poet
    assert p_smooth == pytest.approx((5 + 5) / (5 + 10))


def test_many_queries_are_scored_in_chunks_like_one_by_one():
    # 3000 exemplars: the scorer splits 1500 queries into several blocks.
    rng = np.random.default_rng(0)
    words = np.array([f"w{i}" for i in range(400)])
    prompts = [" ".join(rng.choice(words, 6)) for _ in range(3000)]
    scores = rng.integers(0, 2, (3000, 2)).astype(float)
    router = KNNRouter(HashingEmbedder(dimension=32), k=5).fit(outcomes_from(prompts, scores))
    queries = rng.standard_normal((1500, 32)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    batch = router.win_matrices_from_embeddings(queries)
    for row in (0, 700, 1499):
        alone = router.win_matrices_from_embeddings(queries[row])
        np.testing.assert_array_equal(alone, batch[[row]])


def _one_model_feedback(prompts: list[str], models: tuple[str, ...], model: int,
                        won: float) -> Battles:
    """Battles of ``models[model]`` against every other model on each prompt, as feedback on
    one model's answer gives them (``langroute.feedback.feedback_battles``)."""
    others = [j for j in range(len(models)) if j != model]
    n = len(prompts)
    return Battles(prompts=prompts, models=models,
                   prompt_index=np.repeat(np.arange(n), len(others)),
                   model_a=np.full(n * len(others), model),
                   model_b=np.tile(others, n), result=np.full(n * len(others), won))


def test_feedback_on_one_model_leaves_the_vote_on_other_pairs_at_k():
    train = split_outcomes(20, seed=3)  # models cheap, calc, poet on every prompt
    embedder = HashingEmbedder(dimension=128)
    router = KNNRouter(embedder, k=7, prior=0.5).fit(train)
    queries = [math_prompt(90), poem_prompt(91)]
    before = router.win_matrices(queries)
    # Feedback on "cheap" for prompts right next to the queries: they compared cheap's pairs
    # only, so calc vs poet keeps its 7 nearest voters and cheap's pairs take the new votes.
    near = [math_prompt(90) + " please", poem_prompt(91) + " please", math_prompt(92)]
    feedback = _one_model_feedback(near, train.models, model=0, won=1.0)
    router.partial_fit(feedback)
    after = router.win_matrices(queries)
    np.testing.assert_array_equal(after[:, 1, 2], before[:, 1, 2])
    assert np.all(after[:, 0, 1:] >= before[:, 0, 1:])
    assert np.all((after[:, 0, 1:] > before[:, 0, 1:]).any(axis=1))
    votes = router.vote_counts(embedder.embed(queries))
    np.testing.assert_allclose(votes[:, 1, 2] + votes[:, 2, 1], 7.0)
    np.testing.assert_allclose(votes[:, 0, 1] + votes[:, 1, 0], 7.0)
    # The documented formula, the slow way, on the union of both data sets.
    union = np.concatenate([pairwise_counts(train)[1], pairwise_counts(feedback)[1]])
    np.testing.assert_allclose(
        after, brute_force_vote(_Union(train.prompts + near), embedder, queries, 7, 0.5,
                                counts=union), atol=1e-12)
    # Scored alone or in a batch, the per-pair search gives the same answer.
    for row in range(2):
        np.testing.assert_array_equal(router.win_matrices([queries[row]]), after[[row]])


def test_pair_compared_by_fewer_than_k_exemplars_uses_them_all():
    prompts = [math_prompt(i) for i in range(10)]
    scores = [[1.0, 0.0, 1.0 if i < 2 else np.nan] for i in range(10)]  # c scored twice
    train = outcomes_from(prompts, scores)
    router = KNNRouter(HashingEmbedder(dimension=64), k=5, prior=0.0).fit(train)
    assert not router._complete
    votes = router.vote_counts(router.embedder.embed([math_prompt(40)]))[0]
    assert votes[0, 1] + votes[1, 0] == 5.0  # a-b: the 5 nearest
    assert votes[0, 2] + votes[2, 0] == 2.0  # a-c: both prompts that compared them
    assert votes[2, 1] == 2.0 and votes[0, 2] == 1.0  # c beat b twice, tied a twice


class _Union:
    def __init__(self, prompts: list[str]) -> None:
        self.prompts = prompts


@pytest.mark.parametrize(
    ("params", "message"),
    [({"k": 0}, "k must be"), ({"k": 2.5}, "k must be"), ({"k": True}, "k must be"),
     ({"prior": -1.0}, "prior must be"), ({"prior": float("nan")}, "prior must be")],
)
def test_bad_parameters_are_named_at_fit(params, message):
    router = KNNRouter(HashingEmbedder(dimension=16), **params)
    with pytest.raises(RouterConfigError, match=message):
        router.fit(split_outcomes(5))


def test_more_neighbours_than_prompts_is_an_error():
    with pytest.raises(RouterConfigError, match="only 10 prompts"):
        KNNRouter(HashingEmbedder(dimension=16), k=11).fit(split_outcomes(5))


def test_wrong_embedding_width_is_an_error():
    router = KNNRouter(HashingEmbedder(dimension=16), k=3).fit(split_outcomes(5))
    with pytest.raises(ValueError, match=r"shape \(n, 16\)"):
        router.win_matrices_from_embeddings(np.ones((2, 8), dtype=np.float32))


def test_real_gsm8k_subset_self_vote():
    data = load_outcomes(shared_dataset("routellm-gsm8k"))
    train = data.subset(np.arange(300))
    router = KNNRouter(HashingEmbedder(dimension=128), k=1, prior=0.0).fit(train)
    win = router.win_matrices(train.prompts[:40])
    strong_won = train.scores[:40, 0] > train.scores[:40, 1]
    tied = train.scores[:40, 0] == train.scores[:40, 1]
    np.testing.assert_array_equal(win[:, 0, 1], np.where(tied, 0.5, strong_won.astype(float)))
