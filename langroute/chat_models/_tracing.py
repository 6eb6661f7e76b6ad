"""``RoutingTracer``: a callback handler that collects routing decisions and what they cost.

It listens for the ``langroute.route`` custom event of each routed call, then for the usage of
the chat-model run that answered it (the routed run's child, or the routed run itself on the
``generate()`` path) and for errors. ``summary()`` turns that into calls and spend per model and
the share of calls that went to the top (most expensive) rung.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, LLMResult

from .._decision import ROUTE_EVENT, RouteEvent
from .._exceptions import RouterConfigError

__all__ = ["ModelSpend", "RoutedCall", "RoutingSummary", "RoutingTracer"]

_PRICE_FIELDS = ("input_usd_per_mtok", "output_usd_per_mtok")


@dataclass
class RoutedCall:
    """One routed call as the tracer saw it."""

    run_id: UUID
    decision: RouteEvent
    input_tokens: int = 0
    output_tokens: int = 0
    has_usage: bool = False
    failed: bool = False
    error: str | None = None


@dataclass(frozen=True)
class ModelSpend:
    """Calls and spend of one model. ``spend_source`` says how spend was computed:
    "usage x prices" (token counts times the given prices), "estimated per call" (the router's
    or ``costs=`` USD per call), "mixed", or "unknown"."""

    calls: int
    failed: int
    input_tokens: int
    output_tokens: int
    spend_usd: float
    spend_source: str


@dataclass(frozen=True)
class RoutingSummary:
    """Totals over every routed call the tracer saw."""

    calls: int
    failed: int
    strong_share: float
    total_spend_usd: float
    per_model: dict[str, ModelSpend] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [
            f"{self.calls} routed calls ({self.failed} failed), "
            f"{self.strong_share:.0%} to the top rung, ${self.total_spend_usd:.6f} spent"
        ]
        for name, spend in sorted(self.per_model.items()):
            lines.append(
                f"  {name}: {spend.calls} calls, {spend.input_tokens}+{spend.output_tokens} "
                f"tokens, ${spend.spend_usd:.6f} ({spend.spend_source})"
            )
        return "\n".join(lines)


class RoutingTracer(BaseCallbackHandler):
    """Collect the decisions of RoutedChatModel calls and summarise calls and spend per model.

    Pass it like any callback handler (``config={"callbacks": [tracer]}``), from sync or async
    code. Spend of a call is its usage_metadata tokens times ``prices`` when the model has
    prices, else the decision's estimated USD per call.

    Parameters
    ----------
    prices : dict, default=None
        Per model name, ``{"input_usd_per_mtok": float, "output_usd_per_mtok": float}`` (the
        fields of an outcomes folder's models.json).
    """

    # Run in the caller's thread even under async callback managers, so events of one call
    # arrive in order and no executor hop is needed for a few dict updates.
    run_inline = True

    def __init__(self, prices: Mapping[str, Mapping[str, float]] | None = None) -> None:
        super().__init__()
        self.prices = _checked_prices(prices)
        self._calls: dict[UUID, RoutedCall] = {}
        self._lock = threading.Lock()

    @property
    def calls(self) -> list[RoutedCall]:
        """The routed calls seen so far, in the order they were decided."""
        with self._lock:
            return list(self._calls.values())

    # -- callbacks ------------------------------------------------------------------------------
    def on_custom_event(self, name: str, data: Any, *, run_id: UUID, **kwargs: Any) -> None:
        if name != ROUTE_EVENT:
            return
        with self._lock:
            self._calls[run_id] = RoutedCall(run_id=run_id, decision=data)

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, parent_run_id: UUID | None = None,
                   **kwargs: Any) -> None:
        with self._lock:
            call = self._owner(run_id, parent_run_id)
            if call is None:
                return
            for generations in response.generations:
                for generation in generations:
                    message = generation.message if isinstance(generation, ChatGeneration) else None
                    usage = message.usage_metadata if isinstance(message, AIMessage) else None
                    if usage:
                        call.input_tokens += int(usage.get("input_tokens", 0))
                        call.output_tokens += int(usage.get("output_tokens", 0))
                        call.has_usage = True

    def on_llm_error(self, error: BaseException, *, run_id: UUID,
                     parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        self._fail(run_id, parent_run_id, error)

    def on_chain_error(self, error: BaseException, *, run_id: UUID,
                       parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        self._fail(run_id, None, error)

    def _fail(self, run_id: UUID, parent_run_id: UUID | None, error: BaseException) -> None:
        with self._lock:
            call = self._owner(run_id, parent_run_id)
            if call is not None:
                call.failed = True
                call.error = f"{type(error).__name__}: {error}"

    def _owner(self, run_id: UUID, parent_run_id: UUID | None) -> RoutedCall | None:
        """The routed call a run belongs to: itself (generate path) or its parent."""
        return self._calls.get(run_id) or (
            self._calls.get(parent_run_id) if parent_run_id is not None else None
        )

    # -- summary --------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget every call seen so far."""
        with self._lock:
            self._calls.clear()

    def summary(self) -> RoutingSummary:
        """Calls and spend per model, and the share of calls answered by the top rung."""
        calls = self.calls
        per_model: dict[str, list[RoutedCall]] = {}
        for call in calls:
            per_model.setdefault(call.decision["model"], []).append(call)
        spends = {name: self._model_spend(name, group) for name, group in per_model.items()}
        top = sum(1 for c in calls if c.decision["rungs"] and
                  c.decision["model"] == c.decision["rungs"][-1])
        return RoutingSummary(
            calls=len(calls),
            failed=sum(c.failed for c in calls),
            strong_share=top / len(calls) if calls else 0.0,
            total_spend_usd=sum(s.spend_usd for s in spends.values()),
            per_model=spends,
        )

    def _model_spend(self, name: str, calls: list[RoutedCall]) -> ModelSpend:
        price = self.prices.get(name)
        total = 0.0
        sources = set()
        for call in calls:
            if price is not None and call.has_usage:
                total += (call.input_tokens * price["input_usd_per_mtok"]
                          + call.output_tokens * price["output_usd_per_mtok"]) / 1e6
                sources.add("usage x prices")
            elif call.failed:
                continue  # no answer, no usage: nothing known to be spent
            elif call.decision.get("estimated_cost_usd") is not None:
                total += float(call.decision["estimated_cost_usd"])  # type: ignore[arg-type]
                sources.add("estimated per call")
            else:
                sources.add("unknown")
        source = sources.pop() if len(sources) == 1 else ("mixed" if sources else "unknown")
        return ModelSpend(
            calls=len(calls),
            failed=sum(c.failed for c in calls),
            input_tokens=sum(c.input_tokens for c in calls),
            output_tokens=sum(c.output_tokens for c in calls),
            spend_usd=total,
            spend_source=source,
        )


def _checked_prices(prices: Mapping[str, Mapping[str, float]] | None
                    ) -> dict[str, dict[str, float]]:
    if prices is None:
        return {}
    if not isinstance(prices, Mapping):
        raise RouterConfigError(f"prices must be a dict of model -> prices, got {type(prices)}")
    out = {}
    for name, entry in prices.items():
        if not isinstance(entry, Mapping):
            raise RouterConfigError(f"prices[{name!r}] must be a dict with {_PRICE_FIELDS}")
        values = {}
        for key in _PRICE_FIELDS:
            value = entry.get(key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise RouterConfigError(
                    f"prices[{name!r}][{key!r}] must be a number >= 0, got {value!r}"
                )
            values[key] = float(value)
        out[name] = values
    return out
