"""The budget step inside the real call pipeline (framework-free), sync and async."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
import tenacity

from langroute import Budget, BudgetExceededError, BudgetStoreError, RouterConfigError
from langroute.budgets import budget_step, open_store
from langroute.pipeline import (
    CallContext,
    CallPipeline,
    CallState,
    Fallback,
    ModelRef,
    RetryPolicy,
    RouteRequest,
    run_async,
    run_sync,
    stream_async,
    stream_sync,
)

from .helpers import (
    ACTUAL,
    EASY,
    HARD,
    PRICES,
    REFS,
    THRESHOLD,
    WORST,
    Clock,
    FakeCaller,
    estimate,
    pipeline,
    policy,
    request,
    usd,
)


async def _drive(mode: str, pipe, req, caller):
    gen = pipe.run(req, estimate=estimate)
    return run_sync(gen, caller) if mode == "sync" else await run_async(gen, caller)


@pytest.fixture(params=["sync", "async"])
def mode(request):
    return request.param


def step(budgets, store="memory://", **options):
    return budget_step(budgets, store, REFS, PRICES, **options)


def spent(guard, scope="*"):
    rows = {(s.account.scope): s for s in guard.store.accounts(now=guard.clock().timestamp())}
    return rows[scope].spent_nano / 1e9


async def test_hard_budget_denies_before_any_provider_call(mode):
    # Room for exactly three worst-case calls to "small" (chit-chat routes there).
    guard = step({"*": Budget(limit_usd=3 * WORST["small"] + ACTUAL["small"])})
    caller = FakeCaller()
    pipe = pipeline(guard)
    calls = 0
    with pytest.raises(BudgetExceededError) as denied:
        for _ in range(100):
            await _drive(mode, pipe, request(EASY), caller)
            calls += 1
    # Each call reserved 0.0005 and committed 0.0002, so calls stop only when spend is gone.
    assert calls == len(caller.calls) and calls > 3
    assert spent(guard) <= 3 * WORST["small"] + ACTUAL["small"] + 1e-12
    assert spent(guard) == pytest.approx(calls * ACTUAL["small"])
    error = denied.value
    assert error.scope == "*" and error.limit_usd == pytest.approx(guard.budgets["*"].limit_usd)
    assert "'*'" in str(error) and "limit" in str(error) and "spent" in str(error)
    assert not guard.store.accounts(now=0)[0].reserved_nano  # nothing left held


async def test_reserve_denies_a_call_whose_worst_case_does_not_fit(mode):
    # 0.001 left: a maths prompt routes to "large" (worst case 0.005), which cannot fit.
    guard = step({"*": Budget(limit_usd=0.001)})
    caller = FakeCaller()
    with pytest.raises(BudgetExceededError, match="may cost up to"):
        await _drive(mode, pipeline(guard), request(HARD), caller)
    assert caller.calls == []
    (deny,) = caller.budget_events("deny")
    assert deny["model"] == "large" and "BudgetExceededError" in deny["error"]
    # ... while a chit-chat prompt (to "small", worst 0.0005) goes through.
    result = await _drive(mode, pipeline(guard), request(EASY), caller)
    assert result.model == "small" and caller.calls == [("small", "answer")]


async def test_events_and_decision_carry_the_budget_state(mode):
    guard = step({"researcher": Budget(limit_usd=1.0, window="day")})
    caller = FakeCaller()
    result = await _drive(mode, pipeline(guard), request(EASY, lc_agent_name="researcher"),
                          caller)
    assert result.decision.budget["scope"] == "researcher"
    assert result.decision.budget["limit_usd"] == 1.0
    route = [p for n, p in caller.events if n == "langroute.route"]
    assert route[0]["budget"]["window"] == "day" and route[0]["budget"]["spent_usd"] == 0.0
    (reserve,) = caller.budget_events("reserve")
    (commit,) = caller.budget_events("commit")
    assert reserve["reserved_usd"] == pytest.approx(WORST["small"])
    assert commit["cost_usd"] == pytest.approx(ACTUAL["small"])
    assert commit["released_usd"] == pytest.approx(WORST["small"] - ACTUAL["small"])
    assert commit["spent_usd"] == pytest.approx(ACTUAL["small"])
    assert result.attempts[0].cost_usd == pytest.approx(ACTUAL["small"])


async def test_a_denial_is_traced(mode):
    guard = step({"*": Budget(limit_usd=0.0)})
    caller = FakeCaller()
    with pytest.raises(BudgetExceededError):
        await _drive(mode, pipeline(guard), request(EASY), caller)
    (deny,) = caller.budget_events("deny")
    assert "BudgetExceededError" in deny["error"] and caller.calls == []


async def test_scopes_pick_their_budget_and_star_takes_the_rest(mode):
    guard = step({"researcher": Budget(limit_usd=0.0),
                  "user:alice": Budget(limit_usd=1.0),
                  "*": Budget(limit_usd=1.0, window="month")})
    caller = FakeCaller()
    with pytest.raises(BudgetExceededError, match="'researcher'"):
        await _drive(mode, pipeline(guard), request(EASY, lc_agent_name="researcher"), caller)
    await _drive(mode, pipeline(guard), request(EASY, user="alice"), caller)
    await _drive(mode, pipeline(guard), request(EASY, agent="coder"), caller)
    await _drive(mode, pipeline(guard), request(EASY), caller)
    assert spent(guard, "user:alice") == pytest.approx(ACTUAL["small"])
    assert spent(guard, "*") == pytest.approx(2 * ACTUAL["small"])


async def test_callers_without_a_budget_are_not_limited_when_there_is_no_star(mode):
    guard = step({"researcher": Budget(limit_usd=0.0)})
    caller = FakeCaller()
    result = await _drive(mode, pipeline(guard), request(EASY, lc_agent_name="coder"), caller)
    assert result.decision.budget is None and caller.budget_events() == []


async def test_soft_budget_shifts_routing_cheaper_as_it_runs_down(mode):
    budget = Budget(limit_usd=1.0, mode="soft", soft_start=0.5)
    guard = step({"*": budget})
    caller = FakeCaller()
    pipe = pipeline(guard)
    first = await _drive(mode, pipe, request(HARD), caller)
    assert first.model == "large" and first.decision.threshold == THRESHOLD
    # Spend 95% of the budget: the threshold rises to 0.7 + 0.3 * 0.9 = 0.97 > P ~0.94.
    guard.store.commit(guard.account_of(_state(HARD))[0], hold_id="x", cost_nano=int(0.95e9),
                       now=0.0)
    second = await _drive(mode, pipe, request(HARD), caller)
    used = 0.95 + ACTUAL["large"]
    assert second.decision.threshold == pytest.approx(budget.soft_threshold(THRESHOLD, used))
    assert second.model == "small" and second.decision.budget["action"] == "shift"
    assert caller.calls[-1] == ("small", "answer")


def test_soft_rule_is_monotone_and_reaches_one():
    budget = Budget(limit_usd=1.0, mode="soft", soft_start=0.5)
    shares = [0.0, 0.25, 0.5, 0.6, 0.8, 1.0, 1.5]
    values = [budget.soft_threshold(0.7, s) for s in shares]
    assert values[:3] == [0.7, 0.7, 0.7] and values[-2:] == [1.0, 1.0]
    assert values == sorted(values) and values[3] == pytest.approx(0.76)
    assert Budget(limit_usd=1.0).soft_threshold(0.7, 0.99) == 0.7  # hard: never shifts


async def test_hard_cheapest_fallback_never_passes_the_limit(mode):
    # 0.002 left: "large" (worst 0.005) does not fit, "small" (0.0005) does.
    guard = step({"*": Budget(limit_usd=0.002, on_exhausted="cheapest")})
    caller = FakeCaller()
    result = await _drive(mode, pipeline(guard), request(HARD), caller)
    assert result.model == "small" and result.decision.budget["action"] == "cheapest"
    for _ in range(20):
        try:
            await _drive(mode, pipeline(guard), request(HARD), caller)
        except BudgetExceededError:
            break
    else:
        pytest.fail("the hard budget never denied")
    assert spent(guard) <= 0.002 + 1e-12 and {m for m, _ in caller.calls} == {"small"}


async def test_soft_cheapest_fallback_keeps_answering_with_the_cheapest(mode):
    guard = step({"*": Budget(limit_usd=0.001, mode="soft", on_exhausted="cheapest")})
    caller = FakeCaller()
    for _ in range(10):
        result = await _drive(mode, pipeline(guard), request(HARD), caller)
        assert result.model == "small"
    assert spent(guard) == pytest.approx(10 * ACTUAL["small"])  # past the limit, cheapest only
    # ... but a pricier model is still held to the limit (a cascade step up would be denied).
    state = _state(HARD)
    with pytest.raises(BudgetExceededError):
        guard.reserve(state, REFS["large"])


async def test_errors_release_and_every_retry_and_fallback_is_reserved(mode):
    guard = step({"*": Budget(limit_usd=1.0)})
    caller = FakeCaller(errors=[ConnectionError("down")] * 2)
    pipe = pipeline(guard, retry=RetryPolicy(max_retries=1, wait=tenacity.wait_none()),
                    fallback=Fallback("stronger"))
    result = await _drive(mode, pipe, request(EASY), caller)
    assert caller.calls == [("small", "answer"), ("small", "retry"), ("large", "fallback")]
    assert [e["model"] for e in caller.budget_events("reserve")] == ["small", "small", "large"]
    assert [e["error"] for e in caller.budget_events("release")] == ["ConnectionError"] * 2
    assert result.model == "large" and spent(guard) == pytest.approx(ACTUAL["large"])
    assert guard.store.accounts(now=0)[0].reserved_nano == 0


async def test_a_step_asking_a_verifier_is_budgeted_too(mode):
    guard = step({"*": Budget(limit_usd=1.0)})
    caller = FakeCaller()
    state = _state(EASY)
    state.estimate = estimate
    pipe = pipeline(guard)
    ask = pipe._ask(state, REFS["large"])  # what CascadeStep.score uses as state.ask
    answer = run_sync(ask, caller) if mode == "sync" else await run_async(ask, caller)
    assert answer.text == "answer from large" and caller.calls == [("large", "verify")]
    assert spent(guard) == pytest.approx(ACTUAL["large"])


def test_a_stream_is_reserved_and_committed():
    guard = step({"*": Budget(limit_usd=1.0)})
    caller = FakeCaller()
    chunks = list(stream_sync(pipeline(guard).run_stream(request(EASY), estimate=estimate),
                              caller))
    assert "".join(chunks) == "answer from small"
    assert [e["action"] for e in caller.budget_events()] == ["reserve", "commit"]


async def test_an_answer_without_usage_is_charged_its_worst_case(mode):
    guard = step({"*": Budget(limit_usd=1.0)})
    caller = FakeCaller(usage=None)
    await _drive(mode, pipeline(guard), request(EASY), caller)
    (commit,) = caller.budget_events("commit")
    assert commit["usage_missing"] and commit["cost_usd"] == pytest.approx(WORST["small"])


async def test_the_output_cap_applies_when_max_tokens_is_unset(mode):
    from langroute.pipeline import TokenEstimate

    guard = step({"*": Budget(limit_usd=1.0)}, default_max_output_tokens=1000)
    caller = FakeCaller()
    gen = pipeline(guard).run(request(EASY),
                              estimate=lambda ref: TokenEstimate(100, max_output_tokens=None))
    run_sync(gen, caller) if mode == "sync" else await run_async(gen, caller)
    (reserve,) = caller.budget_events("reserve")
    assert reserve["reserved_usd"] == pytest.approx((100 * 1.0 + 1000 * 2.0) / 1e6)


async def test_windows_roll_over_with_the_clock(mode):
    clock = Clock()  # 2026-12-31 23:00 UTC
    guard = step({"*": Budget(limit_usd=WORST["small"], window="day")}, clock=clock)
    caller = FakeCaller()
    await _drive(mode, pipeline(guard), request(EASY), caller)
    with pytest.raises(BudgetExceededError, match="2026-12-31"):
        await _drive(mode, pipeline(guard), request(EASY), caller)
    clock.advance(hours=1)  # 2027-01-01: a new day, a new allowance
    result = await _drive(mode, pipeline(guard), request(EASY), caller)
    assert result.decision.budget["period"] == "2027-01-01"
    assert result.decision.budget["spent_usd"] == 0.0


def test_monthly_windows_roll_over_with_the_clock():
    clock = Clock()
    guard = step({"*": Budget(limit_usd=1.0, window="month")}, clock=clock)
    assert guard.account_of(_state(EASY))[0].period == "2026-12"
    clock.advance(hours=1)
    assert guard.account_of(_state(EASY))[0].period == "2027-01"


async def test_a_store_lost_mid_run_fails_the_call_loudly(mode, tmp_path):
    from .conftest import RedisServer

    server = RedisServer(tmp_path).start()
    try:
        guard = step({"*": Budget(limit_usd=1.0)}, store=open_store(server.url))
        caller = FakeCaller(on_call=lambda ref: server.stop())  # dies during the provider call
        with pytest.raises(BudgetStoreError, match="failed"):
            await _drive(mode, pipeline(guard), request(EASY), caller)
        assert len(caller.calls) == 1  # not retried: a second provider call would go unrecorded
        caller = FakeCaller()
        with pytest.raises(BudgetStoreError):
            await _drive(mode, pipeline(guard), request(EASY), caller)
        assert caller.calls == []  # no reservation, no provider call
    finally:
        server.stop()


# -- construction errors ---------------------------------------------------------------------------
def test_an_unpriced_model_is_an_error_at_construction():
    refs = {"small": REFS["small"], "mystery": ModelRef("mystery", provider_model="acme-9000")}
    with pytest.raises(RouterConfigError, match="'mystery'.*acme-9000"):
        budget_step({"*": Budget(limit_usd=1.0)}, "memory://", refs, PRICES)


@pytest.mark.parametrize("budgets, match", [
    ({}, "non-empty"),
    ({"*": 5.0}, "must be a langroute Budget"),
    ({"": Budget(limit_usd=1.0)}, "non-empty strings"),
])
def test_bad_budgets_are_clear_errors(budgets, match):
    with pytest.raises(RouterConfigError, match=match):
        step(budgets)


@pytest.mark.parametrize("kwargs, match", [
    ({"limit_usd": -1.0}, "limit_usd"), ({"limit_usd": float("nan")}, "limit_usd"),
    ({"limit_usd": float("inf")}, "limit_usd"), ({"limit_usd": True}, "limit_usd"),
    ({"limit_usd": "5"}, "limit_usd"), ({"limit_usd": 1.0, "window": "week"}, "window"),
    ({"limit_usd": 1.0, "mode": "strict"}, "mode"),
    ({"limit_usd": 1.0, "on_exhausted": "cheaper"}, "on_exhausted"),
    ({"limit_usd": 1.0, "soft_start": 1.0}, "soft_start"),
])
def test_bad_budget_arguments_are_clear_errors(kwargs, match):
    with pytest.raises(RouterConfigError, match=match):
        Budget(**kwargs)


@pytest.mark.parametrize("limit", [1e10, 10**30, 10**5000], ids=["1e10", "1e30", "1e5000"])
def test_a_limit_past_the_stores_64_bit_nano_usd_range_is_refused(limit):
    with pytest.raises(RouterConfigError, match="at most 9223372036.85 USD"):
        Budget(limit_usd=limit)


def test_the_largest_accepted_limit_is_kept_by_every_store(store_url):
    """One float past it is refused, so a limit that constructs never fails a store later."""
    largest = 9223372036.854774  # its nano-USD is the last float below 2**63
    with pytest.raises(RouterConfigError, match="at most 9223372036.85 USD"):
        Budget(limit_usd=math.nextafter(largest, math.inf))
    guard = step({"*": Budget(limit_usd=largest)}, store=store_url)
    run_sync(pipeline(guard).run(request(EASY), estimate=estimate), FakeCaller())
    (row,) = guard.store.accounts(now=guard.clock().timestamp())
    assert row.limit_nano == 9223372036854774000
    assert row.spent_nano / 1e9 == pytest.approx(ACTUAL["small"])
    guard.store.close()


@pytest.mark.parametrize("options, match", [
    ({"lease_seconds": 0}, "lease_seconds"), ({"lease_seconds": float("nan")}, "lease_seconds"),
    ({"default_max_output_tokens": 0}, "default_max_output_tokens"),
    ({"clock": "now"}, "clock must be a callable"),
    ({"clock": lambda: __import__("datetime").datetime(2026, 1, 1)}, "aware datetime"),
])
def test_bad_step_options_are_clear_errors(options, match):
    with pytest.raises(RouterConfigError, match=match):
        step({"*": Budget(limit_usd=1.0)}, **options)


def _state(text: str, **metadata) -> CallState:
    req = RouteRequest(text=text, context=CallContext(metadata=metadata))
    return CallState(context=req.context, request=req, policy=policy(),
                     decision=policy().decide([text])[0], estimate=estimate)



class _VerifyThenEscalate:
    """A cascade: "small" answers first; a "large" verifier rates every answer; "small"'s is
    rejected, so "large" answers, and its answer is accepted."""

    max_steps = 1

    def plan(self, state):
        return "small"

    def score(self, state, answer):
        yield from state.ask(REFS["large"])
        return 0.9 if "large" in answer.text else 0.1

    def accepts(self, score):
        return score >= 0.5

    def escalate_to(self, state, model):
        return "large" if model == "small" else None


async def test_every_cascade_step_and_verifier_call_is_budgeted(mode):
    guard = step({"*": Budget(limit_usd=1.0)})
    caller = FakeCaller()
    pipe = pipeline(guard, cascade=_VerifyThenEscalate())
    result = await _drive(mode, pipe, request(EASY), caller)
    assert result.model == "large"
    assert caller.calls[:3] == [("small", "answer"), ("large", "verify"), ("large", "cascade")]
    reserves = caller.budget_events("reserve")
    assert [e["model"] for e in reserves] == [m for m, _ in caller.calls]
    assert len(caller.budget_events("commit")) == len(caller.calls)
    assert spent(guard) == pytest.approx(sum(ACTUAL[m] for m, _ in caller.calls))


async def test_a_cascade_check_past_a_hard_limit_is_denied_without_calling(mode):
    # Room for the small answer and not for a large verifier's worst case: the check is denied
    # before any call, and the answer already paid for is returned unchecked (not thrown away
    # with a BudgetExceededError).
    guard = step({"*": Budget(limit_usd=WORST["small"] + 0.001)})
    caller = FakeCaller()
    result = await _drive(mode, pipeline(guard, cascade=_VerifyThenEscalate()), request(EASY),
                          caller)
    assert caller.calls == [("small", "answer")]
    assert result.model == "small" and "a call to large" in result.notes["cascade"]
    assert spent(guard) == pytest.approx(ACTUAL["small"])


def test_the_guard_is_a_budget_step():
    from langroute.pipeline import BudgetStep

    assert isinstance(step({"*": Budget(limit_usd=1.0)}), BudgetStep)


class _MidStreamFailure(FakeCaller):
    """Streams two chunks, then the connection drops (no usage report ever comes)."""

    def stream(self, ref, purpose):
        self._answer(ref, purpose)
        yield from ["answer ", "from "]
        raise ConnectionError("connection reset mid-stream")

    async def astream(self, ref, purpose):
        self._answer(ref, purpose)
        for chunk in ["answer ", "from "]:
            yield chunk
        raise ConnectionError("connection reset mid-stream")


def _estimated_cost(model: str, delivered: str) -> float:
    """The prompt's estimated input (helpers.estimate: 100) plus delivered chars / 3 out."""
    return usd(model, 100, math.ceil(len(delivered) / 3))


async def test_a_stream_its_consumer_abandons_is_charged_an_estimate_not_zero(mode):
    """Stopping a stream early must not dodge the budget: the provider bills it."""
    guard = step({"*": Budget(limit_usd=1.0)})
    caller = FakeCaller(usage=None)  # a stream cut short never gets its usage report
    run = pipeline(guard).run_stream(request(EASY), estimate=estimate)
    await _abandon_after_one(mode, run, caller)
    assert [e["action"] for e in caller.budget_events()] == ["reserve", "commit"]  # once
    (commit,) = caller.budget_events("commit")
    expected = _estimated_cost("small", "answer ")
    assert commit["usage_estimated"] and commit["cost_usd"] == pytest.approx(expected)
    assert spent(guard) == pytest.approx(expected)
    (attempt,) = [p for n, p in caller.events if n == "langroute.attempt"]
    assert attempt["outcome"] == "abandoned" and attempt["usage_estimated"]
    assert attempt["cost_usd"] == pytest.approx(expected)


async def test_a_stream_failing_mid_stream_is_charged_an_estimate(mode):
    """A failure before the first chunk is released (and retried); after it, billed."""
    guard = step({"*": Budget(limit_usd=1.0)})
    caller = _MidStreamFailure(usage=None, errors=[ConnectionError("refused")])
    run = pipeline(guard).run_stream(request(EASY), estimate=estimate)
    with pytest.raises(ConnectionError, match="mid-stream"):
        if mode == "sync":
            list(stream_sync(run, caller))
        else:
            [chunk async for chunk in stream_async(run, caller)]
    assert [e["action"] for e in caller.budget_events()] == [
        "reserve", "release", "reserve", "commit"]
    (commit,) = caller.budget_events("commit")
    expected = _estimated_cost("small", "answer from ")
    assert commit["usage_estimated"] and commit["cost_usd"] == pytest.approx(expected)
    assert spent(guard) == pytest.approx(expected)
    first, second = [p for n, p in caller.events if n == "langroute.attempt"]
    assert first["cost_usd"] is None and "usage_estimated" not in first
    assert second["outcome"] == "error" and second["usage_estimated"]


class _Kept:
    """A recorder keeping what each finished call was recorded with."""

    def __init__(self) -> None:
        self.calls: list[tuple[CallState, Any]] = []

    def record(self, state, answer):
        self.calls.append((state, answer))

    async def arecord(self, state, answer):
        self.record(state, answer)


class _CountingMerges(FakeCaller):
    """Counts ``collect`` calls; with ``refuse``, chunks cut short do not merge."""

    def __init__(self, refuse: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.refuse = refuse
        self.collected: list[list[Any]] = []

    def collect(self, ref, chunks):
        self.collected.append(list(chunks))
        if self.refuse:
            raise ValueError("half a tool call cannot be merged")
        return super().collect(ref, chunks)


async def _abandon_after_one(mode, run, caller):
    if mode == "sync":
        stream = stream_sync(run, caller)
        assert next(stream) == "answer "
        stream.close()
    else:
        stream = stream_async(run, caller)
        assert await anext(stream) == "answer "
        await stream.aclose()


async def test_an_abandoned_stream_is_merged_once_for_its_estimate_and_its_record(mode):
    """The estimate and the record each used to merge the same chunks again."""
    recorder = _Kept()
    caller = _CountingMerges(usage=None)
    run = pipeline(step({"*": Budget(limit_usd=1.0)}), recorders=[recorder]).run_stream(
        request(EASY), estimate=estimate)
    await _abandon_after_one(mode, run, caller)
    assert caller.collected == [["answer "]]
    ((state, answer),) = recorder.calls
    assert answer.text == "answer " and state.attempts[0].usage_estimated
    assert state.notes["stream"].startswith("abandoned by its consumer after 1 chunks")


async def test_chunks_that_do_not_merge_are_noted_and_still_charged(mode):
    """A merge error used to be swallowed: the output was billed as "" (0 tokens)."""
    recorder = _Kept()
    caller = _CountingMerges(refuse=True, usage=None)
    run = pipeline(step({"*": Budget(limit_usd=1.0)}), recorders=[recorder]).run_stream(
        request(EASY), estimate=estimate)
    await _abandon_after_one(mode, run, caller)
    assert len(caller.collected) == 1
    ((state, _),) = recorder.calls
    assert "do not merge (ValueError: half a tool call" in state.notes["stream_merge"]
    (attempt,) = [p for n, p in caller.events if n == "langroute.attempt"]
    assert attempt["usage_estimated"] and attempt["usage"]["output_tokens"] > 0


async def test_an_abandoned_stream_without_a_budget_records_no_estimated_usage(mode):
    """With no budget nothing is estimated (that may need the model's tokenizer): the
    abandoned attempt has no usage and is not marked estimated; the record keeps the text."""
    recorder = _Kept()
    caller = _CountingMerges(usage=None)
    run = CallPipeline(policy(), REFS, recorders=[recorder]).run_stream(request(EASY))
    await _abandon_after_one(mode, run, caller)
    (attempt,) = [p for n, p in caller.events if n == "langroute.attempt"]
    assert attempt["outcome"] == "abandoned" and attempt["usage"] is None
    assert "usage_estimated" not in attempt and attempt["cost_usd"] is None
    assert "StreamClosed" in attempt["error"] and attempt["latency_ms"] >= 0
    ((state, answer),) = recorder.calls
    assert answer.text == "answer " and not answer.usage_estimated
    assert state.attempts[0].usage is None and not state.attempts[0].usage_estimated
    assert caller.collected == [["answer "]]


def test_a_provider_call_settled_twice_is_an_error():
    """A second settle used to be ignored silently (hiding a call booked twice)."""
    from langroute.pipeline import Answer
    from langroute.pipeline._pipeline import _Meter
    from langroute.pipeline._types import Attempt

    pipe = CallPipeline(policy(), REFS)
    state = CallState(context=CallContext(), request=request(EASY), policy=pipe.policy,
                      decision=pipe.decide([request(EASY)])[0])
    meter = _Meter(pipe, state, None, Attempt("small", "answer"), 0.0)
    run_sync(meter.answered(Answer(raw=None, text="x")), FakeCaller())
    with pytest.raises(RuntimeError, match="already settled"):
        run_sync(meter.failed(ConnectionError("late")), FakeCaller())


class _Hanging(FakeCaller):
    """A provider that never answers (or, streaming, stops after its first chunk):
    ``started`` is set once the call is in flight."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.started = asyncio.Event()

    async def acall(self, ref, purpose, messages=None):
        self._answer(ref, purpose)
        self.started.set()
        await asyncio.Event().wait()

    async def astream(self, ref, purpose):
        self._answer(ref, purpose)
        yield "answer "
        self.started.set()
        await asyncio.Event().wait()


def _reserved(guard) -> int:
    return sum(s.reserved_nano for s in guard.store.accounts(now=guard.clock().timestamp()))


@pytest.mark.parametrize("how", ["cancel", "wait_for"])
async def test_a_cancelled_call_releases_its_hold_at_once(how):
    """A cancelled call (``task.cancel()``, an ``asyncio.wait_for`` deadline) used to leave
    its worst case reserved until the lease passed (10 minutes), denying the scope's calls."""
    guard = step({"*": Budget(limit_usd=WORST["small"])})  # room for one call in flight
    caller = _Hanging()
    pipe = pipeline(guard)
    run = run_async(pipe.run(request(EASY), estimate=estimate), caller)
    if how == "cancel":
        task = asyncio.ensure_future(run)
        await caller.started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    else:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(run, 0.05)
    assert _reserved(guard) == 0 and spent(guard) == 0
    assert [e["action"] for e in caller.budget_events()] == ["reserve", "release"]
    (attempt,) = [p for n, p in caller.events if n == "langroute.attempt"]
    assert attempt["outcome"] == "cancelled" and "CancelledError" in attempt["error"]
    result = await _drive("async", pipe, request(EASY), FakeCaller())  # the budget is free
    assert result.model == "small"


async def test_a_stream_cancelled_after_its_first_chunk_is_charged_an_estimate():
    guard = step({"*": Budget(limit_usd=1.0)})
    caller = _Hanging(usage=None)
    stream = stream_async(pipeline(guard).run_stream(request(EASY), estimate=estimate), caller)

    async def consume() -> None:
        async for _ in stream:
            pass

    task = asyncio.ensure_future(consume())
    await caller.started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _reserved(guard) == 0
    (commit,) = caller.budget_events("commit")
    assert commit["usage_estimated"]
    assert spent(guard) == pytest.approx(_estimated_cost("small", "answer "))
    (attempt,) = [p for n, p in caller.events if n == "langroute.attempt"]
    assert attempt["outcome"] == "cancelled"


def test_an_interrupted_call_releases_its_hold_and_is_not_retried():
    def interrupt(ref: ModelRef) -> None:
        raise KeyboardInterrupt

    guard = step({"*": Budget(limit_usd=1.0)})
    caller = FakeCaller(on_call=interrupt)
    with pytest.raises(KeyboardInterrupt):
        run_sync(pipeline(guard).run(request(EASY), estimate=estimate), caller)
    assert len(caller.calls) == 1 and _reserved(guard) == 0
    assert [e["action"] for e in caller.budget_events()] == ["reserve", "release"]


class _StuckOnReserveEvent(FakeCaller):
    """Callbacks that take their time over the budget's reserve event (``started``: begun)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.started = asyncio.Event()

    async def aemit(self, name, payload):
        self.emit(name, payload)
        if name == "langroute.budget" and payload["action"] == "reserve":
            self.started.set()
            await asyncio.Event().wait()


async def test_a_call_cancelled_while_its_reserve_event_is_dispatched_releases_its_hold():
    """The hold was granted but the attempt not yet opened: it counted until its lease."""
    guard = step({"*": Budget(limit_usd=1.0)})
    caller = _StuckOnReserveEvent()
    task = asyncio.ensure_future(run_async(pipeline(guard).run(request(EASY),
                                                               estimate=estimate), caller))
    await caller.started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _reserved(guard) == 0 and caller.calls == []
    assert [e["action"] for e in caller.budget_events()] == ["reserve", "release"]
    (attempt,) = [p for n, p in caller.events if n == "langroute.attempt"]
    assert attempt["outcome"] == "cancelled"
