"""langroute: send each LLM call to the cheapest model likely to answer it well."""

from __future__ import annotations

from ._exceptions import (
    EmbeddingError,
    LangrouteError,
    NotFittedError,
    OutcomesError,
    RouterConfigError,
    RouterFileError,
)
from ._outcomes import Battles, Outcomes, load_battles, load_outcomes, pairwise_counts
from ._policy import EscalationLadder
from .routers import BaseRouter, SWRouter, load_router

__version__ = "0.1.0"

__all__ = [
    "BaseRouter",
    "Battles",
    "EmbeddingError",
    "EscalationLadder",
    "LangrouteError",
    "NotFittedError",
    "Outcomes",
    "OutcomesError",
    "RouterConfigError",
    "RouterFileError",
    "SWRouter",
    "load_battles",
    "load_outcomes",
    "load_router",
    "pairwise_counts",
]
