"""The LlamaIndex side of one routed call: how the pipeline calls a candidate LLM.

``LlamaCaller`` implements langroute's ``Caller`` protocol for one call of ``RoutedLLM``: it
calls the chosen candidate's own public method (``chat``, ``complete``, their stream and async
forms), so the candidate's ``llm_chat_callback`` emits its LLMChatStart/End events and callback
payloads exactly once. Tools are formatted at call time by the chosen candidate's own
``_prepare_chat_with_tools``, and a ``predict`` template (or a structured-output program's
messages) by the chosen candidate's own prompt settings (``_prompts``). Answers become
langroute ``Answer`` records with the provider's exact token usage. A streamed call whose
answer a cascade will still score (``ref.provisional``) is made with ``chat``/``complete`` and
delivered as one chunk: it is buffered anyway, and a rejected answer's tokens must not reach
``LLMChatInProgressEvent`` handlers. Candidates are called with the routed call's span and its
RoutedLLM's callback manager active (``running``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    CompletionResponse,
    ToolCallBlock,
)
from llama_index.core.callbacks import CallbackManager
from llama_index.core.instrumentation.span import active_span_id
from llama_index.core.llms import LLM

from langroute import RouterConfigError
from langroute.pipeline import Answer, ModelRef, Usage

from ._callbacks import reporting_to
from ._messages import as_messages, stamp_response, unstamped
from ._prompts import TemplateCall
from .events import dispatch

if TYPE_CHECKING:
    from llama_index.core.tools.types import BaseTool

__all__ = ["LlamaCaller", "ToolsRequest", "answer_of", "usage_of"]


@dataclass(frozen=True)
class ToolsRequest:
    """A ``chat_with_tools`` call held back until a candidate is chosen, then formatted by that
    candidate's own ``_prepare_chat_with_tools``."""

    tools: tuple[BaseTool, ...]
    verbose: bool = False
    allow_parallel_tool_calls: bool = False
    tool_required: bool = False
    kwargs: dict[str, Any] = field(default_factory=dict)


def _int(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)


def usage_of(response: ChatResponse | CompletionResponse) -> Usage | None:
    """The tokens a provider reported for one response: LlamaIndex's ``additional_kwargs``
    counts (``prompt_tokens`` / ``completion_tokens``), else the raw response's ``usage``."""
    extra = response.additional_kwargs
    if "prompt_tokens" in extra or "completion_tokens" in extra:
        usage: Any = extra
    else:
        usage = _get(response.raw, "usage") if response.raw is not None else None
        if usage is None:
            return None
    prompt = _int(_get(usage, "prompt_tokens") or _get(usage, "input_tokens"))
    completion = _int(_get(usage, "completion_tokens") or _get(usage, "output_tokens"))
    raw_usage = _get(response.raw, "usage") if response.raw is not None else None
    details_in = _get(raw_usage, "prompt_tokens_details") if raw_usage is not None else None
    details_out = _get(raw_usage, "completion_tokens_details") if raw_usage is not None else None
    return Usage(
        input_tokens=prompt,
        output_tokens=completion,
        cache_read_tokens=_int(_get(details_in, "cached_tokens")) if details_in else 0,
        reasoning_tokens=_int(_get(details_out, "reasoning_tokens")) if details_out else 0,
    )


def _sampled_logprobs(raw: Any) -> tuple[float, ...] | None:
    """Log-probabilities of the sampled tokens, when an OpenAI-style raw response has them."""
    choices = _get(raw, "choices") if raw is not None else None
    if not choices:
        return None
    content = _get(_get(choices[0], "logprobs"), "content")
    if not content:
        return None
    values = [_get(token, "logprob") for token in content]
    return tuple(float(v) for v in values if isinstance(v, (int, float)))


def _stream_logprobs(chunks: Sequence[Any]) -> tuple[float, ...] | None:
    """The sampled tokens' log-probabilities of a whole stream (each chunk's raw carries its
    own tokens'; a cascade's provisional call is one chunk whose raw is the whole response)."""
    found = [lp for lp in (_sampled_logprobs(c.raw) for c in chunks) if lp is not None]
    return tuple(v for lp in found for v in lp) if found else None


def answer_of(response: ChatResponse | CompletionResponse) -> Answer:
    """One LlamaIndex response as the pipeline's ``Answer`` (the response stays in ``raw``)."""
    if isinstance(response, ChatResponse):
        message = response.message
        text = message.content or ""
        calls = sum(isinstance(b, ToolCallBlock) for b in message.blocks) or len(
            message.additional_kwargs.get("tool_calls") or ())
    else:
        text, calls = response.text or "", 0
    return Answer(raw=response, text=text, usage=usage_of(response), tool_calls=calls,
                  token_logprobs=_sampled_logprobs(response.raw))


def _llm_of(ref: ModelRef) -> LLM:
    """The LlamaIndex LLM a ref names (a candidate, or a verifier a pipeline step asks)."""
    if not isinstance(ref.model, LLM):
        raise RouterConfigError(
            f"{ref.name!r} is not a LlamaIndex LLM (got {type(ref.model).__name__}); a verifier "
            "or judge must be one of the candidates' names or a LlamaIndex LLM")
    return ref.model


def _as_chunk(response: ChatResponse | CompletionResponse) -> Any:
    """A whole response as the one chunk of a stream (its ``delta`` is all of its text)."""
    text = response.message.content if isinstance(response, ChatResponse) else response.text
    return response.model_copy(update={"delta": text or ""})


def _usage_chunk(chunks: Sequence[Any]) -> Any:
    """The last chunk whose provider counts are present (streams report usage at the end)."""
    for chunk in reversed(chunks):
        if usage_of(chunk) is not None:
            return chunk
    return None


@dataclass
class LlamaCaller:
    """The ``Caller`` of one routed LlamaIndex call (chat or completion, plain or with tools,
    or a ``predict`` template).

    ``messages`` / ``prompt`` are what is routed on; a ``template`` call sends each candidate
    the template as its own ``predict`` (or, ``template.structured``, the structured-output
    program run on it) would format it instead. ``span_id`` is the routed call's
    instrumentation span and ``callbacks`` its RoutedLLM's callback manager: both are active
    while a candidate is called, even when a stream is consumed after the routed method
    returned.
    """

    messages: list[ChatMessage] | None = None
    prompt: str | None = None
    formatted: bool = False
    kwargs: dict[str, Any] = field(default_factory=dict)
    tools: ToolsRequest | None = None
    span_id: str | None = None
    template: TemplateCall | None = None
    callbacks: CallbackManager | None = None

    @contextmanager
    def running(self) -> Iterator[None]:
        """The context candidates are called in: the routed call's span, and its RoutedLLM's
        callback manager for candidates without handlers of their own."""
        token = active_span_id.set(self.span_id)
        try:
            with reporting_to(self.callbacks):
                yield
        finally:
            active_span_id.reset(token)

    # -- what to send -------------------------------------------------------------------------
    def _completes(self, llm: LLM) -> bool:
        """Whether this call reaches ``llm`` as a completion (else as chat messages)."""
        if self.template is not None and not self.template.structured:
            return not llm.metadata.is_chat_model  # as llm.predict would: by its own kind
        return self.prompt is not None

    def _prompt_for(self, llm: LLM) -> tuple[str, bool]:
        """The prompt a completion call sends ``llm``, and its ``formatted`` flag."""
        if self.template is not None:
            return self.template.prompt_for(llm), True
        assert self.prompt is not None
        return self.prompt, self.formatted

    def texts_for(self, llm: LLM) -> list[str]:
        """The texts this call sends ``llm`` (tools aside), to size it."""
        if self._completes(llm):
            return [self._prompt_for(llm)[0]]
        return [m.content or "" for m in self._history_for(llm)]

    def _history_for(self, llm: LLM) -> list[ChatMessage]:
        """The messages a chat call sends ``llm`` (before any tools are added)."""
        if self.template is not None:
            return self.template.messages_for(llm)
        assert self.messages is not None
        return unstamped(self.messages)

    def _chat_args(self, llm: LLM, messages: Any) -> tuple[list[ChatMessage], dict[str, Any]]:
        if messages is not None:  # a step's own ask (a verifier, a judge): plain chat
            return as_messages(messages), {}
        history = self._history_for(llm)
        if self.tools is None:
            return history, dict(self.kwargs)
        request = self.tools
        prepared = llm._prepare_chat_with_tools_compat(  # type: ignore[attr-defined]
            list(request.tools), chat_history=history, verbose=request.verbose,
            allow_parallel_tool_calls=request.allow_parallel_tool_calls,
            tool_required=request.tool_required, **request.kwargs,
        )
        sent = prepared.pop("messages")
        return list(sent), {**prepared, **self.kwargs}

    def _validated(self, llm: LLM, response: ChatResponse) -> ChatResponse:
        if self.tools is None:
            return response
        return llm._validate_chat_with_tools_response(  # type: ignore[attr-defined,no-any-return]
            response, list(self.tools.tools),
            allow_parallel_tool_calls=self.tools.allow_parallel_tool_calls, **self.tools.kwargs)

    # -- Caller protocol ----------------------------------------------------------------------
    def _whole(self, ref: ModelRef, messages: Any = None) -> Any:
        """One whole response of ``ref``'s LLM (chat or completion), stamped with its name."""
        llm = _llm_of(ref)
        if messages is None and self._completes(llm):
            prompt, formatted = self._prompt_for(llm)
            done = llm.complete(prompt, formatted=formatted, **self.kwargs)
            return stamp_response(done, ref.name)
        sent, kwargs = self._chat_args(llm, messages)
        response = llm.chat(sent, **kwargs)
        if messages is None:
            response = self._validated(llm, response)
        return stamp_response(response, ref.name)

    async def _awhole(self, ref: ModelRef, messages: Any = None) -> Any:
        llm = _llm_of(ref)
        if messages is None and self._completes(llm):
            prompt, formatted = self._prompt_for(llm)
            done = await llm.acomplete(prompt, formatted=formatted, **self.kwargs)
            return stamp_response(done, ref.name)
        sent, kwargs = self._chat_args(llm, messages)
        response = await llm.achat(sent, **kwargs)
        if messages is None:
            response = self._validated(llm, response)
        return stamp_response(response, ref.name)

    def call(self, ref: ModelRef, purpose: str, messages: Any = None) -> Answer:
        return answer_of(self._whole(ref, messages))

    async def acall(self, ref: ModelRef, purpose: str, messages: Any = None) -> Answer:
        return answer_of(await self._awhole(ref, messages))

    def stream(self, ref: ModelRef, purpose: str) -> Iterator[Any]:
        if ref.provisional:  # a cascade scores it first: no token events for it
            yield _as_chunk(self._whole(ref))
            return
        llm = _llm_of(ref)
        if self._completes(llm):
            prompt, formatted = self._prompt_for(llm)
            chunks: Iterator[Any] = llm.stream_complete(prompt, formatted=formatted,
                                                        **self.kwargs)
        else:
            sent, kwargs = self._chat_args(llm, None)
            chunks = llm.stream_chat(sent, **kwargs)
        for chunk in chunks:
            yield stamp_response(chunk, ref.name)

    async def astream(self, ref: ModelRef, purpose: str) -> AsyncIterator[Any]:
        if ref.provisional:
            yield _as_chunk(await self._awhole(ref))
            return
        llm = _llm_of(ref)
        if self._completes(llm):
            prompt, formatted = self._prompt_for(llm)
            chunks = await llm.astream_complete(prompt, formatted=formatted, **self.kwargs)
        else:
            sent, kwargs = self._chat_args(llm, None)
            chunks = await llm.astream_chat(sent, **kwargs)
        async for chunk in chunks:
            yield stamp_response(chunk, ref.name)

    def collect(self, ref: ModelRef, chunks: list[Any]) -> Answer:
        if not chunks:
            empty: Any = (CompletionResponse(text="") if self._completes(_llm_of(ref))
                          else ChatResponse(message=ChatMessage(role="assistant", content="")))
            return Answer(raw=stamp_response(empty, ref.name), text="")
        last = chunks[-1]  # LlamaIndex chunks are cumulative: the last one is the whole answer
        answer = answer_of(last)
        counted = _usage_chunk(chunks)
        usage = None if counted is None else usage_of(counted)
        return Answer(raw=last, text=answer.text, usage=usage, tool_calls=answer.tool_calls,
                      token_logprobs=_stream_logprobs(chunks))

    def stamp(self, raw: Any, record: dict[str, Any]) -> Any:
        return stamp_response(raw, str(record.get("answered_by", "")), record)

    def settle(self, last: Any, record: dict[str, Any], merged: Any = None) -> Any:
        """The closing chunk of a stream: the last one again (LlamaIndex chunks are
        cumulative, so it is the merged answer too), adding no text, with the final record;
        consumers keep the last chunk."""
        if last is None:
            return None
        return self.stamp(last.model_copy(update={"delta": ""}), record)

    def emit(self, name: str, payload: dict[str, Any]) -> None:
        dispatch(name, payload, self.span_id)

    async def aemit(self, name: str, payload: dict[str, Any]) -> None:
        dispatch(name, payload, self.span_id)
