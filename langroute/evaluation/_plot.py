"""One PNG per report: quality against cost (or share of strong calls) for routers and baselines.

matplotlib is an optional dependency (``pip install langroute[plot]``); it is imported only here,
with the non-interactive Agg backend so plotting works on servers and in CI.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._exceptions import MissingDependencyError
from ._report import folds_phrase

if TYPE_CHECKING:
    from ._report import EvaluationReport

__all__ = ["plot_report"]

_ROUTER_COLOURS = ["tab:blue", "tab:red", "tab:green", "tab:purple", "tab:orange", "tab:brown"]


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as exc:
        raise MissingDependencyError(
            "plotting needs matplotlib: pip install 'langroute[plot]'"
        ) from exc
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _array(values: list[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def plot_report(report: EvaluationReport, path: str | Path) -> Path:
    """Draw ``report`` to ``path`` (PNG) and return the path."""
    plt = _pyplot()
    d = report.data
    two = report.two_models
    fig, ax = plt.subplots(figsize=(9, 6), dpi=120)
    try:
        if two:
            _draw_two_models(ax, d)
        else:
            _draw_cost_quality(ax, d)
        ds = d["dataset"]
        ax.set_title(f"{ds['name'] or 'outcomes'}: {ds['n_prompts']} prompts, "
                     f"{len(ds['models'])} models ({folds_phrase(d['settings']['n_evaluations'])})")
        ax.set_ylabel("mean quality on test prompts")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower right", fontsize=8, framealpha=0.9)
        fig.tight_layout()
        out = Path(path)
        fig.savefig(out, format="png")
    finally:
        plt.close(fig)
    return out


def _draw_band(ax: Any, k: int, x: np.ndarray, mean: Any, std: Any, label: str) -> None:
    """One router's mean curve over folds, with a +-1 std band, in the k-th router colour."""
    y, sd = _array(mean), _array(std)
    colour = _ROUTER_COLOURS[k % len(_ROUTER_COLOURS)]
    ax.plot(x, y, color=colour, lw=2, label=label)
    ax.fill_between(x, y - sd, y + sd, color=colour, alpha=0.15, lw=0)


def _draw_two_models(ax: Any, d: dict[str, Any]) -> None:
    b = d["baselines"]
    weak, strong = d["dataset"]["weak_model"], d["dataset"]["strong_model"]
    qw = b["single_models"][weak]["quality"]["mean"]
    qs = b["single_models"][strong]["quality"]["mean"]
    for k, (label, entry) in enumerate(d["routers"].items()):
        curve = entry["curve"]
        if "strong_share" not in curve:
            continue  # a cascade row ranks no prompts: it has no share-of-strong-calls curve
        apgr = entry["metrics"]["apgr"]["mean"]
        _draw_band(ax, k, 100 * np.asarray(curve["strong_share"]),
                   curve["quality_by_share_mean"], curve["quality_by_share_std"],
                   f"{label} (APGR {apgr:.3f})" if apgr is not None else label)
    ax.plot([0, 100], [qw, qs], "k--", lw=1, label="random routing (APGR 0.5)")
    ax.scatter([0], [qw], color="black", marker="o", zorder=3, label=f"{weak} only")
    ax.scatter([100], [qs], color="black", marker="s", zorder=3, label=f"{strong} only")
    oracle = b["oracle"]
    ax.scatter([100 * oracle["strong_share"]["mean"]], [oracle["quality"]["mean"]],
               color="gold", edgecolor="black", marker="*", s=180, zorder=4, label="oracle")
    ax.set_xlabel(f"share of calls to the strong model {strong} (%)")
    ax.set_xlim(-2, 102)


def _draw_cost_quality(ax: Any, d: dict[str, Any]) -> None:
    b = d["baselines"]
    models = list(b["single_models"])
    costs = np.array([1000 * b["single_models"][m]["cost"]["mean"] for m in models])
    quals = np.array([b["single_models"][m]["quality"]["mean"] for m in models])
    for k, (label, entry) in enumerate(d["routers"].items()):
        curve = entry["curve"]
        aiq = entry["metrics"]["aiq"]["mean"]
        _draw_band(ax, k, 1000 * np.asarray(curve["cost"]), curve["quality_mean"],
                   curve["quality_std"], f"{label} (AIQ {aiq:.3f})")
    from ._metrics import convex_hull_nondecreasing

    hx, hy = convex_hull_nondecreasing(costs, quals)
    dense_x = np.concatenate([np.linspace(a, c, 50) for a, c in zip(hx[:-1], hx[1:], strict=True)]
                             or [hx])
    hull_aiq = b["single_model_hull"]["aiq"]["mean"]
    ax.plot(dense_x, np.interp(dense_x, hx, hy), "k--", lw=1,
            label=f"single-model hull = best random routing (AIQ {hull_aiq:.3f})")
    best = b["best_single"]["model"]
    ax.scatter(costs, quals, color="grey", s=25, zorder=3, label="single models")
    for name, x, y in zip(models, costs, quals, strict=True):
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 3), fontsize=6,
                    color="black" if name == best else "dimgray",
                    fontweight="bold" if name == best else "normal")
    oracle = b["oracle"]
    ax.scatter([1000 * oracle["cost"]["mean"]], [oracle["quality"]["mean"]], color="gold",
               edgecolor="black", marker="*", s=180, zorder=4, label="oracle")
    if costs.min() > 0 and costs.max() / costs.min() > 20:
        ax.set_xscale("log")
    ax.set_xlabel("cost (USD per 1,000 calls)")
