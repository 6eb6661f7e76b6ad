"""RoutedChatModel(cascade=...) with scripted fake chat models: what LangChain users see.

``EASY`` routes to the weak model (see ``chat_models/fakes.py``); the fakes answer
"answer from <model_name>", so a verifier agrees with the weak model exactly when it carries the
same model name.
"""

from __future__ import annotations

import asyncio

import pytest
from langchain_core.callbacks import UsageMetadataCallbackHandler
from langchain_core.tools import tool

from langroute import RoutingTracer
from langroute._exceptions import CascadeConfigError, CascadeScoreError, LangrouteError
from langroute.cascade import AgreementScorer, Cascade, JudgeScorer
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
