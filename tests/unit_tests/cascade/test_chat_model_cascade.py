"""RoutedChatModel(cascade=...) with scripted fake chat models: what LangChain users see.

``EASY`` routes to the weak model (see ``chat_models/fakes.py``); the fakes answer
"answer from <model_name>", so a verifier agrees with the weak model exactly when it carries the
same model name.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from langchain_core.callbacks import UsageMetadataCallbackHandler
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.tools import tool
from pydantic import BaseModel

from langroute import RoutingTracer
from langroute._exceptions import CascadeConfigError, CascadeScoreError, LangrouteError
from langroute.cascade import AgreementScorer, Cascade, FunctionScorer, JudgeScorer
from langroute.chat_models import RoutedChatModel

from ..chat_models.fakes import (
    EASY,
    HARD,
    STRONG,
    THRESHOLD,
    WEAK,
    EventRecorder,
    ScriptedChatModel,
)

USAGE = {"input_tokens": 10, "output_tokens": 3, "total_tokens": 13}


def _routed(router, strong, weak, verifier_name: str) -> tuple[RoutedChatModel, ScriptedChatModel]:
    verifier = ScriptedChatModel(model_name=verifier_name)
    cascade = Cascade(AgreementScorer([verifier]), accept=1.0)
    model = RoutedChatModel(models={STRONG: strong, WEAK: weak}, router=router,
                            threshold=THRESHOLD, cascade=cascade)
    return model, verifier


def _failing_escalation(router, strong, weak, fallback):
    """The weak answer is doubtful and the strong model is down."""
    strong.error = ConnectionError("strong is down")
    model = RoutedChatModel(models={STRONG: strong, WEAK: weak}, router=router,
                            threshold=THRESHOLD, fallback=fallback, max_retries=0,
                            cascade=Cascade(FunctionScorer(lambda messages, answer: 0.0),
                                            accept=0.5))
    return model


def _invoke(model, mode, *args, **kwargs):
    if mode == "sync":
        return model.invoke(*args, **kwargs)
    return asyncio.run(model.ainvoke(*args, **kwargs))


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_doubtful_cheap_answer_escalates_and_every_call_is_counted_once(router, strong, weak,
                                                                          mode):
    model, verifier = _routed(router, strong, weak, "verifier")
    usage, recorder = UsageMetadataCallbackHandler(), EventRecorder()
    message = _invoke(model, mode, EASY, config={"callbacks": [usage, recorder]})
    assert message.content == f"answer from {STRONG}"
    assert len(weak.received) == len(verifier.received) == len(strong.received) == 1
    assert usage.usage_metadata == {WEAK: USAGE, "verifier": USAGE, STRONG: USAGE}
    record = message.response_metadata["langroute"]
    assert record["answered_by"] == STRONG
    assert [(a["model"], a["purpose"], a["outcome"]) for a in record["attempts"]] == [
        (WEAK, "answer", "escalated"), ("verifier", "verify", "ok"),
        (STRONG, "cascade", "accepted")]
    cascade_events = [e["data"] for e in recorder.events if e["name"] == "langroute.cascade"]
    assert [(e["model"], e["score"], e["accepted"]) for e in cascade_events] == [
        (WEAK, 0.0, False), (STRONG, None, True)]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_an_agreed_cheap_answer_is_kept(router, strong, weak, mode):
    model, verifier = _routed(router, strong, weak, WEAK)  # same name: same answer
    usage = UsageMetadataCallbackHandler()
    message = _invoke(model, mode, EASY, config={"callbacks": [usage]})
    assert message.content == f"answer from {WEAK}" and strong.received == []
    # the weak model and its verifier report under the same model name: two calls, summed
    assert usage.usage_metadata == {WEAK: {k: 2 * v for k, v in USAGE.items()}}
    assert message.response_metadata["langroute"]["attempts"][0]["score"] == 1.0


def test_a_cascaded_stream_delivers_only_the_accepted_answer(router, strong, weak):
    model, verifier = _routed(router, strong, weak, "verifier")
    chunks = list(model.stream(EASY))
    assert "".join(str(c.content) for c in chunks) == f"answer from {STRONG}"
    assert chunks[0].response_metadata["langroute"]["answered_by"] == STRONG
    assert weak.chunks_produced == 3 and len(verifier.received) == 1  # buffered, not shown


def test_a_verifier_named_by_a_candidate_is_that_candidate(router, strong, weak):
    model = RoutedChatModel(models={STRONG: strong, WEAK: weak}, router=router,
                            threshold=THRESHOLD,
                            cascade=Cascade(AgreementScorer([STRONG]), accept=1.0))
    message = model.invoke(EASY)
    # the strong model verified (disagreed), then answered the escalation
    assert len(strong.received) == 2 and message.content == f"answer from {STRONG}"


def test_a_tool_call_answer_is_not_checked(router, strong, weak):
    @tool
    def lookup(query: str) -> str:
        """Look something up."""
        return "found"

    model, verifier = _routed(router, strong, weak, "verifier")
    message = model.bind_tools([lookup]).invoke(EASY)
    assert message.tool_calls and verifier.received == [] and strong.received == []
    assert message.response_metadata["langroute"]["notes"]["cascade"] == (
        "tool-call answer accepted unscored")


def test_a_judge_that_replies_garbage_fails_the_call(router, strong, weak):
    judge = ScriptedChatModel(model_name="judge")  # replies "answer from judge", not JSON
    model = RoutedChatModel(models={STRONG: strong, WEAK: weak}, router=router,
                            threshold=THRESHOLD, cascade=Cascade(JudgeScorer(judge), accept=0.5))
    with pytest.raises(CascadeScoreError, match="judge 'judge' did not reply"):
        model.invoke(EASY)
    assert strong.received == []


def test_the_tracer_shows_the_cascade_share_and_the_checking_calls(router, strong, weak):
    model, verifier = _routed(router, strong, weak, "verifier")
    tracer = RoutingTracer()
    model.invoke(EASY, config={"callbacks": [tracer]})   # weak, checked, escalated
    model.invoke(HARD, config={"callbacks": [tracer]})   # the top rung: nothing to check
    summary = tracer.summary()
    assert summary.calls == 2 and summary.cascade_share == 0.5
    assert summary.per_model["verifier"].calls == 1
    assert summary.per_model[STRONG].calls == 2 and summary.per_model[WEAK].calls == 1


def test_scorer_models_that_are_not_chat_models_are_refused(router, strong, weak):
    models = {STRONG: strong, WEAK: weak}
    for cascade, message in (
        (Cascade(AgreementScorer([object()]), accept=1.0), "is not a LangChain BaseChatModel"),
        (Cascade(JudgeScorer("gpt-5"), accept=0.5), "'gpt-5', which is not one of the models"),
    ):
        with pytest.raises(CascadeConfigError, match=message) as info:
            RoutedChatModel(models=models, router=router, threshold=THRESHOLD, cascade=cascade)
        assert isinstance(info.value, LangrouteError)
    with pytest.raises(LangrouteError, match="cascade must be a langroute.cascade.Cascade"):
        RoutedChatModel(models=models, router=router, threshold=THRESHOLD, cascade="agreement")


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_generate_runs_the_verifier_as_a_child_of_the_routed_run(router, strong, weak, mode):
    """A chat-model run manager has no ``get_child()``; generate() must still ask verifiers."""
    model, verifier = _routed(router, strong, weak, "verifier")
    recorder = EventRecorder()
    messages = [[HumanMessage(EASY)]]
    config = {"callbacks": [recorder]}
    if mode == "sync":
        result = model.generate(messages, **config)
    else:
        result = asyncio.run(model.agenerate(messages, **config))
    assert result.generations[0][0].message.content == f"answer from {STRONG}"
    assert len(verifier.received) == 1
    routed, checking = recorder.chat_starts  # the routed run, then the verifier's own run
    assert checking["parent_run_id"] == routed["run_id"]


def test_tool_calls_of_an_escalated_answer_are_answered_by_the_model_that_made_them(
        router, strong, weak):
    """The next turn of the tool loop goes to the model that answered, not the decided one."""
    @tool
    def lookup(query: str) -> str:
        """Look something up."""
        return "found"

    scorer = FunctionScorer(lambda messages, answer: 0.0, bounds=(0, 1),
                            supports_tool_calls=True)
    model = RoutedChatModel(models={STRONG: strong, WEAK: weak}, router=router,
                            threshold=THRESHOLD, cascade=Cascade(scorer, accept=0.5))
    bound = model.bind_tools([lookup])
    messages = [HumanMessage(EASY)]
    first = bound.invoke(messages)  # the weak tool call is rejected; strong makes its own
    assert first.response_metadata["langroute"]["answered_by"] == STRONG
    messages += [first, ToolMessage(content="found", tool_call_id=first.tool_calls[0]["id"])]
    second = bound.invoke(messages)
    assert second.content == f"answer from {STRONG} using found"
    assert len(weak.received) == 1


class _Product(BaseModel):
    """The product of two numbers."""

    value: int


def _scored_structured(router, strong, weak) -> tuple[RoutedChatModel, list[Any]]:
    seen: list[Any] = []

    def score(messages, answer):
        seen.append(answer)
        return 1.0

    weak.tool_args = strong.tool_args = {"value": 391}
    scorer = FunctionScorer(score, bounds=(0, 1), supports_tool_calls=True)
    model = RoutedChatModel(models={STRONG: strong, WEAK: weak}, router=router,
                            threshold=THRESHOLD, cascade=Cascade(scorer, accept=0.5))
    return model, seen


def test_a_streamed_include_raw_answer_is_scored_as_the_invoked_one(router, strong, weak):
    """include_raw streams {"raw"}, {"parsed"}, {"parsing_error"} apart: merge them by key."""
    model, seen = _scored_structured(router, strong, weak)
    structured = model.with_structured_output(_Product, include_raw=True)
    invoked = structured.invoke(EASY)
    chunks = list(structured.stream(EASY))
    # ... then a closing {"raw"} with the settled record (attempts), as a plain stream ends
    assert [sorted(c) for c in chunks] == [["raw"], ["parsed"], ["parsing_error"], ["raw"]]
    assert chunks[-1]["raw"].response_metadata["langroute"]["attempts"]
    assert invoked["parsed"] == chunks[1]["parsed"] == _Product(value=391)
    assert seen[1].text == seen[0].text and seen[1].usage == seen[0].usage is not None


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_streamed_structured_answer_keeps_its_usage(router, strong, weak, mode):
    """The parsed value carries no usage; the raw message's is what the budget books."""
    model, seen = _scored_structured(router, strong, weak)
    structured = model.with_structured_output(_Product)
    config = {"callbacks": [tracer := RoutingTracer()]}

    async def collect() -> list[Any]:
        return [chunk async for chunk in structured.astream(EASY, config=config)]

    chunks = (list(structured.stream(EASY, config=config)) if mode == "sync"
              else asyncio.run(collect()))
    assert chunks and all(c == _Product(value=391) for c in chunks)
    assert seen[0].usage is not None and seen[0].raw == _Product(value=391)
    usage = tracer.calls[0].attempts[0]["usage"]
    assert (usage["input_tokens"], usage["output_tokens"]) == (10, 3)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_failed_escalation_under_cheaper_returns_the_paid_answer_marked(router, strong, weak,
                                                                          mode):
    """The rejected model is not called again for an unscored answer: its paid answer is
    returned unconfirmed, as when the budget denies, and the provider's error stays traced."""
    model = _failing_escalation(router, strong, weak, "cheaper")
    recorder, tracer = EventRecorder(), RoutingTracer()
    message = _invoke(model, mode, EASY, config={"callbacks": [recorder, tracer]})
    record = message.response_metadata["langroute"]
    assert message.content == f"answer from {WEAK}" and len(weak.received) == 1
    assert [(a["model"], a["purpose"], a["outcome"], a["score"]) for a in record["attempts"]] == [
        (WEAK, "answer", "accepted", 0.0), (STRONG, "cascade", "error", None)]
    assert "strong is down" in record["attempts"][1]["error"]
    assert f"escalation to {STRONG!r} failed" in record["notes"]["cascade"]
    assert "unconfirmed" in record["notes"]["cascade"]
    last = [e["data"] for e in recorder.events if e["name"] == "langroute.cascade"][-1]
    assert last["failed"] == STRONG and "ConnectionError: strong is down" in last["error"]
    assert last["accepted"] and last["passed"] is False
    assert not [e for e in recorder.events if e["name"] == "langroute.fallback"]
    # the tracer reads the kept answer as the pipeline does: accepted, answered, not checking
    (call,) = tracer.calls
    assert [(a["model"], a["outcome"]) for a in call.attempts] == [
        (WEAK, "accepted"), (STRONG, "error")]
    assert call.answered_by == WEAK and not call.failed
    summary = tracer.summary()
    assert summary.checking_spend_usd == 0.0 and summary.total_spend_usd > 0


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("fallback", ["stronger", None])
def test_a_failed_escalation_that_may_not_go_down_raises_the_provider_error(
        router, strong, weak, mode, fallback):
    """``stronger`` and None never answer below the escalation target: the provider's error
    propagates, traced as a ``langroute.cascade`` event naming the failed escalation."""
    model = _failing_escalation(router, strong, weak, fallback)
    recorder = EventRecorder()
    with pytest.raises(ConnectionError, match="strong is down"):
        _invoke(model, mode, EASY, config={"callbacks": [recorder]})
    assert len(weak.received) == 1
    last = [e["data"] for e in recorder.events if e["name"] == "langroute.cascade"][-1]
    assert last["failed"] == STRONG and "strong is down" in last["error"]
    assert last["accepted"] is False and last["passed"] is False


def test_a_failed_escalated_stream_under_cheaper_delivers_the_paid_answer(router, strong, weak):
    model = _failing_escalation(router, strong, weak, "cheaper")
    chunks = list(model.stream(EASY))
    assert "".join(c.content for c in chunks) == f"answer from {WEAK}"
    assert len(weak.received) == 1
    assert "failed" in chunks[-1].response_metadata["langroute"]["notes"]["cascade"]



@pytest.mark.parametrize("entry", ["ainvoke", "astream"])
def test_a_fallback_to_the_top_rung_is_not_hidden_from_token_streams(router, strong, weak,
                                                                    entry):
    """The cheap model is down and the call falls back to the top rung: that answer will not
    be scored, so, like an unscored escalation, its tokens reach ``astream_events`` (it used
    to inherit the hidden tags of the cheap attempt: a token-streaming UI showed nothing)."""
    from langchain_core.runnables import RunnableLambda

    weak.error = ConnectionError("weak is down")
    verifier = ScriptedChatModel(model_name="verifier")
    model = RoutedChatModel(models={STRONG: strong, WEAK: weak}, router=router,
                            threshold=THRESHOLD, max_retries=0,
                            cascade=Cascade(AgreementScorer([verifier]), accept=1.0))

    async def ainvoke(text: str) -> Any:
        return await model.ainvoke(text)

    runnable = model if entry == "astream" else RunnableLambda(ainvoke)

    async def tokens() -> list[str]:
        events = runnable.astream_events(EASY, version="v2")
        return [str(e["data"]["chunk"].content) async for e in events
                if e["event"] == "on_chat_model_stream" and e["data"]["chunk"].content]

    assert "".join(asyncio.run(tokens())) == f"answer from {STRONG}"
    assert len(weak.received) == 1 and verifier.received == []


class _Judge(ScriptedChatModel):
    """A judge that finds every answer correct."""

    def _answer(self, messages: Any, kwargs: dict[str, Any], stop: Any) -> Any:
        message = super()._answer(messages, kwargs, stop)
        return message.model_copy(update={"content": '{"verdict": "correct", "confidence": 0.9}'})


def test_the_callers_stop_and_max_tokens_are_not_applied_to_the_judges_prompt(router, strong,
                                                                               weak):
    """They belong to the answer asked for; on the judge's own prompt a `stop=[","]` once cut
    its JSON verdict short and failed the call."""
    judge = _Judge(model_name="judge")
    model = RoutedChatModel(models={STRONG: strong, WEAK: weak}, router=router,
                            threshold=THRESHOLD, cascade=Cascade(JudgeScorer(judge), accept=0.5))
    model.invoke(EASY, stop=[","], max_tokens=6)
    assert weak.received_kwargs[-1]["stop"] == [","] and weak.received_kwargs[-1]["max_tokens"] == 6
    assert "stop" not in judge.received_kwargs[-1]
    assert "max_tokens" not in judge.received_kwargs[-1]


def test_a_verifier_answering_the_same_request_gets_its_stop_and_max_tokens(router, strong,
                                                                             weak):
    model, verifier = _routed(router, strong, weak, "verifier")
    model.invoke(EASY, stop=[","], max_tokens=6)
    assert verifier.received_kwargs[-1]["stop"] == [","]
    assert verifier.received_kwargs[-1]["max_tokens"] == 6
