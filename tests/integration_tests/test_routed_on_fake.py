"""RoutedChatModel over two real ChatOpenAI clients, checked on the wire: what the fake received."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from langchain_core.callbacks import UsageMetadataCallbackHandler
from langchain_core.messages import HumanMessage
from langchain_core.tools import tool
from pydantic import BaseModel

from langroute.chat_models import RoutedChatModel
from tests.fake_openai import FakeOpenAI
from tests.fake_openai._standard_suites import (
    STRONG_MODEL,
    WEAK_MODEL,
    fitted_router,
    routed_chat_params,
)

HARD = "What is 17 * 23?"
EASY = "Hello"


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


class Joke(BaseModel):
    """A joke."""

    setup: str
    punchline: str


@pytest.fixture
def fake() -> FakeOpenAI:
    return FakeOpenAI()


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
