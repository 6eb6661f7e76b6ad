"""langroute: send each LLM call to the cheapest model likely to answer it well.

The core (routers, embeddings, outcomes, calibration, evaluation, the call pipeline and its
steps: budgets, cascades, feedback) is framework-free and imported here. The LangChain edge
(``RoutedChatModel``, ``RoutingTracer``) is imported on first use, so ``import langroute`` and
``import langroute.routers`` never load LangChain; the LlamaIndex edge is the separate
``llama-index-llms-langroute`` distribution.
"""

from __future__ import annotations

from ._calibration import calibrate_threshold, routing_ladder
from ._decision import ROUTE_EVENT, RouteEvent, RoutingDecision
from ._exceptions import (
    BudgetExceededError,
    BudgetStoreError,
    CallTimeoutError,
    CascadeConfigError,
    CascadeScoreError,
    ConvergenceError,
    EmbeddingError,
    FeedbackError,
    FeedbackStoreError,
    LangrouteError,
    MessageError,
    MissingDependencyError,
    NotFittedError,
    OutcomesError,
    RefitError,
    RouterConfigError,
    RouterFileError,
    UnknownDecisionError,
)
from ._outcomes import Battles, Outcomes, load_battles, load_outcomes, pairwise_counts
from ._policy import EscalationLadder
from .budgets import Budget
from .cascade import AgreementScorer, Cascade, FunctionScorer, JudgeScorer, LogprobScorer
from .embeddings import (
    Embedder,
    HashingEmbedder,
    OnnxMiniLMEmbedder,
    OpenAIEmbedder,
    SentenceTransformerEmbedder,
    StaticEmbedder,
    default_embedder,
)
from .evaluation import EvaluationReport, evaluate
from .feedback import open_feedback_store, record_feedback, record_preference
from .pipeline import CallPipeline, Fallback, RetryPolicy, collect_decisions
from .routers import (
    BaseRouter,
    ClusterRouter,
    IRTRouter,
    KNNRouter,
    MFRouter,
    StackedRouter,
    SWRouter,
    load_router,
)

__version__ = "0.1.0"

#: Names served by the LangChain edge, imported on first use.
_LANGCHAIN_EXPORTS = frozenset({
    "ModelSpend", "RoutedCall", "RoutedChatModel", "RoutingSummary", "RoutingTracer",
})


def __getattr__(name: str) -> object:
    if name in _LANGCHAIN_EXPORTS:
        from . import chat_models

        return getattr(chat_models, name)
    raise AttributeError(f"module 'langroute' has no attribute {name!r}")


__all__ = [
    "ROUTE_EVENT",
    "AgreementScorer",
    "BaseRouter",
    "Battles",
    "Budget",
    "BudgetExceededError",
    "BudgetStoreError",
    "CallPipeline",
    "CallTimeoutError",
    "Cascade",
    "CascadeConfigError",
    "CascadeScoreError",
    "ClusterRouter",
    "ConvergenceError",
    "Embedder",
    "EmbeddingError",
    "EscalationLadder",
    "EvaluationReport",
    "Fallback",
    "FeedbackError",
    "FeedbackStoreError",
    "FunctionScorer",
    "HashingEmbedder",
    "IRTRouter",
    "JudgeScorer",
    "KNNRouter",
    "LangrouteError",
    "LogprobScorer",
    "MFRouter",
    "MessageError",
    "MissingDependencyError",
    "ModelSpend",
    "NotFittedError",
    "OnnxMiniLMEmbedder",
    "OpenAIEmbedder",
    "Outcomes",
    "OutcomesError",
    "RefitError",
    "RetryPolicy",
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
    "StackedRouter",
    "StaticEmbedder",
    "UnknownDecisionError",
    "calibrate_threshold",
    "collect_decisions",
    "default_embedder",
    "evaluate",
    "load_battles",
    "load_outcomes",
    "load_router",
    "open_feedback_store",
    "pairwise_counts",
    "record_feedback",
    "record_preference",
    "routing_ladder",
]
