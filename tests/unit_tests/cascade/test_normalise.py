"""Final-answer normalisation: what counts as the same answer for AgreementScorer."""

from __future__ import annotations

import pytest

from langroute.cascade import normalise_answer


@pytest.mark.parametrize("text, expected", [
    ("The answer is 18.", "18"),
    ("First 3 apples, then 5 more: 8", "8"),         # no marker: the last number
    ("#### 1,800.00", "1800"),
    ("Answer: $12.50", "12.5"),
    ("so the result is \\boxed{1/2}", "0.5"),
    ("\\boxed{\\frac{1}{2}} after 3 steps", "0.5"),
    ('{"answer": "42", "reasoning": "6 * 7"}', "42"),
    ('{"name": "Ada", "age": 36}', '{"age": 36, "name": "Ada"}'),
    ("(b)", "B"),
    ("Answer: C.", "C"),
    ("  Paris. ", "paris"),
    ("", ""),
    ("I cannot tell.", "i cannot tell"),
])
def test_final_answers_are_normalised(text, expected):
    assert normalise_answer(text) == expected


def test_equal_answers_written_differently_agree():
    assert normalise_answer("#### 18") == normalise_answer("The final answer is 18.00")
    assert normalise_answer('{"b": 1, "a": 2}') == normalise_answer('{"a": 2, "b": 1}')
    assert normalise_answer("(A)") != normalise_answer("B")


def test_non_text_is_a_type_error():
    with pytest.raises(TypeError, match="answer's text"):
        normalise_answer(None)  # type: ignore[arg-type]
