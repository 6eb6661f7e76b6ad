"""Final-answer normalisation: two answers agree when their normalised forms are equal.

The default ``normalise_answer`` reads the final answer the way graders do (a ``\\boxed{}``, a
``####`` line, an ``Answer:`` line, a JSON ``"answer"``, else the whole text) and writes it in a
canonical form: a number as ZeroEval writes it (``$1,800.00`` -> ``1800``, ``1/2`` and
``\\frac{1}{2}`` -> ``0.5``, ``.5`` -> ``0.5``, ``1.5e3`` -> ``1500``, ``3.6e-05`` kept), a
multiple-choice letter as its capital (``(b)``, ``(B) Paris``, ``The answer is (B).`` -> ``B``),
a JSON object without an ``"answer"`` key (a structured output) whole with sorted keys, other
text case-folded with single spaces and no trailing full stop. Markdown bold around the answer
and a code fence around a JSON reply are ignored. An answer with nothing gradable normalises to
``""``, which agrees with nothing.
"""

from __future__ import annotations

import json
import math
import re
from fractions import Fraction

__all__ = ["normalise_answer", "normalise_choice", "normalise_number", "normalise_text"]

_BOXED = re.compile(r"\\boxed\{((?:[^{}]|\{[^{}]*\})*)\}")
_HASHES = re.compile(r"####\s*(.+)")
_ANSWER_LINE = re.compile(r"(?:^|\n)\s*\**(?:final answer|answer)\**\s*[:：]\s*(.+)", re.I)
# A decimal (``.5`` too) with an optional exponent, optionally over another; a ``-`` right after
# a Latin letter, digit or bracket is a hyphen or a subtraction (``10-20``), not a sign (after
# other scripts' letters it is one: ``答案是-5`` is -5, as ``\w`` would not say).
_DECIMAL = r"(?<![\d.])(?:\d+(?:\.\d+)?|\.\d+)"
_NUMBER = re.compile(
    rf"(?:(?<![0-9A-Za-z_.)\]}}])-)?{_DECIMAL}(?:[eE][-+]?\d+)?(?:\s*/\s*{_DECIMAL})?")
_FRAC = re.compile(r"\\[dt]?frac\{\s*(-?\d+)\s*\}\{\s*(\d+)\s*\}")
# A lone letter (``b``, ``(B)``, ``B.``), or a marked one followed by its option's text
# (``(B) Paris``, ``B) Paris``); ``B. Paris`` is not one (``J. K. Rowling`` is a name), nor is
# a reply in parts (``(a) 7 (b) 9``, ``a) ...\nb) ...``): a second marked letter follows.
_OPTION_TEXT = r"\s(?!.*(?<!\S)\(?[A-Ja-j]\)(?!\S)).*"
_CHOICE = re.compile(rf"^(?:\(?([A-Ja-j])\)?[.):]?|\(([A-Ja-j])\){_OPTION_TEXT}"
                     rf"|([A-Ja-j])\){_OPTION_TEXT})$", re.S)
# "the answer is (B)" / "the correct answer is B." in an unmarked reply
_ANSWER_IS = re.compile(
    r"\b(?i:answer is)\s*:?\s*\**\s*(?:\(([A-Ja-j])\)|([A-J])(?=\**\s*(?:[.,;!)]|$)))", re.M)
_EMPHASIS = re.compile(r"(\*{1,3})(.+?)\1", re.S)
_FENCE = re.compile(r"^```[A-Za-z]*\s*\n(.*)\n\s*```$", re.S)
#: Python writes floats from 1e16 on in exponent form, and so does ZeroEval's key.
_EXACT_INTEGERS = 10**16


class _Structured(str):
    """A whole JSON object (a structured output): compared exactly, keys sorted."""


def _final_part(text: str) -> tuple[str, bool]:
    """The part of ``text`` holding the final answer, and whether a marker was found."""
    stripped = text.strip()
    fenced = _FENCE.match(stripped)
    body = fenced.group(1).strip() if fenced else stripped
    if body.startswith("{"):
        try:
            obj = json.loads(body)
        except ValueError:
            obj = None
        if isinstance(obj, dict) and "answer" in obj:
            return str(obj["answer"]), True
        if isinstance(obj, dict):
            return _Structured(json.dumps(obj, sort_keys=True, ensure_ascii=False)), True
    if "{" in body:  # a JSON object with an "answer" after some text (ZeroEval's first one)
        try:
            obj, _ = json.JSONDecoder().raw_decode(body, body.index("{"))
        except ValueError:
            obj = None
        if isinstance(obj, dict) and "answer" in obj:
            return str(obj["answer"]), True
    for pattern in (_BOXED, _HASHES, _ANSWER_LINE):
        found = pattern.findall(text)
        if found:
            return _unbold(found[-1]), True
    return stripped, False


def _unbold(text: str) -> str:
    """``text`` without surrounding whitespace and Markdown bold (``**B**``, ``** 42``)."""
    return text.strip().strip("*").strip()


def normalise_number(text: str, *, last: bool = False) -> str:
    """The first (or ``last``) number of ``text`` in canonical form, or "" if none."""
    cleaned = _FRAC.sub(r"\1/\2", text.replace("$", "").replace(",", "").replace("\u2212", "-"))
    found = _NUMBER.findall(cleaned)
    if not found:
        return ""
    token = re.sub(r"\s+", "", found[-1] if last else found[0])
    try:
        value = _value(token)
        if value is None:
            return ""
        if value.denominator == 1 and abs(value.numerator) < _EXACT_INTEGERS:
            return str(value.numerator)
        written = repr(float(value))
    except (ValueError, ZeroDivisionError, OverflowError):
        return ""
    return written[:-2] if written.endswith(".0") else written


def _value(token: str) -> Fraction | None:
    """The exact value of a number token (``a``, ``a/b``, ``a e k``); None when it is infinite.
    An exponent goes through float, so that ``1e999999999`` is not computed digit by digit."""
    num, _, den = token.partition("/")
    if "e" in num.lower():
        as_float = float(num)
        if not math.isfinite(as_float):
            return None
        value = Fraction(as_float)
    else:
        value = Fraction(num)
    return value / Fraction(den) if den else value


def normalise_choice(text: str) -> str:
    """A multiple-choice letter (``b``, ``(B)``, ``B.``, ``(B) Paris``) as its capital, else
    ""."""
    # Only Markdown emphasis around it (``**B**``): ``***a`` is a string, not option A.
    emphasised = _EMPHASIS.fullmatch(text.strip())
    match = _CHOICE.match(emphasised.group(2).strip() if emphasised else text.strip())
    if not match:
        return ""
    return next(g for g in match.groups() if g).upper()


def normalise_text(text: str) -> str:
    """Case-folded, single-spaced, without surrounding quotes or a trailing full stop."""
    return " ".join(text.strip().strip("'\"`").rstrip(".").split()).casefold()


def normalise_answer(text: str) -> str:
    """The canonical final answer of a model's reply (see the module docstring)."""
    if not isinstance(text, str):
        raise TypeError(f"normalise_answer() takes the answer's text, got {type(text).__name__}")
    part, marked = _final_part(text)
    if isinstance(part, _Structured):
        return str(part)
    choice = normalise_choice(part)
    if not choice and not marked:
        said = _ANSWER_IS.findall(part)
        choice = next(g for g in said[-1] if g).upper() if said else ""
    if choice:
        return choice
    number = normalise_number(part, last=not marked)
    if number:
        return number
    return normalise_text(part)
