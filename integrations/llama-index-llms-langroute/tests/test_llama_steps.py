"""The pipeline's steps under LlamaIndex: langroute's real ``Cascade`` and ``Budget`` wired into
RoutedLLM, traced as LlamaIndex instrumentation events inside the routed call's span."""

from __future__ import annotations

import pytest
from langroute import BudgetExceededError, RouterConfigError
from langroute._exceptions import CascadeConfigError
from langroute.budgets import Budget
from langroute.cascade import AgreementScorer, Cascade, FunctionScorer
from llama_index.core.base.llms.types import ChatMessage
from llama_index.core.instrumentation.dispatcher import instrument_tags
from tests.fake_openai._standard_suites import STRONG_MODEL, WEAK_MODEL

from llama_index.llms.langroute import RoutedLLM

EASY = "Hello"  # routed to the weak model


def user(text: str) -> list[ChatMessage]:
    return [ChatMessage(role="user", content=text)]


@pytest.fixture
def seen() -> list[tuple[object, str]]:
    return []


@pytest.fixture
def cascaded(strong, weak, router, seen) -> RoutedLLM:
    def trust_only_the_strong_model(messages, answer) -> float:
        seen.append((messages, answer.raw.message.additional_kwargs["langroute_model"]))
        return 1.0 if seen[-1][1] == STRONG_MODEL else 0.0

    cascade = Cascade(FunctionScorer(trust_only_the_strong_model, bounds=(0.0, 1.0)), accept=0.5)
    return RoutedLLM({STRONG_MODEL: strong, WEAK_MODEL: weak}, router=router, threshold=0.7,
                     cascade=cascade)


def test_a_doubtful_answer_escalates_and_each_score_is_traced(fake, cascaded, events, seen):
    response = cascaded.chat(user(EASY))
    assert fake.models_called == [WEAK_MODEL, STRONG_MODEL]
    assert response.additional_kwargs["langroute"]["answered_by"] == STRONG_MODEL
    assert [(e.model, e.accepted) for e in events.of("CascadeEvent")] == [
        (WEAK_MODEL, False), (STRONG_MODEL, True)]
    (decision,) = events.of("RouteDecisionEvent")
    assert {e.span_id for e in events.of("CascadeEvent")} == {decision.span_id}
    assert isinstance(seen[0][0][0], ChatMessage)  # the scorer gets LlamaIndex's messages


def test_a_cascaded_stream_delivers_only_the_accepted_answer(fake, cascaded, events):
    chunks = list(cascaded.stream_chat(user(EASY)))
    assert fake.models_called == [WEAK_MODEL, STRONG_MODEL]
    assert {c.message.additional_kwargs["langroute_model"] for c in chunks} == {STRONG_MODEL}
    assert chunks[-1].message.content == f"You said: {EASY}"
    assert len(events.of("CascadeEvent")) == 2


def test_budget_reserves_and_commits_in_the_scope_from_instrument_tags(
    fake, strong, weak, router, events
):
    routed = RoutedLLM({STRONG_MODEL: strong, WEAK_MODEL: weak}, router=router, threshold=0.7,
                       budgets={"researcher": Budget(1.0)}, spend_store="memory://")
    with instrument_tags({"agent": "researcher"}):
        response = routed.chat(user(EASY))
    actions = [e.action for e in events.of("BudgetEvent")]
    assert actions == ["reserve", "commit"]
    (decision,) = events.of("RouteDecisionEvent")
    assert {e.span_id for e in events.of("BudgetEvent")} == {decision.span_id}
    commit = events.of("BudgetEvent")[-1].payload
    assert commit["cost_usd"] > 0
    assert response.additional_kwargs["langroute"]["attempts"][0]["cost_usd"] == commit["cost_usd"]


async def test_an_exhausted_budget_denies_before_any_provider_call(
    fake, strong, weak, router, events
):
    routed = RoutedLLM({STRONG_MODEL: strong, WEAK_MODEL: weak}, router=router, threshold=0.7,
                       budgets={"researcher": Budget(0.0)}, spend_store="memory://")
    with instrument_tags({"agent": "researcher"}), pytest.raises(BudgetExceededError):
        await routed.achat(user(EASY))
    assert fake.requests == []
    assert [e.action for e in events.of("BudgetEvent")] == ["deny"]


@pytest.mark.parametrize("by_name", [False, True])
def test_a_verifier_llm_is_asked_through_the_pipeline(fake, make_openai, strong, weak, router,
                                                     events, by_name):
    # a LlamaIndex LLM of its own, or a candidate named by its routing name
    verifier = STRONG_MODEL if by_name else make_openai("gpt-4.1-mini")
    served = STRONG_MODEL if by_name else "gpt-4.1-mini"
    routed = RoutedLLM({STRONG_MODEL: strong, WEAK_MODEL: weak}, router=router, threshold=0.7,
                       cascade=Cascade(AgreementScorer([verifier]), accept=0.5))
    response = routed.chat(user(EASY))
    assert fake.models_called == [WEAK_MODEL, served]  # the fake echoes: they agree
    attempts = response.additional_kwargs["langroute"]["attempts"]
    assert [(a["model"], a["purpose"]) for a in attempts] == [
        (WEAK_MODEL, "answer"), (served, "verify")]
    assert [(e.model, e.accepted) for e in events.of("CascadeEvent")] == [(WEAK_MODEL, True)]


@pytest.mark.parametrize(("verifier", "message"), [
    ("no-such-model", "asks 'no-such-model', which is not one of the models"),
    (object(), "asks a object, which is not a LlamaIndex LLM"),
], ids=["unknown-name", "not-an-llm"])
def test_a_verifier_that_is_not_a_llamaindex_llm_is_refused_at_construction(
    fake, strong, weak, router, verifier, message
):
    # as RoutedChatModel does: found out at call time, the cheap answer is already paid for
    with pytest.raises(CascadeConfigError, match=message):
        RoutedLLM({STRONG_MODEL: strong, WEAK_MODEL: weak}, router=router, threshold=0.7,
                  cascade=Cascade(AgreementScorer([verifier]), accept=0.5))


def test_prices_let_a_budget_charge_a_candidate_genai_prices_does_not_know(
    make_openai, strong, router
):
    finetune = make_openai("my-finetune-v1")  # a self-hosted / fine-tuned model id
    llms = {STRONG_MODEL: strong, WEAK_MODEL: finetune}
    with pytest.raises(RouterConfigError, match="Pass prices="):
        RoutedLLM(llms, router=router, threshold=0.7, budgets={"a": Budget(1.0)},
                  spend_store="memory://")
    routed = RoutedLLM(llms, router=router, threshold=0.7, budgets={"a": Budget(1.0)},
                       spend_store="memory://",
                       prices={WEAK_MODEL: {"input_mtok": 0.1, "output_mtok": 0.2}})
    assert routed.pipeline.budget.prices.source(WEAK_MODEL) == f"override:{WEAK_MODEL}"


def test_prices_override_the_table_for_what_a_call_is_charged(fake, strong, weak, router,
                                                              events):
    routed = RoutedLLM({STRONG_MODEL: strong, WEAK_MODEL: weak}, router=router, threshold=0.7,
                       budgets={"a": Budget(100.0)}, spend_store="memory://",
                       prices={WEAK_MODEL: {"input_mtok": 300.0, "output_mtok": 700.0}})
    with instrument_tags({"agent": "a"}):
        routed.chat(user(EASY))
    (request,) = fake.requests
    usage = request.usage
    expected = (usage["prompt_tokens"] * 300.0 + usage["completion_tokens"] * 700.0) / 1e6
    assert events.of("BudgetEvent")[-1].payload["cost_usd"] == pytest.approx(expected)


@pytest.mark.parametrize(("prices", "budgets", "match"), [
    ({"x": {"input_mtok": 1, "output_mtok": 1}}, None, "prices is set but budgets is not"),
    ([("x", 1)], {"a": Budget(1.0)}, "prices must be a dict, got list"),
    ({WEAK_MODEL: {"input_mtok": 1}}, {"a": Budget(1.0)}, "needs \\['output_mtok'\\]"),
], ids=["without-budgets", "not-a-dict", "missing-output-price"])
def test_bad_prices_are_config_errors(strong, weak, router, prices, budgets, match):
    with pytest.raises(RouterConfigError, match=match):
        RoutedLLM({STRONG_MODEL: strong, WEAK_MODEL: weak}, router=router, threshold=0.7,
                  budgets=budgets, spend_store="memory://" if budgets else None, prices=prices)


@pytest.mark.parametrize("budgets", [[Budget(1.0)], Budget(1.0)], ids=["list", "bare-budget"])
def test_budgets_that_are_not_a_mapping_say_what_budgets_takes(strong, weak, router, budgets):
    with pytest.raises(RouterConfigError,
                       match=r"budgets must be a dict of scope -> langroute Budget") as info:
        RoutedLLM({STRONG_MODEL: strong, WEAK_MODEL: weak}, router=router, threshold=0.7,
                  budgets=budgets, spend_store="memory://")
    assert type(budgets).__name__ in str(info.value)


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_stream_stopped_early_is_charged_an_estimate(fake, strong, weak, router,
                                                             events, mode):
    """The provider bills a stream its consumer leaves: the budget is charged, not freed."""
    routed = RoutedLLM({STRONG_MODEL: strong, WEAK_MODEL: weak}, router=router, threshold=0.7,
                       budgets={"a": Budget(1.0)}, spend_store="memory://")
    with instrument_tags({"agent": "a"}):
        if mode == "sync":
            stream = routed.stream_chat(user(EASY))
            next(stream)
            stream.close()
        else:
            stream = await routed.astream_chat(user(EASY))
            await anext(stream)
            await stream.aclose()
    budget = [e.payload for e in events.of("BudgetEvent")]
    assert [e["action"] for e in budget] == ["reserve", "commit"]
    assert budget[-1]["usage_estimated"] and budget[-1]["cost_usd"] > 0
    (row,) = routed.pipeline.budget.store.accounts(now=0)
    assert row.spent_nano > 0 and row.reserved_nano == 0


def test_an_unpriced_verifier_llm_is_an_error_at_construction(fake, make_openai, strong, weak,
                                                             router):
    """As RoutedChatModel: found out at call time, the cheap answer is already paid for."""
    verifier = make_openai("acme-verifier-9000")
    llms = {STRONG_MODEL: strong, WEAK_MODEL: weak}
    cascade = Cascade(AgreementScorer([verifier]), accept=0.5)
    with pytest.raises(RouterConfigError, match=r"acme-verifier-9000.*prices="):
        RoutedLLM(llms, router=router, threshold=0.7, cascade=cascade,
                  budgets={"a": Budget(1.0)}, spend_store="memory://")
    RoutedLLM(llms, router=router, threshold=0.7, cascade=cascade, budgets={"a": Budget(1.0)},
              spend_store="memory://",
              prices={"acme-verifier-9000": {"input_mtok": 1.0, "output_mtok": 1.0}})


@pytest.mark.parametrize("how", ["sync", "async"])
async def test_a_cascaded_stream_emits_no_token_events_for_an_answer_still_scored(
    fake, cascaded, events, how
):
    """The weak answer is scored (and here rejected) before anyone sees it: it is one plain
    call, so only the accepted model's tokens reach LLMChatInProgressEvent handlers."""
    if how == "sync":
        chunks = list(cascaded.stream_chat(user(EASY)))
    else:
        chunks = [c async for c in await cascaded.astream_chat(user(EASY))]
    assert fake.models_called == [WEAK_MODEL, STRONG_MODEL]
    assert chunks[-1].message.content == f"You said: {EASY}"
    in_progress = [e.response.raw.model for e in events.of("LLMChatInProgressEvent")]
    assert in_progress and set(in_progress) == {STRONG_MODEL}
    ends = [e.response.raw.model for e in events.of("LLMChatEndEvent")]
    assert WEAK_MODEL in ends  # the weak call is still an ordinary, traced call


def test_malformed_budgets_are_reported_before_an_unpriced_verifier(make_openai, strong, weak,
                                                                    router):
    """budgets= is checked first: a list of Budgets says what budgets takes, not that a
    verifier has no price (which only matters once budgets are valid)."""
    cascade = Cascade(AgreementScorer([make_openai("acme-verifier-9000")]), accept=0.5)
    with pytest.raises(RouterConfigError, match="budgets must be a dict"):
        RoutedLLM({STRONG_MODEL: strong, WEAK_MODEL: weak}, router=router, threshold=0.7,
                  cascade=cascade, budgets=[Budget(1.0)], spend_store="memory://")


def test_a_verifier_llm_is_priced_once_as_the_adapter_describes_it(make_openai, strong, weak,
                                                                  router):
    """The budget prices a LlamaIndex verifier at construction, described like a candidate
    (provider from its integration package), not by LangChain's guesses in the cascade."""
    verifier = make_openai("gpt-4.1-mini")
    routed = RoutedLLM({STRONG_MODEL: strong, WEAK_MODEL: weak}, router=router, threshold=0.7,
                       cascade=Cascade(AgreementScorer([verifier]), accept=0.5),
                       budgets={"*": Budget(1.0)}, spend_store="memory://")
    ref = routed.pipeline.budget.prices.refs["gpt-4.1-mini"]
    assert (ref.model, ref.provider_model, ref.provider, ref.candidate) == (
        verifier, "gpt-4.1-mini", "openai", False)


def test_a_verifier_assigned_after_construction_must_still_be_a_llamaindex_llm(fake, cascaded):
    """Construction checks the cascade; a cascade assigned later is checked when its verifier
    is called, with the same kind of error, before any request is made for it."""
    cascaded.cascade = Cascade(AgreementScorer([object()]), accept=0.5)
    with pytest.raises(RouterConfigError, match="is not a LlamaIndex LLM"):
        cascaded.chat(user(EASY))
    assert fake.models_called == [WEAK_MODEL]  # the answer, never the verifier


@pytest.mark.parametrize(("field", "value"), [("timeout", -1.0), ("threshold", 1.5),
                                              ("target_cost", 0.0)])
def test_a_bad_setting_assigned_after_construction_is_refused_before_any_call(
        fake, cascaded, field, value):
    """Construction checks these; an assignment afterwards used to build a pipeline with
    them (a timeout of -1 s failed every call as timed out, after retries)."""
    if field == "target_cost":
        cascaded.threshold = None
    setattr(cascaded, field, value)
    with pytest.raises(RouterConfigError, match=field):
        cascaded.chat(user(EASY))
    assert fake.models_called == []


@pytest.mark.parametrize("how", ["stream_chat", "astream_chat", "stream_complete",
                                 "astream_complete"])
async def test_a_logprob_cascade_scores_a_streamed_call_as_it_scores_chat(fake, make_openai,
                                                                          router, events, how):
    """A streamed call a cascade scores is made whole and delivered as one chunk: its token
    log-probabilities must reach LogprobScorer, as chat()'s do (they were dropped, so every
    cascaded stream raised CascadeScoreError)."""
    from langroute.cascade import LogprobScorer

    routed = RoutedLLM({STRONG_MODEL: make_openai(STRONG_MODEL, logprobs=True),
                        WEAK_MODEL: make_openai(WEAK_MODEL, logprobs=True)},
                       router=router, threshold=0.7,
                       cascade=Cascade(LogprobScorer(), accept=-0.5))
    method = getattr(routed, how)
    arg = user(EASY) if "chat" in how else EASY
    if how.startswith("a"):
        chunks = [c async for c in await method(arg)]
    else:
        chunks = list(method(arg))
    record = chunks[-1].additional_kwargs["langroute"]
    assert record["answered_by"] == WEAK_MODEL and fake.models_called == [WEAK_MODEL]
    assert [a["outcome"] for a in record["attempts"]] == ["accepted"]
    (scored,) = events.of("CascadeEvent")
    assert scored.accepted and scored.payload["score"] == 0.0  # the fake's logprobs are 0
