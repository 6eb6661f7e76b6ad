"""Budgets through the LangChain adapter: RoutedChatModel(budgets=..., spend_store=...)."""

from __future__ import annotations

import math
import warnings

import genai_prices
import pytest
from langchain.agents import create_agent

from langroute import Budget, BudgetExceededError, RouterConfigError, RoutingTracer, SWRouter
from langroute.budgets import spend_report
from langroute.cascade import AgreementScorer, Cascade
from langroute.chat_models import RoutedChatModel
from langroute.embeddings import HashingEmbedder

from ..chat_models.fakes import (
    EASY,
    HARD,
    STRONG,
    THRESHOLD,
    WEAK,
    EventRecorder,
    ScriptedChatModel,
    synthetic_outcomes,
)

# The fakes answer offline with 10 input and 3 output tokens, named after real models so the
# budget prices them from genai-prices' table.
STRONG_ID, WEAK_ID = "gpt-4o", "gpt-4o-mini"


def cost(model_id: str) -> float:
    usage = genai_prices.Usage(input_tokens=10, output_tokens=3)
    return float(genai_prices.calc_price(usage, model_id).total_price)


@pytest.fixture(scope="module")
def router() -> SWRouter:
    return SWRouter(HashingEmbedder(dimension=256, cache_dir=False)).fit(synthetic_outcomes())


@pytest.fixture
def strong() -> ScriptedChatModel:
    return ScriptedChatModel(model_name=STRONG_ID)


@pytest.fixture
def weak() -> ScriptedChatModel:
    return ScriptedChatModel(model_name=WEAK_ID)


def routed(router, strong, weak, budgets, store, **options) -> RoutedChatModel:
    return RoutedChatModel(models={STRONG: strong, WEAK: weak}, router=router,
                           threshold=THRESHOLD, max_tokens=100, budgets=budgets,
                           spend_store=store, **options)


def _spent(store: str, scope: str) -> float:
    return {r["scope"]: r for r in spend_report(store)}[scope]["spent_usd"]


def test_a_hard_budget_denies_its_agent_before_the_provider_is_called(router, strong, weak,
                                                                     tmp_path):
    store = f"sqlite:///{tmp_path / 'spend.db'}"
    llm = routed(router, strong, weak, {"researcher": Budget(limit_usd=0.0013),
                                        "*": Budget(limit_usd=1.0)}, store)
    config = {"metadata": {"lc_agent_name": "researcher"}}
    answered = 0
    with pytest.raises(BudgetExceededError, match="'researcher'"):
        for _ in range(50):
            llm.invoke(HARD, config=config)
            answered += 1
    assert answered >= 1 and len(strong.received) == answered  # the denied call never ran
    assert _spent(store, "researcher") == pytest.approx(answered * cost(STRONG_ID))
    # Other callers are charged to "*" and go on.
    assert llm.invoke(HARD).response_metadata["langroute"]["budget"]["scope"] == "*"


async def test_async_and_streamed_calls_are_budgeted(router, strong, weak):
    llm = routed(router, strong, weak, {"*": Budget(limit_usd=1.0)}, "memory://")
    await llm.ainvoke(HARD)
    chunks = [chunk async for chunk in llm.astream(HARD)]
    assert "".join(str(c.content) for c in chunks) == f"answer from {STRONG_ID}"
    step = llm.pipeline.budget
    (row,) = [s for s in step.store.accounts(now=0) if s.account.scope == "*"]
    assert row.spent_nano / 1e9 == pytest.approx(2 * cost(STRONG_ID))
    assert row.reserved_nano == 0


def test_budget_events_and_metadata_reach_callbacks(router, strong, weak):
    llm = routed(router, strong, weak, {"*": Budget(limit_usd=1.0, window="month")},
                 "memory://")
    recorder = EventRecorder()
    message = llm.invoke(EASY, config={"callbacks": [recorder]})
    budget = message.response_metadata["langroute"]["budget"]
    assert budget["window"] == "month" and budget["limit_usd"] == 1.0
    actions = [e["data"]["action"] for e in recorder.events if e["name"] == "langroute.budget"]
    assert actions == ["reserve", "commit"]
    commit = [e["data"] for e in recorder.events if e["name"] == "langroute.budget"][-1]
    assert commit["cost_usd"] == pytest.approx(cost(WEAK_ID))


def test_two_agents_each_with_its_own_budget(router, strong, weak, tmp_path):
    store = f"sqlite:///{tmp_path / 'spend.db'}"
    llm = routed(router, strong, weak, {
        "researcher": Budget(limit_usd=0.0013),
        "coder": Budget(limit_usd=0.0013, mode="soft", on_exhausted="cheapest")}, store)
    researcher = create_agent(llm, tools=[], name="researcher")
    coder = create_agent(llm, tools=[], name="coder")
    ask = {"messages": [{"role": "user", "content": HARD}]}
    denied_at = None
    coder_models = []
    for turn in range(12):
        if denied_at is None:
            try:
                researcher.invoke(ask)
            except BudgetExceededError:
                denied_at = turn
        reply = coder.invoke(ask)["messages"][-1]
        coder_models.append(reply.response_metadata["langroute"]["model"])
    assert denied_at is not None  # the hard budget stopped the researcher ...
    assert coder_models[0] == STRONG and coder_models[-1] == WEAK  # ... the coder went cheaper
    rows = {r["scope"]: r for r in spend_report(store)}
    assert rows["researcher"]["spent_usd"] <= 0.0013
    assert rows["coder"]["spent_usd"] > 0 and set(rows) == {"researcher", "coder"}


def test_an_unpriced_model_is_an_error_at_construction(router, weak):
    unknown = ScriptedChatModel(model_name="acme-unreleased-9000")
    with pytest.raises(RouterConfigError, match="acme-unreleased-9000"):
        routed(router, unknown, weak, {"*": Budget(limit_usd=1.0)}, "memory://")


def test_an_unreachable_store_is_an_error_at_construction(router, strong, weak, tmp_path):
    from langroute import BudgetStoreError

    with pytest.raises(BudgetStoreError, match="does not exist"):
        routed(router, strong, weak, {"*": Budget(limit_usd=1.0)},
               f"sqlite:///{tmp_path / 'missing' / 'spend.db'}")


def test_prices_override_the_table_for_a_routed_model(router, weak):
    unknown = ScriptedChatModel(model_name="acme-unreleased-9000")
    llm = routed(router, unknown, weak, {"*": Budget(limit_usd=1.0)}, "memory://",
                 prices={"acme-unreleased-9000": {"input_mtok": 100.0, "output_mtok": 1000.0}})
    message = llm.invoke(HARD)
    assert message.response_metadata["langroute"]["model"] == STRONG
    (attempt,) = message.response_metadata["langroute"]["attempts"]
    assert attempt["cost_usd"] == pytest.approx((10 * 100.0 + 3 * 1000.0) / 1e6)


def test_the_budget_survives_a_pipeline_rebuild(router, strong, weak):
    llm = routed(router, strong, weak, {"*": Budget(limit_usd=1.0)}, "memory://")
    llm.invoke(HARD)
    pipeline, first = llm.pipeline, llm.pipeline.budget
    llm.max_retries = 1  # a field change rebuilds the pipeline
    llm.invoke(HARD)
    assert llm.pipeline is not pipeline and llm.pipeline.budget is first
    (row,) = first.store.accounts(now=0)
    assert row.spent_nano / 1e9 == pytest.approx(2 * cost(STRONG_ID))


@pytest.mark.parametrize("budgets", [[Budget(limit_usd=1.0)], Budget(limit_usd=1.0)],
                         ids=["list", "bare-budget"])
def test_budgets_that_are_not_a_mapping_say_what_budgets_takes(router, strong, weak, budgets):
    with pytest.raises(RouterConfigError,
                       match=r"budgets must be a dict of scope -> langroute Budget") as info:
        routed(router, strong, weak, budgets, "memory://")
    assert type(budgets).__name__ in str(info.value)
    assert "validation error" not in str(info.value)  # langroute's words, not pydantic's


def test_prices_without_budgets_is_an_error(router, strong, weak):
    with pytest.raises(RouterConfigError, match="prices is set but budgets is not"):
        RoutedChatModel(models={STRONG: strong, WEAK: weak}, router=router,
                        threshold=THRESHOLD, prices={"x": {"input_mtok": 1, "output_mtok": 1}})


def test_the_agent_budgets_example_runs_offline(tmp_path, capsys):
    import runpy
    from pathlib import Path

    example = Path(__file__).resolve().parents[3] / "examples" / "agent_budgets.py"
    runpy.run_path(str(example))["run"](f"sqlite:///{tmp_path / 'spend.db'}")
    out = capsys.readouterr().out
    researcher = [line for line in out.splitlines() if " researcher " in line]
    coder = [line for line in out.splitlines() if " coder " in line]
    assert "DENIED" in researcher[-1] and "BudgetExceededError" not in coder[-1]
    assert "-> strong" in coder[0] and "-> weak" in coder[-1] and "shift" in coder[-1]
    assert "limit_usd" in out and "researcher  day" in out


def _agreement(verifier) -> Cascade:
    return Cascade(AgreementScorer([verifier]), accept=1.0)


def test_a_verifier_given_as_a_chat_model_is_priced_like_a_candidate(router, strong, weak):
    """A verifier object is described by the model id it calls, so the budget prices it from
    the same table as the candidates instead of failing the call after the cheap answer."""
    verifier = ScriptedChatModel(model_name="gpt-4.1-nano")
    llm = routed(router, strong, weak, {"*": Budget(limit_usd=1.0)}, "memory://",
                 cascade=_agreement(verifier))
    message = llm.invoke(EASY)  # the verifier disagrees: the weak answer escalates
    attempts = message.response_metadata["langroute"]["attempts"]
    assert [(a["model"], a["purpose"]) for a in attempts] == [
        (WEAK, "answer"), ("gpt-4.1-nano", "verify"), (STRONG, "cascade")]
    assert attempts[1]["cost_usd"] == pytest.approx(cost("gpt-4.1-nano"))


def test_an_unpriced_verifier_is_an_error_at_construction(router, strong, weak):
    """Like an unpriced candidate: found out at call time, the cheap answer is already paid."""
    verifier = ScriptedChatModel(model_name="acme-verifier-9000")
    with pytest.raises(RouterConfigError, match="acme-verifier-9000"):
        routed(router, strong, weak, {"*": Budget(limit_usd=1.0)}, "memory://",
               cascade=_agreement(verifier))
    routed(router, strong, weak, {"*": Budget(limit_usd=1.0)}, "memory://",
           cascade=_agreement(verifier),
           prices={"acme-verifier-9000": {"input_mtok": 1.0, "output_mtok": 1.0}})


def test_a_budget_that_forced_the_cheapest_model_does_not_cascade(router, strong, weak):
    """The strong model's worst case does not fit, so an escalation could only be denied after
    the cheapest answer was paid for: the budget's choice is kept, and the record says why."""
    verifier = ScriptedChatModel(model_name="gpt-4.1-nano")
    llm = routed(router, strong, weak,
                 {"*": Budget(limit_usd=0.0005, mode="soft", on_exhausted="cheapest")},
                 "memory://", cascade=_agreement(verifier))
    message = llm.invoke(HARD)  # routed to the strong model, which does not fit
    record = message.response_metadata["langroute"]
    assert message.content == f"answer from {WEAK_ID}" and record["answered_by"] == WEAK
    assert verifier.received == [] and strong.received == []
    assert "budget" in record["notes"]["cascade"]


def test_an_escalation_the_budget_denies_returns_the_paid_answer_marked(router, strong, weak):
    """The cheap answer and its check are paid for: a denied escalation returns that answer,
    marked unconfirmed, rather than failing the call and wasting it."""
    verifier = ScriptedChatModel(model_name="gpt-4.1-nano")
    recorder = EventRecorder()
    # the weak answer and the verifier fit in $0.0005; the strong model's worst case does not
    llm = routed(router, strong, weak, {"*": Budget(limit_usd=0.0005)}, "memory://",
                 cascade=_agreement(verifier))
    tracer = RoutingTracer()
    message = llm.invoke(EASY, config={"callbacks": [recorder, tracer]})
    record = message.response_metadata["langroute"]
    assert message.content == f"answer from {WEAK_ID}" and strong.received == []
    assert tracer.calls[0].answered_by == WEAK
    assert [(a["model"], a["outcome"], a["score"]) for a in record["attempts"]] == [
        (WEAK, "accepted", 0.0), ("gpt-4.1-nano", "ok", None)]
    assert f"escalation to {STRONG!r} denied by the budget" in record["notes"]["cascade"]
    last = [e["data"] for e in recorder.events if e["name"] == "langroute.cascade"][-1]
    assert last["denied"] == STRONG and last["accepted"] and last["passed"] is False


def _estimated(model_id: str, delivered: str) -> float:
    """The adapter's reservation estimate of the prompt (chars / 3 + 8 per message) plus the
    delivered text as output (chars / 3), at the model's prices."""
    usage = genai_prices.Usage(input_tokens=math.ceil(len(HARD) / 3) + 8,
                               output_tokens=math.ceil(len(delivered) / 3))
    return float(genai_prices.calc_price(usage, model_id).total_price)


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_stream_stopped_early_is_charged_an_estimate(router, strong, weak, mode):
    """Breaking out of a stream must not make the call free."""
    llm = routed(router, strong, weak, {"*": Budget(limit_usd=1.0)}, "memory://")
    recorder = EventRecorder()
    config = {"callbacks": [recorder]}
    if mode == "sync":
        stream = llm.stream(HARD, config=config)
        first = next(stream)
        stream.close()
    else:
        stream = llm.astream(HARD, config=config)
        first = await anext(stream)
        await stream.aclose()
    assert first.content == "answer"
    budget = [e["data"] for e in recorder.events if e["name"] == "langroute.budget"]
    assert [e["action"] for e in budget] == ["reserve", "commit"]
    expected = _estimated(STRONG_ID, "answer")
    assert budget[-1]["usage_estimated"] and budget[-1]["cost_usd"] == pytest.approx(expected)
    (row,) = [s for s in llm.pipeline.budget.store.accounts(now=0) if s.account.scope == "*"]
    assert row.spent_nano / 1e9 == pytest.approx(expected) and row.reserved_nano == 0


def test_a_stream_failing_mid_stream_is_charged_an_estimate(router, strong, weak):
    strong.fail_mid_stream = (2, ValueError("stream broke"))  # not retryable
    llm = routed(router, strong, weak, {"*": Budget(limit_usd=1.0)}, "memory://")
    delivered = []
    with pytest.raises(ValueError, match="stream broke"):
        for chunk in llm.stream(HARD):
            delivered.append(chunk.content)
    assert "".join(delivered) == "answer from"
    (row,) = [s for s in llm.pipeline.budget.store.accounts(now=0) if s.account.scope == "*"]
    assert row.spent_nano / 1e9 == pytest.approx(_estimated(STRONG_ID, "answer from"))
    assert row.reserved_nano == 0


def test_copies_with_other_settings_keep_their_pipelines_and_the_memory_store(router, strong,
                                                                              weak):
    """A model and its copies share one pipeline cache: a copy with another threshold used to
    rebuild both on every alternate call, and one with other budgets reopened memory:// empty
    under the original."""
    llm = routed(router, strong, weak, {"*": Budget(limit_usd=1.0)}, "memory://")
    careful = llm.model_copy(update={"threshold": 0.0})
    pipeline = llm.pipeline
    careful.invoke(EASY)
    careful_pipeline = careful.pipeline
    assert llm.pipeline is pipeline and careful_pipeline is not pipeline
    llm.invoke(HARD)
    assert careful.pipeline is careful_pipeline and llm.pipeline is pipeline
    generous = llm.model_copy(update={"budgets": {"*": Budget(limit_usd=2.0)}})
    generous.invoke(HARD)
    llm.invoke(HARD)
    (row,) = [s for s in llm.pipeline.budget.store.accounts(now=0) if s.account.scope == "*"]
    assert row.spent_nano / 1e9 == pytest.approx(4 * cost(STRONG_ID))  # every call, one store
    assert generous.pipeline.budget.store is llm.pipeline.budget.store


class _VerboseJudge(ScriptedChatModel):
    """A judge billed like a real one: its prompt holds the question and the answer (about 4
    characters a token), and it reasons at length before its JSON verdict."""

    def _answer(self, messages, kwargs, stop):
        message = super()._answer(messages, kwargs, stop)
        prompt_tokens = sum(len(m.text) for m in messages) // 4
        usage = {"input_tokens": prompt_tokens, "output_tokens": 300,
                 "total_tokens": prompt_tokens + 300}
        return message.model_copy(update={
            "content": '{"verdict": "correct", "confidence": 0.9}', "usage_metadata": usage})


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_judges_call_is_reserved_for_its_own_prompt_not_the_callers(router, strong, weak, mode):
    """The judge's hold used to be sized from the caller's messages and ``max_tokens``: a
    short question with ``max_tokens=6`` held $0.0001 for a judge call billed twenty times
    that, so concurrent calls could overspend a hard budget."""
    import asyncio

    from langroute.cascade import JudgeScorer

    judge = _VerboseJudge(model_name=STRONG_ID)
    llm = routed(router, strong, weak, {"*": Budget(limit_usd=1.0)}, "memory://",
                 cascade=Cascade(JudgeScorer(judge), accept=0.5))
    recorder = EventRecorder()
    config = {"callbacks": [recorder]}
    question = EASY + " " + "Some context the judge must read. " * 40
    if mode == "sync":
        llm.invoke(question, config=config, max_tokens=6)
    else:
        asyncio.run(llm.ainvoke(question, config=config, max_tokens=6))
    events = [e["data"] for e in recorder.events if e["name"] == "langroute.budget"]
    (judge_commit,) = [e for e in events if e["action"] == "commit" and e["model"] == STRONG_ID]
    (judge_reserve,) = [e for e in events if e["action"] == "reserve"
                        and e["hold_id"] == judge_commit["hold_id"]]
    assert judge_commit["cost_usd"] > 10 * cost(STRONG_ID)  # the verbose judge really billed
    assert judge_reserve["reserved_usd"] >= judge_commit["cost_usd"]


class _SchemaBilledModel(ScriptedChatModel):
    """Billed like a provider that counts the tool definitions it is sent as prompt tokens
    (about 4 characters a token)."""

    def _answer(self, messages, kwargs, stop):
        import json

        message = super()._answer(messages, kwargs, stop)
        chars = sum(len(m.text) for m in messages) + len(json.dumps(kwargs.get("tools") or []))
        usage = {"input_tokens": chars // 4, "output_tokens": 3, "total_tokens": chars // 4 + 3}
        return message.model_copy(update={"usage_metadata": usage})


def test_a_tool_calls_hold_covers_its_tool_definitions(router, weak):
    """The hold counted only the messages, so a call with many tools was billed more than it
    held and concurrent tool calls could overspend a hard budget."""
    from langchain_core.tools import tool

    def make(i: int):
        @tool(f"lookup_{i}", description="Look a record up in the archive. " * 20)
        def lookup(query: str, year: int, region: str) -> str:
            return "found"
        return lookup

    strong = _SchemaBilledModel(model_name=STRONG_ID)
    llm = routed(router, strong, weak, {"*": Budget(limit_usd=1.0)}, "memory://")
    recorder = EventRecorder()
    llm.bind_tools([make(i) for i in range(8)]).invoke(HARD, config={"callbacks": [recorder]})
    events = [e["data"] for e in recorder.events if e["name"] == "langroute.budget"]
    (commit,) = [e for e in events if e["action"] == "commit"]
    assert commit["cost_usd"] > 20 * cost(STRONG_ID)  # the tools were billed
    assert commit["reserved_usd"] >= commit["cost_usd"]


class _PerCharacterBilled(ScriptedChatModel):
    """Billed a token per character of the prompt, as Chinese or Japanese text about is."""

    def _answer(self, messages, kwargs, stop):
        message = super()._answer(messages, kwargs, stop)
        chars = sum(len(m.text) for m in messages)
        usage = {"input_tokens": chars, "output_tokens": 3, "total_tokens": chars + 3}
        return message.model_copy(update={"usage_metadata": usage})


def test_a_cjk_prompts_hold_covers_its_tokens(router, weak):
    """Characters / 3 held a third of a Chinese prompt's tokens (about one a character), so
    a hard budget could be overspent by concurrent calls in Chinese or Japanese."""
    strong = _PerCharacterBilled(model_name=STRONG_ID)
    llm = routed(router, strong, weak, {"*": Budget(limit_usd=1.0)}, "memory://")
    recorder = EventRecorder()
    llm.invoke(HARD + " " + "请把这份合同的每一条款逐条翻译成英文并解释其法律含义。" * 100,
               config={"callbacks": [recorder]})
    events = [e["data"] for e in recorder.events if e["name"] == "langroute.budget"]
    (commit,) = [e for e in events if e["action"] == "commit"]
    assert commit["model"] == STRONG and commit["cost_usd"] > 20 * cost(STRONG_ID)
    assert commit["reserved_usd"] >= commit["cost_usd"]


def test_the_token_over_estimate_is_unchanged_for_ascii_and_bytes_elsewhere():
    from langroute.pipeline import estimated_tokens

    assert estimated_tokens("") == 0
    assert estimated_tokens("a" * 30) == 10  # ASCII: characters / 3
    assert estimated_tokens("合同") == 6  # 3 UTF-8 bytes a character
    assert estimated_tokens("café") == 1 + 2  # 'caf' / 3, 'é' is 2 bytes


class _CannotCountOffline(_PerCharacterBilled):
    """Counts its own tokens with a tokenizer it must download (as ChatOpenAI's tiktoken)."""

    count_attempts: int = 0

    def get_num_tokens_from_messages(self, messages, tools=None):
        self.count_attempts += 1
        raise ConnectionError("cannot download the tokenizer's tables")


def test_a_model_whose_token_counter_fails_offline_is_still_budgeted(router, weak):
    """Every budgeted call to a model whose own counter needs a download failed offline; the
    hold now over-estimates instead, and a warning says why."""
    strong = _CannotCountOffline(model_name=STRONG_ID)
    llm = routed(router, strong, weak, {"*": Budget(limit_usd=1.0)}, "memory://")
    recorder = EventRecorder()
    with pytest.warns(RuntimeWarning, match="could not count the prompt's tokens"):
        message = llm.invoke(HARD, config={"callbacks": [recorder]})
    assert message.content == f"answer from {STRONG_ID}"
    (commit,) = [e["data"] for e in recorder.events
                 if e["name"] == "langroute.budget" and e["data"]["action"] == "commit"]
    assert commit["reserved_usd"] >= commit["cost_usd"] > 0
    # not tried again on every call (tiktoken's download has no timeout: each try may hang)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        llm.invoke(HARD)
    assert strong.count_attempts == 1


def test_models_whose_token_counter_failed_are_not_kept_alive(router, weak):
    """The models whose counter failed were kept for good, in a record every ``model_copy``
    shares: a service building its candidates per request (offline, or on an
    OpenAI-compatible server whose model names ChatOpenAI cannot count) grew without bound.
    A model is remembered only while it lives."""
    import gc
    import weakref

    llm = routed(router, weak, weak, {"*": Budget(limit_usd=1.0)}, "memory://")
    alive = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for _ in range(40):
            strong = _CannotCountOffline(model_name=STRONG_ID)
            llm.model_copy(update={"models": {STRONG: strong, WEAK: weak}}).invoke(HARD)
            assert strong.count_attempts == 1
            alive.append(weakref.ref(strong))
            del strong
    gc.collect()
    # the pipeline cache keeps a few builds (PipelineCache.KEPT), not every model seen
    assert sum(ref() is not None for ref in alive) <= 10
