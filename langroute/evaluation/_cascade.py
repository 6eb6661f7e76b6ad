"""Offline evaluation of cascades: answer cheap, check the answer, escalate when it is doubtful.

A cascade looks at the answer, so it is evaluated from each model's recorded final answer
(``Outcomes.answers``, the zeroeval-* datasets): the cheap model ``c`` answers, verifier models
``V`` answer too, and the *agreement score* is the share of verifiers whose normalised final
answer equals ``c``'s (non-empty). Below ``accept`` the strong model ``s`` answers. Every call
is paid for: ``cost = cost[c] + sum cost[V] + escalated * cost[s]``.

Four kinds of rows are added to an evaluation report:

* ``cascade:<scorer>``: the cascade alone. Its curve runs over every ``accept`` setting of the
  chosen ``(c, V, s)``, plus "always ``s``" (no cascade).
* ``<router>+cascade:<scorer>`` (the *ladder* variant): what ``RoutedChatModel(cascade=
  Cascade(...))`` deploys. The router's ladder picks a model; when it is not the top rung (and,
  with a band, the router was unsure: its strong score lies within ``band`` of the threshold)
  the scorer checks the answer and a doubtful one is replaced by the next rung up's
  (``max_steps=1``, the escalated answer is not checked again). Its curve runs over every
  router threshold.
* ``<router>+pair-cascade:<scorer>`` (the *pair* variant): cascade routing (after Dekoninck et
  al., 2025, "A Unified Approach to Routing and Cascading for LLMs"): the router's prior
  ``P(s beats c)`` sends the prompts it already knows are hard straight to ``s``, cascades the
  next ones and lets ``c`` answer the ones it finds easiest unchecked. Its curve runs over both
  router thresholds, with ``accept`` fixed.
* ``<router>+chosen-cascade:<scorer>``: the variant (ladder or pair) chosen on the training rows
  by inner cross-validation (below); its test curve is that variant's. This is the row a target
  is judged on, since picking the better of the two variants after seeing both test rows would
  be a choice made on the test data.

Candidate grids (fixed a priori on 2026-12-01, ``GRIDS_FIXED``, before the runs reported in
``benchmarks/results/cascade.md`` and not changed after them; earlier runs with narrower fixed
settings, one verifier and the single best training model as escalation target, had been seen
on the zeroeval-* sets, and the grids are supersets of those settings):

* escalation target ``s``: each of the ``STRONG_CANDIDATES`` (2) best models on the training
  rows (quality, ties: cheaper); the ladder escalates to the next rung;
* cheap model ``c``: every model cheaper than ``s``;
* verifiers ``V``: every subset of 1 to ``MAX_VERIFIERS`` (2) models cheaper than ``s`` (the
  ladder: cheaper than its top rung), other than ``c`` and ``s``;
* ``accept``: every setting (``k / len(V)``, k = 0..len(V); the ladder k >= 1);
* ``band`` of the ladder: ``BANDS`` (1.0 cascades every call routed below the top rung);
* the variant: ``VARIANTS`` (ladder, pair);
* the objective: the target itself (``CascadeSpec``): "match" the best single model's quality
  (or ``share`` of it) at the lowest cost, or the best quality within a ``share`` of its cost.

How the training rows choose (the test rows never influence a choice): within a variant, the
configuration whose curve on the training rows is best for the objective wins (ties, or none
reaching the target: the highest quality, then the area under the attainable frontier up to the
best model's cost); the router's prior on training rows is taken out of fold (inner folds), so
it is not flattered. A fixed configuration is not fitted, so its training-row curve is already an
honest estimate for it; the grids' breadth makes this a search, whose optimism is what the test
rows measure. The variant is chosen by ``INNER_FOLDS``-fold cross-validation on the training
rows: each variant's configuration is chosen on the other inner folds and its objective read on
the held-out one (against the model best on the other folds), because the pair variant's two
thresholds give it more in-sample freedom than the ladder's one; ties go to the ladder
(deployable as is).

The answers in ``answers.csv`` are already normalised by the benchmark's grader, so no further
normalisation is applied offline.

Datasets without answers are evaluated with a *simulated* scorer (RouterBench's protocol,
Hu et al. 2024): it judges the cheap answer correct (quality >= 0.5) with a given error rate,
flipping the truth at random (fixed seed); it makes no call, so it costs nothing. Rows are labelled
``simulated:<rate>``.

Each fold's metrics also carry a ``pool`` payload (mean cost and quality per operating point of
a grid fixed across folds: router thresholds ``POOL_THRESHOLDS``, the pair's ``POOL_PAIR_GRID``,
the accept shares ``POOL_ACCEPTS``) so that ``pooled_metrics`` can sum the test folds into one
out-of-fold curve: every prompt answered by the configuration chosen without it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .._exceptions import OutcomesError, RouterConfigError
from .._outcomes import Outcomes
from ._baselines import rank_models
from ._metrics import CostQualityCurve, aiq, cost_to_reach

__all__ = [
    "BANDS",
    "CASCADE_SCORERS",
    "GRIDS_FIXED",
    "INNER_FOLDS",
    "MAX_VERIFIERS",
    "STRONG_CANDIDATES",
    "VARIANTS",
    "CascadeSpec",
    "budget_metrics",
    "cascade_fold_rows",
    "out_of_fold_win",
    "parse_cascade",
    "pooled_metrics",
    "router_prior",
    "train_best_metrics",
]

#: Scorers the offline evaluation knows: ``agreement`` and ``simulated:<error rate>``.
CASCADE_SCORERS = ("agreement", "simulated")
#: When the candidate grids below were fixed (see the module docstring).
GRIDS_FIXED = "2026-12-01"
#: Verifier subsets of every size from 1 to this are candidates.
MAX_VERIFIERS = 2
#: Escalation targets considered: this many of the best models on the training rows.
STRONG_CANDIDATES = 2
#: Bands (``Cascade(band=...)``: cascade only when |strong score - threshold| <= band) of the
#: ladder variant; 1.0 cascades every call routed below the top rung.
BANDS = (0.05, 0.1, 0.2, 0.3, 0.5, 1.0)
#: The cascade-routing variants the inner cross-validation chooses between.
VARIANTS = ("ladder", "pair")
#: Inner folds of the training rows that choose the variant.
INNER_FOLDS = 2
#: Shares of the best single model's cost at which ``budget_metrics`` reads the quality.
BUDGET_SHARES = (0.25, 0.5, 0.75)
#: Share of the best single model's quality whose cost ``budget_metrics`` reports.
QUALITY_SHARE = 0.98
#: Most router cuts per threshold of cascade routing's test curve (bounds its (cuts^2) points).
_MAX_CUTS = 400
#: The same on the training rows, where every configuration's curve is computed.
_TRAIN_CUTS = 48
#: Router thresholds per curve of the ladder cascade (evenly spread over the distinct levels).
_MAX_THRESHOLDS = 400
_TRAIN_THRESHOLDS = 48
#: Operating points shared by every fold, for the pooled out-of-fold curve (router scores are
#: probabilities; the last threshold accepts every rung).
POOL_THRESHOLDS = np.append(np.linspace(0.0, 1.0, 201), np.nextafter(1.0, 2.0))
POOL_PAIR_GRID = np.append(np.nextafter(1.0, 2.0), np.linspace(1.0, 0.0, 41))
POOL_ACCEPTS = (0.0, 0.5, 1.0, math.inf)


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
            "bands": list(BANDS),
            "variants": list(VARIANTS),
            "inner_folds": INNER_FOLDS,
            "grids_fixed": GRIDS_FIXED,
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


def _subsets(allowed: Sequence[int]) -> list[tuple[int, ...]]:
    """Every verifier subset of size 1..``MAX_VERIFIERS`` of ``allowed``."""
    return [v for size in range(1, MAX_VERIFIERS + 1)
            for v in itertools.combinations(allowed, size)]


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
        verifiers = _subsets([j for j in range(len(data.models))
                              if j not in (cheap, strong) and mean_costs[j] < mean_costs[strong]])
    out = []
    for v in verifiers:
        cols = list(v)
        out.append(_Check(tuple(v), agree[:, cheap, cols].sum(axis=1).astype(np.int64), len(v),
                          data.costs[:, cols].sum(axis=1)))
    return out


@dataclass(frozen=True)
class _Config:
    """A cascade between one cheap and one strong model (the cascade alone, the pair variant)."""

    cheap: int
    strong: int
    verifiers: tuple[int, ...]
    accept: float | None  # None: the curve runs over every accept setting
    #: The pair's operating point chosen on the training rows: prior >= the first goes to the
    #: strong model, else prior >= the second is cascaded, the rest go to the cheap one.
    thresholds: tuple[float, float] | None = None

    def describe(self, models: Sequence[str]) -> dict[str, Any]:
        out = {"cheap": models[self.cheap], "strong": models[self.strong],
               "verifiers": [models[j] for j in self.verifiers], "accept": self.accept}
        if self.thresholds is not None:
            out["thresholds"] = [_finite(t) for t in self.thresholds]
        return out


@dataclass(frozen=True)
class _LadderConfig:
    """The ladder variant: who checks, how many must agree, and the band."""

    verifiers: tuple[int, ...]
    need: int
    band: float
    threshold: float = math.nan  # the router threshold chosen on the training rows

    def describe(self, models: Sequence[str], cols: np.ndarray) -> dict[str, Any]:
        return {"verifiers": [models[j] for j in self.verifiers],
                "accept": self.need / len(self.verifiers) if self.verifiers else 1.0,
                "band": self.band, "max_steps": 1, "escalation": "next rung",
                "threshold": _finite(self.threshold), "ladder": [models[j] for j in cols]}


def _finite(value: float) -> float | None:
    """``value``, or None where JSON has no number for it (an infinite or unset threshold)."""
    return float(value) if math.isfinite(value) else None


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
                      cheap: tuple[np.ndarray, np.ndarray], max_cuts: int = _MAX_CUTS,
                      grid: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    """Cascade routing with two router thresholds, for a batch of configurations.

    The ``i`` prompts the router finds hardest (highest ``prior``) go straight to the strong
    model, the next ``j - i`` are cascaded, the rest are answered by the cheap model alone
    (unchecked), for every pair of cuts ``i <= j`` a threshold can produce (prompts with equal
    priors move together; at most ``max_cuts`` cuts per threshold, evenly spread; or, with
    ``grid``, the cuts of those descending thresholds: ``prior >= t`` goes up). ``direct``
    and ``cheap`` are per-prompt (cost, quality) of (n,); ``cascade`` is (cost, quality,
    escalated) of shape (B, n). Returns the strong threshold (P,) and costs, qualities and the
    share answered by the strong model, each (B, P), and the cascade threshold (P,).
    """
    n = prior.shape[0]
    order = np.argsort(-prior, kind="stable")
    ranked = prior[order]
    if grid is not None:
        cuts = np.searchsorted(-ranked, -np.asarray(grid), side="right")
        levels = np.asarray(grid, dtype=np.float64)
    else:
        cuts = np.flatnonzero(np.concatenate([[True], ranked[1:] != ranked[:-1], [True]]))
        if cuts.size > max_cuts:
            cuts = cuts[np.unique(np.linspace(0, cuts.size - 1, max_cuts).round().astype(int))]
        levels = np.concatenate([[np.inf], ranked])[cuts]

    def prefix(values: np.ndarray) -> np.ndarray:
        values = np.atleast_2d(values)[:, order]
        zero = np.zeros((values.shape[0], 1))
        return np.concatenate([zero, np.cumsum(values, axis=1)], axis=1)[:, cuts]

    d_c, d_q = prefix(direct[0]), prefix(direct[1])
    s_c, s_q, s_e = prefix(cascade[0]), prefix(cascade[1]), prefix(cascade[2])
    k_c, k_q = prefix(cheap[0]), prefix(cheap[1])
    total_c = np.atleast_2d(cheap[0]).sum(axis=1, keepdims=True)
    total_q = np.atleast_2d(cheap[1]).sum(axis=1, keepdims=True)
    i, j = np.triu_indices(cuts.size)  # i <= j
    costs = (d_c[:, i] + (s_c[:, j] - s_c[:, i]) + (total_c - k_c[:, j])) / n
    qualities = (d_q[:, i] + (s_q[:, j] - s_q[:, i]) + (total_q - k_q[:, j])) / n
    shares = (cuts[i] + (s_e[:, j] - s_e[:, i])) / n
    return levels[i], costs, qualities, shares, levels[j]


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


def _rank_best(specs: Sequence[CascadeSpec], costs: np.ndarray, qualities: np.ndarray,
               best_quality: float, lo: float, hi: float) -> list[int]:
    """Per spec, the row (configuration) best for its objective on training rows.

    "match": lowest cost reaching ``share * best_quality``, then highest quality, then the
    frontier area over [lo, hi]; "budget": highest quality within ``share * hi`` cost, then the
    cost to reach the best quality, then the area. NaN costs mark padding. The area (a sort of
    every row) is computed only for the rows tied on the other keys.
    """
    q = np.where(np.isnan(costs), -np.inf, qualities)
    x = np.where(np.isnan(costs), np.inf, costs)
    top = q.max(axis=1)
    reach_best = np.where(q >= best_quality - 1e-9, x, np.inf).min(axis=1)
    out = []
    for spec in specs:
        if spec.objective == "match":
            reach = np.where(q >= spec.share * best_quality - 1e-9, x, np.inf).min(axis=1)
            keys = (reach, -top)
        else:
            within = np.where(x <= spec.share * hi * (1 + 1e-9), q, -np.inf).max(axis=1)
            keys = (-within, reach_best)
        order = np.lexsort(keys[::-1])
        first = order[0]
        tied = order[(keys[0][order] == keys[0][first]) & (keys[1][order] == keys[1][first])]
        if tied.size > 1:
            area = _frontier_area(costs[tied], qualities[tied], lo, hi)
            first = tied[int(np.argmax(area))]  # first of the largest: lexsort's tie order
        out.append(int(first))
    return out


def _operating_point(spec: CascadeSpec, costs: np.ndarray, qualities: np.ndarray,
                     best_quality: float, hi: float) -> int:
    """The point of one training curve that ``spec``'s objective deploys: "match" the cheapest
    reaching ``share * best_quality`` (none: the best quality), "budget" the best quality
    within ``share * hi`` (none: the cheapest); ties: the better other coordinate."""
    if spec.objective == "match":
        ok = qualities >= spec.share * best_quality - 1e-9
        keys = (-qualities, costs) if ok.any() else (costs, -qualities)
    else:
        ok = costs <= spec.share * hi * (1 + 1e-9)
        keys = (costs, -qualities) if ok.any() else (-qualities, costs)
    if not ok.any():
        ok = np.ones_like(ok)
    rows = np.flatnonzero(ok)
    return int(rows[np.lexsort(tuple(k[rows] for k in keys))[0]])


def _objective_value(spec: CascadeSpec, costs: np.ndarray, qualities: np.ndarray,
                     target_quality: float, target_cost: float) -> float:
    """How good one curve is for ``spec``'s objective on held-out rows (higher is better):
    "match": minus the cost reaching ``share`` of the target's quality, as a share of the
    target's cost (not reached: below -10, by the shortfall); "budget": the best quality
    within ``share`` of the target's cost (none: 0)."""
    if spec.objective == "match":
        goal = spec.share * target_quality
        reach = cost_to_reach(costs, qualities, goal)
        if math.isnan(reach):
            return -10.0 - float(goal - qualities.max())
        return -reach / target_cost if target_cost > 0 else -1.0
    ok = costs <= spec.share * target_cost * (1 + 1e-9)
    return float(qualities[ok].max()) if ok.any() else 0.0


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
def _best_index(data: Outcomes) -> int:
    """The best model on ``data`` (mean quality; ties: the cheaper)."""
    assert data.costs is not None
    return int(rank_models(data.scores, data.costs)[0])


def _strong_candidates(data: Outcomes) -> list[int]:
    assert data.costs is not None
    return [int(j) for j in rank_models(data.scores, data.costs)[:STRONG_CANDIDATES]]


def _best(data: Outcomes) -> tuple[float, float, float]:
    """The cheapest single model's mean cost, and the best one's mean cost and quality."""
    assert data.costs is not None
    best = _best_index(data)
    cost = data.costs.mean(axis=0)
    return float(cost.min()), float(cost[best]), float(data.scores[:, best].mean())


def _stack_padded(rows: list[np.ndarray]) -> np.ndarray:
    width = max(r.shape[0] for r in rows)
    return np.stack([np.concatenate([r, np.full(width - r.shape[0], np.nan)]) for r in rows])


def _choose(specs: Sequence[CascadeSpec], train: Outcomes, prior: np.ndarray | None,
            flips: np.ndarray | None) -> list[_Config]:
    """The best configuration on the training rows for each spec's objective (see ``_rank``);
    the specs share a scorer, so every candidate's curve is computed once.

    With ``prior`` ((n, M, M) out-of-fold win matrices) it is cascade routing (the pair
    variant), ``accept`` is part of the choice and each configuration is judged by its
    two-threshold curve (on at most ``_TRAIN_CUTS`` cuts per threshold); without, the cascade
    alone over all its accept settings plus "always the strong model".
    """
    assert train.costs is not None
    agree = _agree(train) if specs[0].scorer == "agreement" else None
    lo, hi, best_quality = _best(train)
    costs_mean = train.costs.mean(axis=0)
    found: list[list[tuple[Any, ...]]] = [[] for _ in specs]
    for strong in _strong_candidates(train):
        direct = (train.costs[:, strong], train.scores[:, strong])
        for cheap in range(len(train.models)):
            if cheap == strong or costs_mean[cheap] >= costs_mean[strong]:
                continue
            checks = _checks(specs[0], train, agree, flips, cheap, strong, None)
            if not checks:
                continue
            arrays = [(check, need, _cascade_arrays(train, cheap, strong, check, need))
                      for check in checks for need in range(check.n_checks + 1)]
            if prior is not None:
                ts, pc, pq, _, tc = _three_way_points(
                    prior[:, strong, cheap], direct,
                    (np.stack([a[2][0] for a in arrays]), np.stack([a[2][1] for a in arrays]),
                     np.stack([a[2][2] for a in arrays]).astype(np.float64)),
                    (train.costs[:, cheap], train.scores[:, cheap]), max_cuts=_TRAIN_CUTS)
                for s, k in enumerate(_rank_best(specs, pc, pq, best_quality, lo, hi)):
                    check, need, _ = arrays[k]
                    found[s].append((pc[k], pq[k], _Config(cheap, strong, check.verifiers,
                                                           need / check.n_checks), ts, tc))
                continue
            rows_c, rows_q = [], []
            for check in checks:
                mine = [a[2] for a in arrays if a[0] is check]
                rows_c.append(np.array([m[0].mean() for m in mine] + [direct[0].mean()]))
                rows_q.append(np.array([m[1].mean() for m in mine] + [direct[1].mean()]))
            pc, pq = _stack_padded(rows_c), _stack_padded(rows_q)
            for s, r in enumerate(_rank_best(specs, pc, pq, best_quality, lo, hi)):
                found[s].append((pc[r], pq[r], _Config(cheap, strong, checks[r].verifiers, None),
                                 None, None))
    if not found[0]:
        raise OutcomesError("no model is cheaper than the best one: nothing to cascade from",
                            path=train.source)
    out = []
    for s, spec in enumerate(specs):
        pc = _stack_padded([f[0] for f in found[s]])
        pq = _stack_padded([f[1] for f in found[s]])
        costs, qualities, config, ts, tc = found[s][_rank_best([spec], pc, pq, best_quality,
                                                                lo, hi)[0]]
        if ts is not None:
            k = _operating_point(spec, costs, qualities, best_quality, hi)
            config = replace(config, thresholds=(float(ts[k]), float(tc[k])))
        out.append(config)
    return out


# -- the ladder variant: the router decides, the cascade checks and climbs one rung ------------
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


@dataclass(frozen=True)
class _Ladder:
    """What the router's ladder decides on some rows at each of ``thresholds`` (arrays (T, n))."""

    thresholds: np.ndarray
    model: np.ndarray
    cascadable: np.ndarray   # routed below the top rung
    distance: np.ndarray     # |strong score - threshold|: cascade iff <= band
    cost: np.ndarray         # the routed model's cost
    quality: np.ndarray
    up_cost: np.ndarray      # the next rung's
    gain: np.ndarray         # the next rung's quality minus the routed model's
    top: np.ndarray          # routed to the top rung
    up_top: np.ndarray       # the next rung is the top rung


def _ladder(data: Outcomes, levels: np.ndarray, cols: np.ndarray,
            thresholds: np.ndarray) -> _Ladder:
    assert data.costs is not None
    n, rungs = levels.shape
    pos = np.argmax(levels[None, :, :] < thresholds[:, None, None], axis=2)  # (T, n)
    strong = (levels[:, :-1].min(axis=1) if rungs > 1 else np.full(n, np.inf))
    model = cols[pos]
    up = cols[np.minimum(pos + 1, rungs - 1)]
    rows = np.arange(n)[None, :]
    return _Ladder(
        thresholds, model, pos < rungs - 1, np.abs(strong[None, :] - thresholds[:, None]),
        data.costs[rows, model], data.scores[rows, model], data.costs[rows, up],
        data.scores[rows, up] - data.scores[rows, model], pos == rungs - 1,
        pos + 1 == rungs - 1)


def _ladder_checked(spec: CascadeSpec, data: Outcomes, ladder: _Ladder,
                    verifiers: tuple[int, ...], agree: np.ndarray | None,
                    flips: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(T, n) number of checks the routed answer passes, and (n,) what checking costs."""
    assert data.costs is not None
    n = len(data)
    rows = np.arange(n)[None, :]
    if spec.scorer == "simulated":
        assert flips is not None
        passed = (ladder.quality >= 0.5) ^ flips[rows, ladder.model]
        return passed.astype(np.int64), np.zeros(n)
    assert agree is not None
    passed = np.zeros(ladder.model.shape, dtype=np.int64)
    for v in verifiers:
        # a routed model that is its own verifier agrees with itself exactly when it gave an
        # answer (agree[.., m, m]): an empty one agrees with nothing, as AgreementScorer scores
        passed += agree[rows, ladder.model, v]
    return passed, data.costs[:, list(verifiers)].sum(axis=1)


def _ladder_eval(ladder: _Ladder, bands: Sequence[float], ok: np.ndarray, check_cost: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean cost, quality and top-rung share (each (bands, T)) when an answer checked (routed
    below the top rung, within the band) that is not ``ok`` is replaced by the next rung's."""
    n = ladder.model.shape[1]
    checked = (ladder.cascadable[None]
               & (ladder.distance[None] <= np.asarray(bands)[:, None, None])).astype(np.float64)
    doubt = ~ok
    cost = (ladder.cost.mean(axis=1)[None]
            + checked @ check_cost / n
            + np.einsum("btn,tn->bt", checked, doubt * ladder.up_cost) / n)
    quality = ladder.quality.mean(axis=1)[None] + np.einsum(
        "btn,tn->bt", checked, doubt * ladder.gain) / n
    top = ladder.top.mean(axis=1)[None] + np.einsum(
        "btn,tn->bt", checked, (doubt & ladder.up_top).astype(np.float64)) / n
    return cost, quality, top


def _ladder_verifiers(spec: CascadeSpec, data: Outcomes, cols: np.ndarray
                      ) -> list[tuple[int, ...]]:
    if spec.scorer == "simulated":
        return [()]
    assert data.costs is not None
    top_cost = data.costs[:, cols[-1]].mean()
    return _subsets([j for j in range(len(data.models)) if data.costs[:, j].mean() < top_cost])


def _choose_ladder(specs: Sequence[CascadeSpec], train: Outcomes, levels: np.ndarray,
                   cols: np.ndarray, flips: np.ndarray | None) -> list[_LadderConfig]:
    """Verifiers, accept and band of the ladder variant, chosen on the training rows
    (out-of-fold levels) for each spec's objective."""
    agree = _agree(train) if specs[0].scorer == "agreement" else None
    lo, hi, best_quality = _best(train)
    ladder = _ladder(train, levels, cols, _thresholds(levels, _TRAIN_THRESHOLDS))
    options: list[_LadderConfig] = []
    rows_c, rows_q = [], []
    for verifiers in _ladder_verifiers(specs[0], train, cols):
        passed, check_cost = _ladder_checked(specs[0], train, ladder, verifiers, agree, flips)
        for need in range(1, max(len(verifiers), 1) + 1):
            c, q, _ = _ladder_eval(ladder, BANDS, passed >= need, check_cost)
            options += [_LadderConfig(verifiers, need, band) for band in BANDS]
            rows_c.append(c)
            rows_q.append(q)
    costs, qualities = np.concatenate(rows_c), np.concatenate(rows_q)
    out = []
    for spec, k in zip(specs, _rank_best(specs, costs, qualities, best_quality, lo, hi),
                       strict=True):
        point = _operating_point(spec, costs[k], qualities[k], best_quality, hi)
        out.append(replace(options[k], threshold=float(ladder.thresholds[point])))
    return out


def _ladder_curve(spec: CascadeSpec, data: Outcomes, ladder: _Ladder, config: _LadderConfig,
                  agree: np.ndarray | None, flips: np.ndarray | None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    passed, check_cost = _ladder_checked(spec, data, ladder, config.verifiers, agree, flips)
    c, q, s = _ladder_eval(ladder, [config.band], passed >= config.need, check_cost)
    return c[0], q[0], s[0]


def _routing_curve(ladder: _Ladder) -> tuple[np.ndarray, np.ndarray]:
    """Routing alone (no check) at the ladder's thresholds."""
    return ladder.cost.mean(axis=1), ladder.quality.mean(axis=1)


def _pair_curve(spec: CascadeSpec, data: Outcomes, config: _Config, prior: np.ndarray,
                agree: np.ndarray | None, flips: np.ndarray | None, *,
                max_cuts: int = _MAX_CUTS, grid: np.ndarray | None = None
                ) -> tuple[np.ndarray, ...]:
    """Thresholds, costs, qualities and strong shares (each (P,)) of the pair variant."""
    assert data.costs is not None and config.accept is not None
    (check,) = _checks(spec, data, agree, flips, config.cheap, config.strong,
                       [config.verifiers])
    need = round(config.accept * check.n_checks)
    c, q, esc = _cascade_arrays(data, config.cheap, config.strong, check, need)
    t, pc, pq, shares, _ = _three_way_points(
        prior[:, config.strong, config.cheap],
        (data.costs[:, config.strong], data.scores[:, config.strong]),
        (c, q, esc.astype(np.float64)),
        (data.costs[:, config.cheap], data.scores[:, config.cheap]), max_cuts=max_cuts, grid=grid)
    return t, pc[0], pq[0], shares[0]


def _pair_point(spec: CascadeSpec, data: Outcomes, config: _Config, prior: np.ndarray,
                agree: np.ndarray | None, flips: np.ndarray | None) -> tuple[float, float]:
    """Mean cost and quality of the pair variant at its chosen ``thresholds``."""
    assert data.costs is not None and config.accept is not None
    assert config.thresholds is not None
    (check,) = _checks(spec, data, agree, flips, config.cheap, config.strong,
                       [config.verifiers])
    c, q, _ = _cascade_arrays(data, config.cheap, config.strong, check,
                              round(config.accept * check.n_checks))
    score = prior[:, config.strong, config.cheap]
    up = score >= config.thresholds[0]
    cascaded = ~up & (score >= config.thresholds[1])
    cost = np.where(up, data.costs[:, config.strong],
                    np.where(cascaded, c, data.costs[:, config.cheap]))
    quality = np.where(up, data.scores[:, config.strong],
                       np.where(cascaded, q, data.scores[:, config.cheap]))
    return float(cost.mean()), float(quality.mean())


def _deployed(cost: float, quality: float, train: Outcomes, test: Outcomes) -> dict[str, float]:
    """A single operating point (chosen on the training rows) read on the test rows against
    the training rows' best model: its cost as a share of that model's, and the quality gap."""
    assert test.costs is not None
    best = _best_index(train)
    target_cost = float(test.costs[:, best].mean())
    return {"cost_share": cost / target_cost if target_cost > 0 else 1.0,
            "quality_gap": quality - float(test.scores[:, best].mean())}


def _choose_variant(specs: Sequence[CascadeSpec], train: Outcomes, prior: np.ndarray,
                    levels: np.ndarray, cols: np.ndarray, flips: np.ndarray | None,
                    seed: int) -> np.ndarray:
    """Inner cross-validation on the training rows: per spec and variant, the mean held-out
    objective value (``_objective_value``) of the configuration chosen on the other inner folds.
    Returns (specs, variants)."""
    n = len(train)
    if n < 2 * INNER_FOLDS:
        raise OutcomesError(f"need at least {2 * INNER_FOLDS} training prompts to choose the "
                            f"cascade variant by inner cross-validation, got {n}",
                            path=train.source)
    assign = np.random.default_rng(seed).permutation(n) % INNER_FOLDS
    values = np.zeros((len(specs), len(VARIANTS)))
    for fold in range(INNER_FOLDS):
        fit, held = np.flatnonzero(assign != fold), np.flatnonzero(assign == fold)
        a, b = train.subset(fit), train.subset(held)
        assert b.costs is not None
        fa = None if flips is None else flips[fit]
        fb = None if flips is None else flips[held]
        ladders = _choose_ladder(specs, a, levels[fit], cols, fa)
        pairs = _choose(specs, a, prior[fit], fa)
        target = _best_index(a)
        goal_q, goal_c = float(b.scores[:, target].mean()), float(b.costs[:, target].mean())
        agree = _agree(b) if specs[0].scorer == "agreement" else None
        ladder = _ladder(b, levels[held], cols, _thresholds(levels[held], _TRAIN_THRESHOLDS))
        for s, spec in enumerate(specs):
            lc, lq, _ = _ladder_curve(spec, b, ladder, ladders[s], agree, fb)
            _, pc, pq, _ = _pair_curve(spec, b, pairs[s], prior[held], agree, fb,
                                       max_cuts=_TRAIN_CUTS)
            values[s, 0] += _objective_value(spec, lc, lq, goal_q, goal_c)
            values[s, 1] += _objective_value(spec, pc, pq, goal_q, goal_c)
    return values / INNER_FOLDS


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
    that model's test cost, measured on the test rows; with that model's test quality and the
    best quality within 25% of its test cost (to see by how much a fold misses)."""
    assert test.costs is not None
    best = _best_index(train)
    target_cost = float(test.costs[:, best].mean())
    target_quality = float(test.scores[:, best].mean())
    reach = cost_to_reach(costs, qualities, target_quality)
    ok = costs <= 0.25 * target_cost * (1 + 1e-9)
    return {"train_best_model": test.models[best],
            "train_best_quality": target_quality,
            "quality_at_25pct_train_best_cost": float(qualities[ok].max()) if ok.any() else None,
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


def _pool(kind: str, costs: np.ndarray, qualities: np.ndarray, train: Outcomes,
          test: Outcomes) -> dict[str, Any]:
    """One fold's share of a pooled curve: mean cost and quality at the grid's points, and the
    training folds' best model's test cost and quality."""
    assert test.costs is not None
    best = _best_index(train)
    return {"grid": kind, "n": len(test), "cost": [float(c) for c in costs],
            "quality": [float(q) for q in qualities],
            "target_cost": float(test.costs[:, best].mean()),
            "target_quality": float(test.scores[:, best].mean())}


def pooled_metrics(pools: Sequence[Mapping[str, Any] | None]) -> dict[str, Any] | None:
    """The pooled out-of-fold curve of one partition's folds (``pool`` payloads of each test
    fold): at each operating point of the shared grid, cost and quality summed over the folds,
    so every prompt is answered by the configuration chosen without it; read against the
    training folds' best models, pooled the same way. None if the folds' grids differ (the
    chosen variant differs between folds, so no operating point is shared)."""
    if not pools or any(p is None for p in pools) or len({p["grid"] for p in pools}) != 1:
        return None
    n = np.array([p["n"] for p in pools], dtype=np.float64)
    costs = np.array([p["cost"] for p in pools]).T @ n / n.sum()
    qualities = np.array([p["quality"] for p in pools]).T @ n / n.sum()
    target_cost = float(np.dot([p["target_cost"] for p in pools], n) / n.sum())
    target_quality = float(np.dot([p["target_quality"] for p in pools], n) / n.sum())
    reach = cost_to_reach(costs, qualities, target_quality)
    out: dict[str, Any] = {
        "cost_to_match_train_best": None if math.isnan(reach) else reach / target_cost,
        "train_best_quality": target_quality,
    }
    out.update(budget_metrics(costs, qualities, target_cost, target_quality))
    return out


def _finish(curve: CostQualityCurve, train: Outcomes, test: Outcomes,
            cost_range: tuple[float, float], best_cost: float, best_quality: float
            ) -> dict[str, Any]:
    metrics = _metrics(curve, cost_range, best_cost, best_quality)
    metrics.update(train_best_metrics(curve.costs, curve.qualities, train, test))
    return metrics


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
        The train ones out of fold, the router's ``EscalationLadder``; each adds the rows
        ``<label>+cascade:<scorer>`` (ladder variant), ``<label>+pair-cascade:<scorer>`` (pair
        variant) and ``<label>+chosen-cascade:<scorer>`` (the variant inner cross-validation
        on the training rows chose).
    seed : int
        Seed of the simulated scorer's errors and of the inner folds.

    Returns
    -------
    dict of label to (metrics, curve); each metrics dict has the chosen ``config`` and a
    ``pool`` payload for ``pooled_metrics``.
    """
    assert test.costs is not None
    out: dict[str, tuple[dict[str, Any], CostQualityCurve]] = {}
    groups: dict[tuple[str, float | None], list[CascadeSpec]] = {}
    for spec in specs:
        groups.setdefault((spec.scorer, spec.error_rate), []).append(spec)
    finish = dict(train=train, test=test, cost_range=cost_range, best_cost=best_cost,
                  best_quality=best_quality)
    for group in groups.values():
        first = group[0]
        if first.scorer == "agreement" and (train.answers is None or test.answers is None):
            raise OutcomesError(
                "cascade 'agreement' needs each model's final answers (answers.csv); evaluate "
                "this dataset with a simulated scorer instead, e.g. 'simulated:0.1'",
                path=train.source,
            )
        flips_train = _flips(first, train, seed)
        flips_test = _flips(first, test, seed + 1)
        agree = _agree(test) if first.scorer == "agreement" else None
        for spec, config in zip(group, _choose(group, train, None, flips_train), strict=True):
            (check,) = _checks(spec, test, agree, flips_test, config.cheap, config.strong,
                               [config.verifiers])
            costs, qualities, accepts, shares = [], [], [], []
            for need in range(check.n_checks + 1):
                c, q, esc = _cascade_arrays(test, config.cheap, config.strong, check, need)
                costs.append(c.mean())
                qualities.append(q.mean())
                accepts.append(need / check.n_checks)
                shares.append(esc.mean())
            costs.append(test.costs[:, config.strong].mean())
            qualities.append(test.scores[:, config.strong].mean())
            accepts.append(np.inf)
            shares.append(1.0)
            curve = _pareto(np.asarray(costs), np.asarray(qualities), np.asarray(accepts),
                            np.asarray(shares))
            metrics = _finish(curve, **finish)
            metrics["config"] = config.describe(test.models)
            # pooled grid: accept shares -> the least number of agreeing checks they need
            at = [len(accepts) - 1 if math.isinf(a) else math.ceil(a * check.n_checks - 1e-9)
                  for a in POOL_ACCEPTS]
            metrics["pool"] = _pool("accept", np.asarray(costs)[at], np.asarray(qualities)[at],
                                    train, test)
            out[f"cascade:{spec.label}"] = (metrics, curve)
        for label, (prior_train, prior_test, ladder_policy) in priors.items():
            cols = np.asarray(ladder_policy.columns[ladder_policy.rungs], dtype=np.int64)
            train_levels = ladder_policy.levels(prior_train)
            test_levels = ladder_policy.levels(prior_test)
            ladder_configs = _choose_ladder(group, train, train_levels, cols, flips_train)
            pair_configs = _choose(group, train, prior_train, flips_train)
            inner = _choose_variant(group, train, prior_train, train_levels, cols, flips_train,
                                    seed)
            test_ladder = _ladder(test, test_levels, cols,
                                  _thresholds(test_levels, _MAX_THRESHOLDS))
            pool_ladder = _ladder(test, test_levels, cols, POOL_THRESHOLDS)
            routing_pool = _pool("thresholds", *_routing_curve(pool_ladder), train, test)
            train_ladder = _ladder(train, train_levels, cols,
                                   _thresholds(train_levels, _TRAIN_THRESHOLDS))
            _, hi, best_q = _best(train)
            for s, spec in enumerate(group):
                # routing alone at the threshold the objective picks on the training rows
                rc, rq = _routing_curve(train_ladder)
                at = train_ladder.thresholds[_operating_point(spec, rc, rq, best_q, hi)]
                rc, rq = _routing_curve(_ladder(test, test_levels, cols, np.array([at])))
                routing_deployed = {**_deployed(float(rc[0]), float(rq[0]), train, test),
                                    "threshold": _finite(float(at))}
                lconf = ladder_configs[s]
                lc, lq, ls = _ladder_curve(spec, test, test_ladder, lconf, agree, flips_test)
                ladder_curve = _pareto(lc, lq, test_ladder.thresholds, ls)
                ladder_row = _finish(ladder_curve, **finish)
                ladder_row["config"] = lconf.describe(test.models, cols)
                pc, pq, _ = _ladder_curve(spec, test, pool_ladder, lconf, agree, flips_test)
                ladder_row["pool"] = _pool("thresholds", pc, pq, train, test)
                ladder_row["pool_routing"] = routing_pool
                dc, dq, _ = _ladder_curve(spec, test, _ladder(test, test_levels, cols,
                                                              np.array([lconf.threshold])),
                                          lconf, agree, flips_test)
                ladder_row["deployed"] = _deployed(float(dc[0]), float(dq[0]), train, test)
                ladder_row["deployed_routing"] = routing_deployed
                out[f"{label}+cascade:{spec.label}"] = (ladder_row, ladder_curve)

                pconf = pair_configs[s]
                t, c, q, sh = _pair_curve(spec, test, pconf, prior_test, agree, flips_test)
                pair_curve = _pareto(c, q, t, sh)
                pair_row = _finish(pair_curve, **finish)
                pair_row["config"] = pconf.describe(test.models)
                _, c, q, _ = _pair_curve(spec, test, pconf, prior_test, agree, flips_test,
                                         grid=POOL_PAIR_GRID)
                pair_row["pool"] = _pool("pair", c, q, train, test)
                pair_row["deployed"] = _deployed(
                    *_pair_point(spec, test, pconf, prior_test, agree, flips_test), train, test)
                out[f"{label}+pair-cascade:{spec.label}"] = (pair_row, pair_curve)

                variant = VARIANTS[int(np.argmax(inner[s]))]  # ties: the ladder
                chosen, curve = (out[f"{label}+cascade:{spec.label}"] if variant == "ladder"
                                 else out[f"{label}+pair-cascade:{spec.label}"])
                chosen = {k: v for k, v in chosen.items()
                          if k not in ("pool_routing", "deployed_routing")}
                chosen["config"] = {"variant": variant, **chosen["config"],
                                    "inner_cv": {v: float(x) for v, x in
                                                 zip(VARIANTS, inner[s], strict=True)}}
                out[f"{label}+chosen-cascade:{spec.label}"] = (chosen, curve)
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
        # Inner fits see fewer prompts: a parameter they cannot support (kNN's k) is lowered,
        # as for the router's own out-of-fold calibration scores.
        with calibration_scores_disabled():
            fitted = template._calibration_clone(len(fit_rows)).fit(train.subset(fit_rows))
        return win_matrices(fitted, embeddings, rows[score_rows],
                            [train.prompts[i] for i in score_rows])

    return out_of_fold_win(fit_and_score, len(train), seed=seed)
