"""``RoutingTracer``: a callback handler that collects routing decisions and what they cost.

It listens to the pipeline's own events, not to the run tree: ``langroute.route`` opens a routed
call, each ``langroute.attempt`` is one provider call made for it (the answer, a retry, a
fallback, a cascade escalation, a verifier's check) with its usage, and ``langroute.cascade``
says what came of a cascaded answer: scored (the call counts as checked) and accepted or
escalated (an attempt is traced when it settles, before it is scored, so the tracer marks its
copy of the answer's attempt from this event). So every provider call is counted exactly once
whatever runs LangChain puts in between (``with_structured_output`` adds a parser run; the
generate path has none). Memory is bounded: the newest ``max_calls`` calls are kept, older
ones are folded into totals once their run has ended and ``max_calls`` more have ended since
(a call still in flight keeps receiving its events, however many calls started after it, and
so does one that just ended: a stream closed early ends its run before settling its attempt).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler

from .._decision import ROUTE_EVENT, RouteEvent
from .._exceptions import RouterConfigError
from ..pipeline import ATTEMPT_EVENT, CASCADE_EVENT

__all__ = ["ModelSpend", "RoutedCall", "RoutingSummary", "RoutingTracer"]

_PRICE_FIELDS = ("input_usd_per_mtok", "output_usd_per_mtok")
#: attempt outcomes of a provider call that gave no answer: failed, or cancelled mid-call
_NO_ANSWER = ("error", "cancelled")


@dataclass
class RoutedCall:
    """One routed call as the tracer saw it: its decision and every provider call made."""

    run_id: UUID
    decision: RouteEvent
    attempts: list[dict[str, Any]] = field(default_factory=list)
    cascaded: bool = False
    failed: bool = False
    error: str | None = None

    @property
    def input_tokens(self) -> int:
        return sum((a.get("usage") or {}).get("input_tokens", 0) for a in self.attempts)

    @property
    def output_tokens(self) -> int:
        return sum((a.get("usage") or {}).get("output_tokens", 0) for a in self.attempts)

    @property
    def has_usage(self) -> bool:
        return any(a.get("usage") for a in self.attempts)

    @property
    def answered_by(self) -> str | None:
        """The model whose answer was returned (None while in flight or failed); for a stream
        its consumer stopped reading, the model whose chunks it was given."""
        answers = [a for a in self.attempts if a.get("purpose") != "verify"
                   and a.get("outcome") in ("ok", "accepted", "abandoned")]
        return answers[-1]["model"] if answers and not self.failed else None


@dataclass(frozen=True)
class ModelSpend:
    """Provider calls to one model and their spend. ``spend_source`` says how spend was
    computed: "usage x prices" (token counts times the given prices), "budget" (the budget
    step's priced commit), "estimated per call" (the router's or ``costs=`` USD per call),
    "mixed", or "unknown"."""

    calls: int
    failed: int
    input_tokens: int
    output_tokens: int
    spend_usd: float
    spend_source: str


@dataclass(frozen=True)
class RoutingSummary:
    """Totals over every routed call the tracer saw.

    ``strong_share``: share of calls answered by the top rung. ``cascade_share``: share of
    calls whose answer was checked; ``checking_spend_usd``: what checking cost (verifier calls
    and answers that were escalated). ``per_scope``: spend per budget scope (agent/user).
    """

    calls: int
    failed: int
    strong_share: float
    total_spend_usd: float
    per_model: dict[str, ModelSpend] = field(default_factory=dict)
    cascade_share: float = 0.0
    checking_spend_usd: float = 0.0
    per_scope: dict[str, float] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [
            f"{self.calls} routed calls ({self.failed} failed), "
            f"{self.strong_share:.0%} to the top rung, ${self.total_spend_usd:.6f} spent"
        ]
        if self.cascade_share:
            lines.append(f"  {self.cascade_share:.0%} cascaded, checking cost "
                         f"${self.checking_spend_usd:.6f}")
        for name, spend in sorted(self.per_model.items()):
            lines.append(
                f"  {name}: {spend.calls} calls, {spend.input_tokens}+{spend.output_tokens} "
                f"tokens, ${spend.spend_usd:.6f} ({spend.spend_source})"
            )
        if len(self.per_scope) > 1 or set(self.per_scope) - {"*"}:
            lines.append("  by caller: " + ", ".join(
                f"{scope} ${usd:.6f}" for scope, usd in sorted(self.per_scope.items())))
        return "\n".join(lines)


@dataclass
class _ModelTotals:
    calls: int = 0
    failed: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    spend_usd: float = 0.0
    sources: set[str] = field(default_factory=set)
    #: failed calls that chose this model and made no provider call (they list it, at 0)
    unattempted: int = 0


@dataclass
class _Totals:
    calls: int = 0
    failed: int = 0
    top: int = 0
    cascaded: int = 0
    checking_usd: float = 0.0
    per_model: dict[str, _ModelTotals] = field(default_factory=dict)
    per_scope: dict[str, float] = field(default_factory=dict)

    def add_change(self, after: _Totals, before: _Totals) -> None:
        """Add ``after - before`` (one call's contributions, re-folded after a late event)."""
        self.calls += after.calls - before.calls
        self.failed += after.failed - before.failed
        self.top += after.top - before.top
        self.cascaded += after.cascaded - before.cascaded
        self.checking_usd += after.checking_usd - before.checking_usd
        empty = _ModelTotals()
        for name in {*after.per_model, *before.per_model}:
            a, b = after.per_model.get(name, empty), before.per_model.get(name, empty)
            t = self.per_model.setdefault(name, _ModelTotals())
            t.calls += a.calls - b.calls
            t.failed += a.failed - b.failed
            t.input_tokens += a.input_tokens - b.input_tokens
            t.output_tokens += a.output_tokens - b.output_tokens
            t.spend_usd += a.spend_usd - b.spend_usd
            t.sources |= a.sources
            t.unattempted += a.unattempted - b.unattempted
            if not t.calls and not t.unattempted:  # listed only by the call's old state
                del self.per_model[name]
        for scope in {*after.per_scope, *before.per_scope}:
            self.per_scope[scope] = (self.per_scope.get(scope, 0.0)
                                     + after.per_scope.get(scope, 0.0)
                                     - before.per_scope.get(scope, 0.0))

    def copy(self) -> _Totals:
        return _Totals(self.calls, self.failed, self.top, self.cascaded, self.checking_usd,
                       {k: _ModelTotals(v.calls, v.failed, v.input_tokens, v.output_tokens,
                                        v.spend_usd, set(v.sources), v.unattempted)
                        for k, v in self.per_model.items()},
                       dict(self.per_scope))


#: Calls kept after they are folded into the totals, for events that come after their run
#: ended and after ``max_calls`` newer calls ended too (many streams closed at once).
_LATE_WINDOW = 1024


class RoutingTracer(BaseCallbackHandler):
    """Collect the decisions of RoutedChatModel calls and summarise calls and spend per model.

    Pass it like any callback handler (``config={"callbacks": [tracer]}``), from sync or async
    code. A provider call's spend is its usage times ``prices`` when the model has prices, else
    the budget step's priced cost when budgets are on, else the decision's estimated USD per
    call.

    Parameters
    ----------
    prices : dict, default=None
        Per model name, ``{"input_usd_per_mtok": float, "output_usd_per_mtok": float}`` (the
        fields of an outcomes folder's models.json).
    max_calls : int, default=10000
        How many recent calls ``calls`` keeps; older ones count in ``summary()`` only. For
        events that arrive after a call's run has ended (a stream closed early settles its
        provider call after), up to ``max_calls`` more ended calls and the last 1,024 folded
        ones are kept too.
    """

    # Run in the caller's thread even under async callback managers, so events of one call
    # arrive in order and no executor hop is needed for a few dict updates.
    run_inline = True

    def __init__(self, prices: Mapping[str, Mapping[str, float]] | None = None, *,
                 max_calls: int = 10_000) -> None:
        super().__init__()
        if isinstance(max_calls, bool) or not isinstance(max_calls, int) or max_calls < 1:
            raise RouterConfigError(f"max_calls must be an int >= 1, got {max_calls!r}")
        self.prices = _checked_prices(prices)
        self.max_calls = max_calls
        self._calls: OrderedDict[str, RoutedCall] = OrderedDict()  # by decision id
        #: calls whose routed run has not ended yet, by run id
        self._by_run: dict[UUID, RoutedCall] = {}
        #: calls pushed out of ``_calls`` while still in flight, by decision id: moved to
        #: ``_ended`` when their run ends (their later attempts must still count)
        self._evicted: dict[str, RoutedCall] = {}
        #: calls out of ``_calls`` whose run has ended, oldest first, at most ``max_calls``:
        #: an event may still come after the run's end (a stream its consumer closed ends its
        #: run, then settles its attempt), so they are folded into the totals only when pushed
        #: out of here
        self._ended: OrderedDict[str, RoutedCall] = OrderedDict()
        #: the last ``_LATE_WINDOW`` calls folded into the totals: many streams closed at once
        #: can push a call out of ``_ended`` before its late event comes, which then re-folds
        #: it (its old contribution taken out, the new one added) instead of being dropped
        self._folded: OrderedDict[str, RoutedCall] = OrderedDict()
        self._retired = _Totals()
        self._lock = threading.Lock()

    @property
    def calls(self) -> list[RoutedCall]:
        """The most recent routed calls (at most ``max_calls``), in the order decided."""
        with self._lock:
            return list(self._calls.values())

    # -- callbacks ------------------------------------------------------------------------------
    def on_custom_event(self, name: str, data: Any, *, run_id: UUID, **kwargs: Any) -> None:
        if name == ROUTE_EVENT:
            with self._lock:
                call = RoutedCall(run_id=run_id, decision=data)
                self._calls[_key(data, run_id)] = call
                self._by_run[run_id] = call
                while len(self._calls) > self.max_calls:
                    key, old = self._calls.popitem(last=False)
                    if self._by_run.get(old.run_id) is old:
                        self._evicted[key] = old  # in flight: retired when its run ends
                    else:
                        self._retire(key, old)
        elif name in (ATTEMPT_EVENT, CASCADE_EVENT):
            with self._lock:
                key = str(data.get("decision_id"))
                found = (self._calls.get(key) or self._evicted.get(key)
                         or self._ended.get(key))
                folded = self._folded.get(key) if found is None else None
                if found is None and folded is None:
                    return
                before = _Totals()
                if folded is not None:
                    found = folded
                    self._fold(before, found)
                if name == ATTEMPT_EVENT:
                    found.attempts.append(dict(data))
                else:
                    _judged(found, data)
                if folded is not None:
                    after = _Totals()
                    self._fold(after, found)
                    self._retired.add_change(after, before)

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id, None)

    def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id, None)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id, error)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id, error)

    def _end(self, run_id: UUID, error: BaseException | None) -> None:
        """A routed run ended: failed with ``error`` unless it is ``GeneratorExit`` (an async
        stream its consumer closed early ends with it: abandoned, recorded, not failed)."""
        with self._lock:
            call = self._by_run.pop(run_id, None)
            if call is None:
                return
            if error is not None and not isinstance(error, GeneratorExit):
                call.failed = True
                call.error = f"{type(error).__name__}: {error}"
            key = _key(call.decision, run_id)
            if self._evicted.get(key) is call:
                del self._evicted[key]
                self._retire(key, call)

    def _retire(self, key: str, call: RoutedCall) -> None:
        """Keep an ended call out of ``calls`` a while longer for late events; fold the oldest
        such call into the totals once more than ``max_calls`` are kept."""
        self._ended[key] = call
        while len(self._ended) > self.max_calls:
            old_key, old = self._ended.popitem(last=False)
            self._fold(self._retired, old)
            self._folded[old_key] = old
            while len(self._folded) > _LATE_WINDOW:
                self._folded.popitem(last=False)

    # -- summary --------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget every call seen so far."""
        with self._lock:
            self._calls.clear()
            self._by_run.clear()
            self._evicted.clear()
            self._ended.clear()
            self._folded.clear()
            self._retired = _Totals()

    def summary(self) -> RoutingSummary:
        """Calls and spend per model, the top-rung share, cascades and spend per scope."""
        with self._lock:
            totals = self._retired.copy()
            for call in (*self._ended.values(), *self._evicted.values(),
                         *self._calls.values()):
                self._fold(totals, call)
        per_model = {}
        for name, t in totals.per_model.items():
            source = (next(iter(t.sources)) if len(t.sources) == 1
                      else ("mixed" if t.sources else "unknown"))
            per_model[name] = ModelSpend(t.calls, t.failed, t.input_tokens, t.output_tokens,
                                         t.spend_usd, source)
        calls = totals.calls
        return RoutingSummary(
            calls=calls,
            failed=totals.failed,
            strong_share=totals.top / calls if calls else 0.0,
            total_spend_usd=sum(s.spend_usd for s in per_model.values()),
            per_model=per_model,
            cascade_share=totals.cascaded / calls if calls else 0.0,
            checking_spend_usd=totals.checking_usd,
            per_scope=dict(totals.per_scope),
        )

    def _fold(self, totals: _Totals, call: RoutedCall) -> None:
        """Add one call's contributions to ``totals``."""
        totals.calls += 1
        totals.failed += call.failed
        totals.cascaded += call.cascaded
        rungs = call.decision.get("rungs") or []
        answered = call.answered_by
        if rungs and answered == rungs[-1]:
            totals.top += 1
        scope = str(call.decision.get("scope") or "*")
        attempts = call.attempts or []
        for attempt in attempts:
            model = str(attempt.get("model"))
            t = totals.per_model.setdefault(model, _ModelTotals())
            t.calls += 1
            usage = attempt.get("usage") or {}
            if attempt.get("outcome") in _NO_ANSWER:
                t.failed += 1
            t.input_tokens += int(usage.get("input_tokens", 0))
            t.output_tokens += int(usage.get("output_tokens", 0))
            spend, source = self._attempt_spend(call, attempt)
            t.spend_usd += spend
            t.sources.add(source) if source != "none" else None
            totals.per_scope[scope] = totals.per_scope.get(scope, 0.0) + spend
            if attempt.get("purpose") == "verify" or attempt.get("outcome") == "escalated":
                totals.checking_usd += spend
        if not attempts and call.failed:  # denied or failed before any provider call
            model = str(call.decision.get("model"))
            totals.per_model.setdefault(model, _ModelTotals()).unattempted += 1

    def _attempt_spend(self, call: RoutedCall, attempt: Mapping[str, Any]) -> tuple[float, str]:
        model = attempt.get("model")
        price = self.prices.get(str(model))
        usage = attempt.get("usage")
        if price is not None and usage:
            return ((usage.get("input_tokens", 0) * price["input_usd_per_mtok"]
                     + usage.get("output_tokens", 0) * price["output_usd_per_mtok"]) / 1e6,
                    "usage x prices")
        if isinstance(attempt.get("cost_usd"), (int, float)):
            return float(attempt["cost_usd"]), "budget"
        if attempt.get("outcome") in _NO_ANSWER:
            # no answer, no usage: nothing known to be spent (a budget released its hold)
            return 0.0, "none"
        # the attempt's own per-call figure (any rung: a fallback, an escalation, a candidate
        # asked to verify), else the decision's for the model it chose
        estimate = attempt.get("estimated_cost_usd")
        if estimate is None and model == call.decision.get("model"):
            estimate = call.decision.get("estimated_cost_usd")
        if isinstance(estimate, (int, float)):
            return float(estimate), "estimated per call"
        return 0.0, "unknown"


def _key(decision: Mapping[str, Any], run_id: UUID) -> str:
    """A call's key: its decision id (what its attempt and cascade events carry)."""
    return str(decision.get("decision_id") or run_id)


def _judged(call: RoutedCall, event: Mapping[str, Any]) -> None:
    """Apply one ``langroute.cascade`` event to the call.

    The call counts as cascaded only when an answer was actually scored (a tool-call answer
    accepted unscored, or the top rung's answer accepted without a check, was not checked).
    The scored model's latest answer attempt takes the outcome the pipeline gave it
    ("escalated" or "accepted", from the event's ``accepted``), as the copy taken when it
    settled still says "ok". An event with an ``error`` but no ``failed`` is the scorer's
    error (the call fails, no outcome to record); one with ``failed`` is an escalation whose
    provider failed, carrying that provider's ``error``: its ``accepted`` says whether the
    doubtful answer was kept (returned unconfirmed) or the call failed.
    """
    if event.get("score") is not None:
        call.cascaded = True
    if event.get("error") and not event.get("failed"):
        return  # the scorer failed: the call fails, no outcome to record
    for attempt in reversed(call.attempts):
        if (attempt.get("model") == event.get("model") and attempt.get("purpose") != "verify"
                and attempt.get("outcome") in ("ok", "accepted", "escalated")):
            attempt["outcome"] = "accepted" if event.get("accepted") else "escalated"
            attempt["score"] = event.get("score")
            return


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
