"""LlamaIndex instrumentation events for routed calls.

``RoutedLLM`` dispatches these with this module's dispatcher, inside the span of the routed call
(``RoutedLLM.chat`` and friends), so an event handler on the root dispatcher sees each decision
next to the chosen LLM's own ``LLMChatStartEvent`` / ``LLMChatEndEvent`` (a child span).
``AttemptEvent`` reports each provider call. Every event carries the pipeline's
JSON-serialisable payload unchanged, plus a few fields lifted out of it for filtering.
"""

from __future__ import annotations

from typing import Any

from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.events.base import BaseEvent

from langroute.pipeline import (
    ATTEMPT_EVENT,
    BUDGET_EVENT,
    CASCADE_EVENT,
    FALLBACK_EVENT,
    ROUTE_EVENT,
)

__all__ = [
    "AttemptEvent",
    "BudgetEvent",
    "CascadeEvent",
    "FallbackEvent",
    "LangrouteEvent",
    "RouteDecisionEvent",
    "dispatch",
    "event_for",
]

dispatcher = get_dispatcher(__name__)


class LangrouteEvent(BaseEvent):
    """Base of langroute's events: ``name`` is the pipeline's event name, ``payload`` its data."""

    name: str
    payload: dict[str, Any]
    decision_id: str | None = None

    @classmethod
    def class_name(cls) -> str:
        return "LangrouteEvent"


class RouteDecisionEvent(LangrouteEvent):
    """Which candidate a call was routed to, and why (``payload`` is ``RoutingDecision``'s
    ``to_event()``: model, candidates, rungs, router, threshold, scores, reason, latency, cost)."""

    model: str
    reason: str
    threshold: float

    @classmethod
    def class_name(cls) -> str:
        return "RouteDecisionEvent"


class AttemptEvent(LangrouteEvent):
    """One provider call the pipeline made (answer, retry, fallback, cascade or verify) and
    what came of it: ``outcome``, latency, usage and cost are in ``payload``."""

    model: str
    purpose: str
    outcome: str

    @classmethod
    def class_name(cls) -> str:
        return "AttemptEvent"


class FallbackEvent(LangrouteEvent):
    """A candidate failed with a retryable error after its retries; ``next_model`` answers."""

    failed_model: str
    next_model: str

    @classmethod
    def class_name(cls) -> str:
        return "FallbackEvent"


class CascadeEvent(LangrouteEvent):
    """A cascaded answer was scored: accepted, or escalated to ``payload["escalate_to"]``."""

    model: str
    accepted: bool

    @classmethod
    def class_name(cls) -> str:
        return "CascadeEvent"


class BudgetEvent(LangrouteEvent):
    """A budget reservation, commit, release or denial (``action``)."""

    action: str

    @classmethod
    def class_name(cls) -> str:
        return "BudgetEvent"


def event_for(name: str, payload: dict[str, Any], span_id: str | None) -> LangrouteEvent:
    """The typed event for one pipeline event (unknown names give a plain ``LangrouteEvent``)."""
    common: dict[str, Any] = {"name": name, "payload": payload,
                              "decision_id": payload.get("decision_id"), "span_id": span_id}
    if name == ROUTE_EVENT:
        return RouteDecisionEvent(model=payload["model"], reason=payload["reason"],
                                  threshold=payload["threshold"], **common)
    if name == ATTEMPT_EVENT:
        return AttemptEvent(model=payload["model"], purpose=payload["purpose"],
                            outcome=payload["outcome"], **common)
    if name == FALLBACK_EVENT:
        return FallbackEvent(failed_model=payload["failed_model"],
                             next_model=payload["next_model"], **common)
    if name == CASCADE_EVENT:
        return CascadeEvent(model=payload["model"], accepted=payload["accepted"], **common)
    if name == BUDGET_EVENT:
        return BudgetEvent(action=str(payload.get("action", "")), **common)
    return LangrouteEvent(**common)


def dispatch(name: str, payload: dict[str, Any], span_id: str | None) -> None:
    """Dispatch one pipeline event to LlamaIndex's instrumentation handlers."""
    dispatcher.event(event_for(name, payload, span_id))
