"""Offline evaluation: what a router saves, and costs in quality, on logged outcomes."""

from __future__ import annotations

from ._baselines import FoldBaselines, fold_baselines
from ._cascade import CascadeSpec, parse_cascade
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
from ._registry import (
    DEFAULT_ROUTER,
    available_router_names,
    make_router,
    register_router,
    router_names,
)
from ._report import REPORT_SCHEMA, EvaluationReport
from ._splits import SPLIT_SCHEMES, Split, make_splits
from ._tuning import DEFAULT_GRIDS, TunedRouter, tuned_router, validation_score

__all__ = [
    "DEFAULT_GRIDS",
    "DEFAULT_ROUTER",
    "REPORT_SCHEMA",
    "SPLIT_SCHEMES",
    "CascadeSpec",
    "CostQualityCurve",
    "EvaluationReport",
    "FoldBaselines",
    "Split",
    "TunedRouter",
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
    "parse_cascade",
    "pgr_curve",
    "plot_report",
    "register_router",
    "routed_cost_quality",
    "router_names",
    "strong_share_curve",
    "threshold_sweep",
    "tuned_router",
    "validation_score",
]
