"""Final-answer normalisation: two answers agree when their normalised forms are equal.

The default ``normalise_answer`` reads the final answer the way graders do (a ``\\boxed{}``, a
``####`` line, an ``Answer:`` line, a JSON ``"answer"``, else the whole text) and writes it in a
canonical form: a number as ZeroEval writes it (``$1,800.00`` -> ``1800``, ``1/2`` and
``\\frac{1}{2}`` -> ``0.5``), a multiple-choice letter as its capital (``(b)`` -> ``B``), a
JSON object without an ``"answer"`` key (a structured output) whole with sorted keys, other text
case-folded with single spaces and no trailing full stop. An answer with nothing gradable
normalises to ``""``, which agrees with nothing.
"""

from __future__ import annotations

import json
import re
from fractions import Fraction

__all__ = ["normalise_answer", "normalise_choice", "normalise_number", "normalise_text"]

_BOXED = re.compile(r"\\boxed\{((?:[^{}]|\{[^{}]*\})*)\}")
_HASHES = re.compile(r"####\s*(.+)")
_ANSWER_LINE = re.compile(r"(?:^|\n)\s*\**(?:final answer|answer)\**\s*[:：]\s*(.+)", re.I)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:\s*/\s*\d+(?:\.\d+)?)?")
_FRAC = re.compile(r"\\[dt]?frac\{\s*(-?\d+)\s*\}\{\s*(\d+)\s*\}")
_CHOICE = re.compile(r"^\(?([A-Ja-j])\)?[.):]?$")


class _Structured(str):
    """A whole JSON object (a structured output): compared exactly, keys sorted."""


def _final_part(text: str) -> tuple[str, bool]:
    """The part of ``text`` holding the final answer, and whether a marker was found."""
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            obj = json.loads(stripped)
        except ValueError:
            obj = None
        if isinstance(obj, dict) and "answer" in obj:
            return str(obj["answer"]), True
        if isinstance(obj, dict):
            return _Structured(json.dumps(obj, sort_keys=True, ensure_ascii=False)), True
    for pattern in (_BOXED, _HASHES, _ANSWER_LINE):
        found = pattern.findall(text)
        if found:
            return found[-1].strip(), True
    return stripped, False


def normalise_number(text: str, *, last: bool = False) -> str:
    """The first (or ``last``) number of ``text`` in canonical form, or "" if none."""
    cleaned = _FRAC.sub(r"\1/\2", text.replace("$", "").replace(",", ""))
    found = _NUMBER.findall(cleaned)
    if not found:
        return ""
    token = re.sub(r"\s+", "", found[-1] if last else found[0])
    try:
        value = Fraction(token)
    except (ValueError, ZeroDivisionError):
        return ""
    if value.denominator == 1:
        return str(value.numerator)
    return repr(float(value)).rstrip("0").rstrip(".")


def normalise_choice(text: str) -> str:
    """A lone multiple-choice letter (``b``, ``(B)``, ``B.``) as its capital, else ""."""
    match = _CHOICE.match(text.strip())
    return match.group(1).upper() if match else ""


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
    if choice:
        return choice
    number = normalise_number(part, last=not marked)
    if number:
        return number
    return normalise_text(part)
