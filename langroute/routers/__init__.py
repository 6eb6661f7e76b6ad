"""Routers: learn from outcomes, answer P(model i beats model j) for a prompt."""

from __future__ import annotations

from ._base import BaseRouter, load_router
from ._bradley_terry import fit_bradley_terry, win_probabilities
from ._cluster import ClusterRouter
from ._kmeans import spherical_kmeans
from ._knn import KNNRouter
from ._mf import MFRouter
from ._sw import SWRouter

__all__ = [
    "BaseRouter",
    "ClusterRouter",
    "KNNRouter",
    "MFRouter",
    "SWRouter",
    "fit_bradley_terry",
    "load_router",
    "spherical_kmeans",
    "win_probabilities",
]
