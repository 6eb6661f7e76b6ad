"""The framework-free call pipeline, driven by a fake Caller: sync and async share one logic."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from langroute import SWRouter
from langroute._decision import RoutingPolicy
from langroute.embeddings import HashingEmbedder
from langroute.pipeline import (
    Answer,
    CallContext,
    CallPipeline,
    Fallback,
    ModelRef,
    RetryPolicy,
    RouteRequest,
    Usage,
    is_retryable,
    retry_after_seconds,
    run_async,
    run_sync,
    stream_async,
    stream_sync,
)

from ..routers.synthetic import MODELS, math_prompt, split_outcomes

CHEAP, CALC, POET = MODELS


class FakeCaller:
    """Answers "<model>: ok" with usage; fails per model from a script; records everything."""

    def __init__(self, failures: dict[str, list[Exception]] | None = None) -> None:
        self.failures = failures or {}
        self.calls: list[str] = []
        self.events: list[tuple[str, dict[str, Any]]] = []

    def _answer(self, ref: ModelRef) -> Answer:
        self.calls.append(ref.name)
        queue = self.failures.get(ref.name)
        if queue:
            raise queue.pop(0)
        return Answer(raw=f"{ref.name}: ok", text=f"{ref.name}: ok", usage=Usage(5, 2))

    def call(self, ref: ModelRef, purpose: str, messages: Any = None) -> Answer:
        return self._answer(ref)

    async def acall(self, ref: ModelRef, purpose: str, messages: Any = None) -> Answer:
        await asyncio.sleep(0)
        return self._answer(ref)

    def stream(self, ref: ModelRef, purpose: str):
        answer = self._answer(ref)
        return iter(answer.text.split(" "))

    def astream(self, ref: ModelRef, purpose: str):
        async def gen():
            for piece in self.stream(ref, purpose):
                yield piece
        return gen()

    def collect(self, ref: ModelRef, chunks: list[Any]) -> Answer:
        text = " ".join(chunks)
        return Answer(raw=text, text=text, usage=Usage(5, 2))

    def stamp(self, raw: Any, record: dict[str, Any]) -> Any:
        return ("stamped", raw, record["answered_by"])

    def emit(self, name: str, payload: dict[str, Any]) -> None:
        self.events.append((name, payload))

    async def aemit(self, name: str, payload: dict[str, Any]) -> None:
        self.events.append((name, payload))


@pytest.fixture(scope="module")
def policy() -> RoutingPolicy:
    router = SWRouter(HashingEmbedder(dimension=256, cache_dir=False)).fit(split_outcomes())
    # threshold 1: the cheapest rung answers; CALC is made the cheapest, POET the next
    return RoutingPolicy.build(router, list(MODELS), 1.0,
                               costs={CALC: 0.001, POET: 0.002, CHEAP: 0.01})


def _pipeline(policy: RoutingPolicy, **kwargs: Any) -> CallPipeline:
    waits: list[float] = []

    async def asleep(seconds: float) -> None:
        waits.append(seconds)

    pipeline = CallPipeline(policy, {m: ModelRef(m) for m in MODELS},
                            sleep=waits.append, asleep=asleep, **kwargs)
    pipeline.waits = waits  # type: ignore[attr-defined]
    return pipeline


def _request() -> RouteRequest:
    return RouteRequest(math_prompt(1), CallContext(metadata={"user": "ada"}))


def _run(pipeline: CallPipeline, caller: FakeCaller, mode: str) -> Any:
    if mode == "sync":
        return run_sync(pipeline.run(_request()), caller)
    return asyncio.run(run_async(pipeline.run(_request()), caller))


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_sync_and_async_run_the_same_steps(policy, mode):
    caller = FakeCaller({CALC: [ConnectionError("reset")]})
    pipeline = _pipeline(policy)
    result = _run(pipeline, caller, mode)
    assert result.model == CALC and result.answer.text == f"{CALC}: ok"
    assert caller.calls == [CALC, CALC]
    assert [(a.purpose, a.outcome) for a in result.attempts] == [("answer", "error"),
                                                                  ("retry", "ok")]
    assert [name for name, _ in caller.events] == ["langroute.route", "langroute.attempt",
                                                   "langroute.attempt"]
    assert caller.events[0][1]["scope"] == "user:ada"
    assert len(pipeline.waits) == 1  # type: ignore[attr-defined]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_fallback_goes_to_the_next_pricier_model(policy, mode):
    # CALC fails every try; POET is the next pricier candidate
    caller = FakeCaller({CALC: [ConnectionError("down")] * 3})
    result = _run(_pipeline(policy, retry=RetryPolicy(2)), caller, mode)
    assert result.model == POET and caller.calls == [CALC, CALC, CALC, POET]
    fallback = [p for n, p in caller.events if n == "langroute.fallback"]
    assert fallback[0]["failed_model"] == CALC and fallback[0]["next_model"] == POET


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_non_retryable_error_is_raised_unchanged(policy, mode):
    error = ValueError("bad request")
    caller = FakeCaller({CALC: [error]})
    with pytest.raises(ValueError) as info:
        _run(_pipeline(policy), caller, mode)
    assert info.value is error and caller.calls == [CALC]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_streams_deliver_chunks_with_the_first_stamped(policy, mode):
    caller = FakeCaller({CALC: [ConnectionError("reset")]})
    pipeline = _pipeline(policy)
    if mode == "sync":
        chunks = list(stream_sync(pipeline.run_stream(_request()), caller))
    else:
        async def collect() -> list[Any]:
            return [c async for c in stream_async(pipeline.run_stream(_request()), caller)]
        chunks = asyncio.run(collect())
    assert chunks == [("stamped", f"{CALC}:", CALC), "ok"]


class HoldingBudget:
    """A budget step that counts open holds (reserve adds one, commit/release remove it)."""

    def __init__(self) -> None:
        self.open = 0
        self.log: list[str] = []

    def admit(self, state: Any) -> Any:
        return state.decision

    async def aadmit(self, state: Any) -> Any:
        return state.decision

    def reserve(self, state: Any, ref: ModelRef) -> Any:
        self.open += 1
        self.log.append("reserve")
        return {"model": ref.name}

    async def areserve(self, state: Any, ref: ModelRef) -> Any:
        return self.reserve(state, ref)

    def commit(self, hold: Any, answer: Answer) -> dict[str, Any]:
        self.open -= 1
        self.log.append("commit")
        return {"cost_usd": 0.5}

    async def acommit(self, hold: Any, answer: Answer) -> dict[str, Any]:
        return self.commit(hold, answer)

    def release(self, hold: Any, error: BaseException | None) -> dict[str, Any]:
        self.open -= 1
        self.log.append("release")
        return {}

    async def arelease(self, hold: Any, error: BaseException | None) -> dict[str, Any]:
        return self.release(hold, error)


def test_every_attempt_is_reserved_and_settled(policy):
    budget = HoldingBudget()
    caller = FakeCaller({CALC: [ConnectionError("x")] * 3})
    result = run_sync(_pipeline(policy, budget=budget).run(_request()), caller)
    assert budget.log == ["reserve", "release"] * 3 + ["reserve", "commit"]
    assert budget.open == 0 and result.attempts[-1].cost_usd == 0.5


def test_a_stream_closed_early_commits_its_hold_once(policy):
    """The provider bills what it streamed: the hold is committed (an estimate), not freed."""
    budget = HoldingBudget()
    stream = stream_sync(_pipeline(policy, budget=budget).run_stream(_request()), FakeCaller())
    next(stream)
    stream.close()
    assert budget.open == 0 and budget.log == ["reserve", "commit"]


def test_sticky_tool_loops_never_fall_back(policy):
    caller = FakeCaller({POET: [ConnectionError("down")] * 3})
    request = RouteRequest("tool results", CallContext(), sticky_model=POET, note="loop")
    with pytest.raises(ConnectionError):
        run_sync(_pipeline(policy).run(request), caller)
    assert caller.calls == [POET] * 3


def _http_error(status: int, headers: dict[str, str]) -> Exception:
    request = httpx.Request("POST", "http://x.test")
    error = Exception("http")
    error.response = httpx.Response(status, headers=headers, request=request)  # type: ignore
    error.status_code = status  # type: ignore[attr-defined]
    return error


@pytest.mark.parametrize(("status", "retryable"), [(429, True), (500, True), (503, True),
                                                   (408, True), (400, False), (401, False),
                                                   (403, False), (404, False)])
def test_retryable_statuses(status, retryable):
    assert is_retryable(_http_error(status, {})) is retryable


def test_retry_after_headers():
    assert retry_after_seconds(_http_error(429, {"retry-after": "2"})) == 2.0
    assert retry_after_seconds(_http_error(429, {"retry-after-ms": "250"})) == 0.25
    assert retry_after_seconds(_http_error(429, {"retry-after": "9999"})) == 60.0
    assert retry_after_seconds(_http_error(429, {})) is None
    assert retry_after_seconds(ValueError("no response")) is None


def test_fallback_directions():
    costs = {"a": 1.0, "b": 2.0, "c": 3.0}
    assert Fallback("stronger").next_model("a", ["a"], costs) == "b"
    assert Fallback("stronger").next_model("c", ["c"], costs) is None
    assert Fallback("cheaper").next_model("c", ["c"], costs) == "b"
    assert Fallback(None).next_model("a", ["a"], costs) is None
    assert Fallback("stronger").next_model("a", ["a", "b"], costs) == "c"


def test_bad_policies_are_clear_errors():
    from langroute import RouterConfigError

    with pytest.raises(RouterConfigError, match="max_retries"):
        RetryPolicy(-1)
    with pytest.raises(RouterConfigError, match="fallback must be"):
        Fallback("sideways")  # type: ignore[arg-type]


class ListRecorder:
    """A Recorder keeping what it was told."""

    def __init__(self) -> None:
        self.recorded: list[tuple[str, dict[str, Any]]] = []

    def record(self, state: Any, answer: Answer) -> None:
        self.recorded.append((answer.text, dict(state.notes)))

    async def arecord(self, state: Any, answer: Answer) -> None:
        self.record(state, answer)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_stream_closed_early_is_recorded_with_what_was_delivered(policy, mode):
    """The first chunk handed out the decision id: the decision must be stored."""
    budget, recorder = HoldingBudget(), ListRecorder()
    run = _pipeline(policy, budget=budget, recorders=[recorder]).run_stream(_request())
    if mode == "sync":
        stream = stream_sync(run, FakeCaller())
        next(stream)
        stream.close()
    else:
        async def consume() -> None:
            stream = stream_async(run, FakeCaller())
            await anext(stream)
            await stream.aclose()
        asyncio.run(consume())
    assert budget.open == 0 and budget.log == ["reserve", "commit"]  # settled once
    assert recorder.recorded == [(f"{CALC}:", {
        "stream": "abandoned by its consumer after 1 chunks"})]
