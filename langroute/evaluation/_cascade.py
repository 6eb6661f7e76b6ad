"""Offline evaluation of cascades: answer cheap, check the answer, escalate when it is doubtful.

A cascade looks at the answer, so it is evaluated from each model's recorded final answer
(``Outcomes.answers``, the zeroeval-* datasets): the cheap model ``c`` answers, verifier models
``V`` answer too, and the *agreement score* is the share of verifiers whose normalised final
answer equals ``c``'s (non-empty). Below ``accept`` the strong model ``s`` answers. Every call
is paid for: ``cost = cost[c] + sum cost[V] + escalated * cost[s]``.

Three kinds of rows are added to an evaluation report:

* ``cascade:<scorer>``: the cascade alone. Its curve runs over every ``accept`` setting of the
  chosen ``(c, V, s)``, plus "always ``s``" (no cascade).
* ``<router>+cascade:<scorer>``: the router decides, the cascade checks (see below).
* ``<router>+pair-cascade:<scorer>``: cascade routing (after Dekoninck et al., 2025, "A Unified
  Approach to Routing and Cascading for LLMs"): the router's prior ``P(s beats c)`` sends the
  prompts it already knows are hard straight to ``s``, cascades the next ones and lets ``c``
  answer the ones it finds easiest unchecked. Its curve runs over both router thresholds, with
  ``accept`` fixed (choices on the training rows use the first threshold only).

Which models answer, verify and escalate, and the ``accept`` of cascade routing, are chosen on
the training rows only: the configuration whose curve reaches the best single model's training
quality at the lowest training cost wins (ties, or none reaching it: the highest quality, then
the area under the attainable frontier up to the best model's cost; ``CascadeSpec`` can aim at
other targets), with the router's prior on training rows taken out of fold (inner folds), so the
test rows never influence a choice. The curves are then read on the test rows, like the routers'
threshold sweeps.

Rows ``<router>+cascade:<scorer>`` evaluate what ``RoutedChatModel(cascade=Cascade(...))``
deploys: the router's ladder picks a model; when it is not the top rung (and, with a band, the
router was unsure) the scorer checks the answer and a doubtful one is replaced by the next rung
up's (``max_steps=1``, the escalated answer is not checked again). The verifier and the band are
chosen on the training rows. The answers in ``answers.csv`` are already normalised by the
benchmark's grader, so no further normalisation is applied offline.

Datasets without answers are evaluated with a *simulated* scorer (RouterBench's protocol,
Hu et al. 2024): it judges the cheap answer correct (quality >= 0.5) with a given error rate,
flipping the truth at random (fixed seed); it makes no call, so it costs nothing. Rows are labelled
``simulated:<rate>``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._exceptions import OutcomesError, RouterConfigError
from .._outcomes import Outcomes
from ._metrics import CostQualityCurve, aiq, cost_to_reach

__all__ = [
    "CASCADE_SCORERS",
    "MAX_VERIFIERS",
    "STRONG_CANDIDATES",
    "CascadeSpec",
    "budget_metrics",
    "cascade_fold_rows",
    "out_of_fold_win",
    "parse_cascade",
    "router_prior",
    "train_best_metrics",
]

#: Scorers the offline evaluation knows: ``agreement`` and ``simulated:<error rate>``.
CASCADE_SCORERS = ("agreement", "simulated")
#: Most verifier models an agreement configuration uses (every subset up to this size is tried).
MAX_VERIFIERS = 1
#: Escalation targets considered: this many of the best models on the training rows.
STRONG_CANDIDATES = 1
#: Shares of the best single model's cost at which ``budget_metrics`` reads the quality.
BUDGET_SHARES = (0.25, 0.5, 0.75)
#: Share of the best single model's quality whose cost ``budget_metrics`` reports.
QUALITY_SHARE = 0.98
#: Most router cuts per threshold of cascade routing's test curve (bounds its (cuts^2) points).
_MAX_CUTS = 400
#: The same on the training rows, where every configuration's curve is computed.
_TRAIN_CUTS = 48
#: Bands (``Cascade(band=...)``: cascade only when |strong score - threshold| <= band) tried on
#: the training rows by the ladder cascade; 1.0 cascades every call routed below the top rung.
BANDS = (0.05, 0.1, 0.2, 0.3, 0.5, 1.0)
#: Router thresholds per curve of the ladder cascade (evenly spread over the distinct levels).
_MAX_THRESHOLDS = 400
_TRAIN_THRESHOLDS = 64


#: What the configuration is chosen for on the training rows (see ``CascadeSpec``).
OBJECTIVES = ("match", "budget")


@dataclass(frozen=True)
class CascadeSpec:
    """An offline cascade: its scorer, and what its configuration is chosen for.

    Parameters
    ----------
    scorer : {"agreement", "simulated"}
    error_rate : float, default=None
        The simulated scorer's error rate, in [0, 0.5].
    objective : {"match", "budget"}, default="match"
        On the training rows, "match" picks the configuration reaching ``share`` of the best
        single model's quality at the lowest cost; "budget" the one with the highest quality
        within ``share`` of the best single model's cost.
    share : float, default=1.0
    """

    scorer: str
    error_rate: float | None = None
    objective: str = "match"
    share: float = 1.0

    def __post_init__(self) -> None:
        if self.scorer not in CASCADE_SCORERS:
            raise RouterConfigError(f"unknown cascade scorer {self.scorer!r}; valid: "
                                    f"{list(CASCADE_SCORERS)}")
        if self.objective not in OBJECTIVES:
            raise RouterConfigError(f"objective must be one of {list(OBJECTIVES)}, "
                                    f"got {self.objective!r}")
        if not (isinstance(self.share, (int, float)) and 0.0 < self.share <= 10.0):
            raise RouterConfigError(f"share must be a number in (0, 10], got {self.share!r}")
        if self.scorer == "simulated" and not (isinstance(self.error_rate, (int, float))
                                               and 0.0 <= self.error_rate <= 0.5):
            raise RouterConfigError(
                f"the simulated scorer needs an error rate in [0, 0.5], got {self.error_rate!r}")

    @property
    def label(self) -> str:
        name = f"simulated:{self.error_rate:g}" if self.scorer == "simulated" else self.scorer
        if (self.objective, self.share) != ("match", 1.0):
            name += f"[{self.objective}@{self.share:g}]"
        return name

    def describe(self) -> dict[str, Any]:
        return {
            "scorer": self.scorer,
            "error_rate": self.error_rate,
            "objective": self.objective,
            "share": self.share,
            "verifier_cost_counted": self.scorer == "agreement",
            "max_verifiers": MAX_VERIFIERS if self.scorer == "agreement" else 0,
            "strong_candidates": STRONG_CANDIDATES,
        }


def parse_cascade(spec: str | CascadeSpec) -> CascadeSpec:
    """``"agreement"`` or ``"simulated:0.1"`` -> ``CascadeSpec`` (bad input: RouterConfigError)."""
    if isinstance(spec, CascadeSpec):
        return spec
    if not isinstance(spec, str):
        raise RouterConfigError(f"a cascade is 'agreement' or 'simulated:RATE', got {spec!r}")
    name, _, arg = spec.strip().partition(":")
    if name == "agreement" and not arg:
        return CascadeSpec("agreement")
    if name == "simulated":
        try:
            rate = float(arg)
        except ValueError:
            rate = math.nan
        if not 0.0 <= rate <= 0.5:  # also NaN
            raise RouterConfigError(
                f"simulated cascade needs an error rate in [0, 0.5], as in 'simulated:0.1'; "
                f"got {spec!r}"
            )
        return CascadeSpec("simulated", rate)
    raise RouterConfigError(
        f"unknown cascade {spec!r}; valid: 'agreement' (needs answers.csv) or 'simulated:RATE'"
    )


# -- the scorers' signal on a set of rows ------------------------------------------------------
@dataclass(frozen=True)
class _Check:
    """One way to check cheap model ``c``'s answer: per prompt, how many checks passed
    (``passed``, 0..``n_checks``) and what the checking cost (``cost``)."""

    verifiers: tuple[int, ...]
    passed: np.ndarray
    n_checks: int
    cost: np.ndarray


def _agree(data: Outcomes) -> np.ndarray:
    """(n, M, M) bool: models j and k gave the same non-empty final answer."""
    assert data.answers is not None
    # integer codes: comparing long answer strings (CRUXEval's) M x M times is slow
    _, codes = np.unique(data.answers, return_inverse=True)
    a = codes.reshape(data.answers.shape)
    given = (data.answers != "")
    return (a[:, :, None] == a[:, None, :]) & given[:, :, None]


def _checks(spec: CascadeSpec, data: Outcomes, agree: np.ndarray | None, flips: np.ndarray | None,
            cheap: int, strong: int, verifiers: Sequence[tuple[int, ...]] | None
            ) -> list[_Check]:
    assert data.costs is not None
    n = len(data)
    if spec.scorer == "simulated":
        assert flips is not None
        truth = data.scores[:, cheap] >= 0.5
        return [_Check((), (truth ^ flips[:, cheap]).astype(np.int64), 1, np.zeros(n))]
    assert agree is not None
    if verifiers is None:
        mean_costs = data.costs.mean(axis=0)
        allowed = [j for j in range(len(data.models))
                   if j not in (cheap, strong) and mean_costs[j] < mean_costs[strong]]
        verifiers = [v for size in range(1, MAX_VERIFIERS + 1)
                     for v in itertools.combinations(allowed, size)]
    out = []
    for v in verifiers:
        cols = list(v)
        out.append(_Check(tuple(v), agree[:, cheap, cols].sum(axis=1).astype(np.int64), len(v),
                          data.costs[:, cols].sum(axis=1)))
    return out


@dataclass(frozen=True)
class _Config:
    cheap: int
    strong: int
    verifiers: tuple[int, ...]
    accept: float | None  # None: the curve runs over every accept setting

    def describe(self, models: Sequence[str]) -> dict[str, Any]:
        return {"cheap": models[self.cheap], "strong": models[self.strong],
                "verifiers": [models[j] for j in self.verifiers], "accept": self.accept}


def _cascade_arrays(data: Outcomes, cheap: int, strong: int, check: _Check, need: int
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per prompt cost, quality and escalation of the cascade that accepts ``passed >= need``."""
    assert data.costs is not None
    escalate = check.passed < need
    cost = data.costs[:, cheap] + check.cost + escalate * data.costs[:, strong]
    quality = np.where(escalate, data.scores[:, strong], data.scores[:, cheap])
    return cost, quality, escalate


# -- curves ------------------------------------------------------------------------------------
def _three_way_points(prior: np.ndarray, direct: tuple[np.ndarray, np.ndarray],
                      cascade: tuple[np.ndarray, np.ndarray, np.ndarray],
                      cheap: tuple[np.ndarray, np.ndarray], max_cuts: int = _MAX_CUTS
                      ) -> tuple[np.ndarray, ...]:
    """Cascade routing with two router thresholds, for a batch of configurations.

    The ``i`` prompts the router finds hardest (highest ``prior``) go straight to the strong
    model, the next ``j - i`` are cascaded, the rest are answered by the cheap model alone
    (unchecked), for every pair of cuts ``i <= j`` a threshold can produce (prompts with equal
    priors move together; at most ``max_cuts`` cuts per threshold, evenly spread). ``direct``
    and ``cheap`` are per-prompt (cost, quality) of (n,); ``cascade`` is (cost, quality,
    escalated) of shape (B, n). Returns the strong threshold (P,) and costs, qualities and the
    share answered by the strong model, each (B, P).
    """
    n = prior.shape[0]
    order = np.argsort(-prior, kind="stable")
    ranked = prior[order]
    cuts = np.flatnonzero(np.concatenate([[True], ranked[1:] != ranked[:-1], [True]]))
    if cuts.size > max_cuts:
        cuts = cuts[np.unique(np.linspace(0, cuts.size - 1, max_cuts).round().astype(int))]

    def prefix(values: np.ndarray) -> np.ndarray:
        values = np.atleast_2d(values)[:, order]
        zero = np.zeros((values.shape[0], 1))
        return np.concatenate([zero, np.cumsum(values, axis=1)], axis=1)[:, cuts]

    d_c, d_q = prefix(direct[0]), prefix(direct[1])
    s_c, s_q, s_e = prefix(cascade[0]), prefix(cascade[1]), prefix(cascade[2])
    k_c, k_q = prefix(cheap[0]), prefix(cheap[1])
    i, j = np.triu_indices(cuts.size)  # i <= j
    costs = (d_c[:, i] + (s_c[:, j] - s_c[:, i]) + (k_c[:, -1:] - k_c[:, j])) / n
    qualities = (d_q[:, i] + (s_q[:, j] - s_q[:, i]) + (k_q[:, -1:] - k_q[:, j])) / n
    shares = (cuts[i] + (s_e[:, j] - s_e[:, i])) / n
    levels = np.concatenate([[np.inf], ranked])[cuts]
    return levels[i], costs, qualities, shares


def _frontier_area(costs: np.ndarray, qualities: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Per row, the area under the attainable frontier (best quality at cost <= x; 0 where
    nothing is affordable) over [lo, hi], divided by hi - lo. Rows are configurations; NaN
    costs mark padding."""
    q = np.where(np.isnan(costs), -np.inf, qualities)
    x = np.where(np.isnan(costs), np.inf, costs)
    order = np.argsort(x, axis=1, kind="stable")
    x = np.take_along_axis(x, order, axis=1)
    best = np.maximum.accumulate(np.take_along_axis(q, order, axis=1), axis=1)
    best = np.where(np.isfinite(best), best, 0.0)
    right = np.concatenate([x[:, 1:], np.full((x.shape[0], 1), hi)], axis=1)
    width = np.clip(np.minimum(right, hi) - np.maximum(x, lo), 0.0, None)
    width = np.where(np.isfinite(width), width, 0.0)
    if hi <= lo:
        return best[:, -1]
    return (best * width).sum(axis=1) / (hi - lo)


def _rank(spec: CascadeSpec, costs: np.ndarray, qualities: np.ndarray, best_quality: float,
          lo: float, hi: float) -> np.ndarray:
    """Rows (configurations) ordered best first for ``spec``'s objective on training rows.

    "match": lowest cost reaching ``share * best_quality``, then highest quality, then the
    frontier area over [lo, hi]; "budget": highest quality within ``share * hi`` cost, then the
    cost to reach the best quality, then the area. NaN costs mark padding.
    """
    q = np.where(np.isnan(costs), -np.inf, qualities)
    x = np.where(np.isnan(costs), np.inf, costs)
    area = _frontier_area(costs, qualities, lo, hi)
    target = spec.share * best_quality if spec.objective == "match" else best_quality
    reach = np.where(q >= target - 1e-9, x, np.inf).min(axis=1)
    if spec.objective == "match":
        return np.lexsort((-area, -q.max(axis=1), reach))
    within = np.where(x <= spec.share * hi * (1 + 1e-9), q, -np.inf).max(axis=1)
    return np.lexsort((-area, reach, -within))


def _pareto(costs: np.ndarray, qualities: np.ndarray, thresholds: np.ndarray,
            shares: np.ndarray) -> CostQualityCurve:
    """The non-dominated points (every metric reported depends only on them), most expensive
    first like ``threshold_sweep``."""
    order = np.lexsort((-qualities, costs))
    q = qualities[order]
    running = np.maximum.accumulate(q)
    keep = np.concatenate([[True], q[1:] > running[:-1]])
    idx = order[keep][::-1]
    return CostQualityCurve(thresholds[idx], costs[idx], qualities[idx], shares[idx])


# -- choosing on the training rows -------------------------------------------------------------
def _strong_candidates(data: Outcomes) -> list[int]:
    assert data.costs is not None
    quality, cost = data.scores.mean(axis=0), data.costs.mean(axis=0)
    order = np.lexsort((cost, -quality))
    return [int(j) for j in order[:STRONG_CANDIDATES]]


def _best(data: Outcomes) -> tuple[float, float, float]:
    """The cheapest single model's mean cost, and the best one's mean cost and quality."""
    assert data.costs is not None
    quality, cost = data.scores.mean(axis=0), data.costs.mean(axis=0)
    best = int(np.lexsort((cost, -quality))[0])
    return float(cost.min()), float(cost[best]), float(quality[best])


def _stack_padded(rows: list[np.ndarray]) -> np.ndarray:
    width = max(r.shape[0] for r in rows)
    return np.stack([np.concatenate([r, np.full(width - r.shape[0], np.nan)]) for r in rows])


def _choose(spec: CascadeSpec, train: Outcomes, prior: np.ndarray | None,
            flips: np.ndarray | None) -> _Config:
    """The best configuration on the training rows for ``spec``'s objective (see ``_rank``).

    With ``prior`` ((n, M, M) out-of-fold win matrices) it is cascade routing, ``accept`` is
    part of the choice and each configuration is judged by its two-threshold curve (on at
    most ``_TRAIN_CUTS`` cuts per threshold); without, the cascade alone over all its accept
    settings plus "always the strong model".
    """
    assert train.costs is not None
    agree = _agree(train) if spec.scorer == "agreement" else None
    lo, hi, best_quality = _best(train)
    costs_mean = train.costs.mean(axis=0)
    found: list[tuple[np.ndarray, np.ndarray, _Config]] = []
    for strong in _strong_candidates(train):
        direct = (train.costs[:, strong], train.scores[:, strong])
        for cheap in range(len(train.models)):
            if cheap == strong or costs_mean[cheap] >= costs_mean[strong]:
                continue
            checks = _checks(spec, train, agree, flips, cheap, strong, None)
            arrays = [(check, need, _cascade_arrays(train, cheap, strong, check, need))
                      for check in checks for need in range(check.n_checks + 1)]
            if prior is not None:
                _, pc, pq, _ = _three_way_points(
                    prior[:, strong, cheap], direct,
                    (np.stack([a[2][0] for a in arrays]), np.stack([a[2][1] for a in arrays]),
                     np.stack([a[2][2] for a in arrays]).astype(np.float64)),
                    (train.costs[:, cheap], train.scores[:, cheap]), max_cuts=_TRAIN_CUTS)
                k = int(_rank(spec, pc, pq, best_quality, lo, hi)[0])
                check, need, _ = arrays[k]
                found.append((pc[k], pq[k], _Config(cheap, strong, check.verifiers,
                                                    need / check.n_checks)))
                continue
            rows_c, rows_q, firsts = [], [], []
            for check in checks:
                mine = [a[2] for a in arrays if a[0] is check]
                rows_c.append(np.array([m[0].mean() for m in mine] + [direct[0].mean()]))
                rows_q.append(np.array([m[1].mean() for m in mine] + [direct[1].mean()]))
                firsts.append(check)
            pc, pq = _stack_padded(rows_c), _stack_padded(rows_q)
            r = int(_rank(spec, pc, pq, best_quality, lo, hi)[0])
            found.append((pc[r], pq[r], _Config(cheap, strong, firsts[r].verifiers, None)))
    if not found:
        raise OutcomesError("no model is cheaper than the best one: nothing to cascade from",
                            path=train.source)
    pc = _stack_padded([f[0] for f in found])
    pq = _stack_padded([f[1] for f in found])
    return found[int(_rank(spec, pc, pq, best_quality, lo, hi)[0])][2]


# -- the deployable policy: the router decides, the cascade checks and climbs one rung ---------
def _thresholds(levels: np.ndarray, max_points: int) -> np.ndarray:
    """Thresholds producing every distinct ladder decision (at most ``max_points``, evenly
    spread): a rung is accepted iff its level is below the threshold."""
    values = np.unique(levels[np.isfinite(levels)])
    if not values.size:
        return np.array([1.0])
    grid = np.concatenate([values, [np.nextafter(values[-1], np.inf)]])
    if grid.size > max_points:
        grid = grid[np.unique(np.linspace(0, grid.size - 1, max_points).round().astype(int))]
    return grid


def _ladder_points(spec: CascadeSpec, data: Outcomes, levels: np.ndarray, cols: np.ndarray,
                   thresholds: np.ndarray, verifier: int | None, band: float,
                   agree: np.ndarray | None, flips: np.ndarray | None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean cost, quality and top-rung share, per threshold, of what
    ``RoutedChatModel(cascade=Cascade(scorer, accept=1, band=band, max_steps=1))`` does: the
    router's ladder picks a rung; when it is not the top rung and the strong score lies within
    ``band`` of the threshold, the scorer checks the answer (agreement with ``verifier``, paid
    for; or the simulated scorer) and a doubtful answer is replaced by the next rung up's."""
    assert data.costs is not None
    n, rungs = levels.shape
    pos = np.argmax(levels[None, :, :] < thresholds[:, None, None], axis=2)  # (T, n)
    strong = (levels[:, :-1].min(axis=1) if rungs > 1 else np.full(n, np.inf))
    near = np.abs(strong[None, :] - thresholds[:, None]) <= band
    cascade = (pos < rungs - 1) & near
    model = cols[pos]
    up = cols[np.minimum(pos + 1, rungs - 1)]
    rows = np.arange(n)[None, :]
    if spec.scorer == "agreement":
        assert agree is not None and verifier is not None
        passed = agree[rows, model, verifier] | (model == verifier)
        check_cost = data.costs[:, verifier][None, :]
    else:
        assert flips is not None
        passed = (data.scores[rows, model] >= 0.5) ^ flips[rows, model]
        check_cost = np.zeros((1, n))
    escalate = cascade & ~passed
    cost = data.costs[rows, model] + cascade * check_cost + escalate * data.costs[rows, up]
    quality = np.where(escalate, data.scores[rows, up], data.scores[rows, model])
    top = (pos == rungs - 1) | (escalate & (pos + 1 == rungs - 1))
    return cost.mean(axis=1), quality.mean(axis=1), top.mean(axis=1)


def _choose_ladder(spec: CascadeSpec, train: Outcomes, levels: np.ndarray, cols: np.ndarray,
                   flips: np.ndarray | None) -> tuple[int | None, float]:
    """Verifier and band of the ladder cascade, chosen on the training rows (out-of-fold
    levels) for ``spec``'s objective."""
    assert train.costs is not None
    agree = _agree(train) if spec.scorer == "agreement" else None
    lo, hi, best_quality = _best(train)
    thresholds = _thresholds(levels, _TRAIN_THRESHOLDS)
    top_cost = train.costs[:, cols[-1]].mean()
    verifiers: list[int | None] = (
        [j for j in range(len(train.models)) if train.costs[:, j].mean() < top_cost]
        if spec.scorer == "agreement" else [None])
    options, rows_c, rows_q = [], [], []
    for verifier in verifiers:
        for band in BANDS:
            c, q, _ = _ladder_points(spec, train, levels, cols, thresholds, verifier, band,
                                     agree, flips)
            options.append((verifier, band))
            rows_c.append(c)
            rows_q.append(q)
    k = int(_rank(spec, np.stack(rows_c), np.stack(rows_q), best_quality, lo, hi)[0])
    return options[k]


# -- one fold ----------------------------------------------------------------------------------
def budget_metrics(costs: np.ndarray, qualities: np.ndarray, best_cost: float,
                   best_quality: float) -> dict[str, float | None]:
    """Quality within 25/50/75% of the best single model's cost (best real operating point;
    None if none is that cheap) and the cost to reach 98% of its quality (share of its cost)."""
    out: dict[str, float | None] = {}
    for share in BUDGET_SHARES:
        ok = costs <= share * best_cost * (1 + 1e-9)
        out[f"quality_at_{round(100 * share)}pct_cost"] = (float(qualities[ok].max())
                                                           if ok.any() else None)
    reach = cost_to_reach(costs, qualities, QUALITY_SHARE * best_quality)
    out[f"cost_to_{round(100 * QUALITY_SHARE)}pct_quality"] = (
        None if math.isnan(reach) else reach / best_cost if best_cost > 0 else 1.0)
    return out


def train_best_metrics(costs: np.ndarray, qualities: np.ndarray, train: Outcomes,
                       test: Outcomes) -> dict[str, Any]:
    """Cost to match the model that was best on the *training* rows (the one a user would
    deploy; the test fold's best is a max over noisy estimates and flatters it), as a share of
    that model's test cost, measured on the test rows."""
    assert train.costs is not None and test.costs is not None
    quality, cost = train.scores.mean(axis=0), train.costs.mean(axis=0)
    best = int(np.lexsort((cost, -quality))[0])
    target_cost = float(test.costs[:, best].mean())
    reach = cost_to_reach(costs, qualities, float(test.scores[:, best].mean()))
    return {"train_best_model": test.models[best],
            "cost_to_match_train_best": (None if math.isnan(reach) else
                                         reach / target_cost if target_cost > 0 else 1.0)}


def _metrics(curve: CostQualityCurve, cost_range: tuple[float, float], best_cost: float,
             best_quality: float) -> dict[str, Any]:
    match = cost_to_reach(curve.costs, curve.qualities, best_quality)
    return {
        "aiq": aiq(curve.costs, curve.qualities, cost_range=cost_range),
        "max_quality": float(curve.qualities.max()),
        "cost_at_max_quality": float(
            curve.costs[curve.qualities >= curve.qualities.max() - 1e-12].min()),
        "cost_to_match_best": (None if math.isnan(match)
                               else match / best_cost if best_cost > 0 else 1.0),
        "n_points": len(curve),
        **budget_metrics(curve.costs, curve.qualities, best_cost, best_quality),
    }


def _flips(spec: CascadeSpec, data: Outcomes, seed: int) -> np.ndarray | None:
    if spec.scorer != "simulated":
        return None
    rng = np.random.default_rng(seed)
    assert spec.error_rate is not None
    return rng.random(data.scores.shape) < spec.error_rate


def cascade_fold_rows(
    specs: Sequence[CascadeSpec],
    train: Outcomes,
    test: Outcomes,
    *,
    cost_range: tuple[float, float],
    best_cost: float,
    best_quality: float,
    priors: Mapping[str, tuple[np.ndarray, np.ndarray, Any]],
    seed: int = 0,
) -> dict[str, tuple[dict[str, Any], CostQualityCurve]]:
    """The cascade rows of one train/test split.

    Parameters
    ----------
    specs : sequence of CascadeSpec
    train, test : Outcomes
        With costs (and answers for ``agreement``).
    cost_range, best_cost, best_quality
        The test fold's AIQ cost range and best single model (as for the routers' rows).
    priors : mapping of router label to (train win matrices, test win matrices, ladder)
        The train ones out of fold, the router's ``EscalationLadder``; each adds a
        ``<label>+cascade:<scorer>`` row (the router decides, the cascade checks that answer
        and climbs one rung: what ``RoutedChatModel(cascade=...)`` deploys) and a
        ``<label>+pair-cascade:<scorer>`` row (cascade routing between one cheap/strong pair).
    seed : int
        Seed of the simulated scorer's errors.

    Returns
    -------
    dict of label to (metrics, curve)
    """
    out: dict[str, tuple[dict[str, Any], CostQualityCurve]] = {}
    for spec in specs:
        if spec.scorer == "agreement" and (train.answers is None or test.answers is None):
            raise OutcomesError(
                "cascade 'agreement' needs each model's final answers (answers.csv); evaluate "
                "this dataset with a simulated scorer instead, e.g. 'simulated:0.1'",
                path=train.source,
            )
        flips_train = _flips(spec, train, seed)
        flips_test = _flips(spec, test, seed + 1)
        agree = _agree(test) if spec.scorer == "agreement" else None
        config = _choose(spec, train, None, flips_train)
        checks = _checks(spec, test, agree, flips_test, config.cheap, config.strong,
                         [config.verifiers])
        check = checks[0]
        costs, qualities, accepts, shares = [], [], [], []
        for need in range(check.n_checks + 1):
            c, q, esc = _cascade_arrays(test, config.cheap, config.strong, check, need)
            costs.append(c.mean())
            qualities.append(q.mean())
            accepts.append(need / check.n_checks)
            shares.append(esc.mean())
        assert test.costs is not None
        costs.append(test.costs[:, config.strong].mean())
        qualities.append(test.scores[:, config.strong].mean())
        accepts.append(np.inf)
        shares.append(1.0)
        curve = _pareto(np.asarray(costs), np.asarray(qualities), np.asarray(accepts),
                        np.asarray(shares))
        metrics = _metrics(curve, cost_range, best_cost, best_quality)
        metrics.update(train_best_metrics(curve.costs, curve.qualities, train, test))
        metrics["config"] = config.describe(test.models)
        out[f"cascade:{spec.label}"] = (metrics, curve)
        for label, (prior_train, prior_test, ladder) in priors.items():
            cols = np.asarray(ladder.columns[ladder.rungs], dtype=np.int64)
            train_levels, test_levels = ladder.levels(prior_train), ladder.levels(prior_test)
            verifier, band = _choose_ladder(spec, train, train_levels, cols, flips_train)
            thresholds = _thresholds(test_levels, _MAX_THRESHOLDS)
            lc, lq, ls = _ladder_points(spec, test, test_levels, cols, thresholds, verifier,
                                        band, agree, flips_test)
            curve = _pareto(lc, lq, thresholds, ls)
            metrics = _metrics(curve, cost_range, best_cost, best_quality)
            metrics.update(train_best_metrics(curve.costs, curve.qualities, train, test))
            metrics["config"] = {
                "verifiers": [] if verifier is None else [test.models[verifier]],
                "band": band, "accept": 1.0, "max_steps": 1, "escalation": "next rung",
                "ladder": [test.models[j] for j in cols]}
            out[f"{label}+cascade:{spec.label}"] = (metrics, curve)

            config = _choose(spec, train, prior_train, flips_train)
            (check,) = _checks(spec, test, agree, flips_test, config.cheap, config.strong,
                               [config.verifiers])
            assert config.accept is not None
            need = round(config.accept * check.n_checks)
            c, q, esc = _cascade_arrays(test, config.cheap, config.strong, check, need)
            strong_t, pc, pq, shares = _three_way_points(
                prior_test[:, config.strong, config.cheap],
                (test.costs[:, config.strong], test.scores[:, config.strong]),
                (c, q, esc.astype(np.float64)),
                (test.costs[:, config.cheap], test.scores[:, config.cheap]))
            curve = _pareto(pc[0], pq[0], strong_t, shares[0])
            metrics = _metrics(curve, cost_range, best_cost, best_quality)
            metrics.update(train_best_metrics(curve.costs, curve.qualities, train, test))
            metrics["config"] = config.describe(test.models)
            out[f"{label}+pair-cascade:{spec.label}"] = (metrics, curve)
    return out


def out_of_fold_win(
    fit_and_score: Callable[[np.ndarray, np.ndarray], np.ndarray],
    n: int,
    *,
    folds: int = 5,
    seed: int = 0,
) -> np.ndarray:
    """Win matrices of ``n`` training rows, each from a router fitted without its inner fold.

    ``fit_and_score(fit_rows, score_rows)`` fits a fresh router on the rows ``fit_rows`` and
    returns the win matrices of ``score_rows`` (indices into the ``n`` training rows).
    """
    if n < 2:
        raise OutcomesError(f"need at least 2 training prompts for inner folds, got {n}")
    k = min(folds, n)
    assignment = np.random.default_rng(seed).permutation(n) % k
    parts: dict[int, np.ndarray] = {}
    for fold in range(k):
        inner_test = np.flatnonzero(assignment == fold)
        parts[fold] = fit_and_score(np.flatnonzero(assignment != fold), inner_test)
    first = next(iter(parts.values()))
    out = np.empty((n, *first.shape[1:]), dtype=np.float64)
    for fold, win in parts.items():
        out[assignment == fold] = win
    return out


def router_prior(
    template: Any,
    train: Outcomes,
    rows: np.ndarray,
    embeddings: np.ndarray | None,
    win_matrices: Callable[[Any, np.ndarray | None, np.ndarray, list[str]], np.ndarray],
    *,
    seed: int = 0,
) -> np.ndarray:
    """Out-of-fold win matrices of the training rows: the router's prior on rows it was not
    fitted on, so cascade routing's choices on the training rows are not flattered by it.

    ``rows`` are the training rows' indices into ``embeddings`` (the whole dataset's);
    ``win_matrices(router, embeddings, rows, prompts)`` scores rows with a fitted router.
    """
    from ..routers._calibration_scores import calibration_scores_disabled

    def fit_and_score(fit_rows: np.ndarray, score_rows: np.ndarray) -> np.ndarray:
        with calibration_scores_disabled():
            fitted = template.clone().fit(train.subset(fit_rows))
        return win_matrices(fitted, embeddings, rows[score_rows],
                            [train.prompts[i] for i in score_rows])

    return out_of_fold_win(fit_and_score, len(train), seed=seed)
