"""langroute: send each LLM call to the cheapest model likely to answer it well."""

from __future__ import annotations

from ._calibration import calibrate_threshold, routing_ladder
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
from .chat_models import (
    ROUTE_EVENT,
    ModelSpend,
    RoutedCall,
    RoutedChatModel,
    RouteEvent,
    RoutingDecision,
    RoutingSummary,
    RoutingTracer,
)
from .embeddings import Embedder, HashingEmbedder, OpenAIEmbedder, SentenceTransformerEmbedder
from .evaluation import EvaluationReport, evaluate
from .routers import BaseRouter, ClusterRouter, KNNRouter, MFRouter, SWRouter, load_router

__version__ = "0.1.0"

__all__ = [
    "ROUTE_EVENT",
    "BaseRouter",
    "Battles",
    "ClusterRouter",
    "Embedder",
    "EmbeddingError",
    "EscalationLadder",
    "EvaluationReport",
    "HashingEmbedder",
    "KNNRouter",
    "LangrouteError",
    "MFRouter",
    "ModelSpend",
    "NotFittedError",
    "OpenAIEmbedder",
    "Outcomes",
    "OutcomesError",
    "RouteEvent",
    "RoutedCall",
    "RoutedChatModel",
    "RouterConfigError",
    "RouterFileError",
    "RoutingDecision",
    "RoutingSummary",
    "RoutingTracer",
    "SWRouter",
    "SentenceTransformerEmbedder",
    "calibrate_threshold",
    "evaluate",
    "load_battles",
    "load_outcomes",
    "load_router",
    "pairwise_counts",
    "routing_ladder",
]
