"""RoutedChatModel over two real ChatOpenAI clients, checked on the wire: what the fake received."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from langchain_core.callbacks import BaseCallbackHandler, UsageMetadataCallbackHandler
from langchain_core.messages import AIMessage, ChatMessage, HumanMessage, SystemMessage
from pydantic import BaseModel

from langroute import RouterConfigError
from langroute.chat_models import RoutedChatModel
from tests.fake_openai import FakeOpenAI
from tests.fake_openai._standard_suites import (
    STRONG_MODEL,
    WEAK_MODEL,
    fitted_router,
    routed_chat_params,
)
from tests.integration_tests._tools import Joke, add

HARD = "What is 17 * 23?"
EASY = "Hello"


@pytest.fixture
def routed(fake: FakeOpenAI) -> RoutedChatModel:
    return RoutedChatModel(**routed_chat_params(fake))


@pytest.mark.parametrize(("prompt", "expected"), [(HARD, STRONG_MODEL), (EASY, WEAK_MODEL)])
def test_each_call_sends_exactly_one_request_to_the_chosen_model(
    fake: FakeOpenAI, routed: RoutedChatModel, prompt: str, expected: str
) -> None:
    message = routed.invoke(prompt)
    assert fake.models_called == [expected]
    assert message.response_metadata["model_name"] == expected
    assert message.response_metadata["langroute"]["model"] == expected
    assert message.content == f"You said: {prompt}"
    texts = [chunk.content for chunk in routed.stream(prompt) if chunk.content]
    assert "".join(texts) == message.content
    assert len(texts) == 2 + len(prompt.split())  # one chunk per token, as the fake sent them
    assert fake.models_called == [expected, expected]
    assert fake.requests[-1].stream


async def test_async_and_batch_route_per_input(fake: FakeOpenAI, routed: RoutedChatModel) -> None:
    await routed.ainvoke(HARD)
    assert [c async for c in routed.astream(EASY)]
    assert fake.models_called == [STRONG_MODEL, WEAK_MODEL]
    fake.clear()
    await routed.abatch([HARD, EASY])
    routed.batch([EASY, HARD])
    assert sorted(fake.models_called) == sorted([STRONG_MODEL, WEAK_MODEL] * 2)


def test_tools_are_formatted_by_the_chosen_client_and_sent_only_to_it(
    fake: FakeOpenAI, routed: RoutedChatModel
) -> None:
    message = routed.bind_tools([add], tool_choice="any").invoke("What is 3 + 4")
    assert message.tool_calls[0]["args"] == {"a": 3, "b": 4}
    (request,) = fake.requests
    assert request.model == STRONG_MODEL and request.tool_names == ["add"]
    assert request.body["tool_choice"] == "required"  # ChatOpenAI's own translation of "any"


def test_structured_output_uses_the_chosen_clients_json_schema(
    fake: FakeOpenAI, routed: RoutedChatModel
) -> None:
    joke = routed.with_structured_output(Joke).invoke("Tell me a joke about 'cats'")
    assert joke == Joke(setup="cats", punchline="Tell me a joke about 'cats'")
    (request,) = fake.requests
    assert request.model == WEAK_MODEL
    assert request.body["response_format"]["json_schema"]["name"] == "Joke"


def test_tool_loop_returns_to_the_model_that_made_the_call(fake: FakeOpenAI) -> None:
    always_strong = RoutedChatModel(**routed_chat_params(fake, threshold=0.0))
    always_weak = RoutedChatModel(**routed_chat_params(fake, threshold=1.0))
    question = HumanMessage("use add on 2 and 5")
    call = always_strong.bind_tools([add]).invoke([question])
    result = add.invoke(call.tool_calls[0])
    answer = always_weak.bind_tools([add]).invoke([question, call, result])
    assert fake.models_called == [STRONG_MODEL, STRONG_MODEL]
    assert answer.content == "The add tool returned: 7"
    always_weak.invoke([question])
    assert fake.models_called[-1] == WEAK_MODEL


def test_usage_is_counted_once(fake: FakeOpenAI, routed: RoutedChatModel) -> None:
    handler = UsageMetadataCallbackHandler()
    routed.invoke(HARD, config={"callbacks": [handler]})
    for _ in routed.stream(EASY, config={"callbacks": [handler]}):
        pass
    assert set(handler.usage_metadata) == {STRONG_MODEL, WEAK_MODEL}
    for request in fake.requests:
        assert request.usage is not None
        counted = handler.usage_metadata[request.model]
        assert counted["total_tokens"] == request.usage["total_tokens"]


@pytest.mark.parametrize("failing", ["fail-500", "fail-429", "fail-stream"])
def test_inner_errors_propagate_as_chatopenai_raises_them(fake: FakeOpenAI, failing: str) -> None:
    models = {STRONG_MODEL: fake.chat_openai(failing), WEAK_MODEL: fake.chat_openai(WEAK_MODEL)}
    # no retries: once they are spent (see test_retries_and_fallback.py) the error is ChatOpenAI's
    routed = RoutedChatModel(models=models, router=fitted_router(), threshold=0.7, max_retries=0)
    plain = fake.chat_openai(failing)

    def call(model: Any) -> None:
        if failing == "fail-stream":
            list(model.stream(HARD))
        else:
            model.invoke(HARD)

    with pytest.raises(openai.APIError) as expected:
        call(plain)
    with pytest.raises(type(expected.value)) as raised:
        call(routed)
    assert type(raised.value) is type(expected.value)
    assert str(raised.value) == str(expected.value)


# -- a cascade keeps answers that may still be rejected from token streams ---------------------
def _cascaded(fake: FakeOpenAI, scorer: Any, accept: float) -> RoutedChatModel:
    from langroute.cascade import Cascade

    models = {name: fake.chat_openai(name) for name in (STRONG_MODEL, WEAK_MODEL)}
    return RoutedChatModel(models=models, router=fitted_router(), threshold=1.0,
                           cascade=Cascade(scorer, accept=accept))


async def test_astream_events_stream_no_rejected_or_verifier_tokens(fake: FakeOpenAI) -> None:
    from langroute.cascade import AgreementScorer

    verifier = fake.chat_openai("gpt-4.1-nano", max_tokens=1)  # answers "You": disagrees
    routed = _cascaded(fake, AgreementScorer([verifier]), accept=1.0)
    streamed: dict[str, str] = {}
    ends: list[str] = []
    async for event in routed.astream_events("Hello", version="v2"):
        model = event["metadata"].get("ls_model_name")
        if event["event"] == "on_chat_model_stream":
            streamed[model] = streamed.get(model, "") + event["data"]["chunk"].text
        elif event["event"] == "on_chat_model_end":
            ends.append(model)
    assert fake.models_called == [WEAK_MODEL, "gpt-4.1-nano", STRONG_MODEL]
    assert streamed == {STRONG_MODEL: "You said: Hello"}  # only the escalated, accepted one
    assert sorted(ends) == sorted(fake.models_called)  # still ordinary runs to tracers


async def test_astream_events_of_an_accepted_cheap_answer_stream_it_once(
        fake: FakeOpenAI) -> None:
    from langroute.cascade import FunctionScorer

    routed = _cascaded(fake, FunctionScorer(lambda m, a: 1.0, bounds=(0, 1)), accept=0.5)
    chat_tokens, chain_text = [], ""
    async for event in routed.astream_events("Hello", version="v2"):
        if event["event"] == "on_chat_model_stream":
            chat_tokens.append(event["data"]["chunk"].text)
        elif event["event"] == "on_chain_stream" and event["name"] == "RoutedChatModel":
            chain_text += event["data"]["chunk"].text
    assert fake.models_called == [WEAK_MODEL]
    assert chat_tokens == []  # the cheap answer streamed nothing before it was accepted
    assert chain_text == "You said: Hello"  # the routed run delivers it


@pytest.mark.parametrize("method", ["function_calling", "json_schema"])
@pytest.mark.parametrize("include_raw", [False, True])
def test_agreeing_structured_answers_are_accepted_whatever_the_method(
        fake: FakeOpenAI, method: str, include_raw: bool) -> None:
    """A function_calling answer is a tool call with no text: scored as empty text, the cheap
    answer never agreed with its verifier and every call escalated."""

    from langroute.cascade import AgreementScorer

    class Joke(BaseModel):
        """A joke."""

        setup: str
        punchline: str

    routed = _cascaded(fake, AgreementScorer([fake.chat_openai("gpt-4.1-nano")]), accept=1.0)
    structured = routed.with_structured_output(Joke, method=method, include_raw=include_raw)
    out = structured.invoke("Tell me a joke about cats.")
    joke = out["parsed"] if include_raw else out
    assert isinstance(joke, Joke)
    assert fake.models_called == [WEAK_MODEL, "gpt-4.1-nano"]  # agreed: no escalation


def test_cascade_hidden_runs_are_tagged_and_usage_counted_once(fake: FakeOpenAI) -> None:
    from langchain_core.callbacks import BaseCallbackHandler

    from langroute.cascade import AgreementScorer

    class Tags(BaseCallbackHandler):
        def __init__(self) -> None:
            self.tags: dict[str, list[str]] = {}

        def on_chat_model_start(self, serialized: Any, messages: Any, *, metadata: Any = None,
                                tags: Any = None, **kwargs: Any) -> None:
            self.tags[(metadata or {}).get("ls_model_name")] = sorted(tags or [])

    verifier = fake.chat_openai("gpt-4.1-nano", max_tokens=1)
    routed = _cascaded(fake, AgreementScorer([verifier]), accept=1.0)
    usage, tags = UsageMetadataCallbackHandler(), Tags()
    message = routed.invoke("Hello", config={"callbacks": [usage, tags]})
    assert tags.tags[WEAK_MODEL] == ["langroute:cascade-attempt", "nostream"]
    assert tags.tags["gpt-4.1-nano"] == ["langroute:verifier", "nostream"]
    assert "nostream" not in tags.tags[STRONG_MODEL]  # the last rung: accepted unscored
    attempts = message.response_metadata["langroute"]["attempts"]
    assert sorted(usage.usage_metadata) == sorted(a["model"] for a in attempts)
    for attempt in attempts:
        counted = usage.usage_metadata[attempt["model"]]
        assert counted["input_tokens"] == attempt["usage"]["input_tokens"]
        assert counted["output_tokens"] == attempt["usage"]["output_tokens"]


def test_langgraph_messages_stream_shows_only_the_accepted_answer(fake: FakeOpenAI) -> None:
    pytest.importorskip("langgraph")
    from typing import Annotated, TypedDict

    from langgraph.graph import END, START, StateGraph
    from langgraph.graph.message import add_messages

    from langroute.cascade import AgreementScorer

    verifier = fake.chat_openai("gpt-4.1-nano", max_tokens=1)
    routed = _cascaded(fake, AgreementScorer([verifier]), accept=1.0)

    State = TypedDict("State", {"messages": Annotated[list, add_messages]})  # noqa: UP013

    graph = StateGraph(State)
    graph.add_node("llm", lambda state: {"messages": [routed.invoke(state["messages"])]})
    graph.add_edge(START, "llm")
    graph.add_edge("llm", END)
    streamed: dict[str, str] = {}
    for chunk, meta in graph.compile().stream({"messages": [("user", "Hello")]},
                                              stream_mode="messages"):
        model = meta.get("ls_model_name")
        streamed[model] = streamed.get(model, "") + chunk.text
    assert fake.models_called == [WEAK_MODEL, "gpt-4.1-nano", STRONG_MODEL]
    assert streamed == {STRONG_MODEL: "You said: Hello"}


# -- the global LLM cache is the candidates', never the routed model's ------------------------
@pytest.fixture
def global_cache() -> Any:
    from langchain_core.caches import InMemoryCache
    from langchain_core.globals import get_llm_cache, set_llm_cache

    before = get_llm_cache()
    cache = InMemoryCache()
    set_llm_cache(cache)
    yield cache
    set_llm_cache(before)


async def test_generate_decides_every_call_under_a_global_llm_cache(
        fake: FakeOpenAI, routed: RoutedChatModel, global_cache: Any) -> None:
    """A routed result is a decision (per-call threshold, budget, feedback id), not a pure
    function of the prompt: generate() must decide again, as invoke() does, while the
    candidates still answer a repeated request from the cache."""
    from langroute import RoutingTracer

    tracer = RoutingTracer()
    prompt = [[HumanMessage(EASY)]]

    def record(result: Any) -> dict[str, Any]:
        return result.generations[0][0].message.response_metadata["langroute"]

    first = record(routed.generate(prompt, callbacks=[tracer],
                                   metadata={"langroute_threshold": 0.0}))
    again = record(routed.generate(prompt, callbacks=[tracer],
                                   metadata={"langroute_threshold": 0.0}))
    other = record(routed.generate(prompt, callbacks=[tracer],
                                   metadata={"langroute_threshold": 1.0}))
    later = record(await routed.agenerate(prompt, metadata={"langroute_threshold": 0.0}))
    assert [first["answered_by"], again["answered_by"], other["answered_by"],
            later["answered_by"]] == [STRONG_MODEL, STRONG_MODEL, WEAK_MODEL, STRONG_MODEL]
    assert len({first["decision_id"], again["decision_id"], other["decision_id"],
                later["decision_id"]}) == 4
    assert tracer.summary().calls == 3
    assert fake.models_called == [STRONG_MODEL, WEAK_MODEL]  # repeats: the candidate's cache


# -- every input ChatOpenAI accepts is routed ---------------------------------------------------
IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}


@pytest.mark.parametrize(("messages", "routed_on"), [
    ([SystemMessage("Summarise the French revolution.")], "Summarise the French revolution."),
    ([SystemMessage("Describe images."), HumanMessage(EASY), AIMessage("OK"),
      HumanMessage(content=[IMAGE])], EASY),  # the closest earlier user text
    ([SystemMessage("Describe images."), HumanMessage(content=[IMAGE])], "Describe images."),
    ([ChatMessage(role="user", content=HARD)], HARD),
], ids=["system-only", "image-turn", "image-only-user", "chat-message-user"])
async def test_inputs_chat_openai_accepts_are_routed_on_their_closest_text(
        fake: FakeOpenAI, messages: list[Any], routed_on: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """ChatOpenAI sends these; routing must not refuse them for want of a HumanMessage with
    text: it reads the closest text there is."""
    routed = RoutedChatModel(**routed_chat_params(fake), trace_prompt=True)
    decision = routed.route(messages)
    assert decision.text == routed_on and decision.reason == "routed"
    message = routed.invoke(messages)
    assert message.response_metadata["langroute"]["model"] == decision.model
    chunks = [c async for c in routed.astream(messages)]
    streamed = chunks[0]
    for chunk in chunks[1:]:
        streamed = streamed + chunk
    assert streamed.content == message.content and streamed.content
    assert streamed.response_metadata["langroute"]["text"] == routed_on
    assert routed.batch([messages, HARD])[0].response_metadata["langroute"]["text"] == routed_on
    # counted by the candidate the router would choose (tiktoken's table needs a download)
    monkeypatch.setattr(type(routed.models[STRONG_MODEL]), "get_num_tokens_from_messages",
                        lambda self, messages, tools=None: len(messages))
    assert routed.get_num_tokens_from_messages(messages) == len(messages)
    assert sorted(fake.models_called) == sorted([decision.model] * 3 + [STRONG_MODEL])


def test_a_conversation_without_text_goes_to_the_top_rung_and_says_why(
        fake: FakeOpenAI) -> None:
    """Nothing to score: quality first (the strongest candidate, even at threshold 1, which
    otherwise always picks the cheapest), with the reason traced like any decision."""
    from langroute import RoutingTracer

    always_weak = RoutedChatModel(**routed_chat_params(fake, threshold=1.0))
    tracer = RoutingTracer()
    events: list[dict[str, Any]] = []

    class Events(BaseCallbackHandler):
        def on_custom_event(self, name: str, data: Any, **kwargs: Any) -> None:
            if name == "langroute.route":
                events.append(data)

    no_text = [HumanMessage(content=[IMAGE])]
    message = always_weak.invoke(no_text, {"callbacks": [tracer, Events()]})
    record = message.response_metadata["langroute"]
    assert record["model"] == STRONG_MODEL and record["reason"] == "no text to route on"
    assert "image_url" in record["note"]
    assert [e["reason"] for e in events] == ["no text to route on"]
    assert tracer.summary().calls == 1
    batched = always_weak.batch([no_text, EASY, [HumanMessage("   ")]])
    assert [m.response_metadata["langroute"]["model"] for m in batched] == [
        STRONG_MODEL, WEAK_MODEL, STRONG_MODEL]
    generated = always_weak.generate([no_text]).generations[0][0].message
    assert generated.response_metadata["langroute"]["reason"] == "no text to route on"
    assert sorted(fake.models_called) == [STRONG_MODEL] * 4 + [WEAK_MODEL]


# -- disable_streaming is honoured as BaseChatModel honours it --------------------------------
@pytest.mark.parametrize("flag", [True, "tool_calling"])
async def test_disable_streaming_streams_one_chunk_from_an_unstreamed_call(
        fake: FakeOpenAI, flag: Any) -> None:
    """As ChatOpenAI: the stream is one chunk, the answer of a call made with stream=False
    ("tool_calling": only while tools are bound)."""
    routed = RoutedChatModel(**routed_chat_params(fake), disable_streaming=flag)
    plain = fake.chat_openai(WEAK_MODEL, disable_streaming=flag)
    for model in (plain, routed):
        fake.clear()
        runnable = model.bind_tools([add]) if flag == "tool_calling" else model
        chunks = list(runnable.stream(EASY))
        achunks = [chunk async for chunk in runnable.astream(EASY)]
        assert (len(chunks), len(achunks)) == (1, 1)
        assert [request.stream for request in fake.requests] == [False, False]
    assert chunks[0].response_metadata["langroute"]["attempts"]
    if flag == "tool_calling":  # without tools it streams as usual
        assert len(list(routed.stream(EASY))) > 1 and fake.requests[-1].stream


# -- a structured stream with include_raw=True ends with the settled record --------------------
@pytest.mark.parametrize("streamed", [False, True], ids=["sync", "async"])
async def test_include_raw_stream_carries_the_settled_record_as_invoke_does(
        fake: FakeOpenAI, routed: RoutedChatModel, streamed: bool) -> None:
    """The stream ends with {"parsed"} and {"parsing_error"} items, not a raw chunk: the
    closing item must still bring the attempts to the raw message."""
    structured = routed.with_structured_output(Joke, include_raw=True)
    prompt = "Tell me a joke about 'cats'"
    whole = structured.invoke(prompt)
    items = ([item async for item in structured.astream(prompt)] if streamed
             else list(structured.stream(prompt)))
    merged: dict[str, Any] = {}
    for item in items:
        for key, value in item.items():
            merged[key] = merged[key] + value if key == "raw" and key in merged else value
    assert merged["parsed"] == whole["parsed"] and merged["parsing_error"] is None
    record, expected = (merged["raw"].response_metadata["langroute"],
                        whole["raw"].response_metadata["langroute"])
    assert sorted(record) == sorted(expected)
    assert [a["model"] for a in record["attempts"]] == [a["model"] for a in expected["attempts"]]


# -- options bound with the tools survive LangGraph's create_react_agent -----------------------
def test_create_react_agent_keeps_the_options_bound_with_the_tools(fake: FakeOpenAI) -> None:
    """LangGraph re-binds a model whose binding shows no ``tools``, replacing what was bound
    with them; a routed binding must look bound to it, as ChatOpenAI's does."""
    pytest.importorskip("langgraph")
    from langgraph.prebuilt import create_react_agent

    routed = RoutedChatModel(**routed_chat_params(fake, threshold=0.0))
    bound = routed.bind_tools([add], parallel_tool_calls=False, tool_choice="auto")
    create_react_agent(bound, [add]).invoke({"messages": [("user", "use add on 2 and 5")]})
    first = fake.requests[0]
    assert first.tool_names == ["add"]
    assert (first.body.get("parallel_tool_calls"), first.body.get("tool_choice")) == (False, "auto")
    assert fake.requests[-1].body.get("parallel_tool_calls") is False  # the tool loop's answer


# -- the profile is what every candidate can do --------------------------------------------------
#: What langchain-openai >= 1.1 knows of these models; 1.0 ships no profiles (``profile`` None).
_OPENAI_PROFILE = {"max_input_tokens": 128_000, "structured_output": True, "tool_calling": True}


def profiled_chat_params(fake: FakeOpenAI) -> dict[str, Any]:
    """``routed_chat_params`` whose candidates all have a profile, on any langchain-openai."""
    params = routed_chat_params(fake)
    params["models"] = {
        name: model if model.profile is not None else fake.chat_openai(name,
                                                                       profile=_OPENAI_PROFILE)
        for name, model in params["models"].items()}
    return params


def test_create_agent_uses_native_structured_output_when_every_candidate_has_it(
        fake: FakeOpenAI) -> None:
    """create_agent picks its structured-output strategy from ``model.profile``: with none it
    falls back to an extra tool and tool_choice="required", unlike ChatOpenAI."""
    pytest.importorskip("langchain.agents")
    from langchain.agents import create_agent

    routed = RoutedChatModel(**profiled_chat_params(fake))
    assert routed.profile is not None and routed.profile["structured_output"] is True
    assert routed.profile["max_input_tokens"] == min(
        m.profile["max_input_tokens"] for m in routed.models.values())  # type: ignore[index]
    result = create_agent(routed, tools=[], response_format=Joke).invoke(
        {"messages": [("user", "Tell me a joke about 'cats'")]}, {"recursion_limit": 6})
    assert result["structured_response"] == Joke(setup="cats",
                                                 punchline="Tell me a joke about 'cats'")
    (request,) = fake.requests
    assert request.tool_names == [] and request.body["response_format"]["type"] == "json_schema"

    weak = fake.chat_openai(WEAK_MODEL, profile={**(routed.models[WEAK_MODEL].profile or {}),
                                                 "structured_output": False})
    mixed = RoutedChatModel(**{**profiled_chat_params(fake),
                               "models": {**routed.models, WEAK_MODEL: weak}})
    assert mixed.profile is not None and mixed.profile["structured_output"] is False
    assert mixed.profile["tool_calling"] is True


@pytest.mark.parametrize("path", ["model_copy", "assignment"])
def test_the_profile_follows_models_replaced_after_construction(fake: FakeOpenAI,
                                                                path: str) -> None:
    """create_agent reads the profile: it must describe the models that answer now."""
    routed = RoutedChatModel(**profiled_chat_params(fake))
    assert routed.profile is not None and routed.profile["structured_output"] is True
    weak = fake.chat_openai(WEAK_MODEL, profile={**(routed.models[WEAK_MODEL].profile or {}),
                                                 "structured_output": False})
    models = {**routed.models, WEAK_MODEL: weak}
    if path == "model_copy":
        routed = routed.model_copy(update={"models": models})
    else:
        routed.models = models
    assert routed.profile is not None and routed.profile["structured_output"] is False


@pytest.mark.parametrize("path", ["model_copy", "assignment"])
async def test_no_global_cache_comes_back_after_construction(
        fake: FakeOpenAI, routed: RoutedChatModel, global_cache: Any, path: str) -> None:
    """cache=None means the global cache to LangChain: a repeat would get a stale decision."""
    if path == "model_copy":
        routed = routed.model_copy(update={"cache": None})
    else:
        routed.cache = None
    prompt = [[HumanMessage(EASY)]]
    first = routed.generate(prompt, metadata={"langroute_threshold": 0.0})
    other = await routed.agenerate(prompt, metadata={"langroute_threshold": 1.0})
    answered = [r.generations[0][0].message.response_metadata["langroute"]["answered_by"]
                for r in (first, other)]
    assert answered == [STRONG_MODEL, WEAK_MODEL]
    from langchain_core.caches import InMemoryCache

    with pytest.raises(RouterConfigError, match="cache belongs on the candidate models"):
        if path == "model_copy":
            routed.model_copy(update={"cache": InMemoryCache()})
        else:
            routed.cache = InMemoryCache()
