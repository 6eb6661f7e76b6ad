from __future__ import annotations

import numpy as np
import pytest

from langroute import RouterConfigError
from langroute.evaluation import make_splits

PROMPTS = [f"p{i % 37}" for i in range(50)]  # 13 prompts appear twice


def test_kfold_partitions_and_is_deterministic():
    splits = make_splits(PROMPTS, folds=4, seeds=2)
    assert len(splits) == 8
    for seed in (0, 1):
        tests = [s.test for s in splits if s.seed == seed]
        assert np.array_equal(np.sort(np.concatenate(tests)), np.arange(50))
    again = make_splits(PROMPTS, folds=4, seeds=2)
    assert all(np.array_equal(a.test, b.test) for a, b in zip(splits, again, strict=True))
    assert not np.array_equal(splits[0].test, splits[4].test)  # another seed reshuffles


def test_duplicate_prompts_stay_on_one_side():
    for sp in make_splits(PROMPTS, folds=5, seeds=[3]):
        assert not {PROMPTS[i] for i in sp.train} & {PROMPTS[i] for i in sp.test}
        assert len(sp.train) + len(sp.test) == 50


def test_halves_one_split_per_seed():
    splits = make_splits(PROMPTS, scheme="halves", seeds=3)
    assert [s.seed for s in splits] == [0, 1, 2]
    assert all(abs(len(set(PROMPTS[i] for i in s.test)) - 37 / 2) <= 1 for s in splits)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"folds": 1}, "folds must be an int >= 2"),
        ({"scheme": "loo"}, "unknown split scheme"),
        ({"scheme": "halves", "folds": 3}, "applies to scheme='kfold'"),
        ({"seeds": 0}, "seeds must be >= 1"),
        # a float count was a TypeError ("'float' object is not iterable"), a str its letters
        ({"seeds": 1.5}, "seeds must be a count or a list of ints, got 1.5"),
        ({"seeds": "3"}, "seeds must be a count or a list of ints, got '3'"),
        ({"folds": 40}, "cannot be split into 40"),
    ],
)
def test_bad_settings_raise(kwargs, message):
    with pytest.raises(RouterConfigError, match=message):
        make_splits(PROMPTS, **kwargs)
