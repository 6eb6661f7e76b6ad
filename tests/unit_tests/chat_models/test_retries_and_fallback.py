"""Standard ``timeout`` / ``max_retries``, and fallback along the ladder after retries.

Retryable errors (rate limit, timeout, connection error, 5xx) retry the chosen model with
backoff (the waits are recorded, not slept), then fall back to a stronger rung; anything else
propagates at once. Every attempt is traced and listed in the answer's metadata.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import openai
import pytest
from langchain_core.callbacks import UsageMetadataCallbackHandler
from langchain_core.messages import AIMessage, HumanMessage

from langroute import CallTimeoutError
from langroute.chat_models import RoutedChatModel

from .fakes import EASY, HARD, STRONG, THRESHOLD, WEAK, ScriptedChatModel


def _status_error(status: int, headers: dict[str, str] | None = None) -> openai.APIStatusError:
    request = httpx.Request("POST", "http://provider.test/v1/chat/completions")
    response = httpx.Response(status, headers=headers or {}, request=request)
    cls = {429: openai.RateLimitError, 500: openai.InternalServerError,
           400: openai.BadRequestError, 401: openai.AuthenticationError}[status]
    return cls(f"simulated {status}", response=response, body=None)


@pytest.fixture
def waits(routed: RoutedChatModel) -> list[float]:
    recorded: list[float] = []

    async def asleep(seconds: float) -> None:
        recorded.append(seconds)

    routed.pipeline.sleep = recorded.append
    routed.pipeline.asleep = asleep
    return recorded


def test_retry_then_success_honours_retry_after(routed, weak, waits, recorder):
    weak.errors = [_status_error(429, {"retry-after": "3"}), _status_error(500)]
    answer = routed.invoke(EASY, {"callbacks": [recorder]})
    assert answer.content == f"answer from {WEAK}"
    assert waits[0] == 3.0  # the provider's Retry-After
    assert 0 < waits[1] <= 20.0  # exponential backoff with jitter
    attempts = answer.response_metadata["langroute"]["attempts"]
    assert [(a["model"], a["purpose"], a["outcome"]) for a in attempts] == [
        (WEAK, "answer", "error"), (WEAK, "retry", "error"), (WEAK, "retry", "ok")]
    assert "RateLimitError" in attempts[0]["error"]


def test_retries_spent_then_fallback_goes_stronger(routed, strong, weak, waits, recorder):
    weak.error = _status_error(500)
    handler = UsageMetadataCallbackHandler()
    answer = routed.invoke(EASY, {"callbacks": [recorder, handler]})
    record = answer.response_metadata["langroute"]
    assert record["model"] == WEAK and record["answered_by"] == STRONG
    assert [a["model"] for a in record["attempts"]] == [WEAK, WEAK, WEAK, STRONG]
    assert record["attempts"][-1]["purpose"] == "fallback"
    fallbacks = [e["data"] for e in recorder.events if e["name"] == "langroute.fallback"]
    assert fallbacks == [{"decision_id": record["decision_id"], "failed_model": WEAK,
                          "error": "InternalServerError", "message": "simulated 500",
                          "next_model": STRONG, "attempts": 3}]
    assert len(waits) == 2
    # usage: exactly the one provider call that answered (failed calls report none)
    assert handler.usage_metadata == {STRONG: {"input_tokens": 10, "output_tokens": 3,
                                               "total_tokens": 13}}


@pytest.mark.parametrize("status", [400, 401])
def test_non_retryable_errors_propagate_at_once(routed, strong, weak, waits, status):
    error = _status_error(status)
    weak.error = error
    with pytest.raises(type(error)) as info:
        routed.invoke(EASY)
    assert info.value is error
    assert len(weak.received) == 1 and strong.received == [] and waits == []


def test_fallback_cheaper_and_none(strong, weak, router):
    strong.error = ConnectionError("down")
    cheaper = RoutedChatModel(models={STRONG: strong, WEAK: weak}, router=router,
                              threshold=THRESHOLD, max_retries=0, fallback="cheaper")
    assert cheaper.invoke(HARD).response_metadata["langroute"]["answered_by"] == WEAK
    none = RoutedChatModel(models={STRONG: strong, WEAK: weak}, router=router,
                           threshold=THRESHOLD, max_retries=0, fallback=None)
    with pytest.raises(ConnectionError):
        none.invoke(HARD)
    # the top rung has nothing stronger to fall back to
    stronger = RoutedChatModel(models={STRONG: strong, WEAK: weak}, router=router,
                               threshold=THRESHOLD, max_retries=0)
    with pytest.raises(ConnectionError):
        stronger.invoke(HARD)


async def test_async_retry_and_fallback(routed, strong, weak, waits):
    weak.error = _status_error(429)
    answer = await routed.ainvoke(EASY)
    assert answer.response_metadata["langroute"]["answered_by"] == STRONG
    assert len(waits) == 2


def test_stream_falls_back_before_the_first_chunk(routed, strong, weak, waits):
    weak.errors = [ConnectionError("reset")] * 3
    chunks = list(routed.stream(EASY))
    assert "".join(str(c.content) for c in chunks) == f"answer from {STRONG}"
    assert chunks[0].response_metadata["langroute"]["answered_by"] == STRONG


def test_stream_error_after_the_first_chunk_propagates(routed, strong, weak, waits):
    boom = ConnectionError("mid-stream")
    weak.fail_mid_stream = (2, boom)
    seen = []
    with pytest.raises(ConnectionError) as info:
        for chunk in routed.stream(EASY):
            seen.append(chunk)
    assert info.value is boom and len(seen) == 2 and strong.received == []


def test_generate_path_falls_back_too(routed, strong, weak, waits):
    weak.error = _status_error(500)
    result = routed.generate([[HumanMessage(EASY)]])
    message = result.generations[0][0].message
    assert isinstance(message, AIMessage)
    assert message.response_metadata["langroute"]["answered_by"] == STRONG


class SlowModel(ScriptedChatModel):
    delay: float = 0.5

    def _generate(self, *args: Any, **kwargs: Any) -> Any:
        time.sleep(self.delay)
        return super()._generate(*args, **kwargs)

    async def _agenerate(self, *args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(self.delay)
        return super()._generate(*args, **kwargs)

    def _stream(self, *args: Any, **kwargs: Any) -> Any:
        time.sleep(self.delay)  # before the first chunk
        yield from super()._stream(*args, **kwargs)


@pytest.mark.parametrize("is_async", [False, True])
async def test_timeout_is_retryable_and_falls_back(strong, router, is_async):
    slow = SlowModel(model_name=WEAK)
    routed = RoutedChatModel(models={STRONG: strong, WEAK: slow}, router=router,
                             threshold=THRESHOLD, timeout=0.05, max_retries=0)
    answer = await routed.ainvoke(EASY) if is_async else routed.invoke(EASY)
    attempts = answer.response_metadata["langroute"]["attempts"]
    assert attempts[0]["outcome"] == "error" and "CallTimeoutError" in attempts[0]["error"]
    assert answer.response_metadata["langroute"]["answered_by"] == STRONG
    assert issubclass(CallTimeoutError, TimeoutError)


@pytest.mark.parametrize("is_async", [False, True])
async def test_a_stream_silent_past_the_timeout_is_retryable_and_falls_back(strong, router,
                                                                           is_async):
    """The sync stream once waited for its first chunk however long it took."""
    slow = SlowModel(model_name=WEAK)
    routed = RoutedChatModel(models={STRONG: strong, WEAK: slow}, router=router,
                             threshold=THRESHOLD, timeout=0.05, max_retries=0)
    started = time.perf_counter()
    if is_async:
        chunks = [chunk async for chunk in routed.astream(EASY)]
    else:
        chunks = list(routed.stream(EASY))
    assert time.perf_counter() - started < slow.delay  # did not wait for the slow model
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged += chunk
    record = merged.response_metadata["langroute"]
    assert record["attempts"][0]["outcome"] == "error"
    assert "CallTimeoutError" in record["attempts"][0]["error"]
    assert "the stream sent nothing within timeout=0.05 s" in record["attempts"][0]["error"]
    assert record["answered_by"] == STRONG
    assert "".join(str(c.content) for c in chunks) == f"answer from {STRONG}"


def test_standard_parameters_are_accepted(strong, weak, router):
    routed = RoutedChatModel(models={STRONG: strong, WEAK: weak}, router=router,
                             threshold=THRESHOLD, timeout=60, max_retries=2)
    assert routed.pipeline.timeout == 60.0 and routed.pipeline.retry.max_retries == 2
