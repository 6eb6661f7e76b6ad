"""Choosing the routing threshold from a target share of strong calls or a target cost.

A threshold means nothing by itself: its effect depends on the router and on the traffic. So, as
in RouteLLM, it is calibrated on representative prompts: with two models the threshold is the
(1 - strong_fraction) quantile of the router's scores, so that share of prompts goes to the strong
model. For N models the escalation ladder's choice only gets cheaper as the threshold rises, so
the share of top-rung calls and the average cost are step functions of the threshold that change
only at the prompts' level values; both are computed for every step at once from sorted events.

Without prompts, the router's own calibration scores are used: the out-of-fold win matrices of
its training prompts that ``fit`` keeps (``calibration_win_matrices_``), so nothing is embedded
a second time and no training prompt is scored by a router that saw it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from ._exceptions import RouterConfigError
from ._policy import EscalationLadder
from .routers import BaseRouter

__all__ = [
    "calibrate_threshold",
    "calibration_win_matrices",
    "routing_ladder",
    "threshold_for_win_matrices",
]


def routing_ladder(
    router: BaseRouter,
    *,
    models: Sequence[str] | None = None,
    costs: Mapping[str, float] | Sequence[float] | None = None,
) -> EscalationLadder:
    """The escalation ladder of ``router`` over ``models`` (default: all), priced by ``costs``.

    ``costs`` maps model name to USD per call, or lists one cost per ``models`` (or per router
    model when ``models`` is None); default ``router.costs_``. Rungs keep only the cost-quality
    frontier of ``router.quality_``.
    """
    names = router.models  # raises NotFittedError before fit
    if isinstance(models, str):
        raise TypeError("models must be a sequence of model names, not a single str")
    chosen = list(models) if models is not None else names
    if len(chosen) != len(set(chosen)):
        raise RouterConfigError(f"models lists a model twice: {chosen}")
    if costs is None:
        if router.costs_ is None:
            raise RouterConfigError(
                f"{type(router).__name__} was fitted without costs (e.g. on battles); pass costs="
            )
        per_model = np.asarray(router.costs_, dtype=np.float64).copy()
        unknown = [name for name in chosen if name in names
                   and not np.isfinite(per_model[names.index(name)])]
        if unknown:
            raise RouterConfigError(
                f"the training outcomes record no cost of {unknown}; pass costs= (USD per "
                "call of each model) or leave them out of models="
            )
        # Models outside ``chosen`` are not candidates: their costs may be unknown (NaN).
        outside = np.asarray([name not in chosen for name in names])
        per_model[outside & ~np.isfinite(per_model)] = 0.0
    else:
        if isinstance(costs, Mapping):
            missing = [name for name in chosen if name not in costs]
            if missing:
                raise RouterConfigError(f"costs has no entry for {missing}")
            given = {name: costs[name] for name in chosen}
        else:
            values = list(costs)
            if len(values) != len(chosen):
                raise RouterConfigError(
                    f"costs has {len(values)} values for {len(chosen)} models {chosen}"
                )
            given = dict(zip(chosen, values, strict=True))
        for name, value in given.items():
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not (
                math.isfinite(value) and value >= 0
            ):
                raise RouterConfigError(f"cost of {name!r} must be a number >= 0, got {value!r}")
        # Models outside ``chosen`` are not candidates; any finite placeholder keeps build() happy.
        per_model = np.array([float(given.get(name, 0.0)) for name in names])
    return EscalationLadder.build(names, per_model, quality=router.quality_, candidates=chosen)


def calibrate_threshold(
    router: BaseRouter,
    prompts: Sequence[str] | None = None,
    *,
    strong_fraction: float | None = None,
    target_cost: float | None = None,
    models: Sequence[str] | None = None,
    costs: Mapping[str, float] | Sequence[float] | None = None,
) -> float:
    """The threshold that meets one target on ``prompts`` (default: the router's own
    out-of-fold calibration scores).

    Parameters
    ----------
    router : BaseRouter
        A fitted router.
    prompts : sequence of str, default=None
        Representative prompts (e.g. held-out or recent traffic), not the training prompts.
        None uses ``router.calibration_win_matrices_``, the out-of-fold scores of up to 2,000
        training prompts kept by ``fit`` (and saved with the router): nothing is embedded.
    strong_fraction : float in [0, 1], default=None
        Share of prompts that should go to the top rung of the ladder (the strong model).
    target_cost : float > 0, default=None
        Average USD per call to aim for, priced by ``costs`` (exactly one target is given).
    models, costs
        Candidates and their USD per call, as in ``routing_ladder``.

    Returns
    -------
    float
        A threshold in [0, 1] for ``EscalationLadder.choose`` whose realised share or average
        cost on the calibration prompts is the closest achievable to the target (ties go to the
        cheaper threshold). Thresholds are placed midway between consecutive level values, so
        they do not sit on one calibration prompt's score.

    Raises
    ------
    RouterConfigError
        Bad targets, models or costs; or ``prompts=None`` and the router kept no calibration
        scores (fitted inside ``calibration_scores_disabled()``, on too little data, or loaded
        from a file saved without them).
    """
    _check_target(strong_fraction, target_cost)
    ladder = routing_ladder(router, models=models, costs=costs)
    win = calibration_win_matrices(router, prompts)
    return threshold_for_win_matrices(
        ladder, win, strong_fraction=strong_fraction, target_cost=target_cost
    )


def calibration_win_matrices(router: BaseRouter, prompts: Sequence[str] | None) -> np.ndarray:
    """Win matrices to calibrate on: of ``prompts``, or the router's kept out-of-fold ones."""
    if prompts is not None:
        if isinstance(prompts, str):
            raise TypeError("prompts must be a sequence of prompts, not a single str")
        prompts = list(prompts)
        if not prompts:
            raise RouterConfigError("calibration needs at least one prompt")
        return router.win_matrices(prompts)
    names = router.models  # raises NotFittedError before fit
    kept = getattr(router, "calibration_win_matrices_", None)
    if kept is None:
        note = getattr(router, "_calibration_note", "") or "it predates calibration scores"
        raise RouterConfigError(
            f"this {type(router).__name__} kept no calibration scores from fitting ({note}); "
            "pass representative held-out prompts: calibrate_threshold(router, prompts, ...)"
        )
    if kept.shape[1:] != (len(names), len(names)) or len(kept) == 0:
        raise RouterConfigError(
            f"the kept calibration scores cover {kept.shape[1]} models but the router now has "
            f"{len(names)} (changed since fit); pass prompts= to calibrate on"
        )
    return np.asarray(kept, dtype=np.float64)


def threshold_for_win_matrices(
    ladder: EscalationLadder,
    win: np.ndarray,
    *,
    strong_fraction: float | None = None,
    target_cost: float | None = None,
) -> float:
    """``calibrate_threshold`` for win matrices already computed, shape (n, M, M)."""
    _check_target(strong_fraction, target_cost)
    if len(ladder.rungs) < 2:
        raise RouterConfigError(
            f"the ladder has one rung ({ladder.rung_names}): every threshold routes the same way"
        )
    levels = ladder.levels(win)
    if levels.ndim != 2 or len(levels) == 0:
        raise RouterConfigError("calibration needs the win matrices of at least one prompt")
    if not np.all(np.isfinite(levels[:, :-1])):
        raise RouterConfigError("the router returned non-finite win probabilities")
    # p(t) = first rung with prefix-min level < t; the prompt's cost telescopes into events.
    prefix_min = np.minimum.accumulate(levels[:, :-1], axis=1)  # (n, L-1)
    values: np.ndarray
    deltas: np.ndarray
    if strong_fraction is not None:
        base, target = 1.0, float(strong_fraction)
        values = prefix_min[:, -1]  # strong_scores
        deltas = np.full(values.shape, -1.0)
    else:
        rung_costs = ladder.costs[ladder.rungs]
        base, target = float(rung_costs[-1]), float(target_cost or 0.0)
        values = prefix_min.ravel()
        deltas = np.broadcast_to(rung_costs[:-1] - rung_costs[1:], prefix_min.shape).ravel()
        # The cheapest rung's cost is a mean of per-call costs, which rounding may put a few
        # ulps above the per-call price a user asks for: that target is reachable.
        if target < rung_costs[0] - _rounding(target, float(rung_costs[0])):
            raise RouterConfigError(
                f"target_cost {target:g} is below the cheapest model's cost {rung_costs[0]:g} "
                f"({ladder.rung_names[0]}); no threshold can reach it"
            )
    return _closest_step(values, deltas / len(levels), base, target)


def _check_target(strong_fraction: float | None, target_cost: float | None) -> None:
    if (strong_fraction is None) == (target_cost is None):
        raise RouterConfigError("give exactly one of strong_fraction= and target_cost=")
    if strong_fraction is not None and not (
        _is_number(strong_fraction) and 0.0 <= strong_fraction <= 1.0
    ):
        raise RouterConfigError(
            f"strong_fraction must be a number in [0, 1], got {strong_fraction!r}"
        )
    if target_cost is not None and not (
        _is_number(target_cost) and math.isfinite(target_cost) and target_cost > 0
    ):
        raise RouterConfigError(f"target_cost must be a positive number, got {target_cost!r}")


def _closest_step(values: np.ndarray, deltas: np.ndarray, base: float, target: float) -> float:
    """Threshold whose metric ``base + sum(deltas[values < t])`` is closest to ``target``."""
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    unique, starts = np.unique(sorted_values, return_index=True)
    cumulative = np.cumsum(deltas[order])
    ends = np.append(starts[1:], len(sorted_values)) - 1
    # metric[j]: t just above unique[j-1] (j = 0: t <= unique[0], nothing fired yet).
    metric = np.concatenate([[base], base + cumulative[ends]])
    if unique[-1] >= 1.0:
        # Only a threshold above 1 would pass a level of 1 (a certain win); thresholds live in
        # [0, 1], so that step is out of reach.
        metric = metric[:-1]
    gap = np.abs(metric - target)
    # ties up to rounding (``_rounding``)
    best = int(np.flatnonzero(
        gap <= gap.min() + _rounding(target, float(np.abs(metric).max())))[-1])
    if best == 0:
        threshold = float(unique[0])
    elif best == len(unique):
        threshold = float(np.nextafter(unique[-1], np.inf))
    else:
        threshold = float((unique[best - 1] + unique[best]) / 2.0)
    return min(1.0, max(0.0, threshold))


def _rounding(*magnitudes: float) -> float:
    """A few ulps of the largest number compared: differences below it are rounding, not
    cost (a tolerance growing with the target alone made every step within $0.001 a tie at a
    $1e9 target)."""
    return 8 * float(np.finfo(np.float64).eps) * max(1.0, *(abs(m) for m in magnitudes))


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
