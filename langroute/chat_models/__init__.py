"""The LangChain edge: a chat model that routes each call, its decisions, and their tracer."""

from __future__ import annotations

from .._decision import ROUTE_EVENT, RouteEvent, RoutingDecision
from ._routed import RoutedChatModel
from ._tracing import ModelSpend, RoutedCall, RoutingSummary, RoutingTracer

__all__ = [
    "ROUTE_EVENT",
    "ModelSpend",
    "RouteEvent",
    "RoutedCall",
    "RoutedChatModel",
    "RoutingDecision",
    "RoutingSummary",
    "RoutingTracer",
]
