"""What a router must beat, computed on the same test prompts it is scored on.

* **single models**: always call model ``j`` -- one (cost, quality) point each.
* **best single model**: the highest test quality (ties: the cheaper), the usual reference.
* **random routing**: a prompt-independent policy that calls model ``j`` with fixed probability
  ``p_j``. Its expected (cost, quality) is the ``p``-mixture of the single-model points, so the
  best random routers trace the non-decreasing convex hull of the single models (for two models,
  the straight line from weak to strong: PGR(x) = x, APGR = 0.5). A router is only useful above
  that hull, hence it is reported as the "single-model hull" with its AIQ.
* **oracle**: per prompt, the cheapest model among those with the best score -- an upper bound
  no router reaches, showing how much headroom the data leaves.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._metrics import aiq, apgr, oracle_choices, pgr_curve, routed_cost_quality

__all__ = ["FoldBaselines", "fold_baselines", "rank_models"]


@dataclass(frozen=True)
class FoldBaselines:
    """Baselines on one test fold (costs in USD per call)."""

    model_costs: np.ndarray
    model_qualities: np.ndarray
    best_model: int
    oracle_cost: float
    oracle_quality: float
    cost_range: tuple[float, float]
    hull_aiq: float
    #: two models only (else NaN): the random ranking's APGR and the oracle's share of strong calls.
    random_apgr: float
    oracle_strong_share: float


def rank_models(scores: np.ndarray, costs: np.ndarray) -> np.ndarray:
    """Model columns by mean quality, best first (ties: the cheaper first)."""
    return np.lexsort((costs.mean(axis=0), -scores.mean(axis=0)))


def fold_baselines(
    scores: np.ndarray, costs: np.ndarray, *, strong: int | None = None, weak: int | None = None
) -> FoldBaselines:
    """Baselines of a test fold; ``strong``/``weak`` columns enable the two-model ones."""
    model_costs = costs.mean(axis=0)
    model_qualities = scores.mean(axis=0)
    best = int(rank_models(scores, costs)[0])
    oracle = oracle_choices(scores, costs)
    oracle_cost, oracle_quality = routed_cost_quality(oracle, scores, costs)
    cost_range = (float(model_costs.min()), float(model_costs.max()))
    hull_aiq = aiq(model_costs, model_qualities, cost_range=cost_range)
    random_apgr = oracle_share = float("nan")
    if strong is not None and weak is not None:
        shares, pgr = pgr_curve(np.zeros(scores.shape[0]), scores[:, weak], scores[:, strong])
        random_apgr = apgr(shares, pgr) if np.all(np.isfinite(pgr)) else float("nan")
        oracle_share = float(np.mean(oracle == strong))
    return FoldBaselines(
        model_costs=model_costs,
        model_qualities=model_qualities,
        best_model=best,
        oracle_cost=oracle_cost,
        oracle_quality=oracle_quality,
        cost_range=cost_range,
        hull_aiq=hull_aiq,
        random_apgr=random_apgr,
        oracle_strong_share=oracle_share,
    )
