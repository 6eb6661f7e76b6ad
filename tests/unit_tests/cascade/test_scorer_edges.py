"""Edge cases of the scorers and of the offline agreement check."""

from __future__ import annotations

import math

import numpy as np
import pytest

from langroute import Outcomes
from langroute._exceptions import CascadeConfigError
from langroute._policy import EscalationLadder
from langroute.cascade import LogprobScorer
from langroute.evaluation._cascade import CascadeSpec, _agree, _ladder, _ladder_checked


def test_a_token_of_probability_zero_scores_minus_infinity_not_nan():
    scorer = LogprobScorer(quantile=0.1)
    assert scorer.value([-math.inf, -1.0, -0.5]) == -math.inf
    assert scorer.check_score(scorer.value([-math.inf, -1.0, -0.5])) == -math.inf
    # a quantile away from the -inf token is the usual interpolation
    assert LogprobScorer(quantile=0.5).value([-math.inf, -1.0, -0.5, -0.1]) == -0.75
    # and calibration ranks such an answer lowest
    assert scorer.calibrate([[-math.inf, -1.0], [-0.1]], [False, True]) == -0.1


@pytest.mark.parametrize("precision", ["0.9", True, None])
def test_a_precision_that_is_not_a_number_is_a_config_error(precision):
    with pytest.raises(CascadeConfigError, match="precision"):
        LogprobScorer().calibrate([[-0.1]], [True], precision=precision)


def test_offline_a_routed_model_checking_its_own_empty_answer_does_not_pass():
    """Online, AgreementScorer scores an empty (ungradable) answer 0 whoever verifies it,
    the routed model itself included; the offline ladder counted it as agreeing."""
    models = ("cheap", "strong")
    data = Outcomes(ids=["q0", "q1"], prompts=["p0", "p1"], models=models,
                    scores=np.array([[0.0, 1.0], [1.0, 1.0]]),
                    costs=np.tile((1.0, 10.0), (2, 1)),
                    answers=np.asarray([["", "5"], ["5", "5"]], dtype=object))
    policy = EscalationLadder.build(models, (1.0, 10.0), quality=[0.5, 1.0])
    cols = np.asarray(policy.columns[policy.rungs], dtype=np.int64)
    levels = np.array([[0.1, -np.inf], [0.1, -np.inf]])  # both routed to "cheap"
    ladder = _ladder(data, levels, cols, np.array([1.0]))
    assert ladder.model.tolist() == [[0, 0]]
    passed, _ = _ladder_checked(CascadeSpec("agreement"), data, ladder, (0,), _agree(data),
                                None)
    assert passed.tolist() == [[0, 1]]
