"""The fake OpenAI endpoint, exercised through a real ChatOpenAI and through raw HTTP."""

from __future__ import annotations

import json
from typing import Any, Literal

import httpx
import openai
import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from langchain_core.tools import tool
from pydantic import BaseModel, Field

from tests.fake_openai import FakeOpenAI, PromptHints, schema_instance, strict_schema_problem
from tests.integration_tests._tools import add


@tool
def get_weather(location: str) -> str:
    """Current weather at a place."""
    return "sunny"


class Joke(BaseModel):
    """A joke."""

    setup: str = Field(description="question to set up a joke")
    punchline: str = Field(description="answer to resolve the joke")


def _post(fake: FakeOpenAI, body: Any, **headers: str) -> httpx.Response:
    with httpx.Client(transport=fake.transport, base_url="http://fake-openai.test") as client:
        return client.post(
            "/v1/chat/completions",
            json=body,
            headers={"authorization": "Bearer test", **headers},
        )


def _body(**overrides: Any) -> dict[str, Any]:
    return {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello"}], **overrides}


# -- plain text, usage, streaming ------------------------------------------------------------------
def test_invoke_answers_from_the_prompt_and_echoes_the_model(fake: FakeOpenAI) -> None:
    result = fake.chat_openai("gpt-4o-mini").invoke("Hello there")
    assert result.content == "You said: Hello there"
    assert result.response_metadata["model_name"] == "gpt-4o-mini"
    assert result.response_metadata["finish_reason"] == "stop"
    usage = result.usage_metadata
    assert usage is not None and usage["output_tokens"] == 4  # "You", " said:", " Hello", " there"
    assert usage["total_tokens"] == usage["input_tokens"] + 4
    assert fake.models_called == ["gpt-4o-mini"]
    assert fake.requests[0].messages == [{"role": "user", "content": "Hello there"}]


def test_stream_sends_one_chunk_per_token_then_usage(fake: FakeOpenAI) -> None:
    chunks = list(fake.chat_openai("gpt-4o").stream("Hello there"))
    texts = [chunk.content for chunk in chunks if chunk.content]
    assert texts == ["You", " said:", " Hello", " there"]
    full = chunks[0]
    for chunk in chunks[1:]:
        full += chunk
    assert isinstance(full, AIMessageChunk)
    assert full.content == "You said: Hello there"
    assert full.usage_metadata is not None and full.usage_metadata["output_tokens"] == 4
    assert fake.requests[0].body["stream_options"] == {"include_usage": True}


def test_raw_stream_is_sse_ending_with_done(fake: FakeOpenAI) -> None:
    response = _post(fake, _body(stream=True))
    assert response.headers["content-type"] == "text/event-stream"
    events = response.text.split("\n\n")
    assert events[-2] == "data: [DONE]"
    chunks = [json.loads(event.removeprefix("data: ")) for event in events[:-2]]
    assert {chunk["object"] for chunk in chunks} == {"chat.completion.chunk"}
    assert all("usage" not in chunk for chunk in chunks)  # no include_usage, no usage chunk
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


async def test_async_invoke_and_stream(fake: FakeOpenAI) -> None:
    llm = fake.chat_openai("gpt-4o")
    assert (await llm.ainvoke("Hey")).content == "You said: Hey"
    text = "".join([str(chunk.content) async for chunk in llm.astream("Hey")])
    assert text == "You said: Hey"
    assert [r.headers["x-stainless-async"] for r in fake.requests] == ["async:asyncio"] * 2


def test_stop_and_max_tokens_cut_the_answer(fake: FakeOpenAI) -> None:
    llm = fake.chat_openai("gpt-4o")
    stopped = llm.invoke("one two three", stop=[" two"])
    assert stopped.content == "You said: one"
    assert stopped.response_metadata["finish_reason"] == "stop"
    short = fake.chat_openai("gpt-4o", max_tokens=2).invoke("one two three")
    assert short.content == "You said:"
    assert short.response_metadata["finish_reason"] == "length"
    assert short.usage_metadata is not None and short.usage_metadata["output_tokens"] == 2
    assert fake.requests[-1].body["max_completion_tokens"] == 2


def test_n_returns_that_many_choices(fake: FakeOpenAI) -> None:
    result = fake.chat_openai("gpt-4o", n=3).generate([[HumanMessage("hi")]])
    assert [g.text for g in result.generations[0]] == ["You said: hi"] * 3


def test_tool_result_is_mentioned_in_the_answer(fake: FakeOpenAI) -> None:
    llm = fake.chat_openai("gpt-4o").bind_tools([add])
    call = {"name": "add", "args": {"a": 1, "b": 2}, "id": "call_1", "type": "tool_call"}
    messages = [
        HumanMessage("What is 1 + 2"),
        AIMessage("", tool_calls=[call]),
        ToolMessage("3", tool_call_id="call_1"),
    ]
    result = llm.invoke(messages)
    assert result.tool_calls == []
    assert result.content == "The add tool returned: 3"


# -- tools -------------------------------------------------------------------------------------
def test_tool_call_arguments_come_from_the_prompt(fake: FakeOpenAI) -> None:
    llm = fake.chat_openai("gpt-4o").bind_tools([get_weather, add], tool_choice="any")
    result = llm.invoke("What is 3 + 4")
    assert [(c["name"], c["args"]) for c in result.tool_calls] == [
        ("get_weather", {"location": "What is 3 + 4"})
    ]
    named = fake.chat_openai("gpt-4o").bind_tools([get_weather, add], tool_choice="add")
    assert named.invoke("What is 3 + 4").tool_calls[0]["args"] == {"a": 3, "b": 4}
    assert fake.requests[-1].body["tool_choice"] == {
        "type": "function",
        "function": {"name": "add"},
    }
    assert fake.requests[-1].tool_names == ["get_weather", "add"]


def test_auto_picks_the_tool_named_in_the_prompt_and_none_disables_tools(fake: FakeOpenAI) -> None:
    llm = fake.chat_openai("gpt-4o")
    picked = llm.bind_tools([get_weather, add]).invoke("use add on 5 and 6")
    assert picked.tool_calls[0]["name"] == "add" and picked.tool_calls[0]["args"] == {
        "a": 5,
        "b": 6,
    }
    plain = llm.bind_tools([get_weather, add], tool_choice="none").invoke("use add on 5 and 6")
    assert plain.tool_calls == [] and plain.content == "You said: use add on 5 and 6"


def test_streamed_tool_call_matches_the_invoked_one(fake: FakeOpenAI) -> None:
    llm = fake.chat_openai("gpt-4o").bind_tools([add], tool_choice="any")
    full: Any = None
    for chunk in llm.stream("What is 10 + 20"):
        full = chunk if full is None else full + chunk
    assert full.tool_calls[0]["args"] == {"a": 10, "b": 20}
    assert full.tool_calls[0]["id"] == llm.invoke("What is 10 + 20").tool_calls[0]["id"]


# -- structured output -------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["json_schema", "function_calling", "json_mode"])
def test_structured_output_methods(fake: FakeOpenAI, method: str) -> None:
    prompt = "Tell me a 'cat' joke as JSON with 'setup' and 'punchline' keys"
    structured = fake.chat_openai("gpt-4o").with_structured_output(Joke, method=method)
    joke = structured.invoke(prompt)
    assert isinstance(joke, Joke)
    streamed = list(structured.stream(prompt))
    assert streamed and streamed[-1] == joke
    body = fake.requests[-1].body
    if method == "json_schema":
        assert body["response_format"]["json_schema"]["strict"] is True
        assert joke.setup == "cat"  # the first quoted phrase fills the first string field
    elif method == "function_calling":
        assert body["tool_choice"] == {"type": "function", "function": {"name": "Joke"}}
    else:
        assert body["response_format"] == {"type": "json_object"}


def test_json_object_mode_needs_the_word_json(fake: FakeOpenAI) -> None:
    response = _post(fake, _body(response_format={"type": "json_object"}))
    assert response.status_code == 400
    assert "must contain the word 'json'" in response.json()["error"]["message"]


def test_strict_schema_violations_are_rejected_like_openai(fake: FakeOpenAI) -> None:
    loose = {"type": "object", "properties": {"a": {"type": "string"}}, "required": []}
    response = _post(
        fake,
        _body(
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "Loose", "schema": loose, "strict": True},
            }
        ),
    )
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("Invalid schema for response_format")
    strict_ok = {**loose, "required": ["a"], "additionalProperties": False}
    assert strict_schema_problem(strict_ok) is None


def test_unsatisfiable_schema_is_a_400_naming_it(fake: FakeOpenAI) -> None:
    no_integer = {"type": "integer", "minimum": 5, "maximum": 1}
    impossible = {"type": "object", "properties": {"n": no_integer}, "required": ["n"]}
    tools = [{"type": "function", "function": {"name": "pick", "parameters": impossible}}]
    response = _post(fake, _body(tools=tools))
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("Invalid schema for function 'pick'")


# -- request validation and errors --------------------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "param"),
    [
        ({"temperature": 3}, "temperature"),
        ({"messages": []}, "messages"),
        ({"bogus": 1}, "bogus"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": [{"type": "text"}]}]},
         "messages[0].content[0].text"),
        ({"messages": [{"role": "tool", "content": "3", "tool_call_id": "x"}]}, "messages[0].role"),
    ],
)  # fmt: skip
def test_malformed_requests_get_openai_400s(
    fake: FakeOpenAI, overrides: dict[str, Any], param: str
) -> None:
    response = _post(fake, _body(**overrides))
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param
    assert fake.requests[-1].status == 400


def test_unanswered_tool_call_is_a_client_bug(fake: FakeOpenAI) -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "add", "arguments": "{}"}}
    messages = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "user", "content": "again"},
    ]
    response = _post(fake, _body(messages=messages))
    assert response.status_code == 400
    assert "did not have response messages: c1" in response.json()["error"]["message"]


def test_wrong_key_and_wrong_path_are_refused(fake: FakeOpenAI) -> None:
    with pytest.raises(openai.AuthenticationError):
        fake.chat_openai("gpt-4o", api_key="wrong").invoke("hi")
    with httpx.Client(transport=fake.transport) as client:
        response = client.get(
            "http://fake-openai.test/v1/models", headers={"authorization": "Bearer test"}
        )
    assert response.status_code == 404


@pytest.mark.parametrize(
    ("status", "error_class"),
    [(400, openai.BadRequestError), (429, openai.RateLimitError),
     (500, openai.InternalServerError), (503, openai.InternalServerError)],
)  # fmt: skip
def test_failure_models_raise_the_sdk_error_unchanged(
    fake: FakeOpenAI, status: int, error_class: type[Exception]
) -> None:
    with pytest.raises(error_class) as raised:
        fake.chat_openai(f"fail-{status}").invoke("hi")
    assert raised.value.status_code == status  # type: ignore[attr-defined]
    assert f"Simulated failure {status}" in str(raised.value)


def test_sdk_retries_are_visible_in_the_record(fake: FakeOpenAI) -> None:
    with pytest.raises(openai.InternalServerError):
        fake.chat_openai("fail-500", max_retries=1).invoke("hi")
    assert [r.headers["x-stainless-retry-count"] for r in fake.requests] == ["0", "1"]


def test_error_in_the_middle_of_a_stream_propagates(fake: FakeOpenAI) -> None:
    received = []
    with pytest.raises(openai.APIError, match="middle of a stream"):
        for chunk in fake.chat_openai("fail-stream").stream("one two three"):
            received.append(chunk.content)
    assert "You" in received


# -- schema instances --------------------------------------------------------------------------
def test_schema_instance_respects_bounds_refs_enums_and_arrays() -> None:
    class Item(BaseModel):
        kind: Literal["a", "b"]
        count: int = Field(gt=10, le=20)

    class Order(BaseModel):
        customer: str
        items: list[Item] = Field(min_length=2)
        note: str | None = None

    schema = Order.model_json_schema()
    value = schema_instance(schema, PromptHints.from_text("Order for 'Ada': 15 and 99"))
    order = Order.model_validate(value)
    assert order.customer == "Ada"
    assert [(i.kind, i.count) for i in order.items] == [("a", 15), ("a", 11)]  # 99 is out of range
    assert "note" not in value
    strict_value = schema_instance(schema, PromptHints.from_text(""), strict=True)
    assert strict_value["note"] == "text"
