"""RoutedLLM over two real LlamaIndex OpenAI clients, checked on the wire (what the fake received)
and in LlamaIndex's instrumentation (which events and spans were emitted)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
from langroute import MessageError, RouterConfigError
from llama_index.core.base.llms.types import ChatMessage, ChatResponse
from llama_index.core.callbacks import CallbackManager, TokenCountingHandler
from llama_index.core.instrumentation.dispatcher import instrument_tags
from llama_index.core.llms import MockLLM
from pydantic import BaseModel
from tests.fake_openai._standard_suites import STRONG_MODEL, WEAK_MODEL

from llama_index.llms.langroute import RoutedLLM

HARD = "What is 17 * 23?"  # the router sends maths to the strong model
EASY = "Hello"  # and greetings to the weak one


def user(text: str) -> list[ChatMessage]:
    return [ChatMessage(role="user", content=text)]


@pytest.mark.parametrize(("prompt", "expected"), [(HARD, STRONG_MODEL), (EASY, WEAK_MODEL)])
def test_chat_sends_one_request_to_the_chosen_model(fake, routed, events, prompt, expected):
    response = routed.chat(user(prompt))
    assert fake.models_called == [expected]
    assert response.message.content == f"You said: {prompt}"
    record = response.additional_kwargs["langroute"]
    assert record["model"] == record["answered_by"] == expected
    assert record["attempts"][0]["usage"]["input_tokens"] == fake.requests[0].usage["prompt_tokens"]
    assert response.message.additional_kwargs["langroute_model"] == expected
    (decision,) = events.of("RouteDecisionEvent")
    assert decision.model == expected and decision.payload["candidates"] == [STRONG_MODEL,
                                                                              WEAK_MODEL]
    assert decision.decision_id == record["decision_id"]


def test_stream_chat_streams_the_chosen_models_chunks(fake, routed, events):
    chunks = list(routed.stream_chat(user(EASY)))
    assert fake.models_called == [WEAK_MODEL] and fake.requests[0].stream
    assert "".join(c.delta or "" for c in chunks) == f"You said: {EASY}"
    assert chunks[-1].message.content == f"You said: {EASY}"
    assert {c.additional_kwargs["langroute"]["answered_by"] for c in chunks} == {WEAK_MODEL}
    assert len(events.of("RouteDecisionEvent")) == 1


def _settled(response: Any) -> dict[str, Any]:
    attempt = response.additional_kwargs["langroute"]["attempts"][-1]
    return {k: attempt[k] for k in ("outcome", "usage", "cost_usd")}


def test_a_streams_last_chunk_carries_the_settled_record(fake, routed):
    """LlamaIndex keeps a stream's last chunk as its response: it must carry the attempts as
    chat() reports them, not the snapshot taken before the first chunk (no usage, 0 ms)."""
    whole = routed.chat(user(EASY))
    for last in (list(routed.stream_chat(user(EASY)))[-1],
                 list(routed.stream_complete(EASY))[-1]):
        assert _settled(last) == _settled(whole)
        assert _settled(last)["usage"] is not None
        assert last.additional_kwargs["langroute"]["attempts"][-1]["latency_ms"] > 0
        assert last.delta == ""
    assert last.text == f"You said: {EASY}"


async def test_an_async_streams_last_chunk_carries_the_settled_record(fake, routed):
    whole = await routed.achat(user(EASY))
    chunks = [c async for c in await routed.astream_chat(user(EASY))]
    assert chunks[-1].message.content == f"You said: {EASY}"
    assert _settled(chunks[-1]) == _settled(whole) and _settled(whole)["usage"] is not None
    completions = [c async for c in await routed.astream_complete(EASY)]
    assert _settled(completions[-1]) == _settled(whole)


async def test_async_forms_route_per_call(fake, routed, events):
    answer = await routed.achat(user(HARD))
    stream = await routed.astream_chat(user(EASY))
    chunks = [chunk async for chunk in stream]
    assert answer.message.content == f"You said: {HARD}"
    assert chunks[-1].message.content == f"You said: {EASY}"
    completion = await routed.acomplete(HARD)
    pieces = [c async for c in await routed.astream_complete(EASY)]
    assert completion.text == f"You said: {HARD}" and pieces[-1].text == f"You said: {EASY}"
    assert fake.models_called == [STRONG_MODEL, WEAK_MODEL, STRONG_MODEL, WEAK_MODEL]
    assert [e.model for e in events.of("RouteDecisionEvent")] == fake.models_called


def test_complete_forms_route_on_the_prompt(fake, routed):
    assert routed.complete(HARD).text == f"You said: {HARD}"
    assert "".join(c.delta or "" for c in routed.stream_complete(EASY)) == f"You said: {EASY}"
    assert fake.models_called == [STRONG_MODEL, WEAK_MODEL]


@pytest.mark.parametrize("form", ["chat", "stream_chat"])
def test_chosen_llm_emits_its_own_chat_events_once_inside_the_routed_span(
    routed, events, spans, form
):
    result = getattr(routed, form)(user(HARD))
    if form == "stream_chat":
        list(result)
    (start,) = events.of("LLMChatStartEvent")
    (end,) = events.of("LLMChatEndEvent")
    # the candidate's, not the wrapper's (llama-index-core >= 0.14.21 emits to_payload(), whose
    # key is "model_name"; older releases emit to_dict(), whose key is the field's, "model")
    assert start.model_dict.get("model_name", start.model_dict.get("model")) == STRONG_MODEL
    assert end.response.message.content == f"You said: {HARD}"
    (decision,) = events.of("RouteDecisionEvent")
    routed_span = decision.span_id
    assert routed_span.startswith(f"RoutedLLM.{form}-")
    parents = {s.id_: s.parent_id for s in spans.completed_spans}
    assert parents[start.span_id] == routed_span  # the candidate's call is a child span


def test_token_counting_handler_sees_exact_usage_once(fake, routed):
    counter = TokenCountingHandler()
    routed.callback_manager = CallbackManager([counter])  # what Settings / query engines do
    routed.chat(user(HARD))
    list(routed.stream_chat(user(EASY)))
    assert len(counter.llm_token_counts) == 2
    assert counter.prompt_llm_token_count == sum(r.usage["prompt_tokens"] for r in fake.requests)
    assert counter.completion_llm_token_count == sum(
        r.usage["completion_tokens"] for r in fake.requests)


def test_token_counting_handler_counts_a_cascades_verifier_calls_too(fake, make_openai, strong,
                                                                     weak, router):
    """A verifier LLM's calls are this LLM's provider calls: it reports to the same manager."""
    from langroute.cascade import AgreementScorer, Cascade

    verifier = make_openai("gpt-4.1-mini")
    routed = RoutedLLM({STRONG_MODEL: strong, WEAK_MODEL: weak}, router=router, threshold=0.7,
                       cascade=Cascade(AgreementScorer([verifier]), accept=0.5))
    counter = TokenCountingHandler()
    routed.callback_manager = CallbackManager([counter])
    routed.chat(user(EASY))
    assert fake.models_called == [WEAK_MODEL, "gpt-4.1-mini"]
    assert len(counter.llm_token_counts) == 2
    assert counter.prompt_llm_token_count == sum(r.usage["prompt_tokens"] for r in fake.requests)


def test_candidates_with_their_own_handlers_keep_them(fake, make_openai, router):
    own, shared = TokenCountingHandler(), TokenCountingHandler()
    strong = make_openai(STRONG_MODEL, callback_manager=CallbackManager([own]))
    routed = RoutedLLM({STRONG_MODEL: strong, WEAK_MODEL: make_openai(WEAK_MODEL)},
                       router=router, threshold=0.7)
    routed.callback_manager = CallbackManager([shared])
    routed.chat(user(HARD))
    routed.chat(user(EASY))
    assert fake.models_called == [STRONG_MODEL, WEAK_MODEL]
    assert strong.callback_manager.handlers == [own]
    assert len(own.llm_token_counts) == len(shared.llm_token_counts) == 1  # the weak one's


def test_metadata_is_the_most_restrictive_of_the_candidates(make_openai, router):
    small = make_openai("gpt-3.5-turbo", max_tokens=64)
    routed = RoutedLLM({STRONG_MODEL: make_openai(STRONG_MODEL, max_tokens=256),
                        WEAK_MODEL: small}, router=router, threshold=0.7)
    meta = routed.metadata
    assert meta.context_window == small.metadata.context_window < 128_000
    assert meta.num_output == 64
    assert meta.is_chat_model and meta.is_function_calling_model
    mixed = RoutedLLM({STRONG_MODEL: make_openai(STRONG_MODEL), WEAK_MODEL: MockLLM()},
                      router=router, threshold=0.7)
    assert not mixed.metadata.is_function_calling_model


@pytest.mark.parametrize("field", ["system_prompt", "output_parser"])
def test_a_chat_candidates_predict_only_settings_draw_no_warning(make_openai, router, field):
    """RoutedLLM's predict and structured_predict apply a candidate's system_prompt /
    output_parser as its own would, and chat() sends what a direct chat() sends: nothing
    differs from calling the candidate, so there is nothing to warn about (a warning told
    users to move them to RoutedLLM, whose chat() does not apply them either)."""
    import warnings

    from llama_index.core.output_parsers import PydanticOutputParser

    value = "Answer in French." if field == "system_prompt" else PydanticOutputParser(Invoice)
    llms = {STRONG_MODEL: make_openai(STRONG_MODEL, **{field: value}),
            WEAK_MODEL: make_openai(WEAK_MODEL)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        RoutedLLM(llms, router=router, threshold=0.7)


def test_a_system_prompt_given_to_the_routed_llm_reaches_the_chosen_candidate(fake, strong, weak,
                                                                             router):
    from llama_index.core.prompts import PromptTemplate

    routed = RoutedLLM({STRONG_MODEL: strong, WEAK_MODEL: weak}, router=router, threshold=0.7,
                       system_prompt="Answer in French.")
    routed.predict(PromptTemplate("{question}"), question=HARD)
    (request,) = fake.requests
    assert request.model == STRONG_MODEL  # routed on the question, not the system prompt
    assert request.messages[0] == {"role": "system", "content": "Answer in French."}


@pytest.mark.parametrize(
    ("llms", "threshold", "router_kind", "message"),
    [
        ({}, 0.5, "fitted", "llms is empty"),
        ({STRONG_MODEL: "gpt-4o"}, 0.5, "fitted", "not a LlamaIndex LLM"),
        ("both", 0.5, "fitted-unknown", "unknown to the router"),
        ("both", 1.5, "fitted", "threshold must lie in [0, 1]"),
        ("both", "high", "fitted", "threshold must be a number"),
        ("both", 0.5, "none-known", "knows none of the models"),
        ("both", 0.5, "not-a-router", "must be a fitted langroute router"),
        ("both", None, "fitted", "give exactly one of threshold="),
    ],
)
def test_bad_input_raises_a_langroute_error_naming_the_problem(
    strong, weak, router, llms, threshold, router_kind, message
):
    if llms == "both":
        llms = {STRONG_MODEL: strong, WEAK_MODEL: weak}
        if router_kind == "fitted-unknown":
            llms = {STRONG_MODEL: strong, "claude-9": weak}
        if router_kind == "none-known":
            llms = {"claude-8": strong, "claude-9": weak}
    the_router = object() if router_kind == "not-a-router" else router
    with pytest.raises(RouterConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        RoutedLLM(llms, router=the_router, threshold=threshold)


def test_a_turn_without_text_routes_on_the_closest_text_or_goes_to_the_top_rung(
    routed, fake, strong, weak, router
):
    # A system-only prompt is routed on the system text, as RoutedChatModel does.
    traced = RoutedLLM({STRONG_MODEL: strong, WEAK_MODEL: weak}, router=router, threshold=0.7,
                       trace_prompt=True)
    record = traced.chat([ChatMessage(role="system", content="What is 2 + 2?")]).additional_kwargs[
        "langroute"]
    assert record["reason"] == "routed" and record["text"] == "What is 2 + 2?"
    # No text anywhere: nothing to score, so the strongest candidate answers, and says why.
    record = routed.chat([ChatMessage(role="user", content="")]).additional_kwargs["langroute"]
    assert record["reason"] == "no text to route on"
    assert record["model"] == STRONG_MODEL
    with pytest.raises(MessageError, match="empty message list"):
        routed.chat([])
    assert len(fake.requests) == 2


def test_a_429_is_retried_then_succeeds(fake, make_openai, router, events):
    failures = []

    def flaky(request):
        if not failures:
            failures.append(request)
            return httpx_response(429, {"retry-after-ms": "1"})
        return fake.handle(request)

    routed = RoutedLLM({STRONG_MODEL: make_openai(STRONG_MODEL, flaky),
                        WEAK_MODEL: make_openai(WEAK_MODEL, flaky)},
                       router=router, threshold=0.7, max_retries=1)
    response = routed.chat(user(HARD))
    assert response.message.content == f"You said: {HARD}"
    attempts = response.additional_kwargs["langroute"]["attempts"]
    assert [(a["model"], a["purpose"], a["outcome"]) for a in attempts] == [
        (STRONG_MODEL, "answer", "error"), (STRONG_MODEL, "retry", "ok")]
    assert len(failures) == 1 and fake.models_called == [STRONG_MODEL]
    assert events.of("FallbackEvent") == []
    assert [(e.purpose, e.outcome) for e in events.of("AttemptEvent")] == [
        ("answer", "error"), ("retry", "ok")]


def test_a_failing_model_falls_back_to_the_next_stronger_one(fake, make_openai, router, events):
    routed = RoutedLLM({STRONG_MODEL: make_openai(STRONG_MODEL),
                        WEAK_MODEL: make_openai(WEAK_MODEL, failing(fake, 429))},
                       router=router, threshold=0.7, max_retries=0)
    response = routed.chat(user(EASY))
    assert fake.models_called == ["fail-429", STRONG_MODEL]  # weak, as the fake saw it
    assert response.additional_kwargs["langroute"]["answered_by"] == STRONG_MODEL
    (fallback,) = events.of("FallbackEvent")
    assert (fallback.failed_model, fallback.next_model) == (WEAK_MODEL, STRONG_MODEL)
    assert fallback.span_id == events.of("RouteDecisionEvent")[0].span_id


def test_a_400_propagates_without_retry_or_fallback(fake, make_openai, router, events):
    routed = RoutedLLM({STRONG_MODEL: make_openai(STRONG_MODEL),
                        WEAK_MODEL: make_openai(WEAK_MODEL, failing(fake, 400))},
                       router=router, threshold=0.7, max_retries=2)
    with pytest.raises(openai.BadRequestError):
        routed.chat(user(EASY))
    assert fake.models_called == ["fail-400"]  # the weak one, once
    assert events.of("FallbackEvent") == []


def failing(fake: Any, status: int) -> Any:
    """A transport handler sending every request to the fake as model ``fail-<status>``, which
    the fake answers with that status and OpenAI's error body."""

    def handle(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        body["model"] = f"fail-{status}"
        headers = {k: v for k, v in request.headers.items() if k.lower() != "content-length"}
        return fake.handle(httpx.Request(request.method, request.url, headers=headers, json=body))

    return handle


def httpx_response(status: int, headers: dict[str, str]) -> Any:
    body = {"error": {"message": "Rate limit reached", "type": "rate_limit_exceeded",
                      "param": None, "code": None}}
    return httpx.Response(status, json=body, headers=headers)


# -- tools ---------------------------------------------------------------------------------------
def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def tools() -> list[Any]:
    from llama_index.core.tools import FunctionTool

    return [FunctionTool.from_defaults(fn=multiply), FunctionTool.from_defaults(fn=add)]


def test_tools_are_formatted_by_the_chosen_client_and_sent_only_to_it(fake, routed):
    response = routed.chat_with_tools(tools(), user_msg="What is 17 * 23? Use multiply.")
    request = fake.requests[0]
    assert request.model == STRONG_MODEL and request.tool_names == ["multiply", "add"]
    # OpenAI's own _prepare_chat_with_tools: strict flag and closed parameter schemas
    spec = request.body["tools"][0]["function"]
    assert spec["strict"] is False and spec["parameters"]["additionalProperties"] is False
    (selection,) = routed.get_tool_calls_from_response(response)
    assert selection.tool_name == "multiply" and set(selection.tool_kwargs) == {"a", "b"}
    chunks = list(routed.stream_chat_with_tools(tools(), user_msg="Hello, use add on 2 and 3"))
    assert fake.requests[-1].stream and fake.requests[-1].model == WEAK_MODEL
    (streamed,) = routed.get_tool_calls_from_response(chunks[-1])
    assert streamed.tool_name == "add" and streamed.tool_kwargs == {"a": 2, "b": 3}


def test_a_tool_loop_goes_back_to_the_model_that_made_the_calls(fake, routed, events):
    question = ChatMessage(role="user", content="Hello, use add on 2 and 3")  # routes weak
    call = routed.chat_with_tools(tools(), chat_history=[question])
    (selection,) = routed.get_tool_calls_from_response(call)
    result = ChatMessage(role="tool", content="5",
                         additional_kwargs={"tool_call_id": selection.tool_id})
    # pretend the strong model made the calls: its stamp decides who answers them
    made_by_strong = call.message.model_copy(
        update={"additional_kwargs": {**call.message.additional_kwargs,
                                      "langroute_model": STRONG_MODEL}})
    answer = routed.chat_with_tools(tools(), chat_history=[question, made_by_strong, result])
    assert fake.models_called == [WEAK_MODEL, STRONG_MODEL]
    assert answer.message.content == "The add tool returned: 5"
    sticky = events.of("RouteDecisionEvent")[-1]
    assert sticky.reason == "sticky tool loop" and sticky.model == STRONG_MODEL
    # the stamp never reaches the provider
    assert all("langroute_model" not in m for m in fake.requests[-1].messages)


def test_an_unstamped_tool_loop_is_routed_normally_and_says_so(fake, routed, events):
    question = ChatMessage(role="user", content=HARD)
    maker = ChatMessage(role="assistant", content="",
                        additional_kwargs={"tool_calls": []})
    from llama_index.core.base.llms.types import ToolCallBlock

    maker.blocks.append(ToolCallBlock(tool_call_id="call_1", tool_name="multiply",
                                      tool_kwargs='{"a": 17, "b": 23}'))  # as OpenAI sends it
    result = ChatMessage(role="tool", content="391", additional_kwargs={"tool_call_id": "call_1"})
    routed.chat([question, maker, result])
    (decision,) = events.of("RouteDecisionEvent")
    assert decision.reason == "routed: tool-call maker unidentified"
    assert "no langroute_model stamp" in decision.payload["note"]


def test_get_tool_calls_needs_to_know_the_writer_when_parsers_differ(routed, strong, router):
    mixed = RoutedLLM({STRONG_MODEL: strong, WEAK_MODEL: MockLLM()}, router=router,
                      threshold=0.7)
    with pytest.raises(MessageError, match="cannot tell which candidate"):
        mixed.get_tool_calls_from_response(ChatResponse(message=ChatMessage(content="x")))


class Invoice(BaseModel):
    """An invoice."""

    customer: str
    total: int


def test_structured_predict_uses_the_chosen_models_tool_calling(fake, routed, events):
    from llama_index.core.prompts import PromptTemplate

    invoice = routed.structured_predict(Invoice, PromptTemplate("Extract: {text}"),
                                        text="Hello from ACME, total 42")
    assert isinstance(invoice, Invoice)
    (request,) = fake.requests
    assert request.tool_names == ["Invoice"] and request.body["tool_choice"] == "required"
    structured = routed.as_structured_llm(Invoice)
    response = structured.chat(user(EASY))
    assert isinstance(response.raw, Invoice)
    assert fake.models_called == [e.model for e in events.of("RouteDecisionEvent")]
    assert fake.models_called[-1] == WEAK_MODEL


async def test_structured_stream_and_async_forms_route_too(fake, routed):
    from llama_index.core.prompts import PromptTemplate

    prompt = PromptTemplate("Extract: {text}")
    partials = list(routed.stream_structured_predict(Invoice, prompt, text="Hello ACME 42"))
    assert partials[-1].total == 42 and fake.requests[-1].stream
    invoice = await routed.astructured_predict(Invoice, prompt, text="Hello ACME 42")
    assert invoice == Invoice(customer=partials[-1].customer, total=42)
    assert all(r.tool_names == ["Invoice"] for r in fake.requests)


def test_instrument_tags_are_the_calls_context(fake, routed, events):
    with instrument_tags({"agent": "researcher"}):
        routed.chat(user(EASY))
    (decision,) = events.of("RouteDecisionEvent")
    assert decision.tags == {"agent": "researcher"}


def test_an_operating_point_resolves_to_a_threshold_and_is_recorded(strong, weak, router):
    routed = RoutedLLM({STRONG_MODEL: strong, WEAK_MODEL: weak}, router=router,
                       strong_fraction=0.5)
    policy = routed.pipeline.policy
    assert 0.0 <= policy.threshold <= 1.0 and policy.requested == {"strong_fraction": 0.5}
    assert routed.route(HARD).requested == {"strong_fraction": 0.5}
    with pytest.raises(RouterConfigError, match="exactly one of"):
        RoutedLLM({STRONG_MODEL: strong, WEAK_MODEL: weak}, router=router, threshold=0.5,
                  strong_fraction=0.5)
    with pytest.raises(RouterConfigError, match="spend_store is set but budgets is not"):
        RoutedLLM({STRONG_MODEL: strong, WEAK_MODEL: weak}, router=router, threshold=0.5,
                  spend_store="memory://")


def test_a_per_call_threshold_comes_from_instrument_tags(fake, routed, events):
    with instrument_tags({"langroute_threshold": 0.0}):  # 0: always the best model
        routed.chat(user(EASY))
    routed.chat(user(EASY))
    assert fake.models_called == [STRONG_MODEL, WEAK_MODEL]
    assert [e.threshold for e in events.of("RouteDecisionEvent")] == [0.0, 0.7]


@pytest.mark.parametrize("tag", ["langroute_treshold", "langroute_cost_weight",
                                 "langroute_model", "langroute_reason",
                                 "langroute_decision_id"])
def test_an_unknown_langroute_instrument_tag_is_refused(fake, routed, tag):
    """A misspelt per-call key is an error, not a call at the routed model's own threshold.
    Nothing writes langroute_ keys into LlamaIndex tags, so only the inputs are allowed:
    ``langroute_model`` would look like pinning a model, and pins nothing."""
    with instrument_tags({tag: WEAK_MODEL}), pytest.raises(RouterConfigError, match=tag):
        routed.chat(user(EASY))
    with instrument_tags({"langroute_threshold": 0.0}):
        routed.chat(user(EASY))
    assert fake.models_called == [STRONG_MODEL]


def test_langroute_embedding_wraps_only_langroute_embedders():
    from langroute.embeddings import HashingEmbedder

    from llama_index.llms.langroute import LangrouteEmbedding

    embedding = LangrouteEmbedding(HashingEmbedder(dimension=32))
    vector = embedding.get_text_embedding("Hello")
    assert len(vector) == 32 and abs(sum(v * v for v in vector) - 1.0) < 1e-5
    assert embedding.get_query_embedding("Hello") == vector
    with pytest.raises(RouterConfigError, match="must be a langroute Embedder"):
        LangrouteEmbedding("minilm")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"api_key": "sk-x"}, "api_key belongs on each candidate LLM"),
        ({"rate_limiter": object()}, "rate_limiter belongs on each candidate LLM"),
        ({"max_retry": 3}, r"unknown arguments \['max_retry'\]"),
        ({"max_retries": "many"}, "invalid RoutedLLM arguments"),
        ({"fallback": "sideways"}, "fallback must be 'stronger', 'cheaper' or None"),
        ({"timeout": 0}, "timeout must be a number > 0"),
    ],
)
def test_misplaced_or_unknown_arguments_are_rejected(strong, weak, router, extra, message):
    with pytest.raises(RouterConfigError, match=message):
        RoutedLLM({STRONG_MODEL: strong, WEAK_MODEL: weak}, router=router, threshold=0.5,
                  **extra)


def test_a_stream_failing_midway_propagates_after_its_first_chunks(fake, make_openai, router,
                                                                  events):
    def broken_stream(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        body["model"] = "fail-stream"  # two chunks, then an error event
        headers = {k: v for k, v in request.headers.items() if k.lower() != "content-length"}
        return fake.handle(httpx.Request(request.method, request.url, headers=headers, json=body))

    routed = RoutedLLM({STRONG_MODEL: make_openai(STRONG_MODEL),
                        WEAK_MODEL: make_openai(WEAK_MODEL, broken_stream)},
                       router=router, threshold=0.7)
    received = []
    with pytest.raises(openai.APIError, match="Simulated failure in the middle of a stream"):
        for chunk in routed.stream_chat(user(EASY)):
            received.append(chunk)
    assert received and fake.models_called == ["fail-stream"]  # no retry, no fallback
    assert events.of("FallbackEvent") == []
    assert [e.outcome for e in events.of("AttemptEvent")] == ["error"]


def _image_turn() -> ChatMessage:
    from llama_index.core.base.llms.types import ImageBlock

    return ChatMessage(role="user", blocks=[ImageBlock(url="https://example.com/cat.png")])


def test_no_text_notes_say_why_and_combine_with_an_unstamped_loop_note(fake, routed):
    """The note of a no-text decision is langroute's own, as in RoutedChatModel."""
    decision = routed.route([_image_turn()])
    assert decision.reason == "no text to route on" and decision.model == STRONG_MODEL
    assert decision.note == ("no text to route on (the last user message has blocks "
                             "['image']); the top rung answers")
    from llama_index.core.base.llms.types import ToolCallBlock

    maker = ChatMessage(role="assistant", blocks=[ToolCallBlock(
        tool_call_id="call_1", tool_name="multiply", tool_kwargs={"a": 1, "b": 2})])
    result = ChatMessage(role="tool", content="", additional_kwargs={"tool_call_id": "call_1"})
    decision = routed.route([_image_turn(), maker, result])
    assert "no langroute_model stamp" in decision.note
    assert "no text to route on (the last user message has blocks ['image'])" in decision.note


def test_a_sticky_tool_loop_keeps_the_closest_text_as_its_prompt(routed):
    """An image-only last user turn in a loop stuck to its maker: the earlier text is the
    call's text (what feedback stores as its prompt), not ""."""
    from llama_index.core.base.llms.types import ToolCallBlock

    maker = ChatMessage(role="assistant", additional_kwargs={"langroute_model": STRONG_MODEL},
                        blocks=[ToolCallBlock(tool_call_id="call_1", tool_name="multiply",
                                              tool_kwargs={"a": 17, "b": 23})])
    result = ChatMessage(role="tool", content="391", additional_kwargs={"tool_call_id": "call_1"})
    decision = routed.route([ChatMessage(role="user", content=HARD), _image_turn(), maker,
                             result])
    assert decision.reason == "sticky tool loop" and decision.model == STRONG_MODEL
    assert decision.text_chars == len(HARD)


@pytest.mark.parametrize("how", ["complete", "stream_complete", "acomplete"])
async def test_a_blank_prompt_goes_to_the_top_rung_as_a_blank_chat_does(fake, router, strong,
                                                                       weak, how):
    """As ``chat([user("")])`` and RoutedChatModel's ``invoke("  ")``: nothing to score, so the
    strongest candidate answers, and the record says why."""
    always_weak = RoutedLLM({STRONG_MODEL: strong, WEAK_MODEL: weak}, router=router,
                            threshold=1.0)
    if how == "complete":
        response = always_weak.complete("  ")
    elif how == "acomplete":
        response = await always_weak.acomplete("  ")
    else:
        response = list(always_weak.stream_complete("  "))[-1]
    record = response.additional_kwargs["langroute"]
    assert record["model"] == STRONG_MODEL and record["reason"] == "no text to route on"
    assert "empty text" in record["note"]
    assert fake.models_called == [STRONG_MODEL]


def test_a_store_urls_password_never_reaches_repr(routed):
    """A Redis password in ``spend_store`` / ``feedback_store`` showed in ``repr`` (logs)."""
    copy = routed.model_copy(update={"spend_store": "redis://app:s3cret@cache:6379/0",
                                     "feedback_store": "redis://:fb-s3cret@cache/1"})
    assert "s3cret" not in repr(copy) and "redis://app:***@cache:6379/0" in repr(copy)

