"""A process pool sends errors back pickled: every langroute error must survive it intact."""

from __future__ import annotations

import pickle

import pytest

from langroute import BudgetExceededError, OutcomesError, RefitError, RouterConfigError


@pytest.mark.parametrize(
    ("error", "fields"),
    [
        (OutcomesError("bad score", path="scores.csv", line=7), {"path": "scores.csv", "line": 7}),
        (BudgetExceededError("agent:a", "day", "2026-12-01", limit_usd=1.0, spent_usd=0.9,
                             reserved_usd=0.05, requested_usd=0.2, model="gpt-4o"),
         {"scope": "agent:a", "limit_usd": 1.0, "requested_usd": 0.2, "model": "gpt-4o"}),
        (RefitError("the refit failed", event={"decision_id": "d1"}),
         {"event": {"decision_id": "d1"}}),
        (RouterConfigError("threshold must lie in [0, 1]"), {}),
    ],
)
def test_an_error_survives_pickling_with_its_message_and_fields(error, fields):
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is type(error)
    assert str(back) == str(error)
    for name, value in fields.items():
        assert getattr(back, name) == value
