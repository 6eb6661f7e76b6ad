"""Small synthetic outcomes with a known answer, shared by the router tests.

Two kinds of prompt with disjoint vocabularies: on arithmetic ones "calc" beats "poet", on
poems "poet" beats "calc"; "cheap" ties with whichever it meets half of the time. A router
that learns anything from the prompts must reproduce that split.
"""

from __future__ import annotations

import numpy as np

from langroute import Battles, Outcomes

MODELS = ("cheap", "calc", "poet")
_NUMBERS = ["seven", "twelve", "forty", "nine", "eighty", "three", "fifteen", "sixty"]
_THEMES = ["rain", "autumn", "the sea", "a lost cat", "moonlight", "old trees", "snow", "dawn"]


def math_prompt(i: int) -> str:
    a, b = _NUMBERS[i % 8], _NUMBERS[(3 * i + 1) % 8]
    return f"Compute {a} times {b} plus {i} and show the arithmetic sum"


def poem_prompt(i: int) -> str:
    return f"Write a gentle rhyming poem about {_THEMES[i % 8]} with verse {i} of lyrical stanzas"


def split_outcomes(n_per_kind: int = 30, *, seed: int = 0) -> Outcomes:
    """``2 * n_per_kind`` prompts, alternating maths and poems, with scores of three models."""
    rng = np.random.default_rng(seed)
    prompts, scores = [], []
    for i in range(n_per_kind):
        prompts.append(math_prompt(i))
        scores.append([rng.integers(0, 2), 1.0, 0.0])
        prompts.append(poem_prompt(i))
        scores.append([rng.integers(0, 2), 0.0, 1.0])
    n = len(prompts)
    return Outcomes(
        ids=[f"s{i}" for i in range(n)],
        prompts=prompts,
        models=MODELS,
        scores=np.asarray(scores, dtype=float),
        costs=np.tile([0.001, 0.01, 0.02], (n, 1)),
    )


def split_battles(n_per_kind: int = 30) -> Battles:
    """The same split as pairwise battles: calc beats poet on maths, poet beats calc on poems."""
    prompts, index, model_a, model_b, result = [], [], [], [], []
    for i in range(n_per_kind):
        for text, calc_result in ((math_prompt(i), 1.0), (poem_prompt(i), 0.0)):
            prompts.append(text)
            index += [len(prompts) - 1] * 2
            model_a += [1, 0]
            model_b += [2, 1]
            result += [calc_result, 0.5]
    return Battles(
        prompts=prompts,
        models=MODELS,
        prompt_index=np.asarray(index),
        model_a=np.asarray(model_a),
        model_b=np.asarray(model_b),
        result=np.asarray(result, dtype=float),
    )
