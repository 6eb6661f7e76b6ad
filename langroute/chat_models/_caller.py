"""How the call pipeline reaches LangChain models: the two ``Caller`` adapters.

``RunnableCaller`` serves the Runnable entry points (invoke, stream, batch and their async
forms): every provider call is the chosen model's own Runnable call under the routed chain run's
child config, so each is one chat-model run that callbacks (and ``UsageMetadataCallbackHandler``)
see exactly once. ``GenerationCaller`` serves ``generate()`` and the event streams, where the
routed run already *is* the chat-model run: the answering model's generation reports through that
run; calls a step makes of its own (a verifier) become child runs.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManager,
    AsyncCallbackManagerForChainRun,
    AsyncCallbackManagerForLLMRun,
    BaseCallbackHandler,
    CallbackManager,
    CallbackManagerForChainRun,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    BaseMessageChunk,
    HumanMessage,
    SystemMessage,
)
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult, LLMResult
from langchain_core.runnables import AddableDict, Runnable, RunnableConfig
from langchain_core.runnables.config import merge_configs

from .._exceptions import MessageError
from ..pipeline import Answer, ModelRef, Usage
from ._bindings import (
    PendingBinding,
    StructuredOutputBinding,
    bind_call_kwargs,
    call_kwargs_of,
)

# Private langchain-core API (checked with langchain-core 1.8.3): the marker classes of
# token-streaming handlers, how a hidden run recognises the handlers it must keep tokens from
# (``_is_token_stream``). If the module moves, hidden runs would leak tokens to token streams
# without a word, so the import fails loudly instead.
try:
    from langchain_core.tracers import _streaming as _lc_streaming
    from langchain_core.tracers._streaming import _StreamingCallbackHandler
except ImportError as exc:  # pragma: no cover - depends on the installed langchain-core
    raise ImportError(
        "langroute needs langchain_core.tracers._streaming._StreamingCallbackHandler (a "
        "private langchain-core API, checked with langchain-core 1.8.3) to keep cascade "
        "attempts and verifier calls out of token streams; the installed langchain-core no "
        f"longer has it ({exc}). Install a langchain-core version langroute supports."
    ) from exc

#: The token-streaming handler classes: v1 (``tap_output_iter``) and, in langchain-core
#: versions that have the v2 event protocol, v2 (``on_stream_event``). An older core has no v2
#: handler to recognise; the v1 class is never taken for it.
_TOKEN_STREAM_HANDLERS: tuple[type, ...] = (_StreamingCallbackHandler,) + tuple(
    cls for cls in (getattr(_lc_streaming, "_V2StreamingCallbackHandler", None),)
    if isinstance(cls, type))

__all__ = ["GenerationCaller", "RunnableCaller", "answer_of", "stamp", "usage_of"]

#: Call keywords that describe the request and also suit a verifier's call.
_SHARED_KWARGS = ("temperature", "max_tokens", "stop")

#: LangGraph's tag (``langgraph.constants.TAG_NOSTREAM``): ``stream_mode="messages"`` skips
#: a chat-model run so tagged.
NOSTREAM_TAG = "nostream"
#: Tags naming a hidden run: a cascade's attempt that may still be rejected, a verifier's call.
CASCADE_ATTEMPT_TAG = "langroute:cascade-attempt"
VERIFIER_TAG = "langroute:verifier"


def _noop(*args: Any, **kwargs: Any) -> None:
    return None


async def _anoop(*args: Any, **kwargs: Any) -> None:
    return None


class _Tokenless:
    """A token-streaming handler (``astream_events``, ``astream_log``, LangGraph's messages
    stream) as a hidden run sees it: every event (start, end, error, usage) but its tokens.

    It is not a streaming handler itself, so a hidden ``invoke`` does not stream, and nothing
    taps a hidden run's output.

    Relies on private langchain-core protocol names (checked with langchain-core 1.8.3 and
    langgraph 1.2.24): ``tap_output_iter`` / ``tap_output_aiter`` (how ``astream_events`` and
    LangGraph's messages stream tap a run's output) and ``on_stream_event`` (the v2 event
    stream's token callback). A renamed hook would let tokens through: the hidden-run tests
    (``tests/unit_tests/cascade``) check that none do.
    """

    _HIDDEN = frozenset({"tap_output_iter", "tap_output_aiter"})

    def __init__(self, handler: Any) -> None:
        self._handler = handler
        for event in ("on_llm_new_token", "on_stream_event"):
            method = getattr(handler, event, None)
            if method is not None:
                setattr(self, event, _anoop if inspect.iscoroutinefunction(method) else _noop)

    def __getattr__(self, name: str) -> Any:
        if name in self._HIDDEN:
            raise AttributeError(name)
        return getattr(self._handler, name)

    def __repr__(self) -> str:
        return f"_Tokenless({self._handler!r})"


def _is_token_stream(handler: Any) -> bool:
    return isinstance(handler, _TOKEN_STREAM_HANDLERS)


def _hidden_config(config: RunnableConfig, tag: str) -> RunnableConfig:
    """``config`` for a run kept from token streams: tagged ``nostream`` (LangGraph's messages
    stream skips it) and ``tag``, its token-streaming handlers seeing no tokens (so
    ``astream_events`` emits no ``on_chat_model_stream`` for it); tracers and other callbacks
    see it as an ordinary run."""
    tags = [t for t in (NOSTREAM_TAG, tag) if t not in (config.get("tags") or [])]
    hidden = merge_configs(config, {"tags": tags})
    hidden["callbacks"] = _tokenless_callbacks(config.get("callbacks"))
    return hidden


def _unstreamed_config(config: RunnableConfig) -> RunnableConfig:
    """``config`` for a call the routed model's ``disable_streaming`` (or ``streaming=False``)
    keeps from streaming: its token-streaming handlers are ``_Tokenless``, so the chosen model
    does not stream for them (as BaseChatModel would not); every handler still sees the run."""
    return {**config, "callbacks": _tokenless_callbacks(config.get("callbacks"))}


def _tokenless_callbacks(callbacks: Any) -> Any:
    """``callbacks`` with each token-streaming handler behind a ``_Tokenless`` proxy."""
    proxies: dict[int, _Tokenless] = {}

    def hide(handlers: list[Any]) -> list[Any]:
        out = []
        for h in handlers:
            if _is_token_stream(h):
                h = proxies.setdefault(id(h), _Tokenless(h))
            out.append(h)
        return out

    if isinstance(callbacks, (CallbackManager, AsyncCallbackManager)):
        callbacks = callbacks.copy()
        callbacks.handlers = hide(callbacks.handlers)
        callbacks.inheritable_handlers = hide(callbacks.inheritable_handlers)
    elif isinstance(callbacks, list):
        callbacks = hide(callbacks)
    return callbacks


def hidden_tag(ref: ModelRef, purpose: str) -> str | None:
    """The tag of a call kept from token streams (None: it streams as usual): a verifier's
    call, or an answer a cascade will score (``ref.provisional``)."""
    if purpose == "verify":
        return VERIFIER_TAG
    if getattr(ref, "provisional", False):
        return CASCADE_ATTEMPT_TAG
    return None


def answering(model: BaseChatModel, output_version: str | None) -> BaseChatModel:
    """``model`` as it answers a routed call's request: with the routed model's
    ``output_version="v1"`` when it has another (a shallow copy, sharing its clients), so its
    own chat-model run gives v1 content blocks -- in the message ``invoke`` returns, the chunks
    ``stream`` yields, ``astream_events`` and LangGraph's messages stream -- as the routed
    model's ``generate()`` does (BaseChatModel converts its result). The other values mean
    nothing to BaseChatModel: the candidate's own setting stands."""
    if output_version != "v1" or model.output_version == "v1":
        return model
    return model.model_copy(update={"output_version": "v1"})


def _never_unstreamed(ref: ModelRef) -> bool:
    """``RunnableCaller``'s default ``unstreamed``: every model streams when asked to."""
    return False


def usage_of(message: Any) -> Usage | None:
    """A message's ``usage_metadata`` as a ``Usage`` (None when the provider sent none)."""
    usage = getattr(message, "usage_metadata", None)
    if not usage:
        return None
    details_in = usage.get("input_token_details") or {}
    details_out = usage.get("output_token_details") or {}
    return Usage(
        input_tokens=int(usage.get("input_tokens", 0) or 0),
        output_tokens=int(usage.get("output_tokens", 0) or 0),
        cache_read_tokens=int(details_in.get("cache_read", 0) or 0),
        reasoning_tokens=int(details_out.get("reasoning", 0) or 0),
    )


def _logprobs_of(message: Any) -> tuple[float, ...] | None:
    metadata = getattr(message, "response_metadata", None) or {}
    logprobs = metadata.get("logprobs")
    content = logprobs.get("content") if isinstance(logprobs, Mapping) else None
    if not isinstance(content, list) or not content:
        return None
    values = [entry.get("logprob") for entry in content if isinstance(entry, Mapping)]
    return tuple(float(v) for v in values if isinstance(v, (int, float)))


def answer_of(output: Any) -> Answer:
    """Read what steps need from a model's output (a message, a ChatResult, a chunk, or a
    structured-output value)."""
    message: Any = output
    text: str | None = None
    if isinstance(output, ChatResult):
        message = output.generations[0].message if output.generations else None
    elif isinstance(output, (ChatGeneration, ChatGenerationChunk)):
        message = output.message
    elif isinstance(output, Mapping) and isinstance(output.get("raw"), BaseMessage):
        message = output["raw"]  # include_raw=True: usage from the raw message, ...
        if output.get("parsed") is not None:  # ... text from the parsed value (see _parsed)
            text = _parsed_text(output["parsed"])
    if isinstance(message, BaseMessage):
        # A function_calling structured answer's tool call is the answer, not a tool to run:
        # it is scored like any answer (not skipped as a tool call), as _parsed does.
        calls = 0 if text is not None else len(getattr(message, "tool_calls", None) or [])
        return Answer(raw=output, text=message.text if text is None else text,
                      usage=usage_of(message), tool_calls=calls,
                      token_logprobs=_logprobs_of(message))
    # A parsed structured output: its JSON is the answer's text (no usage is attached).
    return Answer(raw=output, text=_parsed_text(output))


def _parsed_text(value: Any) -> str:
    """A structured output's text, for scorers and judges: its JSON, keys sorted. The raw
    message's text will not do: a ``function_calling`` answer is a tool call with no text, so
    every cheap answer once scored as empty and was escalated."""
    if hasattr(value, "model_dump"):
        value = value.model_dump()
    return json.dumps(value, sort_keys=True, default=str)


def _stamped_message(message: BaseMessage, record: dict[str, Any]) -> BaseMessage:
    metadata = {**message.response_metadata, "langroute": record}
    return message.model_copy(update={"response_metadata": metadata})


def stamp(raw: Any, record: dict[str, Any]) -> Any:
    """Attach the call record as ``response_metadata["langroute"]`` (on the raw message of a
    structured output with ``include_raw=True``; a parsed value is returned unchanged)."""
    if isinstance(raw, AIMessage):
        return _stamped_message(raw, record)
    if isinstance(raw, ChatGenerationChunk):
        return ChatGenerationChunk(message=_stamped_message(raw.message, record),
                                   generation_info=raw.generation_info)
    if isinstance(raw, ChatResult):
        return ChatResult(
            generations=[ChatGeneration(message=_stamped_message(g.message, record),
                                        generation_info=g.generation_info)
                         for g in raw.generations],
            llm_output=raw.llm_output,
        )
    if isinstance(raw, Mapping) and isinstance(raw.get("raw"), AIMessage):
        stamped = {**raw, "raw": _stamped_message(raw["raw"], record)}
        # a stream's item stays addable, so its consumer can merge the items with ``+``
        return AddableDict(stamped) if isinstance(raw, AddableDict) else stamped
    return raw


#: Record keys a stream's closing chunk brings: they are final only once the call settled.
_SETTLED_KEYS = ("attempts", "notes")


def _opening(record: dict[str, Any]) -> dict[str, Any]:
    """The record a stream's first chunk carries: the keys already final (the decision, who
    answers). Chunks merge their metadata key by key (lists append, strings concatenate), so
    the closing chunk adds the rest and no key is on both."""
    return {k: v for k, v in record.items() if k not in _SETTLED_KEYS}


def _closing(last: Any, record: dict[str, Any], merged: Any = None) -> Any:
    """A stream's closing chunk, shaped like its last one: no content, and ``record`` (the
    final record, or the rest ``_opening`` left out), so the merged stream carries the final
    record (None for a parsed-value stream).

    An ``include_raw=True`` stream yields ``{"raw"}`` chunks, then ``{"parsed"}`` and
    ``{"parsing_error"}``: its closing item is a ``{"raw"}`` one all the same (shaped from the
    raw message of ``merged``, the stream merged), so the record reaches the raw message."""
    inner = last.message if isinstance(last, ChatGenerationChunk) else last
    if isinstance(last, Mapping):
        inner = last.get("raw")
        if inner is None and isinstance(merged, Mapping):
            inner = merged.get("raw")
    # the stream's end stays marked (``chunk_position="last"``) if the model marked it; no
    # content in the stream's own form (a v1 stream's is a list of blocks), as BaseChatModel's
    content: Any = [] if isinstance(getattr(inner, "content", None), list) else ""
    message = AIMessageChunk(content=content, response_metadata={"langroute": record},
                             chunk_position=getattr(inner, "chunk_position", None))
    if isinstance(last, AIMessageChunk):
        return message
    if isinstance(last, ChatGenerationChunk):
        return ChatGenerationChunk(message=message)
    if isinstance(last, Mapping) and isinstance(inner, AIMessageChunk):
        return AddableDict(raw=message)
    return None


def _as_messages(messages: Sequence[tuple[str, str]]) -> list[BaseMessage]:
    """A step's own prompt (``(role, text)`` pairs) as LangChain messages."""
    out: list[BaseMessage] = []
    for role, text in messages:
        if role == "system":
            out.append(SystemMessage(text))
        elif role in ("user", "human"):
            out.append(HumanMessage(text))
        elif role in ("assistant", "ai"):
            out.append(AIMessage(text))
        else:
            raise MessageError(f"unknown message role {role!r} (use system, user or assistant)")
    return out


def _parsed(output: Any, unwrap: bool) -> Answer:
    """An answer from a structured-output call made with ``include_raw=True`` on the caller's
    behalf: usage from the raw message, text from the parsed value (``_parsed_text``), ``raw``
    the parsed value (a parsing error raises, as ``with_structured_output`` would without
    ``include_raw``)."""
    answer = answer_of(output)
    if not unwrap:
        return answer
    error = output.get("parsing_error") if isinstance(output, Mapping) else None
    if error is not None:
        raise error
    return Answer(raw=output["parsed"], text=_parsed_text(output["parsed"]), usage=answer.usage,
                  tool_calls=0, token_logprobs=answer.token_logprobs)


def _merge(chunks: list[Any]) -> Any:
    """Merge a Runnable stream into what ``invoke`` returns: message chunks add up; dicts merge
    key by key (``include_raw=True`` streams ``{"raw"}``, ``{"parsed"}`` and
    ``{"parsing_error"}`` separately; a parsed dict streams cumulatively), a later value
    overriding an earlier one unless both are message chunks; other values (a parsed model)
    are cumulative, so the last one is the whole."""
    if chunks and all(isinstance(c, BaseMessageChunk) for c in chunks):
        merged = chunks[0]
        for chunk in chunks[1:]:
            merged = merged + chunk
        return merged
    if chunks and all(isinstance(c, Mapping) for c in chunks):
        whole: dict[Any, Any] = {}
        for chunk in chunks:
            for key, value in chunk.items():
                before = whole.get(key)
                if isinstance(before, BaseMessageChunk) and isinstance(value, BaseMessageChunk):
                    value = before + value
                whole[key] = value
        return whole
    return chunks[-1] if chunks else None


class _RawMessage(BaseCallbackHandler):
    """Keeps the message a structured-output stream's chat-model run ended with."""

    run_inline = True  # before the stream's last chunk reaches the pipeline, also async

    def __init__(self) -> None:
        self.message: BaseMessage | None = None

    def on_llm_end(self, response: LLMResult, **kwargs: Any) -> None:
        generations = response.generations[0] if response.generations else []
        message = getattr(generations[0], "message", None) if generations else None
        if isinstance(message, BaseMessage):
            self.message = message


def _pinned(runnable: Runnable[Any, Any], model: BaseChatModel, config: RunnableConfig
            ) -> Runnable[Any, Any]:
    """``runnable`` (a binding replayed on the chosen model) holding ``config``'s callbacks.

    A ``RunnableBinding`` merges its own config -- empty, so the ambient one
    (``var_child_runnable_config``: the routed run's, with the raw handlers) -- into the one it
    is called with. A hidden or unstreamed call's handlers are ``_Tokenless`` proxies: merged
    with the raw ones, a token stream saw both, and the chosen model streamed its tokens to it
    (a rejected cascade attempt made with tools bound reached ``astream_events``)."""
    callbacks = config.get("callbacks")
    if runnable is model or callbacks is None:
        return runnable
    return runnable.with_config(callbacks=callbacks)


class RunnableCaller:
    """Calls candidates as Runnables, under the routed chain run (invoke/stream/batch)."""

    def __init__(self, input: Any, config: RunnableConfig, kwargs: Mapping[str, Any],
                 binding: PendingBinding | None,
                 run_manager: CallbackManagerForChainRun | AsyncCallbackManagerForChainRun,
                 *, unstreamed: Callable[[ModelRef], bool] = _never_unstreamed,
                 added_stream: bool = False, output_version: str | None = None):
        self.input = input
        self.config = config
        self.kwargs = dict(kwargs)
        self.binding = binding
        self.run_manager = run_manager
        #: whether streaming is disabled for a call to this model (``disable_streaming``,
        #: ``streaming=False``, ``stream=False``): it does not stream, not even for a token
        #: stream, and a stream gets its answer whole
        self.unstreamed = unstreamed
        #: the ``stream=True`` in ``kwargs`` is the routed model's ``streaming=True``, which an
        #: unstreamed call goes without
        self.added_stream = added_stream
        self.output_version = output_version
        #: per streamed model: the raw message of its structured-output stream
        self._raw: dict[str, _RawMessage] = {}

    def _target(self, ref: ModelRef, messages: Any, *, with_raw: bool = False
                ) -> tuple[BaseChatModel, Runnable[Any, Any], Any, dict, bool]:
        """What to run for a call: the model called (``answering``), the runnable, its input,
        its keywords, and whether the output is a structured-output ``{"raw", "parsed"}`` dict
        to unwrap.

        A step's own prompt (``messages``) goes to the bare model. Otherwise the pending
        binding is replayed on the model; with ``with_raw`` a structured-output call asks for
        the raw message too, so its usage is known (the parsed value is what the caller gets
        back). Only a candidate answering the call itself gets every call keyword (``model=``
        included); a verifier answering the same request gets its shared ones; a step's own
        prompt (a judge's) gets none: the caller's ``stop`` or ``max_tokens`` would cut the
        judge's verdict short. A structured output's keywords are bound onto its call of the
        model (``bind_call_kwargs``), not passed to the runnable, whose first step may drop
        them.
        """
        model = ref.model
        if messages is not None:
            return model, model, _as_messages(messages), {}, False
        model = answering(model, self.output_version)
        kwargs = self.kwargs if ref.candidate else {
            k: v for k, v in self.kwargs.items() if k in _SHARED_KWARGS}
        if self.added_stream and self.unstreamed(ref):
            kwargs = {k: v for k, v in kwargs.items() if k != "stream"}
        binding = self.binding
        unwrap = (with_raw and isinstance(binding, StructuredOutputBinding)
                  and not binding.include_raw)
        if unwrap:
            binding = StructuredOutputBinding(binding.schema, True, binding.kwargs)
        if binding is None:
            return model, model, self.input, kwargs, unwrap
        runnable = binding.apply(model)
        if isinstance(binding, StructuredOutputBinding):
            # on its call of the model: its own first step may drop or refuse call keywords
            runnable, kwargs = bind_call_kwargs(runnable, model, kwargs), {}
        return model, runnable, self.input, kwargs, unwrap

    def _config(self, ref: ModelRef, purpose: str) -> RunnableConfig:
        """The child config of a call. A call whose answer may still be rejected (a verifier's;
        a cascade's answer before it is scored) is kept from token streams (``_hidden_config``):
        only the accepted answer reaches the consumer, through the routed run. An unstreamed
        call's token-streaming handlers see no tokens (``_unstreamed_config``)."""
        tag = hidden_tag(ref, purpose)
        if tag is not None:
            return _hidden_config(self.config, tag)
        return _unstreamed_config(self.config) if self.unstreamed(ref) else self.config

    def _prepared(self, ref: ModelRef, purpose: str, messages: Any = None, *,
                  streamed: bool = False
                  ) -> tuple[Runnable[Any, Any], Any, RunnableConfig, dict, bool]:
        """One call's runnable (``_target``, pinned to its config), input, config, keywords,
        and whether to unwrap a structured output; a streamed call's config is
        ``_stream_config``'s."""
        model, runnable, input, kwargs, unwrap = self._target(ref, messages,
                                                              with_raw=not streamed)
        config = (self._stream_config(ref, purpose) if streamed
                  else self._config(ref, purpose))
        return _pinned(runnable, model, config), input, config, kwargs, unwrap

    def call(self, ref: ModelRef, purpose: str, messages: Any = None) -> Answer:
        runnable, input, config, kwargs, unwrap = self._prepared(ref, purpose, messages)
        return _parsed(runnable.invoke(input, config, **kwargs), unwrap)

    async def acall(self, ref: ModelRef, purpose: str, messages: Any = None) -> Answer:
        runnable, input, config, kwargs, unwrap = self._prepared(ref, purpose, messages)
        return _parsed(await runnable.ainvoke(input, config, **kwargs), unwrap)

    def _stream_config(self, ref: ModelRef, purpose: str) -> RunnableConfig:
        """The config of a streamed call. A structured-output stream yields parsed values only
        (asking for the raw message would change what the caller gets: partial values), so
        the raw message is caught from its chat-model run's end, for ``collect``."""
        config = self._config(ref, purpose)
        binding = self.binding
        if not isinstance(binding, StructuredOutputBinding) or binding.include_raw:
            self._raw.pop(ref.name, None)
            return config
        catcher = self._raw[ref.name] = _RawMessage()
        return merge_configs(config, {"callbacks": [catcher]})

    def stream(self, ref: ModelRef, purpose: str) -> Iterator[Any]:
        """The model's stream; an unstreamed call's is one item, its invoked answer (as
        BaseChatModel streams when it must not; here the whole runnable is invoked, so a
        structured output's parser gets the whole message)."""
        runnable, input, config, kwargs, _ = self._prepared(ref, purpose, streamed=True)
        if self.unstreamed(ref):
            return _whole(runnable, input, config, kwargs)
        return iter(runnable.stream(input, config, **kwargs))

    def astream(self, ref: ModelRef, purpose: str) -> AsyncIterator[Any]:
        runnable, input, config, kwargs, _ = self._prepared(ref, purpose, streamed=True)
        if self.unstreamed(ref):
            return _awhole(runnable, input, config, kwargs)
        return aiter(runnable.astream(input, config, **kwargs))

    def collect(self, ref: ModelRef, chunks: list[Any]) -> Answer:
        """The merged stream; a structured one reads usage and text from its raw message, as
        ``call`` does."""
        merged = _merge(chunks)
        catcher = self._raw.pop(ref.name, None)
        if catcher is None or catcher.message is None:
            return answer_of(merged)
        answer = answer_of(catcher.message)
        return Answer(raw=merged, text=_parsed_text(merged), usage=answer.usage, tool_calls=0,
                      token_logprobs=answer.token_logprobs)

    def stamp(self, raw: Any, record: dict[str, Any]) -> Any:
        if isinstance(raw, AIMessageChunk):
            return _stamped_message(raw, _opening(record))
        return stamp(raw, _opening(record))

    def settle(self, last: Any, record: dict[str, Any], merged: Any = None) -> Any:
        settled = {k: record[k] for k in _SETTLED_KEYS if k in record}
        return _closing(last, settled, merged)

    def emit(self, name: str, payload: dict[str, Any]) -> None:
        manager = self.run_manager
        assert isinstance(manager, CallbackManagerForChainRun)
        manager.get_child().on_custom_event(name, payload, run_id=manager.run_id)

    async def aemit(self, name: str, payload: dict[str, Any]) -> None:
        manager = self.run_manager
        assert isinstance(manager, AsyncCallbackManagerForChainRun)
        await manager.get_child().on_custom_event(name, payload, run_id=manager.run_id)


def _whole(runnable: Runnable[Any, Any], input: Any, config: RunnableConfig,
           kwargs: Mapping[str, Any]) -> Iterator[Any]:
    """An unstreamed call as a stream: its one item, invoked when the stream is first read
    (so under ``NextChunk``'s deadline)."""
    yield _as_item(runnable.invoke(input, config, **kwargs))


async def _awhole(runnable: Runnable[Any, Any], input: Any, config: RunnableConfig,
                  kwargs: Mapping[str, Any]) -> AsyncIterator[Any]:
    yield _as_item(await runnable.ainvoke(input, config, **kwargs))


def _as_item(output: Any) -> Any:
    """An invoked ``include_raw=True`` answer as a stream's item, as a streamed one is: an
    ``AddableDict`` whose raw message is a chunk. The closing item then brings the settled
    record (attempts) to it, as it does to a streamed answer; an ``AIMessage`` got none."""
    raw = output.get("raw") if isinstance(output, Mapping) else None
    if not isinstance(raw, AIMessage) or isinstance(raw, AIMessageChunk):
        return output
    return AddableDict({**output, "raw": _message_chunk(raw)})


class _Held:
    """A run manager for the same run as ``run_manager`` (same id, handlers, tags, metadata),
    whose tokens and stream events are kept in ``held`` instead of dispatched; ``answered``
    once the generation reporting through it returned."""

    def __init__(self, run_manager: Any) -> None:
        super().__init__(  # type: ignore[call-arg]
            run_id=run_manager.run_id, handlers=run_manager.handlers,
            inheritable_handlers=run_manager.inheritable_handlers,
            parent_run_id=run_manager.parent_run_id, tags=run_manager.tags,
            inheritable_tags=run_manager.inheritable_tags, metadata=run_manager.metadata,
            inheritable_metadata=run_manager.inheritable_metadata)
        self.held: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.answered = False


class _HeldRun(_Held, CallbackManagerForLLMRun):
    """The routed chat-model run as an answer a cascade will score reports through it: its
    tokens and stream events are held, and reach the run's handlers only if the answer is
    accepted (``replay``). Its handlers are the run's own, so the model streams exactly when
    it would have."""

    def on_llm_new_token(self, token: Any, *, chunk: Any = None, **kwargs: Any) -> None:
        self.held.append(("on_llm_new_token", (token,), {"chunk": chunk, **kwargs}))

    def on_stream_event(self, event: Any, **kwargs: Any) -> None:
        self.held.append(("on_stream_event", (event,), kwargs))

    def replay(self, run_manager: CallbackManagerForLLMRun) -> None:
        for name, args, kwargs in self.held:
            getattr(run_manager, name)(*args, **kwargs)


class _AHeldRun(_Held, AsyncCallbackManagerForLLMRun):
    """``_HeldRun`` for ``agenerate()``."""

    async def on_llm_new_token(self, token: Any, *, chunk: Any = None, **kwargs: Any) -> None:
        self.held.append(("on_llm_new_token", (token,), {"chunk": chunk, **kwargs}))

    async def on_stream_event(self, event: Any, **kwargs: Any) -> None:
        self.held.append(("on_stream_event", (event,), kwargs))

    async def replay(self, run_manager: AsyncCallbackManagerForLLMRun) -> None:
        for name, args, kwargs in self.held:
            await getattr(run_manager, name)(*args, **kwargs)


class GenerationCaller:
    """Calls candidates' generation directly, reporting through the routed chat-model run
    (``generate()``, ``agenerate()`` and the event streams).

    An answer a cascade will score (``ModelRef.provisional``) reports through a ``_HeldRun``:
    its tokens would reach the routed run's handlers before it is scored, and a rejected
    answer's tokens would stay in what they showed. ``release`` replays the accepted
    answer's once the call is over."""

    def __init__(self, messages: list[BaseMessage], kwargs: Mapping[str, Any],
                 binding: PendingBinding | None,
                 run_manager: CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun | None,
                 *, output_version: str | None = None):
        self.messages = messages
        self.kwargs = dict(kwargs)
        self.binding = binding
        self.run_manager = run_manager
        self.output_version = output_version
        #: per model: the held tokens of its latest call, while its answer may be rejected
        self._held: dict[str, _Held] = {}

    def _reporting(self, ref: ModelRef) -> Any:
        """The run manager ``ref``'s generation reports through: a held one for an answer a
        cascade will score. It replaces the model's earlier one, so a call abandoned at its
        deadline that answers late is never taken for the latest."""
        self._held.pop(ref.name, None)
        if self.run_manager is None or not ref.provisional:
            return self.run_manager
        held_class = (_AHeldRun if isinstance(self.run_manager, AsyncCallbackManagerForLLMRun)
                      else _HeldRun)
        held = self._held[ref.name] = held_class(self.run_manager)
        return held

    def _accepting(self, model: str) -> _Held | None:
        held = self._held.pop(model, None)
        self._held.clear()
        if held is None or not held.answered or self.run_manager is None:
            return None
        return held

    def release(self, model: str) -> None:
        """The call answered with ``model``: the tokens its answer held reach the routed run
        now; any other held answer's (rejected) never do."""
        held = self._accepting(model)
        if held is not None:
            held.replay(self.run_manager)  # type: ignore[attr-defined]

    async def arelease(self, model: str) -> None:
        held = self._accepting(model)
        if held is not None:
            await held.replay(self.run_manager)  # type: ignore[attr-defined]

    def _kwargs(self, model: BaseChatModel) -> dict[str, Any]:
        return {**self.kwargs, **call_kwargs_of(self.binding, model)}

    def _child_config(self) -> RunnableConfig:
        """Callbacks that make a step's own call a child of the routed chat-model run (an LLM
        run manager has no ``get_child``; this is what a parent run manager's would give)."""
        if self.run_manager is None:
            return {}
        manager_class = (AsyncCallbackManager
                         if isinstance(self.run_manager, AsyncCallbackManagerForLLMRun)
                         else CallbackManager)
        return {"callbacks": _child_manager(self.run_manager, manager_class)}

    def _own_config(self, ref: ModelRef, purpose: str) -> RunnableConfig:
        """A step's own call (a verifier's) is kept from token streams, as under invoke."""
        tag = hidden_tag(ref, purpose)
        config = self._child_config()
        return config if tag is None else _hidden_config(config, tag)

    def call(self, ref: ModelRef, purpose: str, messages: Any = None) -> Answer:
        model: BaseChatModel = ref.model
        if messages is not None or not ref.candidate:
            # a step's own call is a child run of its own (its usage is its own)
            input = self.messages if messages is None else _as_messages(messages)
            shared = {k: v for k, v in self.kwargs.items() if k in _SHARED_KWARGS}
            return answer_of(model.invoke(input, self._own_config(ref, purpose), **shared))
        model = answering(model, self.output_version)
        manager = self._reporting(ref)
        result = model._generate_with_cache(self.messages, run_manager=manager,
                                            **self._kwargs(model))
        if isinstance(manager, _Held):
            manager.answered = True
        return answer_of(result)

    async def acall(self, ref: ModelRef, purpose: str, messages: Any = None) -> Answer:
        model: BaseChatModel = ref.model
        if messages is not None or not ref.candidate:
            input = self.messages if messages is None else _as_messages(messages)
            shared = {k: v for k, v in self.kwargs.items() if k in _SHARED_KWARGS}
            return answer_of(await model.ainvoke(input, self._own_config(ref, purpose),
                                                 **shared))
        model = answering(model, self.output_version)
        manager = self._reporting(ref)
        result = await model._agenerate_with_cache(self.messages, run_manager=manager,
                                                   **self._kwargs(model))
        if isinstance(manager, _Held):
            manager.answered = True
        return answer_of(result)

    def stream(self, ref: ModelRef, purpose: str) -> Iterator[Any]:
        model = answering(ref.model, self.output_version)
        kwargs = self._kwargs(model)
        if type(model)._stream is BaseChatModel._stream:
            result = model._generate_with_cache(self.messages, run_manager=self.run_manager,
                                                **kwargs)
            return iter([_as_chunk(result)])
        if model.rate_limiter is not None:  # stream() would acquire it; _stream does not
            model.rate_limiter.acquire(blocking=True)
        # No run manager: the routed model's own stream() reports each chunk it yields as a
        # token of the routed run, so passing it down would report every token twice.
        return iter(model._stream(self.messages, run_manager=None, **kwargs))

    def astream(self, ref: ModelRef, purpose: str) -> AsyncIterator[Any]:
        return self._astream(ref)

    async def _astream(self, ref: ModelRef) -> AsyncIterator[Any]:
        model = answering(ref.model, self.output_version)
        kwargs = self._kwargs(model)
        cls = type(model)
        if cls._astream is BaseChatModel._astream and cls._stream is BaseChatModel._stream:
            result = await model._agenerate_with_cache(self.messages,
                                                       run_manager=self.run_manager, **kwargs)
            yield _as_chunk(result)
            return
        if model.rate_limiter is not None:
            await model.rate_limiter.aacquire(blocking=True)
        async for chunk in model._astream(self.messages, run_manager=None, **kwargs):
            yield chunk

    def collect(self, ref: ModelRef, chunks: list[Any]) -> Answer:
        merged = chunks[0]
        for chunk in chunks[1:]:
            merged = merged + chunk
        return answer_of(merged)

    def stamp(self, raw: Any, record: dict[str, Any]) -> Any:
        """Unstamped: the v3 event stream keeps the last ``response_metadata`` value of each
        key while ``+`` merges them, so the record is on one chunk only, the closing one."""
        return raw

    def settle(self, last: Any, record: dict[str, Any], merged: Any = None) -> Any:
        return _closing(last, record, merged)

    def emit(self, name: str, payload: dict[str, Any]) -> None:
        if self.run_manager is not None:
            _run_dispatcher(self.run_manager, CallbackManager).on_custom_event(
                name, payload, run_id=self.run_manager.run_id)

    async def aemit(self, name: str, payload: dict[str, Any]) -> None:
        if self.run_manager is not None:
            await _run_dispatcher(self.run_manager, AsyncCallbackManager).on_custom_event(
                name, payload, run_id=self.run_manager.run_id)


def _as_chunk(result: ChatResult) -> ChatGenerationChunk:
    """A whole answer as the single, last chunk of a stream (for models that cannot stream)."""
    message = result.generations[0].message
    if not isinstance(message, AIMessage):
        raise TypeError(f"expected an AIMessage from the chosen model, got {type(message)}")
    return ChatGenerationChunk(message=_message_chunk(message),
                               generation_info=result.generations[0].generation_info)


def _message_chunk(message: AIMessage) -> AIMessageChunk:
    """A whole message as the single, last chunk of a stream, its tool calls -- the invalid
    ones too, which re-parsing their raw arguments would turn into partial valid ones -- kept
    as they were, and numbered as a streamed answer's tool-call chunks are."""
    chunk = AIMessageChunk(
        content=message.content,
        additional_kwargs=message.additional_kwargs,
        response_metadata=message.response_metadata,
        usage_metadata=message.usage_metadata,
        id=message.id,
        name=message.name,
        tool_calls=message.tool_calls,
        invalid_tool_calls=message.invalid_tool_calls,
        chunk_position="last",
    )
    for i, call_chunk in enumerate(chunk.tool_call_chunks):
        call_chunk["index"] = i
    return chunk


def _child_manager(run_manager: Any, manager_class: type[Any]) -> Any:
    """``ParentRunManager.get_child()`` for a chat-model run: inheritable handlers, tags and
    metadata, parented to the run."""
    manager = manager_class(handlers=[], parent_run_id=run_manager.run_id)
    manager.set_handlers(run_manager.inheritable_handlers)
    manager.add_tags(run_manager.inheritable_tags)
    manager.add_metadata(run_manager.inheritable_metadata)
    return manager


def _run_dispatcher(run_manager: Any, manager_class: type[Any]) -> Any:
    """A (sync or async) manager that dispatches custom events to a chat-model run's handlers."""
    return manager_class(
        handlers=run_manager.handlers,
        inheritable_handlers=run_manager.inheritable_handlers,
        parent_run_id=run_manager.parent_run_id,
        tags=run_manager.tags,
        metadata=run_manager.metadata,
    )
