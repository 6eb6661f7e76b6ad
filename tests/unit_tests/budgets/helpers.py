"""A real router and a tiny fake ``Caller`` driving ``CallPipeline`` with no framework.

Two candidates: "small" (cheap) and "large"; the router (``SWRouter(HashingEmbedder())``,
fitted on synthetic outcomes) sends maths to "large" (P(large wins) ~0.94) and chit-chat to
"small" (~0.53) at the threshold 0.7. Prices are user overrides, in USD per million tokens.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from langroute import HashingEmbedder, Outcomes, SWRouter
from langroute._decision import RoutingPolicy
from langroute.pipeline import (
    Answer,
    CallContext,
    CallPipeline,
    ModelRef,
    RouteRequest,
    TokenEstimate,
    Usage,
)

MATHS = ["What is 17 * 23?", "Solve for x: 3x + 5 = 20.",
         "Compute the integral of x^2 from 0 to 3.", "What is 3^3 plus 12 divided by 4?",
         "A train travels 120 km in 1.5 hours; what is its average speed?",
         "What is 48 divided by 6 times 7?"]
CHAT = ["Hello", "Hey", "hi there, how are you", "Tell me a joke about cats.",
        "Write me 2 haikus. Only include the haikus.", "Good morning!"]
HARD, EASY = MATHS[0], CHAT[0]
THRESHOLD = 0.7

PRICES = {"small": {"input_mtok": 1.0, "output_mtok": 2.0},
          "large": {"input_mtok": 10.0, "output_mtok": 20.0}}
REFS = {"small": ModelRef("small", provider_model="acme-small"),
        "large": ModelRef("large", provider_model="acme-large")}
#: Every call is estimated at 100 input tokens and at most 200 output tokens ...
INPUT_TOKENS, MAX_OUTPUT = 100, 200
#: ... and answers with 100 input and 50 output tokens.
USAGE = Usage(input_tokens=100, output_tokens=50)


def usd(model: str, input_tokens: int, output_tokens: int) -> float:
    price = PRICES[model]
    return (input_tokens * price["input_mtok"] + output_tokens * price["output_mtok"]) / 1e6


WORST = {m: usd(m, INPUT_TOKENS, MAX_OUTPUT) for m in PRICES}  # small 0.0005, large 0.005
ACTUAL = {m: usd(m, USAGE.input_tokens, USAGE.output_tokens) for m in PRICES}


def estimate(ref: ModelRef) -> TokenEstimate:
    return TokenEstimate(input_tokens=INPUT_TOKENS, max_output_tokens=MAX_OUTPUT)


_POLICY: RoutingPolicy | None = None
_LOCK = threading.Lock()


def policy() -> RoutingPolicy:
    global _POLICY
    with _LOCK:
        if _POLICY is None:
            prompts = MATHS + CHAT
            outcomes = Outcomes(
                ids=[f"p{i}" for i in range(len(prompts))], prompts=prompts,
                models=("large", "small"),
                scores=np.array([[1.0, 0.0]] * len(MATHS) + [[1.0, 1.0]] * len(CHAT)),
                costs=np.array([[5e-3, 2e-4]] * len(prompts)))
            router = SWRouter(HashingEmbedder(dimension=128)).fit(outcomes)
            _POLICY = RoutingPolicy.build(router, ["small", "large"], THRESHOLD)
        return _POLICY


class FakeCaller:
    """A fake provider behind the ``Caller`` protocol: answers with ``USAGE``, counts calls,
    raises the queued ``errors`` first; ``on_call`` runs inside each provider call."""

    def __init__(self, usage: Usage | None = USAGE, errors: list[Exception] | None = None,
                 on_call: Callable[[ModelRef], None] | None = None) -> None:
        self.usage = usage
        self.errors = list(errors or [])
        self.on_call = on_call
        self.calls: list[tuple[str, str]] = []
        self.events: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def _answer(self, ref: ModelRef, purpose: str) -> Answer:
        with self._lock:
            self.calls.append((ref.name, purpose))
            error = self.errors.pop(0) if self.errors else None
        if self.on_call is not None:
            self.on_call(ref)
        if error is not None:
            raise error
        return Answer(raw=None, text=f"answer from {ref.name}", usage=self.usage)

    def call(self, ref: ModelRef, purpose: str, messages: Any = None) -> Answer:
        return self._answer(ref, purpose)

    async def acall(self, ref: ModelRef, purpose: str, messages: Any = None) -> Answer:
        await asyncio.sleep(0)
        return self._answer(ref, purpose)

    def stream(self, ref: ModelRef, purpose: str) -> Iterator[Any]:
        self._answer(ref, purpose)
        yield from ["answer ", "from ", ref.name]

    async def astream(self, ref: ModelRef, purpose: str) -> AsyncIterator[Any]:
        self._answer(ref, purpose)
        for chunk in ["answer ", "from ", ref.name]:
            yield chunk

    def collect(self, ref: ModelRef, chunks: list[Any]) -> Answer:
        return Answer(raw="".join(chunks), text="".join(chunks), usage=self.usage)

    def stamp(self, raw: Any, record: dict[str, Any]) -> Any:
        return raw

    def emit(self, name: str, payload: dict[str, Any]) -> None:
        with self._lock:
            self.events.append((name, payload))

    async def aemit(self, name: str, payload: dict[str, Any]) -> None:
        self.emit(name, payload)

    def budget_events(self, action: str | None = None) -> list[dict[str, Any]]:
        return [p for n, p in self.events if n == "langroute.budget"
                and (action is None or p["action"] == action)]


def request(text: str, **metadata: Any) -> RouteRequest:
    return RouteRequest(text=text, context=CallContext(metadata=metadata))


def pipeline(budget: Any, **options: Any) -> CallPipeline:
    return CallPipeline(policy(), REFS, budget=budget, **options)


class Clock:
    """An injectable UTC clock the tests move by hand."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 12, 31, 23, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)
