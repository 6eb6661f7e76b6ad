"""``RoutedLLM``: a LlamaIndex ``FunctionCallingLLM`` that sends each call to one of several LLMs.

It is a thin adapter over langroute's framework-free call pipeline (decide -> budget -> call ->
cascade -> record): every entry point (chat, complete, their stream and async forms, the tool
and structured-output methods built on them) builds one ``RouteRequest`` and runs the same
``CallPipeline`` with the sync, async or streaming driver; ``LlamaCaller`` says how to call a
LlamaIndex LLM and where events go. ``predict`` and its forms are LlamaIndex's, except that the
chosen candidate formats the template itself (``_prompts``); so are ``structured_predict`` and
its forms, except that the chosen candidate formats the program's chat messages itself.
"""

from __future__ import annotations

import json
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Generator,
    Iterator,
    Mapping,
    Sequence,
)
from typing import TYPE_CHECKING, Any

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
)
from llama_index.core.bridge.pydantic import Field, PrivateAttr, SerializeAsAny, ValidationError
from llama_index.core.callbacks import CallbackManager
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.dispatcher import active_instrument_tags
from llama_index.core.instrumentation.events.llm import LLMPredictEndEvent, LLMPredictStartEvent
from llama_index.core.instrumentation.span import active_span_id
from llama_index.core.llms import LLM
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.llms.llm import ToolSelection
from llama_index.core.prompts import BasePromptTemplate, PromptTemplate
from llama_index.core.types import Model, TokenAsyncGen, TokenGen

from langroute import MessageError, RouterConfigError
from langroute._routing_text import shape_request
from langroute._urls import redacted_stores
from langroute.feedback import FeedbackMethods
from langroute.pipeline import (
    CallContext,
    CallPipeline,
    CascadeStep,
    ModelRef,
    RouteRequest,
    TokenEstimate,
    estimated_prompt_tokens,
    run_async,
    run_sync,
    stream_async,
    stream_sync,
)
from langroute.pipeline._assembly import (
    PipelineCache,
    check_budgets,
    check_cascade,
    check_positive,
    check_prices_arg,
    check_unit_interval,
)
from langroute.pipeline._types import INPUT_KEYS, call_metadata

from ._callbacks import adopt
from ._caller import LlamaCaller, ToolsRequest
from ._messages import (
    RECORD_KEY,
    find_tool_loop,
    prompt_turns,
    stamp_response,
    stamped_model,
    turns,
)
from ._prompts import TemplateCall, check_parsers

if TYPE_CHECKING:
    from llama_index.core.tools.types import BaseTool

__all__ = ["RoutedLLM"]

dispatcher = get_dispatcher(__name__)

#: Keyword that carries a held-back ``chat_with_tools`` request from ``_prepare_chat_with_tools``
#: to ``chat`` (reserved; any other value is rejected).
TOOLS_KWARG = "langroute_tools"

#: Keyword that carries a ``structured_predict`` call's template from the structured-output
#: program (in its ``llm_kwargs``) to ``chat`` (reserved; any other value is rejected).
STRUCTURED_KWARG = "langroute_structured"


class RoutedLLM(FeedbackMethods, FunctionCallingLLM):
    """A LlamaIndex LLM that routes each call to the cheapest candidate likely to answer it well.

    Parameters
    ----------
    llms : dict of str to LLM
        The candidates, keyed by the names the router was fitted with.
    router : BaseRouter
        A fitted langroute router that knows every name in ``llms``.
    threshold : float, default=None
        In [0, 1]. The ladder climbs from the cheapest candidate and stops at the first one no
        pricier candidate beats with probability >= ``threshold``; 0 always calls the best one.
    strong_fraction : float, default=None
        Share of calls that should go to the top rung, resolved to a threshold from the
        router's own out-of-fold calibration scores. Give exactly one of ``threshold``,
        ``strong_fraction``, ``target_cost``.
    target_cost : float, default=None
        Average USD per call to aim for, resolved the same way.
    costs : dict of str to float, default=None
        USD per call of each candidate (orders the ladder). Default: the router's ``costs_``.
    timeout : float, default=None
        Seconds one provider call may take before it counts as failed (and is retried).
    max_retries : int, default=2
        Retries of a candidate on retryable errors (429, 5xx, timeouts) before falling back.
        Give the candidates ``max_retries=0`` so retries are not stacked.
    fallback : {"stronger", "cheaper"} or None, default="stronger"
        Where a call goes once a candidate's retries are spent on retryable errors.
    cascade : CascadeStep, default=None
        Answer-checking escalation (``langroute.cascade.Cascade``).
    budgets : dict of str to Budget, default=None
        Per-scope cost limits (``langroute.budgets.Budget``), kept in ``spend_store``. The scope
        is read from LlamaIndex's ``instrument_tags`` (``agent``, ``user`` or ``tenant``), as is
        a per-call threshold (``langroute_threshold``); any other ``langroute_`` tag (a misspelt
        one, or ``langroute_model``, which pins nothing) is a ``RouterConfigError``.
    spend_store : str, default=None
        ``"sqlite:///spend.db"`` (default ``sqlite:///langroute-spend.db`` when budgets are
        given), ``"redis://host:port/0"`` or ``"memory://"``.
    prices : dict, default=None
        Budget prices overriding or adding to genai-prices' table, by candidate name or provider
        model id, in USD per million tokens: ``{"my-model": {"input_mtok": 0.5,
        "output_mtok": 1.5, "cache_read_mtok": 0.05}}``. A candidate neither table nor
        ``prices`` knows (a fine-tune, a self-hosted model) is a ``RouterConfigError`` when
        budgets are given.
    trace_prompt : bool, default=False
        Put the routing text itself in the decision (by default only its length and SHA-256).
    feedback_store : str or FeedbackStore, default=None
        Where every routed decision is recorded for feedback (``"sqlite:///feedback.db"``,
        ``"redis://host:port/0"``, ``"memory://"`` or an opened ``FeedbackStore``); then
        ``record_feedback`` / ``record_preference`` teach the router from a call's
        ``additional_kwargs["langroute"]["decision_id"]``.
    refitter : langroute.feedback.FeedbackRefitter, default=None
        For a router without ``partial_fit``: feedback is stored, then the router is refitted
        when the refitter's ``RefitPolicy`` says so. Decisions are recorded in
        ``refitter.store`` (``feedback_store`` must be None or that store).

    Notes
    -----
    The text blocks of the last user message are routed on (when it has none, the nearest
    message with text, earlier ones first; with no text at all, the top rung answers: the rule
    is ``langroute._routing_text``'s, as in RoutedChatModel). While a tool loop is in flight
    (the conversation ends in tool results), the candidate that made the calls answers them: its
    name is stamped into each answer's ``message.additional_kwargs["langroute_model"]``.
    Tools are formatted by the chosen candidate's own ``_prepare_chat_with_tools``. The call
    record (decision, who answered, attempts) is in ``response.additional_kwargs["langroute"]``;
    a stream ends with a chunk with no text carrying the settled record (usage, latency and cost
    of every attempt): keep the last chunk.
    During this LLM's calls, candidates and cascade verifier LLMs without callback handlers of
    their own report to this LLM's ``callback_manager`` (which LlamaIndex sets from
    ``Settings``), so token counters see each provider call once; a candidate shared with
    another RoutedLLM reports each call to the RoutedLLM that made it. This LLM itself emits no
    LLM callback events. ``predict`` / ``stream`` (and their async forms, which query engines
    call) send the chosen candidate the template formatted as its own ``predict`` would
    (``messages_to_prompt``, ``completion_to_prompt``, ``system_prompt``,
    ``query_wrapper_prompt``, ``output_parser``); this LLM's ``system_prompt``,
    ``query_wrapper_prompt`` and ``output_parser`` go inside the candidate's. Where
    ``structured_predict`` (and its stream and async forms) chats, the chosen candidate gets the
    program's messages with its own ``system_prompt`` (this LLM's inside it); where it completes
    (some candidate is completion-only), the prompt goes unformatted to ``complete``, which a
    completion candidate formats itself, as when called directly. ``chat``
    sends the messages as given, as the candidate's own ``chat`` is sent them (most LlamaIndex
    chat models apply ``system_prompt`` only in ``predict`` / ``structured_predict``; agents
    and chat engines take a system prompt of their own).
    """

    llms: dict[str, SerializeAsAny[LLM]] = Field(description="The candidates, by routing name.")
    router: Any = Field(exclude=True, description="A fitted langroute router.")
    threshold: float | None = Field(default=None, description="Escalation threshold.")
    strong_fraction: float | None = Field(default=None, description="Share of top-rung calls.")
    target_cost: float | None = Field(default=None, description="Average USD per call.")
    costs: dict[str, float] | None = Field(default=None, description="USD per call.")
    timeout: float | None = Field(default=None, description="Per-attempt deadline (s).")
    max_retries: int = Field(default=2, description="Retries per candidate.")
    fallback: str | None = Field(default="stronger", description="Fallback direction.")
    cascade: Any = Field(default=None, exclude=True, description="A langroute CascadeStep.")
    budgets: dict[str, Any] | None = Field(default=None, exclude=True,
                                           description="Per-scope langroute Budgets.")
    spend_store: Any = Field(default=None, exclude=True, description="Where spend is kept.")
    prices: dict[str, Any] | None = Field(default=None, exclude=True,
                                          description="Budget prices (USD per million tokens).")
    trace_prompt: bool = Field(default=False, description="Keep the routing text in traces.")
    feedback_store: Any = Field(default=None, exclude=True,
                                description="Where decisions are recorded for feedback.")
    refitter: Any = Field(default=None, exclude=True,
                          description="A langroute FeedbackRefitter.")

    _pipelines: PipelineCache = PrivateAttr(default_factory=PipelineCache)
    _feedback: Any = PrivateAttr(default=None)

    def __repr_args__(self) -> Any:
        return redacted_stores(super().__repr_args__())

    def __init__(
        self,
        llms: Mapping[str, LLM],
        *,
        router: Any,
        threshold: float | None = None,
        strong_fraction: float | None = None,
        target_cost: float | None = None,
        costs: Mapping[str, float] | None = None,
        timeout: float | None = None,
        max_retries: int = 2,
        fallback: str | None = "stronger",
        cascade: CascadeStep | None = None,
        budgets: Mapping[str, Any] | None = None,
        spend_store: Any = None,
        prices: Mapping[str, Any] | None = None,
        trace_prompt: bool = False,
        feedback_store: Any = None,
        refitter: Any = None,
        callback_manager: CallbackManager | None = None,
        **kwargs: Any,
    ) -> None:
        # Checked before pydantic sees them, so bad input raises langroute's own errors.
        _check_llms(llms)
        _check_options(threshold, strong_fraction, target_cost, timeout)
        budgets = check_budgets(budgets)  # first: a malformed budgets= is reported as such
        prices = check_prices_arg(prices)
        # a verifier is a candidate's name or a LlamaIndex LLM; with budgets it is priced when
        # the pipeline is built below, like the candidates
        check_cascade(cascade, llms, lambda model: isinstance(model, LLM), "LlamaIndex LLM")
        _check_extra(kwargs)
        try:
            super().__init__(
                llms=dict(llms), router=router, threshold=threshold,
                strong_fraction=strong_fraction, target_cost=target_cost,
                costs=None if costs is None else dict(costs), timeout=timeout,
                max_retries=max_retries, fallback=fallback, cascade=cascade,
                budgets=budgets, spend_store=spend_store, prices=prices,
                trace_prompt=trace_prompt, feedback_store=feedback_store, refitter=refitter,
                callback_manager=callback_manager, **kwargs,
            )
        except ValidationError as exc:
            raise RouterConfigError(f"invalid RoutedLLM arguments: {exc}") from exc
        # The router, names, costs, retries, fallback, budgets and prices are checked by langroute's
        # own constructors (RouterConfigError / NotFittedError naming the problem).
        self._current_pipeline()
        warm = getattr(router, "warm_up", None)
        if callable(warm):  # load the router's embedder now, not on the first call
            warm()
        self._share_callbacks()

    @classmethod
    def class_name(cls) -> str:
        return "langroute_routed_llm"

    # -- callbacks: candidates and verifiers report to the manager of the call's RoutedLLM ----
    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if name in ("llms", "cascade"):
            self._share_callbacks()

    def _share_callbacks(self) -> None:
        """Candidates (and a cascade's verifier LLMs, which make this LLM's provider calls too)
        without handlers of their own report to the manager of the RoutedLLM whose call runs
        (``_callbacks``): set once here, read per call, so a candidate can serve several."""
        asked = [ref.model for ref in getattr(self.cascade, "asks", ())
                 if isinstance(ref.model, LLM)]
        for llm in [*self.llms.values(), *asked]:
            adopt(llm)

    # -- the pipeline ---------------------------------------------------------------------------
    def _current_pipeline(self) -> CallPipeline:
        """The pipeline for the current fields (rebuilt when a field or the router's fit
        changes); the checks and the operating point are langroute's own."""
        return self._pipelines.get(
            router=self.router, models=self.llms, describe=_describe,
            threshold=self.threshold, strong_fraction=self.strong_fraction,
            target_cost=self.target_cost, costs=self.costs, max_retries=self.max_retries,
            fallback=self.fallback, timeout=self.timeout, cascade=self.cascade,
            budgets=self.budgets, spend_store=self.spend_store, prices=self.prices,
            keep_text=self.trace_prompt,
            recorders=lambda: self.feedback.recorders(),
            depends_on=(self.feedback_store, self.refitter),
        )

    @property
    def pipeline(self) -> CallPipeline:
        """The call pipeline every entry point runs. Its ``sleep`` / ``asleep`` are injectable,
        e.g. to record backoff waits."""
        return self._current_pipeline()

    def route(self, messages: str | Sequence[ChatMessage]) -> Any:
        """Decide which candidate would answer, without calling any model."""
        if isinstance(messages, str):
            messages = [ChatMessage(role=MessageRole.USER, content=messages)]
        pipeline = self._current_pipeline()
        (decision,) = pipeline.decide([self._request(list(messages), None)])
        return decision

    def _request(self, messages: list[ChatMessage] | None, prompt: str | None) -> RouteRequest:
        # nothing writes langroute_ keys into LlamaIndex tags: only the inputs are allowed
        tags = active_instrument_tags.get()
        context = CallContext(metadata=call_metadata(tags, allowed=INPUT_KEYS))
        if prompt is not None:  # a prompt is one user turn; a blank one goes to the top rung
            messages = [ChatMessage(role=MessageRole.USER, content=prompt)]
            shaped = shape_request(prompt_turns(prompt))
        else:
            assert messages is not None
            # a loop's maker answers without asking the router; no text at all: the top rung
            shaped = shape_request(turns(messages), find_tool_loop(messages, self.llms))
        return RouteRequest(shaped.text, context, shaped.sticky_model, shaped.note,
                            unidentified_loop=shaped.unidentified_loop, messages=messages)

    def _caller(self, messages: Sequence[ChatMessage] | None, kwargs: dict[str, Any],
                prompt: str | None = None, formatted: bool = False,
                template: TemplateCall | None = None) -> LlamaCaller:
        tools = kwargs.pop(TOOLS_KWARG, None)
        if tools is not None and not isinstance(tools, ToolsRequest):
            raise TypeError(f"{TOOLS_KWARG} is reserved for langroute, got {type(tools)}")
        structured = kwargs.pop(STRUCTURED_KWARG, None)
        if structured is not None and not isinstance(structured, TemplateCall):
            raise TypeError(f"{STRUCTURED_KWARG} is reserved for langroute, got {type(structured)}")
        if structured is not None and messages is not None:
            # the program chats: the candidate gets the messages it would be sent directly. When
            # it completes, the prompt goes as is (formatted=False), as a direct call sends it.
            template = structured
        return LlamaCaller(messages=None if messages is None else list(messages), prompt=prompt,
                           formatted=formatted, kwargs=kwargs, tools=tools,
                           span_id=active_span_id.get(), template=template,
                           callbacks=self.callback_manager)

    def _template_caller(self, template: BasePromptTemplate,
                         args: dict[str, Any]) -> LlamaCaller:
        """A ``predict`` call: routed on the template as this LLM's ``predict`` would format it
        (so routing is as before), sent as the chosen candidate's own would."""
        check_parsers(self, self.llms)
        call = TemplateCall(template, args, self)
        if self.metadata.is_chat_model:
            return self._caller(self._get_messages(template, **args), {}, template=call)
        return self._caller(None, {}, self._get_prompt(template, **args), True, call)

    def _predicted(self, response: ChatResponse | CompletionResponse,
                   caller: LlamaCaller) -> str:
        """The answer as the candidate that gave it would return it from ``predict``."""
        assert caller.template is not None
        text = (response.message.content if isinstance(response, ChatResponse)
                else response.text) or ""
        writer = self.llms[response.additional_kwargs[RECORD_KEY]["answered_by"]]
        return caller.template.parse(writer, text)

    def _check_streamable(self, template: BasePromptTemplate) -> None:
        """LlamaIndex's ``stream`` cannot apply an output parser: say which one is set."""
        owners = [f"llms[{name!r}]" for name, llm in self.llms.items() if llm.output_parser]
        owners += ["the prompt"] * (template.output_parser is not None)
        owners += ["RoutedLLM"] * (self.output_parser is not None)
        if owners:
            raise NotImplementedError(
                f"{', '.join(owners)} set an output parser, which LlamaIndex's stream() does "
                "not support: use predict()")

    def _estimator(self, caller: LlamaCaller) -> Callable[[ModelRef], TokenEstimate]:
        return lambda ref: _estimate(caller, ref)

    def _run(self, caller: LlamaCaller) -> Any:
        request = self._request(caller.messages, caller.prompt)
        pipeline = self._current_pipeline().run(request, estimate=self._estimator(caller))
        with caller.running():
            result = run_sync(pipeline, caller)
        return caller.stamp(result.answer.raw, result.record())

    async def _arun(self, caller: LlamaCaller) -> Any:
        request = self._request(caller.messages, caller.prompt)
        pipeline = self._current_pipeline().run(request, estimate=self._estimator(caller))
        with caller.running():
            result = await run_async(pipeline, caller)
        return caller.stamp(result.answer.raw, result.record())

    def _stream(self, caller: LlamaCaller) -> Iterator[Any]:
        request = self._request(caller.messages, caller.prompt)  # bad input raises right away
        pipeline = self._current_pipeline().run_stream(request,
                                                       estimate=self._estimator(caller))
        return _running(stream_sync(pipeline, caller), caller)

    def _astream(self, caller: LlamaCaller) -> AsyncIterator[Any]:
        request = self._request(caller.messages, caller.prompt)
        pipeline = self._current_pipeline().run_stream(request,
                                                       estimate=self._estimator(caller))
        return _arunning(stream_async(pipeline, caller), caller)

    # -- what LlamaIndex asks of an LLM ---------------------------------------------------------
    @property
    def metadata(self) -> LLMMetadata:
        """The most restrictive limits of the candidates: any of them may answer."""
        metas = [llm.metadata for llm in self.llms.values()]
        outputs = [m.num_output for m in metas if m.num_output > 0]
        roles = {m.system_role for m in metas}
        return LLMMetadata(
            context_window=min(m.context_window for m in metas),
            num_output=min(outputs) if outputs else -1,
            is_chat_model=all(m.is_chat_model for m in metas),
            is_function_calling_model=all(m.is_function_calling_model for m in metas),
            model_name="langroute:" + "|".join(self.llms),
            system_role=roles.pop() if len(roles) == 1 else MessageRole.SYSTEM,
        )

    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return self._run(self._caller(messages, kwargs))  # type: ignore[no-any-return]

    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return await self._arun(self._caller(messages, kwargs))  # type: ignore[no-any-return]

    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        return _carry_record(self._stream(self._caller(messages, kwargs)))

    async def astream_chat(self, messages: Sequence[ChatMessage],
                           **kwargs: Any) -> ChatResponseAsyncGen:
        return _acarry_record(self._astream(self._caller(messages, kwargs)))

    def complete(self, prompt: str, formatted: bool = False,
                 **kwargs: Any) -> CompletionResponse:
        return self._run(  # type: ignore[no-any-return]
            self._caller(None, kwargs, prompt, formatted))

    async def acomplete(self, prompt: str, formatted: bool = False,
                        **kwargs: Any) -> CompletionResponse:
        return await self._arun(  # type: ignore[no-any-return]
            self._caller(None, kwargs, prompt, formatted))

    def stream_complete(self, prompt: str, formatted: bool = False,
                        **kwargs: Any) -> CompletionResponseGen:
        return _carry_record(self._stream(self._caller(None, kwargs, prompt, formatted)))

    async def astream_complete(self, prompt: str, formatted: bool = False,
                               **kwargs: Any) -> CompletionResponseAsyncGen:
        return _acarry_record(self._astream(self._caller(None, kwargs, prompt, formatted)))

    # -- predict: LlamaIndex's, with the template formatted by the chosen candidate ------------
    def predict(self, prompt: BasePromptTemplate, **prompt_args: Any) -> str:
        dispatcher.event(LLMPredictStartEvent(template=prompt, template_args=prompt_args))
        self._log_template_data(prompt, **prompt_args)
        caller = self._template_caller(prompt, prompt_args)
        output = self._predicted(self._run(caller), caller)
        dispatcher.event(LLMPredictEndEvent(output=output))
        return output

    async def apredict(self, prompt: BasePromptTemplate, **prompt_args: Any) -> str:
        dispatcher.event(LLMPredictStartEvent(template=prompt, template_args=prompt_args))
        self._log_template_data(prompt, **prompt_args)
        caller = self._template_caller(prompt, prompt_args)
        output = self._predicted(await self._arun(caller), caller)
        dispatcher.event(LLMPredictEndEvent(output=output))
        return output

    def stream(self, prompt: BasePromptTemplate, **prompt_args: Any) -> TokenGen:
        self._log_template_data(prompt, **prompt_args)
        dispatcher.event(LLMPredictStartEvent(template=prompt, template_args=prompt_args))
        self._check_streamable(prompt)
        return _tokens(self._stream(self._template_caller(prompt, prompt_args)))

    async def astream(self, prompt: BasePromptTemplate, **prompt_args: Any) -> TokenAsyncGen:
        self._log_template_data(prompt, **prompt_args)
        dispatcher.event(LLMPredictStartEvent(template=prompt, template_args=prompt_args))
        self._check_streamable(prompt)
        return _atokens(self._astream(self._template_caller(prompt, prompt_args)))

    # -- structured output: LlamaIndex's programs, chat messages formatted by the chosen one ----
    # The base methods' bodies (``__wrapped__``): this override already runs in the method's
    # span, so calling the decorated base method would open a second one inside it.
    def structured_predict(self, output_cls: type[Model], prompt: PromptTemplate,
                           llm_kwargs: dict[str, Any] | None = None,
                           **prompt_args: Any) -> Model:
        body = super().structured_predict.__wrapped__  # type: ignore[attr-defined]
        return body(  # type: ignore[no-any-return]
            output_cls, prompt, self._structured_kwargs(prompt, prompt_args, llm_kwargs),
            **prompt_args)

    async def astructured_predict(self, output_cls: type[Model], prompt: PromptTemplate,
                                  llm_kwargs: dict[str, Any] | None = None,
                                  **prompt_args: Any) -> Model:
        body = super().astructured_predict.__wrapped__  # type: ignore[attr-defined]
        return await body(  # type: ignore[no-any-return]
            output_cls, prompt, self._structured_kwargs(prompt, prompt_args, llm_kwargs),
            **prompt_args)

    def _structured_stream_call(self, output_cls: type[Model], prompt: PromptTemplate,
                                llm_kwargs: dict[str, Any] | None = None,
                                **prompt_args: Any) -> Generator[Any, None, None]:
        return super()._structured_stream_call(
            output_cls, prompt, self._structured_kwargs(prompt, prompt_args, llm_kwargs),
            **prompt_args)

    async def _structured_astream_call(self, output_cls: type[Model], prompt: PromptTemplate,
                                       llm_kwargs: dict[str, Any] | None = None,
                                       **prompt_args: Any) -> AsyncGenerator[Any, None]:
        return await super()._structured_astream_call(
            output_cls, prompt, self._structured_kwargs(prompt, prompt_args, llm_kwargs),
            **prompt_args)

    def _structured_kwargs(self, prompt: BasePromptTemplate, args: dict[str, Any],
                           llm_kwargs: dict[str, Any] | None) -> dict[str, Any]:
        """The program's ``llm_kwargs`` with the template, so the chosen candidate can format
        the messages as the program run on it would (its ``system_prompt`` first): the program
        formats them for this LLM, with this LLM's."""
        if llm_kwargs is not None and STRUCTURED_KWARG in llm_kwargs:
            raise TypeError(f"{STRUCTURED_KWARG} is reserved for langroute")
        call = TemplateCall(prompt, dict(args), self, structured=True)
        return {**(llm_kwargs or {}), STRUCTURED_KWARG: call}

    # -- tools: formatted and read by whichever candidate is chosen -----------------------------
    def _prepare_chat_with_tools(
        self,
        tools: Sequence[BaseTool],
        user_msg: str | ChatMessage | None = None,
        chat_history: list[ChatMessage] | None = None,
        verbose: bool = False,
        allow_parallel_tool_calls: bool = False,
        tool_required: bool = False,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Hold the tools back: the chosen candidate's own ``_prepare_chat_with_tools`` formats
        them once the call is routed."""
        messages = list(chat_history or [])
        if isinstance(user_msg, str):
            user_msg = ChatMessage(role=MessageRole.USER, content=user_msg)
        if user_msg is not None:
            messages.append(user_msg)
        structured = kwargs.pop(STRUCTURED_KWARG, None)  # for chat(), not the candidate's tools
        request = ToolsRequest(tuple(tools), verbose, allow_parallel_tool_calls, tool_required,
                               dict(kwargs))
        held = {} if structured is None else {STRUCTURED_KWARG: structured}
        return {"messages": messages, TOOLS_KWARG: request, **held}

    def _validate_chat_with_tools_response(
        self,
        response: ChatResponse,
        tools: Sequence[BaseTool],
        allow_parallel_tool_calls: bool = False,
        **kwargs: Any,
    ) -> ChatResponse:
        """Already validated by the candidate that answered (its own rules)."""
        return response

    def get_tool_calls_from_response(
        self,
        response: ChatResponse,
        error_on_no_tool_call: bool = True,
        **kwargs: Any,
    ) -> list[ToolSelection]:
        """Read tool calls with the parser of the candidate that wrote ``response``."""
        llm = self._writer_of(response)
        return llm.get_tool_calls_from_response(  # type: ignore[attr-defined,no-any-return]
            response, error_on_no_tool_call=error_on_no_tool_call, **kwargs)

    def _writer_of(self, response: ChatResponse) -> LLM:
        name = stamped_model(response)
        if name is not None and name in self.llms:
            return self.llms[name]
        kinds = {type(llm) for llm in self.llms.values()}
        if len(kinds) == 1:  # every candidate parses the same way
            return next(iter(self.llms.values()))
        raise MessageError(
            "cannot tell which candidate wrote this response (no langroute_model stamp); "
            f"the candidates parse tool calls differently ({sorted(k.__name__ for k in kinds)})"
        )


# -- helpers ---------------------------------------------------------------------------------------
def _check_llms(llms: Any) -> None:
    if not isinstance(llms, Mapping):
        raise RouterConfigError(
            f"llms must be a dict of name -> LlamaIndex LLM, got {type(llms).__name__}")
    if not llms:
        raise RouterConfigError("llms is empty; give at least one LLM")
    for name, llm in llms.items():
        if not isinstance(name, str) or not name:
            raise RouterConfigError(f"LLM names must be non-empty str, got {name!r}")
        if not isinstance(llm, LLM):
            raise RouterConfigError(
                f"llms[{name!r}] is a {type(llm).__name__}, not a LlamaIndex LLM")
        if isinstance(llm, RoutedLLM):
            raise RouterConfigError(f"llms[{name!r}] is itself a RoutedLLM; nest routers by "
                                    "fitting one router over all candidates instead")


#: LLM fields that belong on each candidate: RoutedLLM makes no provider requests of its own
#: (the prompt formats are each candidate's wire format, applied by its own ``predict``).
_CANDIDATE_ONLY = ("api_key", "api_base", "base_url", "rate_limiter", "model",
                   "completion_to_prompt", "messages_to_prompt")


def _check_extra(kwargs: Mapping[str, Any]) -> None:
    for key in _CANDIDATE_ONLY:
        if kwargs.get(key) is not None:
            raise RouterConfigError(f"{key} belongs on each candidate LLM: RoutedLLM makes no "
                                    "provider requests of its own, the chosen candidate does")
    unknown = sorted(set(kwargs) - set(LLM.model_fields) - set(_CANDIDATE_ONLY))
    if unknown:
        raise RouterConfigError(f"RoutedLLM got unknown arguments {unknown}")


def _check_options(threshold: Any, strong_fraction: Any, target_cost: Any,
                   timeout: Any) -> None:
    check_unit_interval("threshold", threshold)
    check_unit_interval("strong_fraction", strong_fraction)
    check_positive("target_cost", target_cost)
    check_positive("timeout", timeout)


def _describe(name: str, llm: LLM) -> ModelRef:
    """A candidate as the pipeline sees it: its provider and the model id it calls."""
    return ModelRef(name, llm, _served_model(llm), _provider_of(llm))


def _provider_of(llm: LLM) -> str | None:
    """The provider a LlamaIndex LLM class talks to, from its integration package's name
    (``llama_index.llms.openai`` -> ``"openai"``)."""
    parts = type(llm).__module__.split(".")
    if parts[:2] == ["llama_index", "llms"] and len(parts) > 2:
        return parts[2]
    return None


def _served_model(llm: LLM) -> str | None:
    """The provider's model id a candidate calls (``OpenAI(model="gpt-4o")`` -> ``"gpt-4o"``)."""
    for attr in ("model", "model_name"):
        value = getattr(llm, attr, None)
        if isinstance(value, str) and value:
            return value
    return None


def _estimate(caller: LlamaCaller, ref: ModelRef) -> TokenEstimate:
    """Worst-case size of a call to ``ref`` for budget reservations: a deliberate over-estimate
    of the input (``estimated_prompt_tokens`` of what ``ref`` is sent and the tools' schemas;
    LlamaIndex LLMs have no offline token counter of their own) and the call's output limit."""
    texts = caller.texts_for(ref.model)
    if caller.tools is not None:
        for tool in caller.tools.tools:
            texts.append(json.dumps({"name": tool.metadata.name,
                                     "description": tool.metadata.description,
                                     "parameters": tool.metadata.get_parameters_dict()}))
    n_tokens = estimated_prompt_tokens(texts)
    limit = caller.kwargs.get("max_tokens", getattr(ref.model, "max_tokens", None))
    if not isinstance(limit, int) or isinstance(limit, bool):
        limit = None
    return TokenEstimate(n_tokens, limit, method="chars/3")


def _running(chunks: Iterator[Any], caller: LlamaCaller) -> Iterator[Any]:
    """Pull a stream inside the routed call's span and callback manager (LlamaIndex ends a
    method's span when it returns its generator, but the candidate is called, and reports its
    end, while the generator is consumed)."""
    try:
        while True:
            with caller.running():
                chunk = next(chunks, _END)
            if chunk is _END:
                return
            yield chunk
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


async def _arunning(chunks: AsyncIterator[Any], caller: LlamaCaller) -> AsyncIterator[Any]:
    try:
        while True:
            with caller.running():
                chunk = await anext(chunks, _END)
            if chunk is _END:
                return
            yield chunk
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()


_END: Any = object()


def _tokens(chunks: Iterator[Any]) -> Iterator[str]:
    """A routed stream as ``LLM.stream`` gives it: each chunk's new text."""
    try:
        for chunk in chunks:
            yield chunk.delta or ""
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


async def _atokens(chunks: AsyncIterator[Any]) -> AsyncIterator[str]:
    try:
        async for chunk in chunks:
            yield chunk.delta or ""
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()


def _carry_record(chunks: Iterator[Any]) -> Iterator[Any]:
    """Give every chunk the latest call record: the first chunk's, until the closing chunk
    brings the final one."""
    record = None
    try:
        for chunk in chunks:
            record, chunk = _with_record(record, chunk)
            yield chunk
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


async def _acarry_record(chunks: AsyncIterator[Any]) -> AsyncIterator[Any]:
    record = None
    try:
        async for chunk in chunks:
            record, chunk = _with_record(record, chunk)
            yield chunk
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()


def _with_record(record: dict[str, Any] | None, chunk: Any) -> tuple[dict[str, Any] | None, Any]:
    """One chunk of ``_carry_record``: the record it brings (kept from then on), or the chunk
    stamped with the record kept so far."""
    if RECORD_KEY in chunk.additional_kwargs:
        return chunk.additional_kwargs[RECORD_KEY], chunk
    if record is not None:
        chunk = stamp_response(chunk, str(record.get("answered_by", "")), record)
    return record, chunk
