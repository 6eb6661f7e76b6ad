"""Checks of router parameters, shared so every router words its errors the same way.

Only plain Python ``int`` / ``float`` values pass (never ``bool``, never numpy scalars): the
parameters are saved in router files, which hold JSON.
"""

from __future__ import annotations

import math
from typing import Any

from .._exceptions import RouterConfigError

__all__ = ["check_int", "check_number", "check_random_state"]


def check_int(name: str, value: Any, *, minimum: int = 1, optional: bool = False) -> None:
    """Raise RouterConfigError unless ``value`` is an int >= ``minimum`` (or None if optional)."""
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        kind = "None or an int" if optional else "an int"
        raise RouterConfigError(f"{name} must be {kind} >= {minimum}, got {value!r}")


def check_number(
    name: str, value: Any, *, minimum: float = 0.0, strict: bool = False
) -> None:
    """Raise RouterConfigError unless ``value`` is a finite number >= ``minimum`` (> if strict)."""
    ok = (
        not isinstance(value, bool)
        and isinstance(value, (int, float))
        and (isinstance(value, int) or math.isfinite(value))
        and (value > minimum if strict else value >= minimum)
    )
    if not ok:
        bound = f"{'>' if strict else '>='} {minimum:g}"
        raise RouterConfigError(f"{name} must be a finite number {bound}, got {value!r}")


def check_random_state(value: Any) -> None:
    """Raise RouterConfigError unless ``value`` is None or an int >= 0 (a JSON-storable seed)."""
    check_int("random_state", value, minimum=0, optional=True)
