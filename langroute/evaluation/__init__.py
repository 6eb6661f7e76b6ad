"""Offline evaluation: what a router saves, and costs in quality, on logged outcomes."""

from __future__ import annotations

from ._baselines import FoldBaselines, fold_baselines
from ._evaluate import evaluate
from ._metrics import (
    CostQualityCurve,
    aiq,
    apgr,
    convex_hull_nondecreasing,
    cost_to_reach,
    cpt,
    oracle_choices,
    pgr_curve,
    routed_cost_quality,
    strong_share_curve,
    threshold_sweep,
)
from ._plot import plot_report
from ._registry import available_router_names, make_router, register_router, router_names
from ._report import REPORT_SCHEMA, EvaluationReport
from ._splits import SPLIT_SCHEMES, Split, make_splits

__all__ = [
    "REPORT_SCHEMA",
    "SPLIT_SCHEMES",
    "CostQualityCurve",
    "EvaluationReport",
    "FoldBaselines",
    "Split",
    "aiq",
    "apgr",
    "available_router_names",
    "convex_hull_nondecreasing",
    "cost_to_reach",
    "cpt",
    "evaluate",
    "fold_baselines",
    "make_router",
    "make_splits",
    "oracle_choices",
    "pgr_curve",
    "plot_report",
    "register_router",
    "routed_cost_quality",
    "router_names",
    "strong_share_curve",
    "threshold_sweep",
]
