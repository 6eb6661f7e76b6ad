"""Final-answer normalisation: what counts as the same answer for AgreementScorer."""

from __future__ import annotations

import csv

import pytest

from langroute.cascade import normalise_answer

from ...conftest import shared_dataset


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


@pytest.mark.parametrize("text, expected", [
    # scientific notation is one number, written as ZeroEval writes it (zeroeval-math-l5 holds
    # "3.6e-05" and "2.425264525047309e+20"); it was read as its exponent ("-5", "20")
    ("3.6e-05", "3.6e-05"),
    ("2.425264525047309e+20", "2.425264525047309e+20"),
    ("1e-3", "0.001"),
    ("Answer: 1.5e3", "1500"),
    ("1/10000000000", "1e-10"),   # was "1e-1": the exponent's 0 was stripped
    ("12345678901234567", "1.2345678901234568e+16"),
    ("Answer: 1e999999999", "1e999999999"),  # infinite: not a number (and not computed)
    # a leading-dot decimal and the Unicode minus keep their value
    (".5", "0.5"),
    ("Answer: -.25", "-0.25"),
    ("\u22125", "-5"),
    # a hyphen after a number or a word is not a sign
    ("The range is 10-20", "20"),
    ("x = -5", "-5"),
])
def test_numbers_keep_their_value(text, expected):
    assert normalise_answer(text) == expected


def test_numbers_that_differ_do_not_agree():
    assert normalise_answer("Answer: .5") != normalise_answer("Answer: 5")
    assert normalise_answer("\u22125") != normalise_answer("5")
    assert normalise_answer("1e-3") != normalise_answer("-3")
    assert normalise_answer("Answer: 1.5e3") == normalise_answer("Answer: 1,500")


@pytest.mark.parametrize("text", [
    "The answer is (B).",
    "So the correct answer is B.",
    "Answer: (B) Paris",
    "B) Paris",
    "**Answer: B**",
    "**Final Answer:** (B)",
    "Answer: **b**",
    '```json\n{"reasoning": "3 + 4 = 7", "answer": "B"}\n```',
    'Here it is:\n{"reasoning": "3 + 4 = 7", "answer": "(B)"}',
])
def test_choice_letters_in_common_phrasings(text):
    assert normalise_answer(text) == "B"


@pytest.mark.parametrize("text, expected", [
    ("The answer is a dog.", "the answer is a dog"),  # not a choice letter
    ("the answer is B because", "the answer is b because"),
    ("Answer: J. K. Rowling", "j. k. rowling"),  # initials, not option J
    ("**Answer:** 42", "42"),
])
def test_text_that_is_not_a_choice_stays_text(text, expected):
    assert normalise_answer(text) == expected


@pytest.mark.data
@pytest.mark.parametrize("dataset", ["zeroeval-gsm8k", "zeroeval-math-l5"])
def test_zeroeval_numeric_answers_are_already_normal(dataset):
    """The numeric zeroeval answers are written in the normaliser's canonical form (see their
    README): normalising them changes none."""
    root = shared_dataset(dataset)
    cells = set()
    for name in ("answers.csv", "reference.csv"):
        with open(root / name, newline="") as f:
            reader = csv.reader(f)
            next(reader)
            for row in reader:
                cells.update(row[1:])
    changed = {c: normalise_answer(c) for c in cells if normalise_answer(c) != c}
    assert changed == {}


@pytest.mark.parametrize("text, expected", [
    # a reply in parts is not option (a): two of them must not agree on "A"
    ("(a) 7 (b) 9", "9"),
    ("(a) x = 2\n(b) y = 3", "3"),
    ("A) Yes\nB) No", "a) yes b) no"),
    # the option's own text may hold brackets
    ("(B) Paris (France)", "B"),
    ("(B) g(a) = 1", "B"),
])
def test_a_reply_in_parts_is_not_a_choice(text, expected):
    assert normalise_answer(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("答案是-5", "-5"),        # a letter of another script before the minus: still a sign
    ("温度为-3度", "-3"),
    ("The range is 10-20", "20"),  # a Latin letter or digit before it: a hyphen
    ("ID-5", "5"),
])
def test_a_minus_after_a_letter_of_another_script_is_a_sign(text, expected):
    assert normalise_answer(text) == expected


@pytest.mark.parametrize("text, expected", [
    # strings (zeroeval-crux outputs), not option A in Markdown bold: they must not agree
    ("***a", "***a"),
    ("*******a", "*******a"),
    ("a**********", "a**********"),
    # Markdown emphasis around a letter is still the letter
    ("**B**", "B"),
    ("*b*", "B"),
])
def test_only_markdown_emphasis_around_a_letter_is_ignored(text, expected):
    assert normalise_answer(text) == expected
