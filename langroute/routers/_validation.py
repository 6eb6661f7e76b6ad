"""Checks of router parameters and training data, shared so every router words its errors
the same way.

Only plain Python ``int`` / ``float`` values pass (never ``bool``, never numpy scalars): the
parameters are saved in router files, which hold JSON.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import numpy as np

from .._exceptions import OutcomesError, RouterConfigError
from .._outcomes import Battles, Outcomes

__all__ = [
    "check_every_model_measured",
    "check_fit_data",
    "check_int",
    "check_number",
    "check_random_state",
    "nested_fits",
]

_NESTED: ContextVar[bool] = ContextVar("langroute_nested_fit", default=False)


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


@contextmanager
def nested_fits() -> Iterator[None]:
    """Within this block, ``fit`` runs on part of data a user's ``fit`` already checked (an
    out-of-fold calibration clone, a stacked or tuned inner fold): ``check_fit_data`` skips
    ``check_every_model_measured``, since a fold may leave out every score of a model scored
    on a few prompts, which is valid data. Thread- and task-local (a ``ContextVar``)."""
    token = _NESTED.set(True)
    try:
        yield
    finally:
        _NESTED.reset(token)


def check_fit_data(data: Outcomes | Battles) -> None:
    """The checks of the data given to ``fit``: at least 2 models, some rows, each model
    measured (not inside ``nested_fits()``, whose data is a part of checked data)."""
    if len(data.models) < 2:
        raise OutcomesError(f"routing needs at least 2 models, got {list(data.models)}")
    if len(data) == 0:
        # Before the per-model check, which would blame the first model of empty data.
        rows = "prompts" if isinstance(data, Outcomes) else "battles"
        raise OutcomesError(f"fit() got no training {rows}", path=data.source)
    if not _NESTED.get():
        check_every_model_measured(data)


def check_every_model_measured(data: Outcomes | Battles) -> None:
    """Refuse Outcomes with a model never scored (Battles: one that plays no battle): ``fit``
    would rate it from nothing.

    Its win probabilities would come from priors alone (an even chance, or worse: SW put it
    above measured models), and nothing would tell the user. Only ``fit`` checks this:
    ``partial_fit`` and ``add_model`` take data that scores some of the models by design.
    """
    if isinstance(data, Outcomes):
        never = np.isnan(data.scores).all(axis=0)
    else:
        # Battles may name a model that plays none (load_battles(path, models=[...])).
        never = np.ones(len(data.models), dtype=bool)
        never[data.model_a] = never[data.model_b] = False
    if never.any():
        name = data.models[int(np.argmax(never))]
        rest = [m for m, unscored in zip(data.models, never, strict=True) if not unscored]
        if isinstance(data, Outcomes):
            problem = "has no measured score (its scores are all NaN)"
            drop = f"outcomes.select_models({rest!r})"
        else:
            problem = "plays no battle"
            drop = f"load_battles(path, models={rest!r})"
        raise OutcomesError(
            f"model {name!r} {problem}, so a router cannot rate it; drop it ({drop}) and, "
            f"once it has answered some prompts, onboard it with router.add_model({name!r}, "
            "quiz)",
            path=data.source,
        )
