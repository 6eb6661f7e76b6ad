"""Routers: learn from outcomes, answer P(model i beats model j) for a prompt."""

from __future__ import annotations

from ._base import BaseRouter, load_router
from ._bradley_terry import fit_bradley_terry, win_probabilities
from ._sw import SWRouter

__all__ = ["BaseRouter", "SWRouter", "fit_bradley_terry", "load_router", "win_probabilities"]
