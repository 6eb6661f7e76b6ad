"""RoutingTracer over real ChatOpenAI clients on the in-process fake: what it reports against
what the fake was asked (which model answered, what it cost) and what the budget booked."""

from __future__ import annotations

import json
from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler

from langroute import Budget
from langroute.budgets import MemoryStore
from langroute.cascade import Cascade, FunctionScorer
from langroute.chat_models import RoutedChatModel, RoutingTracer
from tests.fake_openai import FakeOpenAI
from tests.fake_openai._standard_suites import STRONG_MODEL, WEAK_MODEL, fitted_router

HARD = "What is 17 * 23?"
EASY = "Hello"
# the router's USD per call (synthetic_outcomes' costs): what an unpriced model is charged
STRONG_PER_CALL, WEAK_PER_CALL = 5e-3, 2e-4


class Events(BaseCallbackHandler):
    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def on_custom_event(self, name: str, data: Any, **kwargs: Any) -> None:
        json.dumps(data)  # every payload is JSON-serialisable
        self.events.append((name, data))


def _routed(fake: FakeOpenAI, weak: str = WEAK_MODEL, **kwargs: Any) -> RoutedChatModel:
    routed = RoutedChatModel(models={STRONG_MODEL: fake.chat_openai(STRONG_MODEL),
                                     WEAK_MODEL: fake.chat_openai(weak)},
                             router=fitted_router(), threshold=0.7, **kwargs)
    routed.pipeline.sleep = lambda seconds: None
    return routed


def test_an_unpriced_escalation_is_charged_its_per_call_estimate(fake: FakeOpenAI) -> None:
    """The escalated model answered, but only the routed model's estimate was known to the
    tracer: the strong answer showed $0 'unknown' though the router prices it per call."""
    escalating = Cascade(FunctionScorer(lambda state, answer: 0.0), accept=0.5)
    routed = _routed(fake, cascade=escalating)
    tracer = RoutingTracer()
    routed.invoke(EASY, {"callbacks": [tracer]})
    assert fake.models_called == [WEAK_MODEL, STRONG_MODEL]
    summary = tracer.summary()
    strong = summary.per_model[STRONG_MODEL]
    assert (strong.calls, strong.spend_source) == (1, "estimated per call")
    assert strong.spend_usd == pytest.approx(STRONG_PER_CALL)
    assert summary.total_spend_usd == pytest.approx(STRONG_PER_CALL + WEAK_PER_CALL)
    assert summary.checking_spend_usd == pytest.approx(WEAK_PER_CALL)  # the escalated answer
    assert tracer.calls[0].answered_by == STRONG_MODEL


def test_an_unpriced_fallback_is_charged_its_per_call_estimate(fake: FakeOpenAI) -> None:
    routed = _routed(fake, weak="fail-500", max_retries=1)
    tracer, events = RoutingTracer(), Events()
    routed.invoke(EASY, {"callbacks": [tracer, events]})
    assert fake.models_called == ["fail-500", "fail-500", STRONG_MODEL]
    attempts = [data for name, data in events.events if name == "langroute.attempt"]
    assert [a["estimated_cost_usd"] for a in attempts] == pytest.approx(
        [WEAK_PER_CALL, WEAK_PER_CALL, STRONG_PER_CALL])
    summary = tracer.summary()
    assert summary.per_model[STRONG_MODEL].spend_source == "estimated per call"
    assert summary.total_spend_usd == pytest.approx(STRONG_PER_CALL)  # failed calls: $0
    assert summary.strong_share == 1.0


def test_a_stream_closed_early_still_counts_once_pushed_out_of_calls(fake: FakeOpenAI) -> None:
    """A sync stream closed early ends its routed run, then settles its attempt: pushed out of
    ``calls`` (max_calls) before it ended, it was folded at the run's end and the attempt that
    followed was dropped from the totals."""
    routed = _routed(fake)
    tracer = RoutingTracer(max_calls=1)
    config = {"callbacks": [tracer]}
    stream = routed.stream(HARD, config)
    next(stream)
    routed.invoke(EASY, config)
    routed.invoke(EASY, config)
    stream.close()
    summary = tracer.summary()
    assert summary.calls == 3 and len(fake.requests) == 3
    assert summary.per_model[STRONG_MODEL].calls == 1
    assert summary.total_spend_usd == pytest.approx(STRONG_PER_CALL + 2 * WEAK_PER_CALL)
    for _ in range(3):  # the ended calls are folded into the totals as newer ones end
        routed.invoke(EASY, config)
    summary = tracer.summary()
    assert summary.calls == 6 and summary.per_model[STRONG_MODEL].calls == 1
    assert summary.total_spend_usd == pytest.approx(STRONG_PER_CALL + 5 * WEAK_PER_CALL)
    assert len(tracer.calls) == 1


def test_a_late_attempt_of_a_call_already_folded_into_the_totals_still_counts(
        fake: FakeOpenAI) -> None:
    """Many streams closed at once: more than ``max_calls`` calls end between a stream's run
    end and its attempt, so the call is folded into the totals first; the attempt was then
    dropped (20 concurrent closed streams with max_calls=3 counted 6 of 20 provider calls)."""
    routed = _routed(fake)
    tracer = RoutingTracer(max_calls=1)

    class EndsBetween(BaseCallbackHandler):
        """Runs three other calls right after the stream's run ends, before its attempt."""

        armed = False

        def on_chain_end(self, outputs: Any, **kwargs: Any) -> None:
            if self.armed:
                self.armed = False
                for _ in range(3):
                    routed.invoke(EASY, {"callbacks": [tracer]})

    between = EndsBetween()
    stream = routed.stream(HARD, {"callbacks": [tracer, between]})
    next(stream)
    routed.invoke(EASY, {"callbacks": [tracer]})  # pushes the stream out of ``calls``
    between.armed = True
    stream.close()
    summary = tracer.summary()
    assert len(fake.requests) == 5 and summary.calls == 5
    assert summary.per_model[STRONG_MODEL].calls == 1
    assert summary.total_spend_usd == pytest.approx(STRONG_PER_CALL + 4 * WEAK_PER_CALL)
    assert summary.strong_share == pytest.approx(1 / 5)  # re-folded: answered by its model


async def test_a_stream_closed_early_was_answered_by_its_model(fake: FakeOpenAI) -> None:
    """The consumer got the strong model's chunks: the call was answered by it (it counts to
    the top rung), not by no one."""
    routed = _routed(fake)
    tracer = RoutingTracer()
    stream = routed.stream(HARD, {"callbacks": [tracer]})
    next(stream)
    stream.close()
    astream = routed.astream(HARD, {"callbacks": [tracer]})
    async for _ in astream:
        break
    await astream.aclose()
    assert [(c.answered_by, c.failed) for c in tracer.calls] == [(STRONG_MODEL, False)] * 2
    assert [c.attempts[-1]["outcome"] for c in tracer.calls] == ["abandoned"] * 2
    assert tracer.summary().strong_share == 1.0


def test_a_denied_reservation_names_its_scope(fake: FakeOpenAI,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Every other budget event of a call says whose budget it is; the deny of a provider
    call's reservation did not, so an operator could not tell which agent was refused."""
    # counted offline (tiktoken's table needs a download)
    monkeypatch.setattr(type(fake.chat_openai()), "get_num_tokens_from_messages",
                        lambda self, messages, tools=None: 20 * len(messages))
    routed = _routed(fake, budgets={"coder": Budget(limit_usd=3e-4)}, spend_store=MemoryStore())
    events = Events()
    with pytest.raises(Exception, match="budget of scope 'coder'"):
        routed.invoke(HARD, {"callbacks": [events], "metadata": {"lc_agent_name": "coder"}})
    assert fake.requests == []
    (deny,) = [data for name, data in events.events
               if name == "langroute.budget" and data["action"] == "deny"]
    assert deny["scope"] == "coder" and deny["model"] == STRONG_MODEL


async def test_a_call_cancelled_before_its_answer_costs_what_the_budget_booked(
        fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    """A call cancelled mid-call gave no answer and its hold was released ($0 in the store),
    as for a failed call; the tracer charged it the full per-call estimate."""
    import asyncio

    import httpx
    from langchain_openai import ChatOpenAI

    from langroute.budgets import spend_report

    monkeypatch.setattr(ChatOpenAI, "get_num_tokens_from_messages",
                        lambda self, messages, tools=None: 20 * len(messages))
    started, never = asyncio.Event(), asyncio.Event()

    async def hanging(request: httpx.Request) -> httpx.Response:
        started.set()
        await never.wait()
        raise AssertionError("cancelled before this")

    def client(name: str) -> ChatOpenAI:
        transport = httpx.MockTransport(hanging)
        return ChatOpenAI(**fake.chat_openai_params(
            name, max_tokens=50, http_async_client=httpx.AsyncClient(transport=transport)))

    store = MemoryStore()
    routed = RoutedChatModel(models={name: client(name) for name in (STRONG_MODEL, WEAK_MODEL)},
                             router=fitted_router(), threshold=0.7,
                             budgets={"*": Budget(limit_usd=1.0)}, spend_store=store)
    tracer = RoutingTracer()
    task = asyncio.create_task(routed.ainvoke(HARD, {"callbacks": [tracer]}))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    (call,) = tracer.calls
    assert call.failed and [a["outcome"] for a in call.attempts] == ["cancelled"]
    (booked,) = spend_report(store)
    assert booked["spent_usd"] == 0.0 and booked["reserved_usd"] == 0.0
    summary = tracer.summary()
    assert summary.total_spend_usd == 0.0 == booked["spent_usd"]
    strong = summary.per_model[STRONG_MODEL]
    assert (strong.calls, strong.failed) == (1, 1)
