"""The result of ``evaluate``: one JSON-ready dict, rendered as a table, a file set or a plot.

JSON schema (``"schema": "langroute.evaluation/1"``); costs are USD per call, qualities are mean
scores in [0, 1], and every ``stat`` is ``{"mean", "std", "n_undefined", "folds": [...]}`` over
the test folds (``null`` where a fold has no value, e.g. "never")::

    dataset    name, path, n_prompts, models, mean_costs, mean_qualities,
               strong_model / weak_model (two models only, by mean cost)
    settings   split ("kfold" | "halves"), folds, seeds, n_evaluations,
               routers: {label: {class, params}}
    baselines  single_models: {model: {cost: stat, quality: stat}}
               best_single: {model (most often best), models (per fold), cost, quality}
               oracle: {cost, quality[, strong_share]}
               single_model_hull: {definition, aiq}
               random: {definition, aiq[, apgr]}
    routers    {label: {
                 metrics: {aiq, max_quality, cost_at_max_quality (USD per call of the
                           cheapest point reaching max_quality), cost_to_match_best (share
                           of the best single model's cost; null = never),
                           quality_at_50pct_cost / quality_at_70pct_cost (best quality
                           within that share of the best single model's cost), apgr, cpt50,
                           cpt80 (two models), fit_seconds, score_seconds; cascade rows
                           add their own (``evaluate``'s ``cascades``)}: stat each,
                 comparisons: {aiq_minus_hull, max_quality_minus_best_single: stat,
                               aiq_at_least_hull, max_quality_at_least_best_single: bool},
                 curve: {cost, quality_mean, quality_std
                         [, strong_share, quality_by_share_mean, quality_by_share_std]}}}
    failed     {label: {error, message, seed, fold}}: routers dropped after a langroute error
               (``evaluate(..., on_error="record")``); absent from ``routers`` and ``folds``
    folds      [{seed, fold, n_train, n_test, baselines: {...}, routers: {label: metrics}}]
    elapsed_seconds
    run        {command, langroute_version}: how the report was made (``langroute eval`` only)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["REPORT_SCHEMA", "EvaluationReport"]

REPORT_SCHEMA = "langroute.evaluation/1"


class EvaluationReport:
    """What ``evaluate`` found; ``data`` holds everything (see the module docstring)."""

    def __init__(self, data: dict[str, Any]) -> None:
        if not isinstance(data, dict) or data.get("schema") != REPORT_SCHEMA:
            raise ValueError(f"not a {REPORT_SCHEMA} report")
        self.data = data

    @classmethod
    def from_json(cls, text: str) -> EvaluationReport:
        return cls(json.loads(text))

    @property
    def two_models(self) -> bool:
        return len(self.data["dataset"]["models"]) == 2

    def to_dict(self) -> dict[str, Any]:
        return self.data

    def to_json(self, *, indent: int | None = 2) -> str:
        return json.dumps(self.data, indent=indent, allow_nan=False)

    def metric(self, router: str, name: str) -> float | None:
        """Mean over folds of one router metric (None if undefined in every fold).

        A router that failed, or a router or metric the report does not hold, is a
        ``KeyError`` that says which and what there is."""
        routers = self.data["routers"]
        if router not in routers:
            failed = self.data.get("failed", {}).get(router)
            if failed is not None:
                raise KeyError(f"router {router!r} failed in seed {failed['seed']}, fold "
                               f"{failed['fold']} and has no metrics: {failed['error']}: "
                               f"{failed['message']}")
            raise KeyError(f"the report has no router {router!r}; it has {sorted(routers)}")
        metrics = routers[router]["metrics"]
        if name not in metrics:
            raise KeyError(f"router {router!r} has no metric {name!r}; it has {sorted(metrics)}")
        return metrics[name]["mean"]

    # -- rendering ----------------------------------------------------------------------------
    def to_markdown(self) -> str:
        """The terminal/README table: routers first, then the baselines."""
        d = self.data
        ds, st = d["dataset"], d["settings"]
        split = (f"{st['folds']}-fold" if st["split"] == "kfold" else "50/50 halves")
        lines = [
            f"## {ds['name'] or 'outcomes'}: "
            f"{ds['n_prompts']} prompts x {len(ds['models'])} models",
            "",
            f"{split}, seeds {st['seeds']} ({folds_phrase(st['n_evaluations'])}); "
            "mean ± std over folds; cost in USD per 1k calls.",
            "",
        ]
        if d.get("run"):
            lines += [f"`{d['run']['command']}` (langroute {d['run']['langroute_version']})", ""]
        two = self.two_models
        header = ["", "cost /1k", "quality", "AIQ", "max quality", "cost to match best"]
        if two:
            header += ["APGR", "CPT(50%)", "CPT(80%)"]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        b = d["baselines"]
        best_cost = b["best_single"]["cost"]["mean"]
        for label, entry in d["routers"].items():
            m = entry["metrics"]
            # A router is a curve; its cost and quality columns are the curve's highest point.
            row = [f"**{label}**", _usd(m.get("cost_at_max_quality")), _pm(m["max_quality"], 3),
                   _pm(m["aiq"], 3), _pm(m["max_quality"], 3),
                   _share(m["cost_to_match_best"])]
            if two:
                # cascade rows have no ranking of prompts, hence no APGR/CPT
                row += [_pm(m.get("apgr"), 3), _pm(m.get("cpt50"), 3, percent=True),
                        _pm(m.get("cpt80"), 3, percent=True)]
            lines.append("| " + " | ".join(row) + " |")
        for label in d.get("failed", {}):
            row = [f"**{label}**", "failed", "", "", "", ""] + (["", "", ""] if two else [])
            lines.append("| " + " | ".join(row) + " |")
        baseline_rows = [
            ("oracle", b["oracle"]["cost"], b["oracle"]["quality"], None),
            ("single-model hull (= best random)", None, None, b["single_model_hull"]["aiq"]),
        ]
        for label, cost, quality, aiq_stat in baseline_rows:
            row = [label, _usd(cost), _pm(quality, 3) if quality else "",
                   _pm(aiq_stat, 3) if aiq_stat else "", "", ""]
            if two:
                apgr = b["random"].get("apgr") if aiq_stat is not None else None
                row += [_pm(apgr, 3) if apgr else "", "", ""]
            lines.append("| " + " | ".join(row) + " |")
        for model, stats in b["single_models"].items():
            star = " (best)" if model == b["best_single"]["model"] else ""
            row = [f"{model}{star}", _usd(stats["cost"]), _pm(stats["quality"], 3), "", "", ""]
            if two:
                row += ["", "", ""]
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
        if d["routers"]:
            lines.append("- router rows: cost and quality of the cheapest operating point that "
                         "reaches the router's highest quality.")
        for label, failure in d.get("failed", {}).items():
            lines.append(f"- {label} failed (seed {failure['seed']}, fold {failure['fold']}): "
                         f"{failure['error']}: {failure['message']}")
        for label, entry in d["routers"].items():
            c = entry["comparisons"]
            notes = []
            if not c["aiq_at_least_hull"]:
                notes.append(f"AIQ below the single-model hull by "
                             f"{-c['aiq_minus_hull']['mean']:.4f}")
            if not c["max_quality_at_least_best_single"]:
                notes.append(f"highest quality below the best single model by "
                             f"{-c['max_quality_minus_best_single']['mean']:.4f}")
            if notes:
                lines.append(f"- {label}: " + "; ".join(notes))
        if best_cost:
            lines.append(f"- cost to match best = cheapest operating point reaching the best "
                         f"single model's quality, as a share of its cost "
                         f"({_usd(b['best_single']['cost'])} per 1k calls).")
        return "\n".join(lines) + "\n"

    def save(self, out_dir: str | Path, *, plot: bool = True) -> dict[str, Path]:
        """Write ``report.json``, ``report.md`` and (with ``plot``) ``plot.png`` to ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"json": out / "report.json", "markdown": out / "report.md"}
        paths["json"].write_text(self.to_json() + "\n", encoding="utf-8")
        paths["markdown"].write_text(self.to_markdown(), encoding="utf-8")
        if plot:
            from ._plot import plot_report

            paths["plot"] = plot_report(self, out / "plot.png")
        return paths


def _fmt(value: float, digits: int, percent: bool) -> str:
    return f"{100 * value:.1f}%" if percent else f"{value:.{digits}f}"


def _pm(stat: dict[str, Any] | None, digits: int, *, percent: bool = False) -> str:
    if stat is None or stat["mean"] is None:
        return "n/a"
    text = _fmt(stat["mean"], digits, percent)
    if len(stat["folds"]) > 1:
        text += f" ± {_fmt(stat['std'], digits, percent)}"
    if stat["n_undefined"]:
        text += f" (n/a in {stat['n_undefined']}/{len(stat['folds'])})"
    return text


def _usd(stat: dict[str, Any] | None) -> str:
    if stat is None or stat["mean"] is None:
        return ""
    value = 1000 * stat["mean"]
    return f"${value:.3g}" if value < 100 else f"${value:,.0f}"


def _share(stat: dict[str, Any]) -> str:
    if stat["mean"] is None:
        return "never"
    text = f"{100 * stat['mean']:.0f}%"
    if stat["n_undefined"]:
        text += f" (never in {stat['n_undefined']}/{len(stat['folds'])})"
    return text


def folds_phrase(n: int) -> str:
    return f"{n} test fold" if n == 1 else f"{n} test folds"
