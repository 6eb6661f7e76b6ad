"""``evaluate``: what a router would have saved, and cost in quality, on logged outcomes.

For every train/test split, each router is fitted on the training rows and scores the test rows
in one batch; the escalation ladder (the policy ``RoutedChatModel`` uses) turns the win
matrices into levels, and the whole threshold sweep is read off them exactly. Each prompt is
embedded once per embedder and shared by every router and fold.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from .._calibration import routing_ladder
from .._exceptions import LangrouteError, OutcomesError, RouterConfigError
from .._outcomes import Outcomes, first_gap, load_outcomes
from ..embeddings import Embedder, default_embedder
from ..routers import BaseRouter
from ..routers._base import are_probabilities
from ..routers._calibration_scores import calibration_scores_disabled
from ._baselines import FoldBaselines, fold_baselines
from ._cascade import (
    budget_metrics,
    cascade_fold_rows,
    parse_cascade,
    router_prior,
    train_best_metrics,
)
from ._metrics import (
    CostQualityCurve,
    aiq,
    apgr,
    cost_to_reach,
    cpt,
    pgr_curve,
    strong_share_curve,
    threshold_sweep,
)
from ._online import (
    DEFAULT_INITIAL_SHARE,
    DEFAULT_STEPS,
    check_initial_share,
    online_fold,
    online_labels,
    summarise_timelines,
)
from ._registry import make_router
from ._report import REPORT_SCHEMA, EvaluationReport
from ._splits import make_splits

__all__ = ["evaluate"]

#: Points of the fold-averaged curves stored in reports (exact metrics use the full curves).
CURVE_POINTS = 101
#: Test prompts scored per call, bounding the (queries x exemplars) similarity matrix.
_SCORE_BATCH = 4096
_EMBED_CHUNK = 256


def evaluate(
    outcomes: Outcomes | str | Path,
    routers: Sequence[str | BaseRouter] | Mapping[str, BaseRouter] = ("sw",),
    *,
    embedder: Embedder | None = None,
    split: str = "kfold",
    folds: int | None = None,
    seeds: int | Sequence[int] = 1,
    models: Sequence[str] | None = None,
    progress: bool | None = None,
    on_error: str = "raise",
    cascades: Sequence[str] = (),
    online: bool = False,
    online_share: float = DEFAULT_INITIAL_SHARE,
) -> EvaluationReport:
    """Cross-validated cost-quality evaluation of routers against the baselines.

    Parameters
    ----------
    outcomes : Outcomes or path
        Logged outcomes with costs (see ``Outcomes.with_estimated_costs`` when there is no
        ``costs.csv``) and every model measured on every prompt.
    routers : sequence of names or routers, or mapping of label to router, default=("sw",)
        Names come from ``router_names()``; router instances are cloned for every fold.
    embedder : Embedder, default=None
        Used by every router whose ``embedder`` is None (named routers included); None means
        ``default_embedder()`` (all-MiniLM-L6-v2 on ONNX int8). One instance for all routers,
        so each prompt is embedded once.
    split : {"kfold", "halves"}, default="kfold"
    folds : int, default=None
        Folds of ``kfold`` (None: 5).
    seeds : int or sequence of int, default=1
        Number of repetitions (seeds ``0..n-1``) or the seeds themselves.
    models : sequence of str, default=None
        Evaluate on these models only (default: all).
    progress : bool, default=None
        Show tqdm bars on stderr; None shows them only when stderr is a terminal.
    on_error : {"raise", "record"}, default="raise"
        What a ``LangrouteError`` from one router's fit or scoring does (e.g. kNN's ``k``
        larger than a fold's training set). "raise" stops the evaluation; "record" drops that
        router from every fold and lists its error under ``report.data["failed"]``, so the
        other routers are still reported. Other exceptions (bugs) always propagate.
    cascades : sequence of str, default=()
        Offline cascades to add (see ``langroute.evaluation._cascade``): ``"agreement"``
        (needs ``answers.csv``), ``"simulated:RATE"`` or ``CascadeSpec`` objects (which also
        say what the configuration is chosen for on the training folds). Each adds a
        ``cascade:<name>`` row and, per router, ``<router>+cascade:<name>`` (the router decides,
        the cascade checks), ``<router>+pair-cascade:<name>`` (cascade routing) and
        ``<router>+chosen-cascade:<name>`` (the variant inner folds chose) rows; router
        rows then also report ``quality_at_{25,50,75}pct_cost``, ``cost_to_98pct_quality`` and
        ``cost_to_match_train_best``.
    online : bool, default=False
        Also replay each training fold as a stream (``langroute.evaluation._online``): per
        router with ``partial_fit``, a ``<label> static@25%`` row (fitted on the first
        ``online_share`` of the fold) and a ``<label> online@25%`` row (the same start, then
        fed back the chosen model's score on every later training prompt). Both are scored on
        the test fold; the online row's ``online`` entry holds quality and cost over the stream.
    online_share : float, default=0.25
        Initial share of each training fold for ``online``.

    Returns
    -------
    EvaluationReport
    """
    started = time.perf_counter()
    data = outcomes if isinstance(outcomes, Outcomes) else load_outcomes(outcomes)
    if models is not None:
        data = data.select_models(models)
    _check_outcomes(data)
    share = check_initial_share(online_share)
    if on_error not in ("raise", "record"):
        raise RouterConfigError(f'on_error must be "raise" or "record", got {on_error!r}')
    labelled = _label_routers(routers)
    cascade_specs = [parse_cascade(c) for c in ([cascades] if isinstance(cascades, str)
                                                else cascades)]
    if data.answers is None and any(spec.scorer == "agreement" for spec in cascade_specs):
        raise OutcomesError(  # before any prompt is embedded, not after the first fold
            "cascade 'agreement' needs each model's final answers (answers.csv); evaluate "
            "this dataset with a simulated scorer instead, e.g. 'simulated:0.1'",
            path=data.source,
        )
    shared = embedder
    if shared is not None and not isinstance(shared, Embedder):
        raise RouterConfigError(
            f"embedder must be a langroute Embedder, got {type(shared).__name__}"
        )
    templates: dict[str, BaseRouter] = {}
    for label, router in labelled.items():
        params = router.get_params()
        if "embedder" in params and params["embedder"] is None:
            if shared is None:
                shared = default_embedder()
            router = router.clone().set_params(embedder=shared)
        templates[label] = router
    # Checked before any prompt is embedded (minutes with MiniLM on a large dataset).
    online_routers = [label for label, r in templates.items()
                      if callable(getattr(r, "partial_fit", None))]
    if online and not online_routers:
        raise RouterConfigError(
            f"online evaluation needs a router with partial_fit (sw, knn); got {list(templates)}"
        )
    splits = make_splits(data.prompts, scheme=split, folds=folds, seeds=seeds)
    show = sys.stderr.isatty() if progress is None else bool(progress)

    embeddings = _embed_once(templates, data.prompts, show)
    mean_costs = data.mean_costs()
    assert mean_costs is not None  # checked above
    two_models = len(data.models) == 2
    strong = int(np.argmax(mean_costs)) if two_models else None
    weak = (1 - strong) if strong is not None else None

    fold_records: list[dict[str, Any]] = []
    baselines: list[FoldBaselines] = []
    curves: dict[str, list[CostQualityCurve]] = {label: [] for label in templates}
    share_curves: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {
        label: [] for label in templates
    }
    failed: dict[str, dict[str, Any]] = {}
    timelines: dict[str, list[dict[str, np.ndarray]]] = {}
    dropped: set[str] = set()  # static rows of an online replay that failed (failed names it)
    with tqdm(total=len(splits) * len(templates), desc="evaluate", unit="fit", file=sys.stderr,
              disable=not show) as bar:
        for sp in splits:
            train, test = data.subset(sp.train), data.subset(sp.test)
            assert test.costs is not None
            base = fold_baselines(test.scores, test.costs, strong=strong, weak=weak)
            baselines.append(base)
            record: dict[str, Any] = {
                "seed": sp.seed, "fold": sp.fold, "n_train": len(train), "n_test": len(test),
                "baselines": _baseline_record(base, data.models), "routers": {},
            }
            priors: dict[str, tuple[np.ndarray, np.ndarray, Any]] = {}
            for label, template in templates.items():
                if label in failed:
                    bar.update(1)
                    continue
                bar.set_postfix_str(f"{label} seed {sp.seed} fold {sp.fold}")
                t0 = time.perf_counter()
                try:
                    # Fold routers are never calibrated: skip the out-of-fold refits.
                    with calibration_scores_disabled():
                        fitted = template.clone().fit(train)
                    t1 = time.perf_counter()
                    win = _win_matrices(fitted, embeddings.get(label), sp.test, test.prompts)
                    t2 = time.perf_counter()
                    # The cascade rows' prior: out-of-fold fits on the training fold, which can
                    # fail like the fit above (recorded the same way, not a crash of the run).
                    prior = (router_prior(template, train, sp.train, embeddings.get(label),
                                          _win_matrices, seed=sp.seed)
                             if cascade_specs else None)
                except LangrouteError as exc:
                    if on_error == "raise":
                        raise
                    failed[label] = {"error": type(exc).__name__, "message": str(exc),
                                     "seed": sp.seed, "fold": sp.fold}
                    bar.update(1)
                    continue
                metrics, curve = _router_metrics(fitted, win, test, base, strong, weak)
                if strong is not None and weak is not None:
                    share_curves[label].append(strong_share_curve(
                        win[:, strong, weak], test.scores[:, weak], test.scores[:, strong]))
                metrics["fit_seconds"] = t1 - t0
                metrics["score_seconds"] = t2 - t1
                if hasattr(fitted, "best_params_"):  # TunedRouter: what inner CV chose
                    metrics["best_params"] = dict(fitted.best_params_)
                record["routers"][label] = metrics
                curves[label].append(curve)
                if cascade_specs:
                    metrics.update(budget_metrics(curve.costs, curve.qualities,
                                                  float(base.model_costs[base.best_model]),
                                                  float(base.model_qualities[base.best_model])))
                    metrics.update(train_best_metrics(curve.costs, curve.qualities, train, test))
                    assert prior is not None
                    priors[label] = (prior, win, routing_ladder(fitted))
                bar.update(1)
            if cascade_specs:
                cascade_rows = cascade_fold_rows(
                    cascade_specs, train, test, cost_range=base.cost_range,
                    best_cost=float(base.model_costs[base.best_model]),
                    best_quality=float(base.model_qualities[base.best_model]),
                    priors=priors, seed=sp.seed)
                for name, (cascade_metrics, cascade_curve) in cascade_rows.items():
                    record["routers"][name] = cascade_metrics
                    curves.setdefault(name, []).append(cascade_curve)
            for label in online_routers if online else ():
                names = online_labels(label, share)
                if label in failed or names[1] in failed:
                    continue
                try:
                    static, learned, timeline = online_fold(
                        templates[label], train, initial_share=share,
                        seed=1000 * sp.seed + sp.fold)
                    wins = [_win_matrices(fitted, embeddings.get(label), sp.test, test.prompts)
                            for fitted in (static, learned)]
                except LangrouteError as exc:
                    # Like a static row's failure: drop this router's online rows, keep the rest.
                    if on_error == "raise":
                        raise
                    failed[names[1]] = {"error": type(exc).__name__, "message": str(exc),
                                        "seed": sp.seed, "fold": sp.fold}
                    dropped.add(names[0])
                    continue
                for name, fitted, win in zip(names, (static, learned), wins, strict=True):
                    metrics, curve = _router_metrics(fitted, win, test, base, strong, weak)
                    record["routers"][name] = metrics
                    curves.setdefault(name, []).append(curve)
                timelines.setdefault(names[1], []).append(timeline)
            fold_records.append(record)

    for label in [*failed, *dropped]:
        for record in fold_records:
            record["routers"].pop(label, None)
    ok = [label for label in curves
          if label not in failed and label not in dropped
          and all(label in f["routers"] for f in fold_records)]
    report: dict[str, Any] = {
        "schema": REPORT_SCHEMA,
        "dataset": {
            "name": Path(data.source).name if data.source else None,
            "path": data.source,
            "n_prompts": len(data),
            "models": list(data.models),
            "mean_costs": [float(c) for c in mean_costs],
            "mean_qualities": [float(q) for q in data.mean_scores()],
            "strong_model": None if strong is None else data.models[strong],
            "weak_model": None if weak is None else data.models[weak],
        },
        "settings": {
            "split": split,
            "folds": None if split == "halves" else (folds or 5),
            "seeds": sorted({sp.seed for sp in splits}),
            "n_evaluations": len(splits),
            "routers": {label: _describe(r) for label, r in templates.items()},
            "cascades": {spec.label: spec.describe() for spec in cascade_specs},
            "online": None if not online else {
                "initial_share": share, "steps": DEFAULT_STEPS, "routers": online_routers,
                "without_partial_fit": [label for label in templates
                                        if label not in online_routers],
                "protocol": "train fold in split order: the first initial_share fits both "
                            "routers; the rest streams in steps batches at thresholds drawn "
                            "uniformly from [0, 1], feeding back only the chosen model's "
                            "score; both are scored on the test fold",
            },
        },
        "baselines": _aggregate_baselines(baselines, fold_records, data, strong),
        "routers": {
            label: {
                "metrics": _aggregate_metrics([f["routers"][label] for f in fold_records]),
                "comparisons": {},
                "curve": _average_curves(curves[label], share_curves.get(label, []), data),
            }
            for label in ok
        },
        "failed": failed,
        "folds": fold_records,
        "elapsed_seconds": time.perf_counter() - started,
    }
    for entry in report["routers"].values():
        entry["comparisons"] = _comparisons(entry["metrics"], report["baselines"])
    for label, series in timelines.items():
        if label in report["routers"]:
            report["routers"][label]["online"] = summarise_timelines(series)
    return EvaluationReport(report)


# -- inputs -----------------------------------------------------------------------------------
def _check_outcomes(data: Outcomes) -> None:
    if len(data.models) < 2:
        raise OutcomesError(f"evaluation needs at least 2 models, got {list(data.models)}",
                            path=data.source)
    if data.costs is None:
        raise OutcomesError(
            "outcomes have no costs (no costs.csv); use "
            "outcomes.with_estimated_costs(output_tokens) "
            "or the CLI's --output-tokens",
            path=data.source,
        )
    gap = first_gap(data, ("scores", "costs"))
    if gap is not None:
        # The remedy filters on the array that has the gaps, and works from the CLI too.
        name, count, first = gap
        raise OutcomesError(
            f"{count} of {len(data)} prompts lack a {name[:-1]} for some model "
            f"(the first: id {first!r}); evaluation compares every model on every prompt, so "
            f"fill in those cells of {name}.csv or drop those prompts (in Python: "
            f"outcomes.subset(~np.isnan(outcomes.{name}).any(axis=1)))",
            path=data.source,
        )


def _label_routers(
    routers: Sequence[str | BaseRouter] | Mapping[str, BaseRouter],
) -> dict[str, BaseRouter]:
    if isinstance(routers, str):
        routers = [routers]
    if isinstance(routers, Mapping):
        items = list(routers.items())
    else:
        items = []
        for entry in routers:
            if isinstance(entry, str):
                items.append((entry, make_router(entry)))
            elif isinstance(entry, BaseRouter):
                items.append((type(entry).__name__, entry))
            else:
                raise RouterConfigError(
                    f"routers must be names or BaseRouter instances, got {type(entry).__name__}"
                )
    if not items:
        raise RouterConfigError("evaluate() needs at least one router")
    labels = [label for label, _ in items]
    if len(set(labels)) != len(labels):
        raise RouterConfigError(
            f"router labels must be unique, got {labels}; pass a mapping of label -> router"
        )
    for label, router in items:
        if not isinstance(router, BaseRouter):
            raise RouterConfigError(
                f"router {label!r} is a {type(router).__name__}, not a BaseRouter"
            )
    return dict(items)


def _embed_once(
    templates: Mapping[str, BaseRouter], prompts: list[str], show: bool
) -> dict[str, np.ndarray]:
    """Embeddings of every prompt, per router label, computed once per embedder instance."""
    by_embedder: dict[int, np.ndarray] = {}
    out: dict[str, np.ndarray] = {}
    for label, router in templates.items():
        emb = router.get_params().get("embedder")
        if not isinstance(emb, Embedder):
            continue  # the router embeds (or not) by itself; see _win_matrices
        if id(emb) not in by_embedder:
            parts = []
            with tqdm(total=len(prompts), desc=f"embed ({emb.kind})", unit="prompt",
                      file=sys.stderr, disable=not show) as bar:
                for start in range(0, len(prompts), _EMBED_CHUNK):
                    chunk = prompts[start : start + _EMBED_CHUNK]
                    parts.append(emb.embed(chunk))
                    bar.update(len(chunk))
            by_embedder[id(emb)] = np.concatenate(parts)
        out[label] = by_embedder[id(emb)]
    return out


def _win_matrices(
    router: BaseRouter, embeddings: np.ndarray | None, rows: np.ndarray, prompts: list[str]
) -> np.ndarray:
    parts = []
    for start in range(0, len(rows), _SCORE_BATCH):
        if embeddings is not None:
            batch = embeddings[rows[start : start + _SCORE_BATCH]]
            parts.append(router.win_matrices_from_embeddings(batch))
        else:
            parts.append(router.win_matrices(prompts[start : start + _SCORE_BATCH]))
    win = np.concatenate(parts)
    _check_win_matrices(router, win, len(rows))
    return win


def _check_win_matrices(router: BaseRouter, win: np.ndarray, n: int) -> None:
    """A router's answer must be (n, M, M) probabilities: a user's router returning another
    shape failed deep in the metrics (an IndexError), values outside [0, 1] were scored."""
    m = len(router.models_)
    name = type(router).__name__
    if win.shape != (n, m, m):
        raise ValueError(
            f"{name} returned win matrices of shape {win.shape} for {n} prompts and {m} "
            f"models; expected ({n}, {m}, {m})"
        )
    if not are_probabilities(win):
        raise ValueError(f"{name} returned win probabilities that are NaN or outside [0, 1]")


# -- per fold -----------------------------------------------------------------------------------
def _router_metrics(
    router: BaseRouter,
    win: np.ndarray,
    test: Outcomes,
    base: FoldBaselines,
    strong: int | None,
    weak: int | None,
) -> tuple[dict[str, Any], CostQualityCurve]:
    assert test.costs is not None
    ladder = routing_ladder(router)
    levels = ladder.levels(win)
    curve = threshold_sweep(levels, ladder.columns[ladder.rungs], test.scores, test.costs)
    best_cost = float(base.model_costs[base.best_model])
    best_quality = float(base.model_qualities[base.best_model])
    match = cost_to_reach(curve.costs, curve.qualities, best_quality)
    top = curve.qualities.max()
    metrics: dict[str, Any] = {
        "aiq": aiq(curve.costs, curve.qualities, cost_range=base.cost_range),
        "max_quality": float(top),
        "cost_at_max_quality": float(curve.costs[curve.qualities >= top].min()),
        "cost_to_match_best": _share_of(match, best_cost),
        "n_points": len(curve),
        "ladder": ladder.rung_names,
    }
    for share in (0.5, 0.7):  # best real operating point within that share of the best's cost
        ok = curve.costs <= share * best_cost * (1 + 1e-9)
        metrics[f"quality_at_{round(100 * share)}pct_cost"] = (
            float(curve.qualities[ok].max()) if ok.any() else None)
    if strong is not None and weak is not None:
        shares, pgr = pgr_curve(win[:, strong, weak], test.scores[:, weak], test.scores[:, strong])
        defined = bool(np.all(np.isfinite(pgr)))
        metrics["apgr"] = apgr(shares, pgr) if defined else None
        metrics["cpt50"] = _none_if_nan(cpt(shares, pgr, 0.5)) if defined else None
        metrics["cpt80"] = _none_if_nan(cpt(shares, pgr, 0.8)) if defined else None
    return metrics, curve


def _share_of(cost: float, reference: float) -> float | None:
    """``cost`` as a share of ``reference``; None for "never" (NaN); free matches free (1.0)."""
    if math.isnan(cost):
        return None
    return cost / reference if reference > 0 else 1.0


def _none_if_nan(value: float) -> float | None:
    return None if math.isnan(value) else value


def _baseline_record(base: FoldBaselines, models: Sequence[str]) -> dict[str, Any]:
    return {
        "model_costs": [float(c) for c in base.model_costs],
        "model_qualities": [float(q) for q in base.model_qualities],
        "best_model": models[base.best_model],
        "oracle_cost": base.oracle_cost,
        "oracle_quality": base.oracle_quality,
        "oracle_strong_share": _none_if_nan(base.oracle_strong_share),
        "hull_aiq": base.hull_aiq,
        "random_apgr": _none_if_nan(base.random_apgr),
        "cost_range": list(base.cost_range),
    }


# -- aggregation --------------------------------------------------------------------------------
def _stat(values: Sequence[float | None]) -> dict[str, Any]:
    """Mean and (population) std over folds of the defined values; ``n_undefined`` counts None."""
    known = np.array([v for v in values if v is not None], dtype=np.float64)
    return {
        "mean": float(known.mean()) if known.size else None,
        "std": float(known.std()) if known.size else None,
        "n_undefined": len(values) - int(known.size),
        "folds": list(values),
    }


_METRICS = ("aiq", "max_quality", "cost_at_max_quality", "cost_to_match_best", "apgr", "cpt50",
            "cpt80", "fit_seconds", "score_seconds",
            "quality_at_25pct_cost", "quality_at_50pct_cost", "quality_at_70pct_cost",
            "quality_at_75pct_cost",
            "cost_to_98pct_quality", "cost_to_match_train_best")


def _aggregate_metrics(per_fold: list[dict[str, Any]]) -> dict[str, Any]:
    return {name: _stat([m[name] for m in per_fold]) for name in _METRICS if name in per_fold[0]}


def _aggregate_baselines(
    baselines: list[FoldBaselines], records: list[dict[str, Any]], data: Outcomes,
    strong: int | None,
) -> dict[str, Any]:
    best_names = [r["baselines"]["best_model"] for r in records]
    best_costs = [float(b.model_costs[b.best_model]) for b in baselines]
    best_quals = [float(b.model_qualities[b.best_model]) for b in baselines]
    out: dict[str, Any] = {
        "single_models": {
            name: {
                "cost": _stat([float(b.model_costs[j]) for b in baselines]),
                "quality": _stat([float(b.model_qualities[j]) for b in baselines]),
            }
            for j, name in enumerate(data.models)
        },
        "best_single": {
            "model": max(set(best_names), key=best_names.count),
            "models": best_names,
            "cost": _stat(best_costs),
            "quality": _stat(best_quals),
        },
        "oracle": {
            "cost": _stat([b.oracle_cost for b in baselines]),
            "quality": _stat([b.oracle_quality for b in baselines]),
        },
        "single_model_hull": {
            "definition": "non-decreasing convex hull of the single models; also the best "
                          "random (prompt-independent) routing",
            "aiq": _stat([b.hull_aiq for b in baselines]),
        },
        "random": {
            "definition": "each call goes to model j with a fixed probability p_j; its "
                          "cost-quality frontier is the single-model hull (two models: the "
                          "line from weak to strong, PGR(x) = x)",
            "aiq": _stat([b.hull_aiq for b in baselines]),
        },
    }
    if strong is not None:
        out["random"]["apgr"] = _stat([_none_if_nan(b.random_apgr) for b in baselines])
        out["oracle"]["strong_share"] = _stat([b.oracle_strong_share for b in baselines])
    return out


def _comparisons(metrics: dict[str, Any], baselines: dict[str, Any]) -> dict[str, Any]:
    """Router minus baseline, per fold then averaged: the checks every report states."""
    aiq_gap = [a - h for a, h in zip(metrics["aiq"]["folds"],
                                    baselines["single_model_hull"]["aiq"]["folds"], strict=True)]
    quality_gap = [q - b for q, b in zip(metrics["max_quality"]["folds"],
                                         baselines["best_single"]["quality"]["folds"], strict=True)]
    return {
        "aiq_minus_hull": _stat(aiq_gap),
        "max_quality_minus_best_single": _stat(quality_gap),
        "aiq_at_least_hull": bool(np.mean(aiq_gap) >= -1e-12),
        "max_quality_at_least_best_single": bool(np.mean(quality_gap) >= -1e-12),
    }


def _average_curves(
    curves: list[CostQualityCurve],
    share_curves: list[tuple[np.ndarray, np.ndarray]],
    data: Outcomes,
) -> dict[str, Any]:
    """Fold curves resampled on a shared grid (mean and std), for plots and the JSON report."""
    mean_costs = data.mean_costs()
    assert mean_costs is not None
    lo, hi = float(mean_costs.min()), float(mean_costs.max())
    # Geometric spacing: prices span orders of magnitude and plots use a log cost axis.
    grid = np.geomspace(lo, hi, CURVE_POINTS) if lo > 0 else np.linspace(lo, hi, CURVE_POINTS)
    grid[0], grid[-1] = lo, hi
    by_cost = np.full((len(curves), CURVE_POINTS), np.nan)
    for k, curve in enumerate(curves):
        order = np.argsort(curve.costs, kind="stable")
        x, y = curve.costs[order], curve.qualities[order]
        inside = (grid >= x[0]) & (grid <= x[-1])
        by_cost[k, inside] = np.interp(grid[inside], x, y)
    out: dict[str, Any] = {"cost": grid.tolist(), **_mean_std(by_cost, "quality")}
    if share_curves:
        shares = np.linspace(0.0, 1.0, CURVE_POINTS)
        by_share = np.stack([np.interp(shares, x, y) for x, y in share_curves])
        out["strong_share"] = shares.tolist()
        out.update(_mean_std(by_share, "quality_by_share"))
    return out


def _mean_std(values: np.ndarray, name: str) -> dict[str, list[float | None]]:
    defined = ~np.isnan(values)
    count = defined.sum(axis=0)
    filled = np.where(defined, values, 0.0)
    mean = np.divide(filled.sum(axis=0), count, out=np.full(values.shape[1], np.nan),
                     where=count > 0)
    var = np.divide((np.where(defined, values - mean, 0.0) ** 2).sum(axis=0), count,
                    out=np.full(values.shape[1], np.nan), where=count > 0)
    return {
        f"{name}_mean": [None if np.isnan(v) else float(v) for v in mean],
        f"{name}_std": [None if np.isnan(v) else float(v) for v in np.sqrt(var)],
    }


def _describe(router: BaseRouter) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for name, value in router.get_params().items():
        if isinstance(value, Embedder):
            params[name] = {"kind": value.kind, **value.get_config()}
        elif value is None or isinstance(value, (bool, int, float, str)):
            params[name] = value
        else:
            params[name] = repr(value)
    return {"class": type(router).__name__, "params": params}
