"""langroute for LlamaIndex: ``RoutedLLM`` sends each call to the cheapest LLM likely to answer
it well; routing decisions are LlamaIndex instrumentation events."""

from llama_index.llms.langroute.base import RoutedLLM
from llama_index.llms.langroute.embeddings import LangrouteEmbedding
from llama_index.llms.langroute.events import (
    AttemptEvent,
    BudgetEvent,
    CascadeEvent,
    FallbackEvent,
    LangrouteEvent,
    RouteDecisionEvent,
)

__all__ = [
    "AttemptEvent",
    "BudgetEvent",
    "CascadeEvent",
    "FallbackEvent",
    "LangrouteEmbedding",
    "LangrouteEvent",
    "RouteDecisionEvent",
    "RoutedLLM",
]
