"""Routers: learn from outcomes, answer P(model i beats model j) for a prompt."""

from __future__ import annotations

from ._base import BaseRouter, load_router
from ._bradley_terry import fit_bradley_terry, win_probabilities
from ._calibration_scores import calibration_scores_disabled
from ._cluster import ClusterRouter
from ._contrastive import ContrastiveRouter
from ._irt import IRTRouter
from ._kmeans import spherical_kmeans
from ._knn import KNNRouter
from ._mf import MFRouter
from ._stacked import StackedRouter
from ._sw import SWRouter

__all__ = [
    "BaseRouter",
    "ClusterRouter",
    "ContrastiveRouter",
    "IRTRouter",
    "KNNRouter",
    "MFRouter",
    "SWRouter",
    "StackedRouter",
    "calibration_scores_disabled",
    "fit_bradley_terry",
    "load_router",
    "spherical_kmeans",
    "win_probabilities",
]
