"""RoutingTracer: decisions, usage and failures per routed call, summarised per model."""

from __future__ import annotations

import pytest
from langchain_core.messages import HumanMessage
from langchain_core.tools import tool

from langroute import RouterConfigError
from langroute.cascade import AgreementScorer, Cascade
from langroute.chat_models import RoutedChatModel, RoutingTracer

from .fakes import EASY, HARD, STRONG, THRESHOLD, WEAK, ScriptedChatModel

# every ScriptedChatModel answer uses 10 input and 3 output tokens
PRICES = {STRONG: {"input_usd_per_mtok": 5.0, "output_usd_per_mtok": 20.0}}
STRONG_CALL_USD = (10 * 5.0 + 3 * 20.0) / 1e6
WEAK_CALL_ESTIMATE = 2e-4  # the router's mean cost per call of the weak model


def test_summary_counts_calls_spend_and_strong_share(routed):
    tracer = RoutingTracer(prices=PRICES)
    config = {"callbacks": [tracer]}
    routed.invoke(HARD, config)
    list(routed.stream(EASY, config))
    routed.batch([EASY, EASY], config)
    routed.generate([[HumanMessage(HARD)]], callbacks=[tracer])
    summary = tracer.summary()
    assert summary.calls == 5 and summary.failed == 0
    assert summary.strong_share == pytest.approx(2 / 5)
    strong, weak = summary.per_model[STRONG], summary.per_model[WEAK]
    assert (strong.calls, strong.input_tokens, strong.output_tokens) == (2, 20, 6)
    assert strong.spend_usd == pytest.approx(2 * STRONG_CALL_USD)
    assert strong.spend_source == "usage x prices"
    assert weak.calls == 3 and weak.spend_source == "estimated per call"
    assert weak.spend_usd == pytest.approx(3 * WEAK_CALL_ESTIMATE)
    assert summary.total_spend_usd == pytest.approx(strong.spend_usd + weak.spend_usd)
    assert "5 routed calls (0 failed), 40% to the top rung" in str(summary)


async def test_works_from_async_code(routed):
    tracer = RoutingTracer()
    await routed.ainvoke(HARD, {"callbacks": [tracer]})
    [chunk async for chunk in routed.astream(EASY, {"callbacks": [tracer]})]
    await routed.abatch([HARD, EASY], {"callbacks": [tracer]})
    assert [c.decision["model"] for c in tracer.calls].count(STRONG) == 2
    assert all(c.has_usage and c.input_tokens == 10 for c in tracer.calls)
    assert tracer.summary().strong_share == pytest.approx(0.5)


def test_failed_calls_are_recorded_with_their_decision(router):
    boom = RuntimeError("rate limited")
    routed = RoutedChatModel(
        models={STRONG: ScriptedChatModel(model_name=STRONG, error=boom),
                WEAK: ScriptedChatModel(model_name=WEAK)},
        router=router, threshold=0.7, max_retries=0)
    tracer = RoutingTracer()
    with pytest.raises(RuntimeError):
        routed.invoke(HARD, {"callbacks": [tracer]})
    routed.invoke(EASY, {"callbacks": [tracer]})
    failed, ok = tracer.calls
    assert (failed.decision["model"], failed.failed) == (STRONG, True)
    assert failed.error == "RuntimeError: rate limited"
    assert (ok.decision["model"], ok.failed) == (WEAK, False)
    summary = tracer.summary()
    assert (summary.calls, summary.failed) == (2, 1)
    assert summary.per_model[STRONG].spend_usd == 0.0
    assert (summary.per_model[STRONG].calls, summary.per_model[STRONG].failed) == (1, 1)


def test_structured_output_usage_is_counted(routed, strong):
    """A with_structured_output call puts a parser run between the routed run and the model
    run; the tracer still sees the provider call's usage (regression)."""
    from pydantic import BaseModel

    class Answer(BaseModel):
        value: int

    strong.tool_args = {"value": 391}
    tracer = RoutingTracer(prices=PRICES)
    parsed = routed.with_structured_output(Answer).invoke(HARD, {"callbacks": [tracer]})
    assert parsed == Answer(value=391)
    (call,) = tracer.calls
    assert call.has_usage and (call.input_tokens, call.output_tokens) == (10, 3)
    assert tracer.summary().per_model[STRONG].spend_source == "usage x prices"


def test_memory_is_bounded_but_totals_are_not(routed):
    tracer = RoutingTracer(prices=PRICES, max_calls=3)
    for _ in range(5):
        routed.invoke(HARD, {"callbacks": [tracer]})
    assert len(tracer.calls) == 3
    summary = tracer.summary()
    assert summary.calls == 5
    assert summary.per_model[STRONG].spend_usd == pytest.approx(5 * STRONG_CALL_USD)


def test_summary_by_scope_and_retries(routed, weak):
    tracer = RoutingTracer(prices={WEAK: {"input_usd_per_mtok": 1.0, "output_usd_per_mtok": 1.0}})
    routed.pipeline.sleep = lambda seconds: None
    weak.errors = [ConnectionError("reset")]
    routed.invoke(EASY, {"callbacks": [tracer], "metadata": {"lc_agent_name": "coder"}})
    summary = tracer.summary()
    assert (summary.per_model[WEAK].calls, summary.per_model[WEAK].failed) == (2, 1)
    assert summary.per_scope == {"coder": pytest.approx(13 / 1e6)}


def test_ignores_runs_that_were_not_routed(routed, weak):
    tracer = RoutingTracer()
    weak.invoke("direct call", {"callbacks": [tracer]})
    assert tracer.calls == [] and tracer.summary().calls == 0
    routed.invoke(EASY, {"callbacks": [tracer]})
    tracer.reset()
    assert tracer.calls == []


@pytest.mark.parametrize("prices", [
    {STRONG: {"input_usd_per_mtok": 1.0}},
    {STRONG: {"input_usd_per_mtok": -1.0, "output_usd_per_mtok": 1.0}},
    {STRONG: 3.0},
])
def test_bad_prices(prices):
    with pytest.raises(RouterConfigError, match=f"prices\\['{STRONG}'\\]"):
        RoutingTracer(prices=prices)


def _cascaded(router, strong, weak, verifier_name: str) -> RoutedChatModel:
    verifier = ScriptedChatModel(model_name=verifier_name)
    cascade = Cascade(AgreementScorer([verifier]), accept=1.0)
    return RoutedChatModel(models={STRONG: strong, WEAK: weak}, router=router,
                           threshold=THRESHOLD, cascade=cascade)


@pytest.mark.parametrize("entry", ["invoke", "stream"])
def test_checking_spend_counts_the_escalated_answer_and_the_verifier(router, strong, weak,
                                                                     entry):
    """An answer is traced when it settles, before it is scored: the tracer must still learn
    it was escalated, or the cheap answer thrown away never counts as checking cost."""
    model = _cascaded(router, strong, weak, "verifier")  # disagrees: the weak answer escalates
    prices = {name: {"input_usd_per_mtok": 1.0, "output_usd_per_mtok": 1.0}
              for name in (STRONG, WEAK, "verifier")}
    tracer = RoutingTracer(prices=prices)
    config = {"callbacks": [tracer]}
    model.invoke(EASY, config) if entry == "invoke" else list(model.stream(EASY, config))
    summary = tracer.summary()
    one_call = 13 / 1e6  # 10 + 3 tokens at 1 USD per million
    assert summary.checking_spend_usd == pytest.approx(2 * one_call)  # weak answer + verifier
    (call,) = tracer.calls
    assert [(a["model"], a["outcome"]) for a in call.attempts] == [
        (WEAK, "escalated"), ("verifier", "ok"), (STRONG, "accepted")]
    assert call.answered_by == STRONG and summary.cascade_share == 1.0


def test_an_answer_accepted_unscored_is_not_counted_as_checked(router, strong, weak):
    """A tool-call answer is accepted without asking the scorer: nothing was checked."""

    @tool
    def lookup(query: str) -> str:
        """Look something up."""
        return "found"

    model = _cascaded(router, strong, weak, "verifier")
    tracer = RoutingTracer()
    message = model.bind_tools([lookup]).invoke(EASY, config={"callbacks": [tracer]})
    assert message.tool_calls
    summary = tracer.summary()
    assert summary.calls == 1 and summary.cascade_share == 0.0
    assert summary.checking_spend_usd == 0.0
    (attempt,) = message.response_metadata["langroute"]["attempts"]
    assert attempt["outcome"] == "accepted" and attempt["score"] is None


async def test_an_async_stream_its_consumer_closes_early_is_not_a_failure(routed):
    """LangChain ends an async stream closed early with ``on_chain_error(GeneratorExit)``; the
    stream was abandoned and recorded, as a sync one closed early is, not failed."""
    tracer = RoutingTracer()
    stream = routed.astream(HARD, {"callbacks": [tracer]})
    async for _ in stream:
        break
    await stream.aclose()
    sync = routed.stream(HARD, {"callbacks": [tracer]})
    next(sync)
    sync.close()
    assert [(c.failed, c.error) for c in tracer.calls] == [(False, None), (False, None)]
    assert tracer.summary().failed == 0


def test_a_call_in_flight_keeps_its_attempts_when_newer_calls_push_it_out(routed):
    """With more calls in flight than ``max_calls``, the oldest used to be folded into the
    totals before its provider call settled: its attempts were dropped from the summary."""
    tracer = RoutingTracer(prices=PRICES, max_calls=1)
    config = {"callbacks": [tracer]}
    stream = routed.stream(HARD, config)
    next(stream)  # decided and answering: its attempt is not settled yet
    routed.invoke(EASY, config)
    routed.invoke(EASY, config)  # pushes the stream's call out of ``calls``
    assert STRONG not in tracer.summary().per_model  # still in flight
    list(stream)
    summary = tracer.summary()
    assert summary.calls == 3 and summary.strong_share == pytest.approx(1 / 3)
    assert summary.per_model[STRONG].calls == 1
    assert summary.per_model[STRONG].spend_usd == pytest.approx(STRONG_CALL_USD)
    assert len(tracer.calls) == 1


def test_a_late_attempt_re_folds_to_the_totals_of_a_tracer_that_kept_every_call():
    """A failed call that had made no provider call lists its model at 0 calls; folded into
    the totals, then re-folded when a late attempt (another model's) came, it still listed
    that model, which a tracer that kept every call does not."""
    from uuid import uuid4

    from langroute._decision import ROUTE_EVENT
    from langroute.pipeline import ATTEMPT_EVENT

    def feed(tracer: RoutingTracer) -> None:
        late = uuid4()
        tracer.on_custom_event(ROUTE_EVENT, {"decision_id": "late", "model": STRONG,
                                             "rungs": [WEAK, STRONG]}, run_id=late)
        tracer.on_chain_error(RuntimeError("cancelled"), run_id=late)
        for i in range(3):  # ended after it: it is folded into the totals
            run = uuid4()
            tracer.on_custom_event(ROUTE_EVENT, {"decision_id": f"d{i}", "model": WEAK,
                                                 "rungs": [WEAK, STRONG]}, run_id=run)
            tracer.on_chain_end({}, run_id=run)
        tracer.on_custom_event(ATTEMPT_EVENT, {"decision_id": "late", "model": WEAK,
                                               "outcome": "cancelled"}, run_id=late)

    evicting, keeping = RoutingTracer(max_calls=1), RoutingTracer()
    feed(evicting)
    feed(keeping)
    assert STRONG not in keeping.summary().per_model
    assert evicting.summary() == keeping.summary()
