"""``RoutedChatModel``: a LangChain chat model that sends each call to one of several others.

One call is: decide (pure, shared by sync and async) -> budget hook -> call the chosen model ->
cascade hook -> record. The Runnable entry points (invoke, ainvoke, stream, astream; batch and
abatch come through invoke) open a *chain* run named after the class, dispatch the
``langroute.route`` event inside it and call the chosen model with a child config, so the chosen
model's chat-model run is the only chat-model run of the call and a child of the routed run:
usage is counted once. ``_generate`` / ``_stream`` and their async forms serve ``generate()`` and
the v3 event stream, where the routed run already *is* the chat-model run; they call the chosen
model's generation directly so that, there too, only one chat-model run exists.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from langchain_core.callbacks import (
    AsyncCallbackManager,
    AsyncCallbackManagerForChainRun,
    AsyncCallbackManagerForLLMRun,
    CallbackManager,
    CallbackManagerForChainRun,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.base import LangSmithParams
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableConfig, ensure_config
from langchain_core.runnables.config import merge_configs, run_in_executor
from pydantic import ConfigDict, PrivateAttr, field_validator, model_validator

from ._bindings import (
    BINDING_KWARG,
    PendingBinding,
    StructuredOutputBinding,
    ToolsBinding,
    call_kwargs_of,
)
from ._decision import (
    REASON_UNIDENTIFIED_MAKER,
    ROUTE_EVENT,
    RoutingDecision,
    RoutingPolicy,
)
from ._messages import find_tool_loop, last_user_text, routing_text

__all__ = ["RoutedChatModel"]

_M = TypeVar("_M", CallbackManager, AsyncCallbackManager)


@dataclass(frozen=True)
class _Call:
    """Everything one routed call needs once the decision is made."""

    decision: RoutingDecision
    binding: PendingBinding | None
    kwargs: dict[str, Any]


class RoutedChatModel(BaseChatModel):
    """A chat model that routes each call to the cheapest candidate likely to answer it well.

    Parameters
    ----------
    models : dict of str to BaseChatModel
        The candidates, keyed by the names the router was fitted with.
    router : BaseRouter
        A fitted langroute router that knows every name in ``models``.
    threshold : float
        In [0, 1]. The ladder climbs from the cheapest candidate and stops at the first one no
        pricier candidate beats with probability >= ``threshold``; with two models the strong
        one is called iff P(strong wins) >= ``threshold``. 0 always calls the best model.
    costs : dict of str to float, default=None
        USD per call of each candidate (orders the ladder and is the per-call spend estimate).
        Default: the router's mean cost per call from its training outcomes.
    trace_prompt : bool, default=False
        Put the routing text itself in the ``langroute.route`` event (by default only its length
        and SHA-256 are traced).
    temperature, max_tokens, stop : default=None
        Standard parameters passed to whichever model is chosen (per-call values win).
    streaming : bool, default=False
        Have the chosen model stream even under ``invoke`` (passes ``stream=True`` to it), so
        token callbacks fire; the answer is the same.

    Notes
    -----
    Only the text parts of the last user message are routed on. While a tool loop is in flight
    (the last messages answer the latest AIMessage's tool calls), the model that made the calls
    answers them. ``bind_tools`` and ``with_structured_output`` are replayed on the chosen model
    through its own methods; unknown call keywords pass through to it unchanged -- including
    ``model=``, which the chosen client reads as its own model override (it does not pick a
    candidate). Credentials, timeouts and retries (``api_key``, ``timeout``, ``max_retries``)
    belong on each candidate client: the routed model makes no requests of its own and rejects
    them.

    Examples
    --------
    >>> routed = RoutedChatModel(  # doctest: +SKIP
    ...     models={"gpt-4-1106-preview": ChatOpenAI(model="gpt-4o"),
    ...             "mixtral-8x7b-instruct-v0.1": ChatOpenAI(model="gpt-4o-mini")},
    ...     router=SWRouter().fit(load_outcomes("../shared/data/routellm-gsm8k")),
    ...     threshold=0.5,
    ... )
    >>> print(routed.route("What is 17 * 23?"))  # doctest: +SKIP
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    models: dict[str, BaseChatModel]
    router: Any
    threshold: float
    costs: dict[str, float] | None = None
    trace_prompt: bool = False
    temperature: float | None = None
    max_tokens: int | None = None
    stop: list[str] | None = None
    streaming: bool = False

    _policy: RoutingPolicy | None = PrivateAttr(default=None)
    _policy_key: tuple[Any, ...] | None = PrivateAttr(default=None)

    # -- validation -------------------------------------------------------------------------------
    @field_validator("models", mode="before")
    @classmethod
    def _check_models(cls, value: Any) -> Any:
        if not isinstance(value, Mapping):
            raise ValueError(
                f"models must be a dict of name -> chat model, got {type(value).__name__}"
            )
        if not value:
            raise ValueError("models is empty; give at least one chat model")
        for name, model in value.items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"model names must be non-empty str, got {name!r}")
            if not isinstance(model, BaseChatModel):
                raise ValueError(
                    f"models[{name!r}] is a {type(model).__name__}, not a LangChain BaseChatModel"
                )
        return dict(value)

    @field_validator("threshold", mode="before")
    @classmethod
    def _check_threshold(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"threshold must be a number in [0, 1], got {value!r}")
        if not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"threshold must lie in [0, 1], got {value!r}")
        return float(value)

    @model_validator(mode="after")
    def _check_routing(self) -> RoutedChatModel:
        # Calls pass through to the chosen model, which owns caching and rate limiting.
        if self.rate_limiter is not None:
            raise ValueError("rate_limiter belongs on the candidate models, not on RoutedChatModel")
        if self.cache is not None and self.cache is not False:
            raise ValueError("cache belongs on the candidate models, not on RoutedChatModel")
        self._routing_policy()  # raises RouterConfigError / NotFittedError naming the problem
        return self

    def _routing_policy(self) -> RoutingPolicy:
        """The policy for the current fields (rebuilt if a field was reassigned)."""
        router = self.router
        fitted = getattr(router, "is_fitted", True)  # a refit router gets new learned arrays
        costs = None if self.costs is None else tuple(sorted(self.costs.items()))
        key = (id(router), fitted and id(getattr(router, "costs_", None)),
               fitted and id(getattr(router, "quality_", None)), self.threshold,
               tuple(self.models), costs)
        if self._policy is None or self._policy_key != key:
            self._policy = RoutingPolicy.build(self.router, list(self.models), self.threshold,
                                               self.costs)
            self._policy_key = key
        return self._policy

    # -- what LangChain asks of a chat model -------------------------------------------------------
    @property
    def _llm_type(self) -> str:
        return "langroute-routed"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "models": {
                name: {"_type": model._llm_type, **model._identifying_params}
                for name, model in self.models.items()
            },
            "router": self._routing_policy().router_kind,
            "threshold": self.threshold,
        }

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        model = kwargs.get("model")
        params = LangSmithParams(
            ls_provider="langroute",
            ls_model_name=model if isinstance(model, str) else "|".join(self.models),
            ls_model_type="chat",
        )
        temperature = kwargs.get("temperature", self.temperature)
        if isinstance(temperature, (int, float)):
            params["ls_temperature"] = temperature
        max_tokens = kwargs.get("max_tokens", self.max_tokens)
        if isinstance(max_tokens, int):
            params["ls_max_tokens"] = max_tokens
        if stop or self.stop:
            params["ls_stop"] = stop or self.stop
        return params

    def _should_stream(self, *, async_api: bool, run_manager: Any = None, **kwargs: Any) -> bool:
        # generate() must reach _generate, which owns the decision event; the chosen model
        # still streams tokens to the run's handlers from inside its own generation.
        return False

    # -- the pure part: decide ------------------------------------------------------------------
    def route(self, input: LanguageModelInput) -> RoutingDecision:
        """Decide which model would answer ``input``, without calling any model."""
        messages = self._convert_input(input).to_messages()
        policy = self._routing_policy()
        loop = find_tool_loop(messages, self.models)
        if loop is not None and loop.maker is not None:
            # the router is not asked, so a conversation without user text can still continue
            text = last_user_text(messages) or ""
            return policy.stick(loop.maker, text, note=loop.note, keep_text=self.trace_prompt)
        (decision,) = policy.decide([routing_text(messages)], keep_text=self.trace_prompt)
        if loop is not None:
            decision = replace(decision, reason=REASON_UNIDENTIFIED_MAKER, note=loop.note)
        return decision

    def _prepare(self, input: LanguageModelInput, stop: list[str] | None,
                 kwargs: Mapping[str, Any]) -> _Call:
        call_kwargs = dict(kwargs)
        binding = call_kwargs.pop(BINDING_KWARG, None)
        if binding is not None and not isinstance(binding, (ToolsBinding, StructuredOutputBinding)):
            raise TypeError(f"{BINDING_KWARG} is reserved for langroute, got {type(binding)}")
        for name in ("temperature", "max_tokens"):
            value = getattr(self, name)
            if value is not None:
                call_kwargs.setdefault(name, value)
        if self.streaming:
            call_kwargs.setdefault("stream", True)
        stop = stop if stop is not None else self.stop
        if stop is not None:
            call_kwargs["stop"] = stop
        decision = self._apply_budget(self.route(input))
        return _Call(decision, binding, call_kwargs)

    # -- seams for later steps ------------------------------------------------------------------
    def _apply_budget(self, decision: RoutingDecision) -> RoutingDecision:
        """Budget check hook, between deciding and calling: may replace the decision.

        No budgets yet; the decision passes unchanged.
        """
        return decision

    def _check_cascade(self, call: _Call, output: Any) -> Any:
        """Cascade hook, after the chosen model answered: may escalate to a stronger model.

        No cascade yet; the output passes unchanged.
        """
        return output

    def _record(self, call: _Call, output: Any) -> Any:
        """Attach the decision to the answer: ``response_metadata["langroute"]``."""
        if isinstance(output, AIMessage):
            return _stamped(output, call.decision)
        if isinstance(output, dict) and isinstance(output.get("raw"), AIMessage):
            return {**output, "raw": _stamped(output["raw"], call.decision)}
        return output

    def _chosen_runnable(self, call: _Call) -> Runnable[Any, Any]:
        model = self.models[call.decision.model]
        return model if call.binding is None else call.binding.apply(model)

    def _routed_config(self, config: RunnableConfig | None, call: _Call) -> RunnableConfig:
        # The model's own callbacks, tags and metadata apply as they would to any chat model.
        own: RunnableConfig = {"callbacks": self.callbacks, "tags": self.tags or [],
                               "metadata": self.metadata or {}}
        config = merge_configs(own, ensure_config(config))
        metadata = {
            **(config.get("metadata") or {}),
            "langroute_model": call.decision.model,
            "langroute_threshold": call.decision.threshold,
            "langroute_reason": call.decision.reason,
        }
        return {**config, "metadata": metadata}

    # -- Runnable entry points: a chain run around the chosen model's own run ----------------------
    def invoke(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> Any:
        call = self._prepare(input, stop, kwargs)
        # (core types these helpers' functions without extra keywords; ``call`` is passed through)
        return self._call_with_config(self._invoke_chosen, input,  # type: ignore[arg-type]
                                      self._routed_config(config, call), call=call)

    def _invoke_chosen(self, input: LanguageModelInput, run_manager: CallbackManagerForChainRun,
                       config: RunnableConfig, *, call: _Call) -> Any:
        run_manager.get_child().on_custom_event(ROUTE_EVENT, call.decision.to_event(),
                                                run_id=run_manager.run_id)
        output = self._chosen_runnable(call).invoke(input, config, **call.kwargs)
        return self._record(call, self._check_cascade(call, output))

    async def ainvoke(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> Any:
        call = await run_in_executor(None, self._prepare, input, stop, kwargs)
        return await self._acall_with_config(self._ainvoke_chosen, input,  # type: ignore[arg-type]
                                             self._routed_config(config, call), call=call)

    async def _ainvoke_chosen(self, input: LanguageModelInput,
                              run_manager: AsyncCallbackManagerForChainRun,
                              config: RunnableConfig, *, call: _Call) -> Any:
        await run_manager.get_child().on_custom_event(ROUTE_EVENT, call.decision.to_event(),
                                                      run_id=run_manager.run_id)
        output = await self._chosen_runnable(call).ainvoke(input, config, **call.kwargs)
        return self._record(call, self._check_cascade(call, output))

    def stream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> Iterator[Any]:
        call = self._prepare(input, stop, kwargs)
        yield from self._transform_stream_with_config(
            iter([input]), self._stream_chosen,  # type: ignore[arg-type]
            self._routed_config(config, call), call=call,
        )

    def _stream_chosen(self, inputs: Iterator[LanguageModelInput],
                       run_manager: CallbackManagerForChainRun, config: RunnableConfig, *,
                       call: _Call) -> Iterator[Any]:
        (input,) = inputs
        run_manager.get_child().on_custom_event(ROUTE_EVENT, call.decision.to_event(),
                                                run_id=run_manager.run_id)
        stamped = False
        for chunk in self._chosen_runnable(call).stream(input, config, **call.kwargs):
            if not stamped and isinstance(chunk, AIMessage):
                chunk, stamped = self._record(call, chunk), True
            yield chunk

    async def astream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[Any]:
        call = await run_in_executor(None, self._prepare, input, stop, kwargs)

        async def single() -> AsyncIterator[LanguageModelInput]:
            yield input

        async for chunk in self._atransform_stream_with_config(
            single(), self._astream_chosen,  # type: ignore[arg-type]
            self._routed_config(config, call), call=call,
        ):
            yield chunk

    async def _astream_chosen(self, inputs: AsyncIterator[LanguageModelInput],
                              run_manager: AsyncCallbackManagerForChainRun,
                              config: RunnableConfig, *, call: _Call) -> AsyncIterator[Any]:
        input = [item async for item in inputs][0]
        await run_manager.get_child().on_custom_event(ROUTE_EVENT, call.decision.to_event(),
                                                      run_id=run_manager.run_id)
        stamped = False
        async for chunk in self._chosen_runnable(call).astream(input, config, **call.kwargs):
            if not stamped and isinstance(chunk, AIMessage):
                chunk, stamped = self._record(call, chunk), True
            yield chunk

    # -- tools and structured output: replayed on whichever model is chosen -----------------------
    def bind_tools(
        self,
        tools: Sequence[Any],
        *,
        tool_choice: Any = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools; the chosen model's own ``bind_tools`` formats them at each call."""
        binding = ToolsBinding(tuple(tools), tool_choice, dict(kwargs))
        return self.bind(**{BINDING_KWARG: binding})

    def with_structured_output(
        self,
        schema: dict[str, Any] | type,
        *,
        include_raw: bool = False,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, Any]:
        """Structured output through the chosen model's own ``with_structured_output``.

        Keywords such as ``method=`` ("function_calling", "json_schema", "json_mode") and
        ``strict=`` pass through; with ``include_raw=True`` the raw message carries the decision.
        """
        binding = StructuredOutputBinding(schema, include_raw, dict(kwargs))
        return self.bind(**{BINDING_KWARG: binding})

    # -- generate() and the v3 event stream: the routed run is the chat-model run -----------------
    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        call = self._prepare(messages, stop, kwargs)
        model = self.models[call.decision.model]
        extra = call_kwargs_of(call.binding, model)
        if run_manager is not None:
            _run_dispatcher(run_manager, CallbackManager).on_custom_event(
                ROUTE_EVENT, call.decision.to_event(), run_id=run_manager.run_id)
        result = model._generate_with_cache(messages, run_manager=run_manager,
                                            **{**call.kwargs, **extra})
        return self._stamped_result(call, self._check_cascade(call, result))

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        call = await run_in_executor(None, self._prepare, messages, stop, kwargs)
        model = self.models[call.decision.model]
        extra = call_kwargs_of(call.binding, model)
        if run_manager is not None:
            await _run_dispatcher(run_manager, AsyncCallbackManager).on_custom_event(
                ROUTE_EVENT, call.decision.to_event(), run_id=run_manager.run_id)
        result = await model._agenerate_with_cache(messages, run_manager=run_manager,
                                                   **{**call.kwargs, **extra})
        return self._stamped_result(call, self._check_cascade(call, result))

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        call = self._prepare(messages, stop, kwargs)
        model = self.models[call.decision.model]
        extra = {**call.kwargs, **call_kwargs_of(call.binding, model)}
        if run_manager is not None:
            _run_dispatcher(run_manager, CallbackManager).on_custom_event(
                ROUTE_EVENT, call.decision.to_event(), run_id=run_manager.run_id)
        if type(model)._stream is BaseChatModel._stream:
            result = model._generate_with_cache(messages, run_manager=run_manager, **extra)
            chunks: Iterator[ChatGenerationChunk] = iter([_as_chunk(result)])
        else:
            chunks = model._stream(messages, run_manager=run_manager, **extra)
        yield from self._stamped_chunks(call, chunks)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        call = await run_in_executor(None, self._prepare, messages, stop, kwargs)
        model = self.models[call.decision.model]
        extra = {**call.kwargs, **call_kwargs_of(call.binding, model)}
        if run_manager is not None:
            await _run_dispatcher(run_manager, AsyncCallbackManager).on_custom_event(
                ROUTE_EVENT, call.decision.to_event(), run_id=run_manager.run_id)
        cls = type(model)
        if cls._astream is BaseChatModel._astream and cls._stream is BaseChatModel._stream:
            result = await model._agenerate_with_cache(messages, run_manager=run_manager, **extra)
            chunk = self._record_chunk(call, _as_chunk(result))
            yield chunk
            return
        stamped = False
        async for chunk in model._astream(messages, run_manager=run_manager, **extra):
            if not stamped:
                chunk, stamped = self._record_chunk(call, chunk), True
            yield chunk

    def _stamped_result(self, call: _Call, result: ChatResult) -> ChatResult:
        generations = [
            ChatGeneration(message=self._record(call, g.message), generation_info=g.generation_info)
            for g in result.generations
        ]
        return ChatResult(generations=generations, llm_output=result.llm_output)

    def _stamped_chunks(self, call: _Call, chunks: Iterator[ChatGenerationChunk]
                        ) -> Iterator[ChatGenerationChunk]:
        stamped = False
        for chunk in chunks:
            if not stamped:
                chunk, stamped = self._record_chunk(call, chunk), True
            yield chunk

    def _record_chunk(self, call: _Call, chunk: ChatGenerationChunk) -> ChatGenerationChunk:
        return ChatGenerationChunk(message=self._record(call, chunk.message),
                                   generation_info=chunk.generation_info)


def _stamped(message: AIMessage, decision: RoutingDecision) -> AIMessage:
    metadata = {**message.response_metadata, "langroute": decision.to_event()}
    return message.model_copy(update={"response_metadata": metadata})


def _as_chunk(result: ChatResult) -> ChatGenerationChunk:
    """A whole answer as the single, last chunk of a stream (for models that cannot stream)."""
    message = result.generations[0].message
    if not isinstance(message, AIMessage):
        raise TypeError(f"expected an AIMessage from the chosen model, got {type(message)}")
    chunk = AIMessageChunk(
        content=message.content,
        additional_kwargs=message.additional_kwargs,
        response_metadata=message.response_metadata,
        usage_metadata=message.usage_metadata,
        id=message.id,
        name=message.name,
        tool_call_chunks=[
            tool_call_chunk(name=tc["name"], args=json.dumps(tc["args"]), id=tc["id"], index=i)
            for i, tc in enumerate(message.tool_calls)
        ],
        chunk_position="last",
    )
    return ChatGenerationChunk(message=chunk, generation_info=result.generations[0].generation_info)


def _run_dispatcher(run_manager: Any, manager_class: type[_M]) -> _M:
    """A (sync or async) manager that dispatches custom events to a chat-model run's handlers."""
    return manager_class(
        handlers=run_manager.handlers,
        inheritable_handlers=run_manager.inheritable_handlers,
        parent_run_id=run_manager.parent_run_id,
        tags=run_manager.tags,
        metadata=run_manager.metadata,
    )
