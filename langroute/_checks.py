"""Checks of user-facing numeric settings, shared so every entry point words its errors alike.

The chat model, the LlamaIndex LLM and the routing policy all take a ``threshold`` (and friends);
one function per kind of value means one wording of "must lie in [0, 1]" everywhere.
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Any

from ._exceptions import RouterConfigError

__all__ = ["check_positive", "check_unit_interval", "is_number"]


def is_number(value: Any) -> bool:
    """A real number, NumPy's too; never a bool (Python's or NumPy's)."""
    return isinstance(value, Real) and not isinstance(value, bool)


def check_unit_interval(name: str, value: Any) -> float | None:
    """``value`` as a float in [0, 1] (None passes); else RouterConfigError naming ``name``."""
    if value is None:
        return None
    if not is_number(value):
        raise RouterConfigError(f"{name} must be a number in [0, 1], got {value!r}")
    if not 0.0 <= float(value) <= 1.0:  # also rejects NaN
        raise RouterConfigError(f"{name} must lie in [0, 1], got {value!r}")
    return float(value)


def check_positive(name: str, value: Any) -> float | None:
    """``value`` as a finite float > 0 (None passes); else RouterConfigError naming ``name``."""
    if value is None:
        return None
    if not is_number(value) or not (math.isfinite(value) and value > 0):
        raise RouterConfigError(f"{name} must be a number > 0, got {value!r}")
    return float(value)
