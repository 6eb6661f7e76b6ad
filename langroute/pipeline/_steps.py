"""The pluggable steps of a routed call, and the one state object every step receives.

A step is a small policy object in tenacity's style: it gets the ``CallState`` (the call's
context, the decision, the attempts so far) and says what to do. A step with I/O of its own
(a budget store) provides a sync and an async form of each method; a step that must make model
calls of its own (a cascade scorer asking a verifier) is written once as a generator of effects
and asks through ``state.ask`` so its calls are budgeted, traced and counted like any other.

Protocols:

- ``BudgetStep``: ``admit`` (before calling: shift the decision cheaper or deny), then per
  provider call ``reserve`` -> ``commit`` (actual cost) or ``release`` (on error).
- ``CascadeStep``: ``plan`` (does this call cascade, and from which model), ``score`` (rate an
  answer), ``accepts`` (is the score good enough), ``escalate_to`` (the next model up).
- ``Recorder``: ``record`` after the call (e.g. remember the decision for feedback).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ._types import Answer, Attempt, CallContext, ModelRef

if TYPE_CHECKING:
    from .._decision import RoutingDecision, RoutingPolicy
    from ._effects import Effect

__all__ = [
    "BudgetStep",
    "CallState",
    "CascadeStep",
    "Recorder",
    "RouteRequest",
    "TokenEstimate",
    "estimated_prompt_tokens",
    "estimated_tokens",
]


@dataclass(frozen=True)
class RouteRequest:
    """What an adapter read from one call's input: the text to route on, the candidate a
    tool loop is stuck to (or None), a note on why, and the caller's context."""

    text: str
    context: CallContext
    sticky_model: str | None = None
    note: str = ""
    #: Set when a tool loop is in flight but its maker could not be identified.
    unidentified_loop: bool = False
    #: The provider model the caller asked the chosen client for (a per-call ``model=``).
    model_override: str | None = None
    #: The call's input messages in the adapter's own form (what cascade scorers that are
    #: plain callables receive); None when the adapter does not pass them.
    messages: Any = None


@dataclass(frozen=True)
class TokenEstimate:
    """Worst-case size of one call before it is made: counted input tokens, and the output
    limit the call runs with (None when unset; the budget step then applies its own cap)."""

    input_tokens: int
    max_output_tokens: int | None
    #: How ``input_tokens`` was obtained: ``"counted"`` by the model's own tokenizer, or
    #: ``"chars/3"`` (``estimated_tokens``: a deliberate over-estimate when the model cannot
    #: count offline).
    method: str = "counted"


def estimated_tokens(text: str) -> int:
    """A deliberate over-estimate of ``text``'s tokens, for a model that cannot count them
    offline: ASCII characters / 3 (English runs about 4 to a token) plus the UTF-8 bytes of
    every other character (Chinese or Japanese run about a token a character, which
    characters / 3 under-counted threefold; a byte-level BPE never makes more tokens than
    bytes). Budget holds and the charge of a stream cut short are sized with it."""
    n_ascii = len(text.encode("ascii", "ignore"))
    return math.ceil(n_ascii / 3) + len(text.encode("utf-8", "surrogatepass")) - n_ascii


def estimated_prompt_tokens(texts: Iterable[str]) -> int:
    """``estimated_tokens`` of each part a prompt sends (a message, a tool's JSON schema), plus
    8 a part for the role and separators around it: the one worst-case size of a prompt that
    every budget hold of a model that cannot count offline is made of."""
    parts = list(texts)
    return sum(estimated_tokens(part) for part in parts) + 8 * len(parts)


@dataclass
class CallState:
    """Everything a step may read about one routed call (one object, as tenacity's
    ``RetryCallState``). Steps may read all fields and append to ``notes``.
    """

    context: CallContext
    request: RouteRequest
    policy: RoutingPolicy
    decision: RoutingDecision
    streaming: bool = False
    attempts: list[Attempt] = field(default_factory=list)
    #: Free-form per-step notes (e.g. the budget scope's state); copied into the trace.
    notes: dict[str, Any] = field(default_factory=dict)
    #: Set by the pipeline: the budgeted, traced provider call a step uses to ask a model.
    ask: Callable[..., Generator[Effect, Any, Answer]] | None = field(default=None, repr=False)
    #: Set by the adapter: the worst-case token estimate of a call to a model.
    estimate: Callable[[ModelRef], TokenEstimate] | None = field(default=None, repr=False)

    @property
    def tool_loop(self) -> bool:
        """True while a tool loop is in flight (the call answers tool results)."""
        return self.request.sticky_model is not None or self.request.unidentified_loop


@runtime_checkable
class BudgetStep(Protocol):
    """Budget protocol: admit, then reserve -> commit | release around every provider call.

    ``admit`` may return a different decision (a soft limit shifting routing cheaper) or raise
    (a hard limit). ``reserve`` holds the call's worst-case cost and returns a hold whose
    ``to_event()`` describes it; ``commit`` books the answer's actual cost and returns the event
    dict; ``release`` frees an unused hold. Every method has an ``a``-prefixed async form.
    """

    def admit(self, state: CallState) -> RoutingDecision: ...

    async def aadmit(self, state: CallState) -> RoutingDecision: ...

    def reserve(self, state: CallState, ref: ModelRef) -> Any: ...

    async def areserve(self, state: CallState, ref: ModelRef) -> Any: ...

    def commit(self, hold: Any, answer: Answer) -> dict[str, Any]: ...

    async def acommit(self, hold: Any, answer: Answer) -> dict[str, Any]: ...

    def release(self, hold: Any, error: BaseException | None) -> dict[str, Any]: ...

    async def arelease(self, hold: Any, error: BaseException | None) -> dict[str, Any]: ...


@runtime_checkable
class CascadeStep(Protocol):
    """Cascade protocol: answer cheap first, score the answer, escalate while it is doubtful.

    ``plan(state)`` returns the model the cascade starts with, or None when this call does not
    cascade (then the decided model answers and a stream is delivered live). ``score`` is a
    generator of effects (asking other models through ``state.ask``) returning a float, or
    None for an answer the step accepts unscored (e.g. a tool call); ``accepts(score)``
    decides; ``escalate_to`` names the next model up (None: keep the answer). At most
    ``max_steps`` escalations.
    """

    max_steps: int

    def plan(self, state: CallState) -> str | None: ...

    def score(self, state: CallState, answer: Answer
              ) -> Generator[Effect, Any, float | None]: ...

    def accepts(self, score: float) -> bool: ...

    def escalate_to(self, state: CallState, model: str) -> str | None: ...


@runtime_checkable
class Recorder(Protocol):
    """Told about every finished call (sync and async forms)."""

    def record(self, state: CallState, answer: Answer) -> None: ...

    async def arecord(self, state: CallState, answer: Answer) -> None: ...
