"""RoutedChatModel over real ChatOpenAI clients on the in-process fake: the routed model's own
``output_version``, ``disable_streaming`` and cascade hold on every entry path."""

from __future__ import annotations

import asyncio
import warnings
from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessageChunk, HumanMessage

from langroute.cascade import Cascade, FunctionScorer
from langroute.chat_models import RoutedChatModel
from tests.fake_openai import FakeOpenAI
from tests.fake_openai._standard_suites import (
    STRONG_MODEL,
    WEAK_MODEL,
    fitted_router,
    routed_chat_params,
)
from tests.integration_tests._tools import Joke, add

HARD = "What is 17 * 23?"  # routed to STRONG_MODEL
EASY = "Hello"  # routed to WEAK_MODEL
JOKE = "Tell me a joke about 'cats'"  # routed to WEAK_MODEL


def _merged(chunks: list[Any]) -> Any:
    whole = chunks[0]
    for chunk in chunks[1:]:
        whole = whole + chunk
    return whole


# -- 1. output_version="v1" on the routed model: v1 content blocks on every path -------------
V1_TEXT = [{"type": "text", "text": f"You said: {EASY}"}]


def _contents(model: Any, entry: str) -> tuple[list[Any], Any]:
    """Each piece's content as ``entry`` hands it out, and the whole answer's content."""
    if entry == "invoke":
        message = model.invoke(EASY)
        return [message.content], message.content
    if entry == "ainvoke":
        message = asyncio.run(model.ainvoke(EASY))
        return [message.content], message.content
    if entry == "batch":
        (message,) = model.batch([EASY])
        return [message.content], message.content
    if entry == "generate":
        message = model.generate([[HumanMessage(EASY)]]).generations[0][0].message
        return [message.content], message.content
    if entry == "stream":
        chunks = list(model.stream(EASY))
    elif entry == "astream":

        async def collect() -> list[Any]:
            return [chunk async for chunk in model.astream(EASY)]

        chunks = asyncio.run(collect())
    else:  # astream_events: the chat-model run's own stream events

        async def collect() -> list[Any]:
            return [event["data"]["chunk"]
                    async for event in model.astream_events(EASY, version="v2")
                    if event["event"] == "on_chat_model_stream"]

        chunks = asyncio.run(collect())
    return [chunk.content for chunk in chunks], _merged(chunks).content


@pytest.mark.parametrize("entry", ["invoke", "ainvoke", "batch", "generate", "stream",
                                   "astream", "astream_events"])
def test_output_version_v1_on_the_routed_model_gives_v1_content_on_every_path(
        fake: FakeOpenAI, entry: str) -> None:
    """As ``ChatOpenAI(output_version="v1")``: every message and chunk carries a list of v1
    content blocks. Only generate() did (BaseChatModel converts its result); invoke, stream
    and the event streams handed out the candidate's strings."""
    routed = RoutedChatModel(**routed_chat_params(fake), output_version="v1")
    plain = fake.chat_openai(WEAK_MODEL, output_version="v1")
    pieces, whole = _contents(routed, entry)
    plain_pieces, plain_whole = _contents(plain, entry)
    assert all(isinstance(piece, list) for piece in pieces)
    assert [{k: v for k, v in b.items() if k != "index"} for b in whole] == V1_TEXT
    assert whole == plain_whole
    if entry in ("stream", "astream"):  # the routed stream ends with its record's chunk
        assert pieces == [*plain_pieces, []]
    else:
        assert pieces == plain_pieces
    assert {request.model for request in fake.requests} == {WEAK_MODEL}


def test_output_version_v1_keeps_the_tool_calls_and_the_record(fake: FakeOpenAI) -> None:
    routed = RoutedChatModel(**routed_chat_params(fake, threshold=0.0), output_version="v1")
    message = routed.bind_tools([add], tool_choice="any").invoke("What is 3 + 4")
    assert [block["type"] for block in message.content] == ["tool_call"]
    assert message.tool_calls[0]["args"] == {"a": 3, "b": 4}
    assert message.response_metadata["langroute"]["answered_by"] == STRONG_MODEL
    chunks = list(routed.stream(HARD))
    assert _merged(chunks).response_metadata["langroute"]["attempts"]


def test_output_version_leaves_the_candidates_themselves_unchanged(fake: FakeOpenAI) -> None:
    """The v1 answer comes from a copy: the caller's clients keep their own setting."""
    routed = RoutedChatModel(**routed_chat_params(fake), output_version="v1")
    routed.invoke(EASY)
    assert all(model.output_version is None for model in routed.models.values())
    assert isinstance(routed.models[WEAK_MODEL].invoke(EASY).content, str)


# -- 2. generate() with a cascade: only the accepted answer's tokens reach the run -------------
class _Tokens(BaseCallbackHandler):
    """An ordinary token handler (not a LangChain token stream), as a UI would attach."""

    def __init__(self) -> None:
        self.tokens: list[Any] = []
        self.events: list[tuple[str, Any]] = []

    def on_llm_new_token(self, token: Any, **kwargs: Any) -> None:
        self.tokens.append(token)

    def on_custom_event(self, name: str, data: Any, **kwargs: Any) -> None:
        self.events.append((name, data))


def _cascaded(fake: FakeOpenAI, score: float) -> RoutedChatModel:
    """The weak client cuts its answer to two tokens, so the two answers differ; the routed
    model streams (``streaming=True``), so the chosen client streams its tokens to the run."""
    models = {STRONG_MODEL: fake.chat_openai(STRONG_MODEL),
              WEAK_MODEL: fake.chat_openai(WEAK_MODEL, max_tokens=2)}
    return RoutedChatModel(models=models, router=fitted_router(), threshold=0.7,
                           streaming=True,
                           cascade=Cascade(FunctionScorer(lambda messages, answer: score),
                                           accept=0.5))


def _generate(model: RoutedChatModel, handler: _Tokens, mode: str) -> Any:
    messages = [[HumanMessage(EASY)]]
    if mode == "sync":
        result = model.generate(messages, callbacks=[handler])
    else:
        result = asyncio.run(model.agenerate(messages, callbacks=[handler]))
    return result.generations[0][0].message


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_generate_keeps_a_rejected_cascade_answers_tokens_from_the_run(fake: FakeOpenAI,
                                                                       mode: str) -> None:
    """The weak answer is rejected and the strong one returned: the run's token handlers
    saw the rejected answer's tokens too ("You said:" then "You said: Hello")."""
    handler = _Tokens()
    message = _generate(_cascaded(fake, score=0.0), handler, mode)
    assert fake.models_called == [WEAK_MODEL, STRONG_MODEL]
    assert all(request.stream for request in fake.requests)
    assert message.content == f"You said: {EASY}"
    assert "".join(map(str, handler.tokens)) == message.content
    # the rejected attempt is still traced, as before
    attempts = [data for name, data in handler.events if name == "langroute.attempt"]
    assert [(a["model"], a["usage"] is not None) for a in attempts] == [
        (WEAK_MODEL, True), (STRONG_MODEL, True)]
    assert [a["outcome"] for a in message.response_metadata["langroute"]["attempts"]] == [
        "escalated", "accepted"]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_generate_gives_an_accepted_cascade_answers_tokens_once_it_is_accepted(
        fake: FakeOpenAI, mode: str) -> None:
    handler = _Tokens()
    message = _generate(_cascaded(fake, score=1.0), handler, mode)
    assert fake.models_called == [WEAK_MODEL]
    assert message.content == "You said:"
    assert "".join(map(str, handler.tokens)) == message.content


# -- 3. disable_streaming="tool_calling" sees the tools a structured output sends --------------
def _structured_by_both(fake: FakeOpenAI, client_model: str, **structured: Any
                        ) -> list[tuple[str, Any]]:
    """The same structured output on a plain client and on a routed model over such clients,
    both with ``disable_streaming="tool_calling"``."""
    plain = fake.chat_openai(client_model, disable_streaming="tool_calling")
    models = {name: fake.chat_openai(client_model) for name in (STRONG_MODEL, WEAK_MODEL)}
    routed = RoutedChatModel(models=models, router=fitted_router(), threshold=0.7,
                             disable_streaming="tool_calling")
    return [(name, model.with_structured_output(Joke, **structured))
            for name, model in [("ChatOpenAI", plain), ("RoutedChatModel", routed)]]


# ChatOpenAI binds the schema as a tool with no method= given for a model without structured
# outputs (gpt-4: its json_schema default becomes function_calling, with a UserWarning), and
# sends tools with json_schema when tools= are given too (then the fake calls that tool)
SENDS_TOOLS = [("gpt-4", {}, ["Joke"]), ("gpt-4o-mini", {"tools": [add], "strict": True}, ["add"])]


@pytest.mark.parametrize(("client_model", "structured", "tools"), SENDS_TOOLS,
                         ids=["default-method", "json_schema-with-tools"])
async def test_tool_calling_opt_out_sees_tools_the_candidates_structured_output_sends(
        fake: FakeOpenAI, client_model: str, structured: dict[str, Any],
        tools: list[str]) -> None:
    """As the plain client: no streamed request, no token events; the routed model streamed
    (it counted only ``method="function_calling"`` as sending tools)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Cannot use method='json_schema'", UserWarning)
        pairs = _structured_by_both(fake, client_model, **structured)
        for name, runnable in pairs:
            fake.clear()
            events = [event["event"]
                      async for event in runnable.astream_events(JOKE, version="v2")]
            assert [(r.stream, r.tool_names) for r in fake.requests] == [(False, tools)], name
            assert "on_chat_model_stream" not in events, name
        routed = pairs[1][1]
        whole = await routed.ainvoke(JOKE)
        fake.clear()
        # one item, the answer invoke gives (the plain client's stream hands its parser the
        # whole message, which its tool parser drops: it yields nothing)
        assert [item async for item in routed.astream(JOKE)] == [whole]
        assert list(routed.stream(JOKE)) == [whole]
        assert [request.stream for request in fake.requests] == [False, False]


async def test_tool_calling_opt_out_still_streams_a_structured_output_sent_without_tools(
        fake: FakeOpenAI) -> None:
    """ChatOpenAI's json_schema default sends no tools: it streams, as the plain client does."""
    for name, runnable in _structured_by_both(fake, "gpt-4o-mini"):
        fake.clear()
        events = [event["event"] async for event in runnable.astream_events(JOKE, version="v2")]
        assert [(r.stream, r.tool_names) for r in fake.requests] == [(True, [])], name
        assert "on_chat_model_stream" in events, name


@pytest.mark.parametrize("streaming", [False, True])
def test_tool_calling_opt_out_asks_the_candidate_that_answers(fake: FakeOpenAI,
                                                               streaming: bool) -> None:
    """Candidates differ: the one without structured outputs (gpt-4) gets the schema as a
    tool and does not stream, even with the routed model's ``streaming=True``; the other
    streams."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Cannot use method='json_schema'", UserWarning)
        models = {STRONG_MODEL: fake.chat_openai("gpt-4"),
                  WEAK_MODEL: fake.chat_openai(WEAK_MODEL)}
        routed = RoutedChatModel(models=models, router=fitted_router(), threshold=0.7,
                                 disable_streaming="tool_calling",
                                 **({"streaming": True} if streaming else {}))
        structured = routed.with_structured_output(Joke)
        for prompt, client, streamed in [(HARD, "gpt-4", False), (JOKE, WEAK_MODEL, True)]:
            fake.clear()
            items = list(structured.stream(prompt))
            assert [(r.model, r.stream) for r in fake.requests] == [(client, streamed)]
            assert items[-1] == structured.invoke(prompt)


def test_the_closing_chunk_of_a_v1_stream_has_list_content(fake: FakeOpenAI) -> None:
    routed = RoutedChatModel(**routed_chat_params(fake), output_version="v1")
    closing = list(routed.stream(EASY))[-1]
    assert isinstance(closing, AIMessageChunk) and closing.content == []
    assert closing.response_metadata["langroute"]["attempts"]
