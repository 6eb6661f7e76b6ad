"""Bradley-Terry on aggregated win counts: recovers known ratings, handles lopsided counts."""

from __future__ import annotations

import numpy as np
import pytest

from langroute.routers import fit_bradley_terry, win_probabilities


def _expected_counts(ratings: np.ndarray, games: float) -> np.ndarray:
    """Counts a perfect Bradley-Terry world would produce: N * P(i beats j), zero diagonal."""
    counts = games * win_probabilities(ratings)
    np.fill_diagonal(counts, 0.0)
    return counts


def test_recovers_the_ratings_that_generated_the_counts():
    truth = np.array([1.2, -0.3, 0.4, -1.3])
    fitted = fit_bradley_terry(_expected_counts(truth, 50.0))
    np.testing.assert_allclose(fitted, truth - truth.mean(), atol=1e-7)
    assert abs(fitted.mean()) < 1e-12


def test_batch_equals_one_at_a_time():
    rng = np.random.default_rng(1)
    batch = rng.uniform(0, 20, size=(7, 5, 5))
    together = fit_bradley_terry(batch, prior=0.5)
    one_by_one = np.stack([fit_bradley_terry(c, prior=0.5) for c in batch])
    np.testing.assert_allclose(together, one_by_one, atol=1e-10)


def test_prior_pulls_ratings_towards_equal():
    counts = np.array([[0.0, 8.0], [2.0, 0.0]])
    spreads = [np.ptp(fit_bradley_terry(counts, prior=p)) for p in (0.0, 1.0, 10.0, 100.0)]
    assert spreads[0] == pytest.approx(np.log(8.0 / 2.0), abs=1e-7)
    assert all(a > b for a, b in zip(spreads, spreads[1:], strict=False))
    # A prior of p virtual ties is p/2 extra wins each way.
    assert spreads[1] == pytest.approx(np.log(8.5 / 2.5), abs=1e-7)


def test_symmetric_counts_give_equal_ratings():
    counts = np.full((4, 4), 3.0)
    np.testing.assert_allclose(fit_bradley_terry(counts), 0.0, atol=1e-12)


@pytest.mark.parametrize("wins", [5.0, 1e6])
def test_model_that_never_lost_still_converges(wins):
    ratings = fit_bradley_terry(np.array([[0.0, wins, 3.0], [0.0, 0.0, 1.0], [0.0, 2.0, 0.0]]))
    assert np.all(np.isfinite(ratings))
    p = win_probabilities(ratings)
    assert p[0, 1] > 0.9999 and p[0, 2] > 0.9999


def test_model_without_battles_gets_the_average_rating():
    counts = np.zeros((3, 3))
    counts[0, 1], counts[1, 0] = 6.0, 2.0
    ratings = fit_bradley_terry(counts)
    assert ratings[2] == pytest.approx(0.0, abs=1e-6)
    assert ratings[0] - ratings[1] == pytest.approx(np.log(3.0), abs=1e-7)


def test_win_probabilities_are_complementary_with_half_diagonal():
    p = win_probabilities(np.random.default_rng(2).normal(size=(3, 6)))
    np.testing.assert_allclose(p + np.swapaxes(p, 1, 2), 1.0, atol=1e-15)
    np.testing.assert_allclose(np.diagonal(p, axis1=1, axis2=2), 0.5)


@pytest.mark.parametrize(
    ("counts", "prior", "match"),
    [
        (np.ones((2, 3)), 0.0, "shape"),
        (np.ones((2, 2, 2, 2)), 0.0, "shape"),
        (np.array([[0.0, -1.0], [1.0, 0.0]]), 0.0, ">= 0"),
        (np.array([[0.0, np.nan], [1.0, 0.0]]), 0.0, "finite"),
        (np.array([[0.0, 1.0], [1.0, 0.0]]), -1.0, "prior"),
    ],
)
def test_bad_input_is_rejected(counts, prior, match):
    with pytest.raises(ValueError, match=match):
        fit_bradley_terry(counts, prior=prior)


def test_non_convergence_is_a_langroute_error():
    # Regression: a bare RuntimeError escaped the CLI's error handling.
    from langroute import ConvergenceError, LangrouteError

    counts = np.array([[0.0, 900.0, 5.0], [3.0, 0.0, 700.0], [1.0, 2.0, 0.0]])
    with pytest.raises(ConvergenceError, match="did not converge in 1 Newton steps") as info:
        fit_bradley_terry(counts, max_iter=1)
    assert isinstance(info.value, LangrouteError) and isinstance(info.value, RuntimeError)
