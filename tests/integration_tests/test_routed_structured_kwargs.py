"""RoutedChatModel's structured output over real ChatOpenAI clients on the in-process fake: call
keywords reach the chosen model's request, streams with ``include_raw=True`` take them, and
an unstreamed ``include_raw=True`` stream ends with the settled record."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Callable
from typing import Any

import pytest
from langchain_core.runnables import RunnableLambda
from langchain_openai import ChatOpenAI

from langroute.chat_models import RoutedChatModel
from tests.fake_openai import FakeOpenAI
from tests.fake_openai._standard_suites import (
    STRONG_MODEL,
    WEAK_MODEL,
    fitted_router,
    routed_chat_params,
)
from tests.integration_tests._tools import Joke

JOKE = "Tell me a joke about 'cats'"  # routed to WEAK_MODEL
#: call keywords, as the request body carries them (ChatOpenAI sends max_completion_tokens)
KWARGS = {"temperature": 0.25, "max_tokens": 77, "stop": ["zz"]}
SENT = {"temperature": 0.25, "max_completion_tokens": 77, "stop": ["zz"]}
FIELDS = ("model", *SENT)
METHODS = ["json_schema", "function_calling"]


def _sent(fake: FakeOpenAI, run: Callable[[], Any]) -> tuple[Any, dict[str, Any]]:
    """What ``run`` returns, and the call fields of the one request it made."""
    fake.clear()
    out = run()
    (request,) = fake.requests
    sent = {k: request.body[k] for k in FIELDS if request.body.get(k) is not None}
    return out, {**sent, "stream": request.stream}


def _pair(fake: FakeOpenAI, **params: Any) -> tuple[Any, RoutedChatModel]:
    """A plain client of the model JOKE is routed to, and a routed model, with ``params``."""
    plain = fake.chat_openai(WEAK_MODEL, **params)
    return plain, RoutedChatModel(**routed_chat_params(fake), **params)


def _ways(model: Any, structured: dict[str, Any]) -> dict[str, Callable[[], Any]]:
    """Each way a caller gives KWARGS to a structured output of ``model``."""
    runnable = model.with_structured_output(Joke, **structured)
    return {
        "invoke": lambda: runnable.invoke(JOKE, **KWARGS),
        "bind": lambda: runnable.bind(**KWARGS).invoke(JOKE),
        "ainvoke": lambda: asyncio.run(runnable.ainvoke(JOKE, **KWARGS)),
        "batch": lambda: runnable.batch([JOKE], **KWARGS)[0],
    }


# -- 1. call keywords reach the provider on invoke ------------------------------------------------
@pytest.mark.parametrize("include_raw", [False, True])
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("way", ["invoke", "bind", "ainvoke", "batch"])
def test_per_call_keywords_reach_the_request_of_a_structured_invoke(
        fake: FakeOpenAI, method: str, include_raw: bool, way: str) -> None:
    """The routed call asks for the raw message (include_raw), whose RunnableParallel drops
    call keywords: none reached the provider. Now they do, as with a plain client's
    ``include_raw=False`` runnable (its ``include_raw=True`` one drops them: the routed one
    sends them all the same)."""
    plain, routed = _pair(fake)
    structured = {"method": method, "include_raw": include_raw}
    plain_out, plain_sent = _sent(fake, _ways(plain, structured)[way])
    out, sent = _sent(fake, _ways(routed, structured)[way])
    assert sent == {"model": WEAK_MODEL, "stream": False, **SENT}
    assert plain_sent.items() <= sent.items()
    assert (out["parsed"] if include_raw else out) == (
        plain_out["parsed"] if include_raw else plain_out)


@pytest.mark.parametrize("include_raw", [False, True])
@pytest.mark.parametrize("method", METHODS)
def test_a_per_call_model_override_is_the_model_called(fake: FakeOpenAI, method: str,
                                                       include_raw: bool) -> None:
    """``model=`` is the chosen client's own override: the record said ``gpt-4.1`` was
    called while the request went to the client's model."""
    routed = RoutedChatModel(**routed_chat_params(fake))
    structured = routed.with_structured_output(Joke, method=method, include_raw=include_raw)
    out, sent = _sent(fake, lambda: structured.invoke(JOKE, model="gpt-4.1"))
    assert sent["model"] == "gpt-4.1"
    if include_raw:
        assert out["raw"].response_metadata["langroute"]["provider_model"] == "gpt-4.1"
    else:
        assert isinstance(out, Joke)


@pytest.mark.parametrize("include_raw", [False, True])
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("entry", ["invoke", "stream"])
def test_the_routed_models_own_parameters_reach_the_request(
        fake: FakeOpenAI, method: str, include_raw: bool, entry: str) -> None:
    """``RoutedChatModel(temperature=..., max_tokens=..., stop=...)`` as
    ``ChatOpenAI(temperature=...)``: the same request, on invoke and on stream (invoke sent
    none; an include_raw stream raised TypeError)."""
    plain, routed = _pair(fake, **KWARGS)
    for model in (plain, routed):
        runnable = model.with_structured_output(Joke, method=method, include_raw=include_raw)
        run = (lambda r=runnable: r.invoke(JOKE)) if entry == "invoke" else (
            lambda r=runnable: list(r.stream(JOKE)))
        _, sent = _sent(fake, run)
        assert sent == {"model": WEAK_MODEL, "stream": entry == "stream", **SENT}


@pytest.mark.parametrize("include_raw", [False, True])
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("entry", ["invoke", "ainvoke", "stream"])
def test_streaming_true_streams_the_request_as_a_plain_clients_does(
        fake: FakeOpenAI, method: str, include_raw: bool, entry: str) -> None:
    """``streaming=True`` streams even under invoke, as ``ChatOpenAI(streaming=True)`` (invoke
    did not stream; an include_raw stream raised TypeError on its ``stream=True``)."""
    plain, routed = _pair(fake, streaming=True)
    answers = []
    for model in (plain, routed):
        runnable = model.with_structured_output(Joke, method=method, include_raw=include_raw)
        run = {"invoke": lambda r=runnable: r.invoke(JOKE),
               "ainvoke": lambda r=runnable: asyncio.run(r.ainvoke(JOKE)),
               "stream": lambda r=runnable: list(r.stream(JOKE))[-1]}[entry]
        out, sent = _sent(fake, run)
        assert sent == {"model": WEAK_MODEL, "stream": True}
        answers.append(out)
    if entry != "stream":
        plain_out, out = answers
        assert (out["parsed"] if include_raw else out) == (
            plain_out["parsed"] if include_raw else plain_out)


# -- 2. an include_raw=True stream takes call keywords ---------------------------------------------
def _merged(items: list[Any]) -> dict[str, Any]:
    whole = items[0]
    for item in items[1:]:
        whole = whole + item
    return whole


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("entry", ["stream", "astream"])
def test_an_include_raw_stream_takes_call_keywords(fake: FakeOpenAI, method: str,
                                                   entry: str) -> None:
    """It raised ``TypeError: RunnableParallel._transform() got an unexpected keyword
    argument``; now the keywords reach the streamed request and the stream ends with the
    record invoke gives."""
    routed = RoutedChatModel(**routed_chat_params(fake))
    structured = routed.with_structured_output(Joke, method=method, include_raw=True)

    async def collect() -> list[Any]:
        return [item async for item in structured.astream(JOKE, **KWARGS)]

    items, sent = _sent(fake, lambda: list(structured.stream(JOKE, **KWARGS))
                        if entry == "stream" else asyncio.run(collect()))
    assert sent == {"model": WEAK_MODEL, "stream": True, **SENT}
    whole = structured.invoke(JOKE, **KWARGS)
    merged = _merged(items)
    assert merged["parsed"] == whole["parsed"] and merged["parsing_error"] is None
    record = merged["raw"].response_metadata["langroute"]
    assert sorted(record) == sorted(whole["raw"].response_metadata["langroute"])


# -- 3. an unstreamed include_raw=True stream ends with the settled record -----------------------
def _unstreamed(fake: FakeOpenAI) -> RoutedChatModel:
    """Candidates without structured outputs (gpt-4): their structured output sends the schema
    as a tool, so ``disable_streaming="tool_calling"`` keeps them from streaming."""
    models = {name: fake.chat_openai("gpt-4") for name in (STRONG_MODEL, WEAK_MODEL)}
    return RoutedChatModel(models=models, router=fitted_router(), threshold=0.7,
                           disable_streaming="tool_calling")


@pytest.mark.parametrize("entry", ["stream", "astream"])
def test_an_unstreamed_include_raw_stream_ends_with_the_attempts(fake: FakeOpenAI,
                                                                   entry: str) -> None:
    """Its one item carried the opening record only (no ``attempts``): the invoked raw
    message was an AIMessage, which no closing chunk could be added to. Now it ends as a
    streamed one does: the answer, then a ``{"raw"}`` item with the settled record."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Cannot use method='json_schema'", UserWarning)
        structured = _unstreamed(fake).with_structured_output(Joke, include_raw=True)
        whole = structured.invoke(JOKE)

        async def collect() -> list[Any]:
            return [item async for item in structured.astream(JOKE)]

        items, sent = _sent(fake, lambda: list(structured.stream(JOKE))
                            if entry == "stream" else asyncio.run(collect()))
    assert not sent["stream"]
    expected = whole["raw"].response_metadata["langroute"]
    answer, closing = items
    assert answer["parsed"] == whole["parsed"] and answer["parsing_error"] is None
    assert "attempts" not in answer["raw"].response_metadata["langroute"]
    assert closing["raw"].response_metadata["langroute"].keys() == {"attempts"}
    merged = _merged(items)
    assert merged["raw"].tool_calls == whole["raw"].tool_calls
    record = merged["raw"].response_metadata["langroute"]
    assert sorted(record) == sorted(expected)
    assert [(a["model"], a["outcome"]) for a in record["attempts"]] == [
        (a["model"], a["outcome"]) for a in expected["attempts"]]
    assert record["attempts"][0]["usage"] == expected["attempts"][0]["usage"]


# -- a structured output whose call of the model cannot be found -----------------------------------
class _OpaqueStructured(ChatOpenAI):
    """A client whose structured output hides its call of the model in a lambda."""

    def with_structured_output(self, schema: Any, **kwargs: Any) -> Any:
        return RunnableLambda(lambda messages: self.invoke(messages))


def test_call_keywords_a_structured_output_cannot_take_are_an_error(fake: FakeOpenAI) -> None:
    """Not a call without them: the error names the keywords and what to do."""
    models = {name: _OpaqueStructured(**fake.chat_openai_params(name))
              for name in (STRONG_MODEL, WEAK_MODEL)}
    routed = RoutedChatModel(models=models, router=fitted_router(), threshold=0.7)
    structured = routed.with_structured_output(Joke, method="json_schema")
    with pytest.raises(NotImplementedError, match=r"\['temperature'\] cannot reach it"):
        structured.invoke(JOKE, temperature=0.5)
    assert fake.requests == []
