"""RoutedChatModel's streaming opt-outs hold under token streams, as ChatOpenAI's do."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from langgraph.graph import START, MessagesState, StateGraph

from langroute.chat_models import RoutedChatModel
from tests.fake_openai import FakeOpenAI
from tests.fake_openai._standard_suites import WEAK_MODEL, routed_chat_params
from tests.integration_tests._tools import add


def _opted_out(fake: FakeOpenAI, opt_out: dict[str, Any]) -> list[tuple[str, Any]]:
    """The plain client and the routed model, both with ``opt_out``; tools bound when the
    opt-out is ``disable_streaming="tool_calling"``."""
    plain = fake.chat_openai(WEAK_MODEL, **opt_out)
    routed = RoutedChatModel(**routed_chat_params(fake), **opt_out)
    pairs = [("ChatOpenAI", plain), ("RoutedChatModel", routed)]
    if opt_out.get("disable_streaming") == "tool_calling":
        return [(name, model.bind_tools([add])) for name, model in pairs]
    return pairs


OPT_OUTS = [{"disable_streaming": True}, {"disable_streaming": "tool_calling"},
            {"streaming": False}]


@pytest.mark.parametrize("opt_out", OPT_OUTS, ids=["disable", "tool_calling", "streaming=False"])
async def test_astream_events_make_no_streamed_request_when_streaming_is_off(
        fake: FakeOpenAI, opt_out: dict[str, Any]) -> None:
    for name, model in _opted_out(fake, opt_out):
        fake.clear()
        events = [event["event"] async for event in model.astream_events("Hello", version="v2")]
        assert [request.stream for request in fake.requests] == [False], name
        assert "on_chat_model_stream" not in events, name
        assert "on_chat_model_end" in events, name


@pytest.mark.parametrize("opt_out", OPT_OUTS, ids=["disable", "tool_calling", "streaming=False"])
async def test_langgraph_messages_stream_gets_one_whole_message_when_streaming_is_off(
        fake: FakeOpenAI, opt_out: dict[str, Any]) -> None:
    for name, model in _opted_out(fake, opt_out):

        async def node(state: MessagesState, model: Any = model) -> dict[str, Any]:
            return {"messages": [await model.ainvoke(state["messages"])]}

        graph = StateGraph(MessagesState)
        graph.add_node("chat", node)
        graph.add_edge(START, "chat")
        fake.clear()
        items = [chunk async for chunk, _ in graph.compile().astream(
            {"messages": [HumanMessage("Hello")]}, stream_mode="messages")]
        assert [request.stream for request in fake.requests] == [False], name
        assert len(items) == 1, name


async def test_token_streams_still_stream_without_tools_under_tool_calling(
        fake: FakeOpenAI) -> None:
    """``disable_streaming="tool_calling"`` opts out only while tools are bound."""
    routed = RoutedChatModel(**routed_chat_params(fake), disable_streaming="tool_calling")
    events = [event["event"] async for event in routed.astream_events("Hello", version="v2")]
    assert [request.stream for request in fake.requests] == [True]
    assert "on_chat_model_stream" in events


async def test_tool_calling_opt_out_covers_function_calling_structured_output(
        fake: FakeOpenAI) -> None:
    """``with_structured_output(method="function_calling")`` binds its schema as a tool, so
    ``disable_streaming="tool_calling"`` keeps ChatOpenAI from streaming; the routed model
    did not see that tool and streamed."""
    from pydantic import BaseModel

    class Answer(BaseModel):
        value: int

    plain = fake.chat_openai(WEAK_MODEL, disable_streaming="tool_calling")
    routed = RoutedChatModel(**routed_chat_params(fake), disable_streaming="tool_calling")
    for name, model in [("ChatOpenAI", plain), ("RoutedChatModel", routed)]:
        fake.clear()
        structured = model.with_structured_output(Answer, method="function_calling")
        [event async for event in structured.astream_events("Hello", version="v2")]
        assert [request.stream for request in fake.requests] == [False], name
