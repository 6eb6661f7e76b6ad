"""``RoutedChatModel``: a LangChain chat model that sends each call to one of several others.

A thin adapter over the framework-free call pipeline (``langroute.pipeline``): it reads the
call's messages and config into a ``RouteRequest``, and tells the pipeline how to reach a
LangChain model (``_caller``). Every entry point runs the same steps -- decide -> budget ->
call (retries, fallback) -> cascade -> record:

- invoke / ainvoke / batch / abatch: a *chain* run named after the class, in which the
  ``langroute.route`` event is dispatched and each provider call is the chosen model's own
  Runnable call (one chat-model run each, children of the routed run: usage counted once).
  ``batch`` decides all its inputs in one router call, then calls the models concurrently.
- stream / astream: the same run, delivering the chosen model's chunks.
- generate / agenerate and the event streams (``_generate``, ``_stream`` and async forms):
  the routed run *is* the chat-model run; the answering model's generation reports through it.
"""

from __future__ import annotations

import json
import warnings
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, replace
from typing import Any, Literal

from langchain_core.caches import BaseCache
from langchain_core.callbacks import (
    AsyncCallbackManagerForChainRun,
    AsyncCallbackManagerForLLMRun,
    CallbackManagerForChainRun,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.base import LangSmithParams
from langchain_core.language_models.model_profile import ModelProfile
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableConfig, ensure_config
from langchain_core.runnables.config import (
    get_config_list,
    get_executor_for_config,
    merge_configs,
    run_in_executor,
)
from langchain_core.runnables.configurable import RunnableConfigurableFields
from langchain_core.runnables.utils import gather_with_concurrency
from pydantic import (
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from .._decision import RoutingDecision
from .._exceptions import LangrouteError, RouterConfigError
from .._routing_text import shape_request
from .._urls import redacted_stores
from ..feedback import FeedbackMethods
from ..pipeline import (
    CallContext,
    CallPipeline,
    CallResult,
    ModelRef,
    RouteRequest,
    TokenEstimate,
    estimated_prompt_tokens,
    run_async,
    run_sync,
    stream_async,
    stream_sync,
)
from ..pipeline._assembly import (
    PipelineCache,
    check_budgets,
    check_cascade,
    check_positive,
    check_prices_arg,
    check_unit_interval,
)
from ..pipeline._types import THRESHOLD_KEY, THRESHOLD_USED_KEY, call_metadata
from ._bindings import (
    BINDING_KWARG,
    PendingBinding,
    StructuredOutputBinding,
    ToolsBinding,
    described_tools,
    sends_tools,
)
from ._caller import GenerationCaller, RunnableCaller, stamp
from ._messages import find_tool_loop, turns

__all__ = ["RoutedChatModel"]


@dataclass(frozen=True)
class _Prepared:
    """One call's input read for the pipeline: its route request and the chosen model's
    call keywords (binding replayed on the chosen model)."""

    request: RouteRequest
    messages: list[BaseMessage]
    binding: PendingBinding | None
    kwargs: dict[str, Any]
    #: streaming disabled for the call (``disable_streaming``, ``streaming=False``,
    #: ``stream=False``): the chosen model must not stream, even for a token stream
    unstreamed: bool = False
    #: ``kwargs["stream"]`` is the routed model's ``streaming=True`` (not the caller's)
    added_stream: bool = False


def _schema_tokens(binding: PendingBinding | None) -> int:
    """Over-estimated prompt tokens of the tool definitions or output schema a call sends
    (``estimated_prompt_tokens`` of their JSON, each a part of the prompt): providers bill them
    as prompt tokens, and a hold sized from the messages alone let concurrent tool calls
    overspend a hard budget."""
    if isinstance(binding, ToolsBinding):
        described = described_tools(binding.tools)
    elif isinstance(binding, StructuredOutputBinding):
        described = described_tools([binding.schema])
    else:
        return 0
    return estimated_prompt_tokens(json.dumps(d, default=str) for d in described)


def _decided_alone(pipeline: CallPipeline, request: RouteRequest) -> Any:
    """``request``'s decision, or the exception deciding it raised."""
    try:
        (decision,) = pipeline.decide([request])
    except Exception as exc:  # noqa: BLE001 -- returned as that input's result
        return exc
    return decision


def _warn_uncounted(model: BaseChatModel, exc: Exception) -> None:
    """A model's own token counter failed (``ChatOpenAI``'s downloads tiktoken's tables, so
    offline it raises): the budget hold over-estimates instead of failing every call, and
    says so."""
    warnings.warn(
        f"{type(model).__name__} could not count the prompt's tokens ({type(exc).__name__}: "
        f"{exc}); budget holds over-estimate them with langroute.pipeline.estimated_tokens "
        "instead (offline, pre-fetch tiktoken's files into TIKTOKEN_CACHE_DIR to count them)",
        RuntimeWarning, stacklevel=2)


def _mark_uncounted(uncounted: dict[int, Any], model: BaseChatModel) -> None:
    """Remember that ``model``'s token counter failed, for as long as it lives: by id, with a
    weak reference that says the id is still its own and drops the entry when it dies (a
    strong one kept every such model of every copy alive)."""
    key = id(model)

    def forget(ref: Any) -> None:
        if uncounted.get(key) is ref:
            uncounted.pop(key, None)

    try:
        uncounted[key] = weakref.ref(model, forget)
    except TypeError:  # a model without weak references: kept, so its id stays its own
        uncounted[key] = lambda: model


def _counts_its_own_tokens(model: BaseChatModel) -> bool:
    """True when the model counts tokens with its provider's tokenizer (not LangChain's
    generic GPT-2 fallback, which downloads a tokenizer at first use)."""
    cls = type(model)
    return (model.custom_get_token_ids is not None
            or cls.get_num_tokens_from_messages is not BaseChatModel.get_num_tokens_from_messages
            or cls.get_token_ids is not BaseChatModel.get_token_ids)


def _langroute_error(exc: ValidationError) -> LangrouteError:
    """The library's own error behind a pydantic ValidationError (or a RouterConfigError
    carrying pydantic's message), so ``except LangrouteError`` catches construction errors."""
    for error in exc.errors():
        original = (error.get("ctx") or {}).get("error")
        if isinstance(original, LangrouteError):
            return original
    return RouterConfigError(str(exc))


#: Placeholder for a profile model_copy derives again once the copy's models are set.
_UNSET_PROFILE: Any = object()


class _ConfigurableRoutedChatModel(RunnableConfigurableFields):
    """``RoutedChatModel.configurable_fields``. LangChain builds a new model for every
    configured call, whose ``memory://`` spend and feedback stores would be new ones (a budget
    back at $0 on every call, decisions recorded where no one can rate them) and whose other
    stores are opened again. Here that model only validates the configured values: the call
    runs on the configured model's ``model_copy`` with them, which shares its stores and
    pipeline."""

    def _prepare(self, config: RunnableConfig | None = None) -> tuple[Runnable[Any, Any],
                                                                      RunnableConfig]:
        validated, config = super()._prepare(config)
        default = self.default
        if validated is default:
            return default, config
        update = {key: getattr(validated, key) for key in self.fields
                  if getattr(validated, key) != getattr(default, key)}
        return (default.model_copy(update=update) if update else default), config


class RoutedChatModel(FeedbackMethods, BaseChatModel):
    """A chat model that routes each call to the cheapest candidate likely to answer it well.

    Parameters
    ----------
    models : dict of str to BaseChatModel
        The candidates, keyed by the names the router was fitted with.
    router : BaseRouter
        A fitted langroute router that knows every name in ``models``.
    threshold : float, default=None
        In [0, 1]. The ladder climbs from the cheapest candidate and stops at the first one no
        pricier candidate beats with probability >= ``threshold``; with two models the strong
        one is called iff P(strong wins) >= ``threshold``. 0 always calls the best model.
        Routers' scores are squeezed (e.g. all in [0.58, 0.63]), so prefer an operating point:
    strong_fraction : float, default=None
        Share of calls that should go to the top rung, resolved to a threshold from the
        out-of-fold calibration scores the router kept when it was fitted (no prompt is
        embedded again). Give exactly one of ``threshold``, ``strong_fraction``, ``target_cost``.
    target_cost : float, default=None
        Average USD per call to aim for, resolved the same way.
    costs : dict of str to float, default=None
        USD per call of each candidate (orders the ladder and is the per-call spend estimate).
        Default: the router's mean cost per call from its training outcomes.
    timeout : float, default=None
        Seconds one provider call may take before it counts as failed (and is retried).
    max_retries : int, default=2
        Retries of the chosen model on retryable errors (rate limit, timeout, connection error,
        5xx), with exponential backoff and jitter, honouring ``Retry-After``.
    fallback : {"stronger", "cheaper", None}, default="stronger"
        Where a call goes once the chosen model's retries are spent: the next pricier
        candidate (a failed cheap call goes up, never silently down), the next cheaper one, or
        nowhere (the error propagates). Non-retryable errors (400, 401, 403, validation)
        propagate at once. A stream falls back only before its first chunk was delivered.
    cascade : CascadeStep, default=None
        Answer-checking escalation (``langroute.cascade.Cascade``).
    budgets : dict of str to Budget, default=None
        Per-scope cost limits (scope from the call's ``lc_agent_name`` / ``agent`` / ``user``
        / ``tenant`` metadata; ``"*"`` for everyone else), kept in ``spend_store``.
    spend_store : str, default=None
        Where spend is kept: ``"sqlite:///spend.db"`` (the default store when budgets are
        given is ``sqlite:///langroute-spend.db``), ``"redis://host:port/0"`` or ``"memory://"``.
    prices : dict, default=None
        Budget prices overriding or adding to genai-prices' table, by candidate name or provider
        model id, in USD per million tokens: ``{"my-model": {"input_mtok": 0.5,
        "output_mtok": 1.5, "cache_read_mtok": 0.05}}``. A candidate neither table nor
        ``prices`` knows is a ``RouterConfigError`` when budgets are given.
    feedback_store : str or FeedbackStore, default=None
        Where every routed decision is recorded for feedback (``"sqlite:///feedback.db"``,
        ``"redis://host:port/0"``, ``"memory://"`` or an opened ``FeedbackStore``); then
        ``record_feedback`` / ``record_preference`` teach the router from a call's
        ``decision_id``.
    refitter : langroute.feedback.FeedbackRefitter, default=None
        For a router without ``partial_fit`` (mf, irt, cluster, stacked): feedback is stored,
        then ``refitter.poll()`` refits the router when its ``RefitPolicy`` says so (in the
        thread that records the feedback; for a slow fit poll from a job instead). Decisions
        are recorded in ``refitter.store`` (``feedback_store`` must be None or that store).
    trace_prompt : bool, default=False
        Put the routing text itself in the ``langroute.route`` event (by default only its length
        and SHA-256 are traced).
    temperature, max_tokens, stop : default=None
        Standard parameters passed to whichever model is chosen (per-call values win).
    streaming : bool, default=False
        Have the chosen model stream even under ``invoke`` (passes ``stream=True`` to it).

    Notes
    -----
    Only the text parts of the last user message are routed on (when it has none, the nearest
    message with text, earlier ones first; the top rung when no message has any). While a tool
    loop is in flight the model that made the calls answers them (and never falls back).
    ``bind_tools`` and ``with_structured_output`` are replayed on the chosen model through its
    own methods; unknown call keywords pass through to it unchanged -- including ``model=``,
    which the chosen client reads as its own model override (the record's ``provider_model``
    says what was called). A per-call threshold can be set in the call's metadata
    (``with_config(metadata={"langroute_threshold": 0.9})``) or ``configurable`` (not both,
    unless equal); any other ``langroute_`` key there is an error. Credentials (``api_key``)
    belong on each candidate client: the routed model makes no requests of its own.
    BaseChatModel's own settings hold for whichever candidate answers: ``output_version="v1"``
    gives v1 content blocks on every entry path (the candidate answers through a copy set to
    it), and ``disable_streaming="tool_calling"`` counts a structured output as tool calling
    when the answering candidate's ``with_structured_output`` sends tools, as LangChain would
    for that candidate. Under a cascade only the accepted answer's tokens reach the caller
    (``generate()``: a scored answer's tokens are held until it is accepted).

    Examples
    --------
    >>> routed = RoutedChatModel(  # doctest: +SKIP
    ...     models={"gpt-4-1106-preview": ChatOpenAI(model="gpt-4o"),
    ...             "mixtral-8x7b-instruct-v0.1": ChatOpenAI(model="gpt-4o-mini")},
    ...     router=SWRouter().fit(train),
    ...     strong_fraction=0.3,
    ... )
    >>> print(routed.route("What is 17 * 23?"))  # doctest: +SKIP
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    models: dict[str, BaseChatModel]
    router: Any
    threshold: float | None = None
    strong_fraction: float | None = None
    target_cost: float | None = None
    costs: dict[str, float] | None = None
    timeout: float | None = None
    max_retries: int = 2
    fallback: Literal["stronger", "cheaper"] | None = "stronger"
    cascade: Any = None
    budgets: dict[str, Any] | None = None
    spend_store: Any = None
    feedback_store: Any = None
    refitter: Any = None
    prices: dict[str, Any] | None = None
    trace_prompt: bool = False
    temperature: float | None = None
    max_tokens: int | None = None
    stop: list[str] | None = None
    streaming: bool = False
    #: Never the global LLM cache: a routed answer is a decision (threshold, budget, feedback
    #: id), not a pure function of the prompt. Each candidate keeps its own cache setting.
    cache: BaseCache | bool | None = Field(default=False, exclude=True)

    _pipelines: PipelineCache = PrivateAttr(default_factory=PipelineCache)
    _feedback: Any = PrivateAttr(default=None)
    #: Models whose own token counter failed, by id, while they live (``_mark_uncounted``):
    #: budget holds over-estimate them. Shared by copies, so never holds a model alive.
    _uncounted: dict[int, Any] = PrivateAttr(default_factory=dict)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise _langroute_error(exc) from exc

    # -- validation -------------------------------------------------------------------------------
    @field_validator("models", mode="before")
    @classmethod
    def _check_models(cls, value: Any) -> Any:
        if not isinstance(value, Mapping):
            raise RouterConfigError(
                f"models must be a dict of name -> chat model, got {type(value).__name__}"
            )
        if not value:
            raise RouterConfigError("models is empty; give at least one chat model")
        for name, model in value.items():
            if not isinstance(name, str) or not name:
                raise RouterConfigError(f"model names must be non-empty str, got {name!r}")
            if not isinstance(model, BaseChatModel):
                raise RouterConfigError(
                    f"models[{name!r}] is a {type(model).__name__}, not a LangChain BaseChatModel"
                )
        return dict(value)

    @field_validator("cache", mode="before")
    @classmethod
    def _checked_cache(cls, value: Any) -> Literal[False]:
        """The only cache setting a routed model takes: off. None (to BaseChatModel "the
        global LLM cache": generate() would return a stale decision) is turned off, any
        cache refused. The one rule for construction, assignment and ``model_copy``."""
        if value is None or value is False:
            return False
        raise RouterConfigError("cache belongs on the candidate models, not on RoutedChatModel")

    # Assignment and model_copy(update=...) skip the validators (validate_assignment is off),
    # so the cache rule and the combined profile are kept here too.
    def __setattr__(self, name: str, value: Any) -> None:
        if name == "cache":
            value = self._checked_cache(value)
        derived = name == "models" and self._profile_is_derived()
        super().__setattr__(name, value)
        if derived:
            self.__dict__["profile"] = self._resolve_model_profile()

    def model_copy(self, *, update: Mapping[str, Any] | None = None,
                   deep: bool = False) -> RoutedChatModel:
        """A copy, as pydantic's; with ``models`` updated, a profile derived from the old ones
        is derived again from the new ones, and ``cache`` is kept off."""
        update = dict(update or {})
        if "cache" in update:
            update["cache"] = self._checked_cache(update["cache"])
        if "models" in update:
            update["models"] = self._check_models(update["models"])
            if "profile" not in update and self._profile_is_derived():
                update["profile"] = _UNSET_PROFILE
        copy = super().model_copy(update=update, deep=deep)
        if copy.__dict__.get("profile") is _UNSET_PROFILE:
            copy.__dict__["profile"] = copy._resolve_model_profile()
        return copy

    def configurable_fields(self, **kwargs: Any) -> RunnableConfigurableFields:
        """As any Runnable's, but each configured call runs on a ``model_copy`` of this model,
        sharing its spend and feedback stores (``_ConfigurableRoutedChatModel``)."""
        fields = super().configurable_fields(**kwargs).fields  # type: ignore[attr-defined]
        return _ConfigurableRoutedChatModel(default=self, fields=fields)

    def __repr_args__(self) -> Any:
        return redacted_stores(super().__repr_args__())

    def _profile_is_derived(self) -> bool:
        """True when ``profile`` is what the candidates' profiles combine to (not the
        caller's own)."""
        models = self.__dict__.get("models")
        return models is not None and self.__dict__.get("profile") == \
            self._resolve_model_profile()

    # The call-time guard covers what no validator sees: ``model_construct`` (and writes to
    # ``__dict__``) skip validation, and BaseChatModel reads ``cache`` in
    # ``_generate_with_cache`` (a private langchain-core method, checked with langchain-core
    # 1.8.3; if it is renamed, the override below stops being called and only the
    # validator, assignment and model_copy keep the rule).
    def _cache_off(self) -> None:
        """Never a cache, whatever path set it: the rule applied before BaseChatModel reads
        it."""
        if self.__dict__.get("cache") is not False:
            self.__dict__["cache"] = self._checked_cache(self.__dict__.get("cache"))

    def _generate_with_cache(self, *args: Any, **kwargs: Any) -> ChatResult:
        self._cache_off()
        return super()._generate_with_cache(*args, **kwargs)

    async def _agenerate_with_cache(self, *args: Any, **kwargs: Any) -> ChatResult:
        self._cache_off()
        return await super()._agenerate_with_cache(*args, **kwargs)

    @field_validator("threshold", "strong_fraction", mode="before")
    @classmethod
    def _check_unit_interval(cls, value: Any, info: Any) -> Any:
        return check_unit_interval(info.field_name, value)

    @field_validator("target_cost", "timeout", mode="before")
    @classmethod
    def _check_positive(cls, value: Any, info: Any) -> Any:
        return check_positive(info.field_name, value)

    @field_validator("max_retries", mode="before")
    @classmethod
    def _check_retries(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise RouterConfigError(f"max_retries must be an int >= 0, got {value!r}")
        return value

    @field_validator("budgets", mode="before")
    @classmethod
    def _check_budgets(cls, value: Any) -> Any:
        return check_budgets(value)

    @field_validator("prices", mode="before")
    @classmethod
    def _check_prices(cls, value: Any) -> Any:
        return check_prices_arg(value)

    @field_validator("fallback", mode="before")
    @classmethod
    def _check_fallback(cls, value: Any) -> Any:
        if value not in ("stronger", "cheaper", None):
            raise RouterConfigError(
                f"fallback must be 'stronger', 'cheaper' or None, got {value!r}"
            )
        return value

    @model_validator(mode="before")
    @classmethod
    def _reject_credentials(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            for key in ("api_key", "openai_api_key", "base_url"):
                if key in data:
                    raise RouterConfigError(
                        f"{key} belongs on each candidate model: RoutedChatModel makes no "
                        "provider requests of its own, the chosen candidate's client does"
                    )
        return data

    @model_validator(mode="after")
    def _check_routing(self) -> RoutedChatModel:
        # Calls pass through to the chosen model, which owns caching and rate limiting.
        if self.rate_limiter is not None:
            raise RouterConfigError(
                "rate_limiter belongs on the candidate models, not on RoutedChatModel")
        self._check_cascade()
        self._call_pipeline()  # raises RouterConfigError / NotFittedError naming the problem
        self._warm_up()
        return self

    def _check_cascade(self) -> None:
        """The cascade is a CascadeStep and every model its scorer asks is a candidate's name
        or a chat model (``check_cascade``). With budgets, verifiers given as chat models are
        priced when the pipeline is built, right after, like the candidates."""
        check_cascade(self.cascade, self.models,
                      lambda model: isinstance(model, BaseChatModel), "LangChain BaseChatModel")

    def _warm_up(self) -> None:
        """Load the router's embedder now, so the first decision does not pay for it."""
        warm = getattr(self.router, "warm_up", None)
        if callable(warm):
            warm()

    # -- the pipeline, rebuilt when a field or the router's fit changes ----------------------------
    @staticmethod
    def _describe(name: str, model: BaseChatModel) -> ModelRef:
        """A candidate as the pipeline sees it: its provider and the model id it calls."""
        served = getattr(model, "model_name", None) or getattr(model, "model", None)
        try:
            provider = model._get_ls_params().get("ls_provider")
        except Exception:  # noqa: BLE001 -- a client without LangSmith params still routes
            provider = None
        return ModelRef(name, model, served if isinstance(served, str) else None,
                        provider if isinstance(provider, str) else None)

    def _call_pipeline(self) -> CallPipeline:
        return self._pipelines.get(
            router=self.router, models=self.models, describe=self._describe,
            threshold=self.threshold, strong_fraction=self.strong_fraction,
            target_cost=self.target_cost, costs=self.costs, max_retries=self.max_retries,
            fallback=self.fallback, timeout=self.timeout, cascade=self.cascade,
            budgets=self.budgets, spend_store=self.spend_store, prices=self.prices,
            keep_text=self.trace_prompt, recorders=lambda: self.feedback.recorders(),
            depends_on=(self.feedback_store, self.refitter),
        )

    @property
    def pipeline(self) -> CallPipeline:
        """The call pipeline every entry point runs (rebuilt when a field or the router's fit
        changes). Its ``sleep`` / ``asleep`` are injectable, e.g. to record backoff waits."""
        return self._call_pipeline()

    # -- what LangChain asks of a chat model -------------------------------------------------------
    @property
    def _llm_type(self) -> str:
        return "langroute-routed"

    @property
    def model_name(self) -> str:
        """The candidates' names joined by ``|`` (what LangSmith shows as the model)."""
        return "|".join(self.models)

    @property
    def _identifying_params(self) -> dict[str, Any]:
        pipeline = self._call_pipeline()
        return {
            "models": {
                name: {"_type": model._llm_type, **model._identifying_params}
                for name, model in self.models.items()
            },
            "router": pipeline.policy.router_kind,
            "threshold": pipeline.policy.threshold,
        }

    def _resolve_model_profile(self) -> ModelProfile | None:
        """What every candidate can do, since any of them may answer a call: a feature only if
        all support it, the smallest token limits, values they all share. None when a
        candidate has no profile (nothing is known of it). ``create_agent`` reads it, e.g. to
        use the providers' native structured output."""
        profiles: list[Mapping[str, Any]] = []
        for model in self.models.values():
            if not isinstance(model.profile, Mapping):
                return None
            profiles.append(model.profile)
        merged: dict[str, Any] = {}
        for key in dict.fromkeys(k for profile in profiles for k in profile):
            values: list[Any] = [profile.get(key) for profile in profiles]
            first = values[0]
            if all(isinstance(v, bool) for v in values if v is not None):
                merged[key] = all(v is True for v in values)  # a missing flag counts as False
            elif all(isinstance(v, int) for v in values):
                merged[key] = min(values)
            elif all(isinstance(v, list) for v in values):
                merged[key] = [x for x in first if all(x in v for v in values)]
            elif all(v == first for v in values):  # e.g. a shared default; names differ
                merged[key] = first
        return ModelProfile(**merged)  # type: ignore[typeddict-item]

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        model = kwargs.get("model")
        params = LangSmithParams(
            ls_provider="langroute",
            ls_model_name=model if isinstance(model, str) else self.model_name,
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

    # ``_should_stream`` is a private BaseChatModel method (checked with langchain-core 1.8.3):
    # generate() asks it whether to call _stream instead of _generate.
    def _should_stream(self, *, async_api: bool, run_manager: Any = None, **kwargs: Any) -> bool:
        # generate() must reach _generate, which runs the pipeline; the chosen model still
        # streams tokens to the run's handlers from inside its own generation.
        return False

    def _streams(self, kwargs: Mapping[str, Any], *, async_api: bool = False,
                 model: BaseChatModel | None = None) -> bool:
        """Whether ``stream``/``astream`` stream, by BaseChatModel's own rule (its private
        ``_should_stream``, checked with langchain-core 1.8.3; not this class's override,
        which keeps ``generate()`` on ``_generate``): not with ``disable_streaming=True``, nor
        ``"tool_calling"`` with tools bound (they travel in the pending binding), nor an
        explicit ``streaming=False``, nor an explicit ``stream=False`` call keyword.

        A structured output sends tools or not depending on the candidate (``sends_tools``):
        with ``model``, the tools that candidate's ``with_structured_output`` sends count too,
        as LangChain counts them for the candidate itself."""
        binding = kwargs.get(BINDING_KWARG)
        tools = kwargs.get("tools")
        if not tools and isinstance(binding, ToolsBinding):
            tools = list(binding.tools)
        elif (not tools and model is not None and isinstance(binding, StructuredOutputBinding)
              and self.disable_streaming == "tool_calling" and sends_tools(binding, model)):
            tools = [binding.schema]
        return BaseChatModel._should_stream(self, async_api=async_api,
                                            **{"stream": True, **kwargs, "tools": tools})

    def _unstreamed(self, prepared: _Prepared) -> Callable[[ModelRef], bool]:
        """Which models of this call must not stream: all when streaming is off for the call
        (``prepared.unstreamed``); else, for a structured output under
        ``disable_streaming="tool_calling"``, each candidate whose own structured output
        sends tools (asked once per model, when it is called)."""
        if prepared.unstreamed:
            return lambda ref: True
        binding = prepared.binding
        if self.disable_streaming != "tool_calling" or not isinstance(
                binding, StructuredOutputBinding):
            return lambda ref: False
        kwargs = {**prepared.kwargs, BINDING_KWARG: binding}
        known: dict[int, bool] = {}

        def unstreamed(ref: ModelRef) -> bool:
            key = id(ref.model)
            if key not in known:
                known[key] = not self._streams(kwargs, model=ref.model)
            return known[key]

        return unstreamed

    def _runnable_caller(self, input: LanguageModelInput, config: RunnableConfig,
                         prepared: _Prepared, run_manager: Any) -> RunnableCaller:
        return RunnableCaller(input, config, prepared.kwargs, prepared.binding, run_manager,
                              unstreamed=self._unstreamed(prepared),
                              added_stream=prepared.added_stream,
                              output_version=self.output_version)

    def _generation_caller(self, messages: list[BaseMessage], prepared: _Prepared,
                           run_manager: Any) -> GenerationCaller:
        return GenerationCaller(messages, prepared.kwargs, prepared.binding, run_manager,
                                output_version=self.output_version)

    def get_num_tokens_from_messages(self, messages: list[BaseMessage],
                                     tools: Sequence[Any] | None = None) -> int:
        """Counted by the candidate the router would choose for these messages (its own
        tokenizer), not by a generic one."""
        model = self.models[self.route(messages).model]
        return model.get_num_tokens_from_messages(messages, tools=tools)

    def get_num_tokens(self, text: str) -> int:
        """Counted by the candidate the router would choose for ``text``."""
        return self.models[self.route(text).model].get_num_tokens(text)

    # -- reading a call ----------------------------------------------------------------------------
    def _context(self, config: RunnableConfig | None) -> CallContext:
        config = ensure_config(config)
        metadata = {**(self.metadata or {}), **(config.get("metadata") or {})}
        tags = tuple(self.tags or []) + tuple(config.get("tags") or [])
        # configurable too: per-agent settings are often given with with_config(configurable=)
        return CallContext(metadata=call_metadata(metadata, config.get("configurable")),
                           tags=tags)

    def _request(self, messages: list[BaseMessage], context: CallContext) -> RouteRequest:
        # a loop's maker answers without asking the router; no text at all: the top rung
        shaped = shape_request(turns(messages), find_tool_loop(messages, self.models))
        return RouteRequest(shaped.text, context, shaped.sticky_model, shaped.note,
                            unidentified_loop=shaped.unidentified_loop, messages=messages)

    def _prepare(self, input: LanguageModelInput, context: CallContext,
                 stop: list[str] | None, kwargs: Mapping[str, Any]) -> _Prepared:
        messages = self._convert_input(input).to_messages()
        call_kwargs = dict(kwargs)
        binding = call_kwargs.pop(BINDING_KWARG, None)
        if binding is not None and not isinstance(binding, (ToolsBinding, StructuredOutputBinding)):
            raise TypeError(f"{BINDING_KWARG} is reserved for langroute, got {type(binding)}")
        if isinstance(binding, ToolsBinding):
            call_kwargs.pop("tools", None)  # bind_tools' description; the binding has them
        for name in ("temperature", "max_tokens"):
            value = getattr(self, name)
            if value is not None:
                call_kwargs.setdefault(name, value)
        streams = self._streams({**call_kwargs, BINDING_KWARG: binding})
        added_stream = self.streaming and streams and "stream" not in call_kwargs
        if added_stream:
            call_kwargs["stream"] = True
        stop = stop if stop is not None else self.stop
        if stop is not None:
            call_kwargs["stop"] = stop
        request = self._request(messages, context)
        override = call_kwargs.get("model")
        if isinstance(override, str):
            request = replace(request, model_override=override)
        return _Prepared(request, messages, binding, call_kwargs, unstreamed=not streams,
                         added_stream=added_stream)

    def _estimator(self, prepared: _Prepared) -> Any:
        """Worst-case tokens of a call to a model, for budget reservations."""

        schemas = _schema_tokens(prepared.binding)  # sent with the prompt, billed as it
        uncounted = self._uncounted

        def estimate(ref: ModelRef) -> TokenEstimate:
            model = ref.model
            limit = prepared.kwargs.get("max_tokens", getattr(model, "max_tokens", None))
            limit = limit if isinstance(limit, int) and not isinstance(limit, bool) else None
            mark = uncounted.get(id(model))
            if _counts_its_own_tokens(model) and (mark is None or mark() is not model):
                try:
                    counted = int(model.get_num_tokens_from_messages(prepared.messages))
                except Exception as exc:  # noqa: BLE001 -- warned, and over-estimated below
                    if isinstance(exc, (OSError, NotImplementedError)):
                        # A download that failed (or hung until it did), a model it cannot
                        # count: not retried on every call. Other errors (a content block
                        # it does not know) may belong to this call's input only.
                        _mark_uncounted(uncounted, model)
                    _warn_uncounted(model, exc)
                else:
                    return TokenEstimate(counted + schemas, limit)
            # LangChain's generic counter downloads a GPT-2 tokenizer: over-estimate instead.
            return TokenEstimate(estimated_prompt_tokens(m.text for m in prepared.messages)
                                 + schemas, limit, method="chars/3")

        return estimate

    # -- the pure part: decide ------------------------------------------------------------------
    def route(self, input: LanguageModelInput,
              config: RunnableConfig | None = None) -> RoutingDecision:
        """Decide which model would answer ``input``, without calling any model."""
        messages = self._convert_input(input).to_messages()
        (decision,) = self._call_pipeline().decide([self._request(messages,
                                                                  self._context(config))])
        return decision

    def _routed_config(self, config: RunnableConfig | None,
                       decision: RoutingDecision) -> RunnableConfig:
        # The model's own callbacks, tags and metadata apply as they would to any chat model.
        own: RunnableConfig = {"callbacks": self.callbacks, "tags": self.tags or [],
                               "metadata": self.metadata or {}}
        config = merge_configs(own, ensure_config(config))
        metadata = {
            **(config.get("metadata") or {}),
            "langroute_model": decision.model,
            THRESHOLD_USED_KEY: decision.threshold,
            "langroute_reason": decision.reason,
            "langroute_decision_id": decision.decision_id,
        }
        return {**config, "metadata": metadata}

    def _result(self, result: CallResult) -> Any:
        return stamp(result.answer.raw, result.record())

    # -- Runnable entry points: a chain run around the pipeline ----------------------------------
    def invoke(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> Any:
        prepared = self._prepare(input, self._context(config), stop, kwargs)
        (decision,) = self._call_pipeline().decide([prepared.request])
        return self._invoke_decided(input, config, prepared, decision)

    def _invoke_decided(self, input: LanguageModelInput, config: RunnableConfig | None,
                        prepared: _Prepared, decision: RoutingDecision) -> Any:
        return self._call_with_config(  # type: ignore[arg-type]
            self._run_chosen, input, self._routed_config(config, decision),
            prepared=prepared, decision=decision)

    def _run_chosen(self, input: LanguageModelInput, run_manager: CallbackManagerForChainRun,
                    config: RunnableConfig, *, prepared: _Prepared,
                    decision: RoutingDecision) -> Any:
        caller = self._runnable_caller(input, config, prepared, run_manager)
        pipeline = self._call_pipeline()
        run = pipeline.run(prepared.request, decision=decision,
                           estimate=self._estimator(prepared))
        return self._result(run_sync(run, caller))

    async def ainvoke(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> Any:
        prepared = self._prepare(input, self._context(config), stop, kwargs)
        (decision,) = await run_in_executor(None, self._call_pipeline().decide,
                                            [prepared.request])
        return await self._ainvoke_decided(input, config, prepared, decision)

    async def _ainvoke_decided(self, input: LanguageModelInput, config: RunnableConfig | None,
                               prepared: _Prepared, decision: RoutingDecision) -> Any:
        return await self._acall_with_config(  # type: ignore[arg-type]
            self._arun_chosen, input, self._routed_config(config, decision),
            prepared=prepared, decision=decision)

    async def _arun_chosen(self, input: LanguageModelInput,
                           run_manager: AsyncCallbackManagerForChainRun,
                           config: RunnableConfig, *, prepared: _Prepared,
                           decision: RoutingDecision) -> Any:
        caller = self._runnable_caller(input, config, prepared, run_manager)
        run = self._call_pipeline().run(prepared.request, decision=decision,
                                        estimate=self._estimator(prepared))
        return self._result(await run_async(run, caller))

    def batch(
        self,
        inputs: list[LanguageModelInput],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[Any]:
        """Decide every input in ONE router call, then call the chosen models concurrently."""
        if not inputs:
            return []
        configs = get_config_list(config, len(inputs))
        prepared, decisions = self._prepare_many(inputs, configs, kwargs, return_exceptions)

        def one(i: int) -> Any:
            if isinstance(prepared[i], Exception):
                return prepared[i]
            try:
                return self._invoke_decided(inputs[i], configs[i], prepared[i], decisions[i])
            except Exception as exc:
                if return_exceptions:
                    return exc
                raise

        with get_executor_for_config(configs[0]) as executor:
            return list(executor.map(one, range(len(inputs))))

    async def abatch(
        self,
        inputs: list[LanguageModelInput],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[Any]:
        """``batch`` for async callers: one router call, then concurrent ``ainvoke``-s."""
        if not inputs:
            return []
        configs = get_config_list(config, len(inputs))
        prepared, decisions = await run_in_executor(
            None, self._prepare_many, inputs, configs, kwargs, return_exceptions)

        async def one(i: int) -> Any:
            if isinstance(prepared[i], Exception):
                return prepared[i]
            try:
                return await self._ainvoke_decided(inputs[i], configs[i], prepared[i],
                                                   decisions[i])
            except Exception as exc:
                if return_exceptions:
                    return exc
                raise

        return list(await gather_with_concurrency(configs[0].get("max_concurrency"),
                                                  *(one(i) for i in range(len(inputs)))))

    def _prepare_many(self, inputs: Sequence[LanguageModelInput],
                      configs: Sequence[RunnableConfig], kwargs: Mapping[str, Any],
                      return_exceptions: bool) -> tuple[list[Any], list[Any]]:
        stop = kwargs.get("stop")
        rest = {k: v for k, v in kwargs.items() if k != "stop"}
        prepared: list[Any] = []
        for input, config in zip(inputs, configs, strict=True):
            try:
                # each input's context (its per-call threshold too) is checked on its own: a
                # bad one fails its own input only (with return_exceptions)
                prepared.append(self._prepare(input, self._context(config), stop, rest))
            except Exception as exc:
                if not return_exceptions:
                    raise
                prepared.append(exc)
        ready = [i for i, p in enumerate(prepared) if isinstance(p, _Prepared)]
        decisions: list[Any] = [None] * len(prepared)
        if ready:
            pipeline = self._call_pipeline()
            requests = [prepared[i].request for i in ready]
            try:
                decided: list[Any] = pipeline.decide(requests)
            except Exception:
                if not return_exceptions:
                    raise
                # Decided one by one, so an input the router cannot take (its embedder fails
                # on that text) fails alone, as with ChatOpenAI's batch, not every input.
                decided = [_decided_alone(pipeline, request) for request in requests]
            for i, decision in zip(ready, decided, strict=True):
                if isinstance(decision, Exception):
                    prepared[i] = decision
                else:
                    decisions[i] = decision
        return prepared, decisions

    def stream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> Iterator[Any]:
        if not self._streams(kwargs):
            # as BaseChatModel.stream: one chunk, the whole answer of a non-streamed call
            yield self.invoke(input, config, stop=stop, **kwargs)
            return
        prepared = self._prepare(input, self._context(config), stop, kwargs)
        (decision,) = self._call_pipeline().decide([prepared.request])
        yield from self._transform_stream_with_config(
            iter([input]), self._stream_chosen,  # type: ignore[arg-type]
            self._routed_config(config, decision), prepared=prepared, decision=decision,
        )

    def _stream_chosen(self, inputs: Iterator[LanguageModelInput],
                       run_manager: CallbackManagerForChainRun, config: RunnableConfig, *,
                       prepared: _Prepared, decision: RoutingDecision) -> Iterator[Any]:
        (input,) = inputs
        caller = self._runnable_caller(input, config, prepared, run_manager)
        run = self._call_pipeline().run_stream(prepared.request, decision=decision,
                                               estimate=self._estimator(prepared))
        yield from stream_sync(run, caller)

    async def astream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[Any]:
        if not self._streams(kwargs, async_api=True):
            yield await self.ainvoke(input, config, stop=stop, **kwargs)
            return
        prepared = self._prepare(input, self._context(config), stop, kwargs)
        (decision,) = await run_in_executor(None, self._call_pipeline().decide,
                                            [prepared.request])

        async def single() -> AsyncIterator[LanguageModelInput]:
            yield input

        # aclosing: a consumer's aclose() reaches the pipeline now, not when the generator is
        # collected (it releases the budget hold and records the decision)
        async with aclosing(self._atransform_stream_with_config(
            single(), self._astream_chosen,  # type: ignore[arg-type]
            self._routed_config(config, decision), prepared=prepared, decision=decision,
        )) as chunks:
            async for chunk in chunks:
                yield chunk

    async def _astream_chosen(self, inputs: AsyncIterator[LanguageModelInput],
                              run_manager: AsyncCallbackManagerForChainRun,
                              config: RunnableConfig, *, prepared: _Prepared,
                              decision: RoutingDecision) -> AsyncIterator[Any]:
        input = [item async for item in inputs][0]
        caller = self._runnable_caller(input, config, prepared, run_manager)
        run = self._call_pipeline().run_stream(prepared.request, decision=decision,
                                               estimate=self._estimator(prepared))
        async with aclosing(stream_async(run, caller)) as chunks:
            async for chunk in chunks:
                yield chunk

    # -- tools and structured output: replayed on whichever model is chosen -----------------------
    def bind_tools(
        self,
        tools: Sequence[Any],
        *,
        tool_choice: Any = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools; the chosen model's own ``bind_tools`` formats them at each call.

        The binding also shows them as ``tools`` (OpenAI's format), as ChatOpenAI's does, so
        LangGraph sees the model as bound and keeps the options bound with them."""
        binding = ToolsBinding(tuple(tools), tool_choice, dict(kwargs))
        return self.bind(**{BINDING_KWARG: binding, "tools": described_tools(tools)})

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
        Call keywords (``temperature``, ``max_tokens``, ``stop``, ``model=``, given per call,
        with ``.bind`` on the returned runnable, or set on this model) reach the chosen
        model's request, with ``include_raw=True`` too (a plain client's ``include_raw=True``
        runnable drops them on invoke and fails on stream). As for any LangChain model,
        ``.bind(...)`` *before* ``with_structured_output`` does not carry over.
        """
        binding = StructuredOutputBinding(schema, include_raw, dict(kwargs))
        return self.bind(**{BINDING_KWARG: binding})

    # -- generate() and the event streams: the routed run is the chat-model run -------------------
    def stream_events(self, input: LanguageModelInput, config: RunnableConfig | None = None,
                      *, version: Literal["v1", "v2", "v3"] = "v2",
                      stop: list[str] | None = None, **kwargs: Any) -> Any:
        """As BaseChatModel's; the v3 stream keeps a per-call threshold given in
        ``configurable`` (``_v3_config``)."""
        if version == "v3":
            config = self._v3_config(config)
        return super().stream_events(input, config, version=version, stop=stop, **kwargs)

    def astream_events(self, input: LanguageModelInput, config: RunnableConfig | None = None,
                       *, version: Literal["v1", "v2", "v3"] = "v2",
                       stop: list[str] | None = None, **kwargs: Any) -> Any:
        """As BaseChatModel's; the v3 stream keeps a per-call threshold given in
        ``configurable`` (``_v3_config``)."""
        if version == "v3":
            config = self._v3_config(config)
        return super().astream_events(input, config, version=version, stop=stop, **kwargs)

    def _v3_config(self, config: RunnableConfig | None) -> RunnableConfig:
        """The v3 event streams start the routed chat-model run from the config's metadata
        alone (``configurable`` goes nowhere), so the call's metadata is read here, with a
        threshold from ``configurable`` merged in and checked against the model's and the
        call's metadata, as invoke reads them."""
        config = ensure_config(config)
        metadata = dict(config.get("metadata") or {})
        checked = call_metadata({**(self.metadata or {}), **metadata}, config.get("configurable"))
        if checked.get(THRESHOLD_KEY) is not None:
            metadata[THRESHOLD_KEY] = checked[THRESHOLD_KEY]
        return {**config, "metadata": metadata}

    def _generation_context(self, run_manager: Any) -> CallContext:
        if run_manager is None:
            return self._context(None)
        return CallContext(metadata=call_metadata(run_manager.metadata or {}),
                           tags=tuple(run_manager.tags or []))

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        """``generate()``: the routed chat-model run answers.

        Unlike invoke and stream, this run's metadata has no ``langroute_decision_id``:
        LangChain starts the run (``on_chat_model_start``, which is when tracers such as
        LangSmith's take its metadata) before ``_generate`` decides, and one ``generate()``
        call starts the runs of all its prompts with the same metadata. The decision id is
        in the generation's ``response_metadata["langroute"]`` (so in the run's outputs)
        and the ``langroute.route`` event: give it to ``record_feedback``.
        """
        prepared = self._prepare(messages, self._generation_context(run_manager), stop, kwargs)
        caller = self._generation_caller(messages, prepared, run_manager)
        run = self._call_pipeline().run(prepared.request, estimate=self._estimator(prepared))
        result = run_sync(run, caller)
        caller.release(result.model)
        return self._generation_result(result)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        """``agenerate()``; its run's metadata has no decision id either (see ``_generate``)."""
        prepared = self._prepare(messages, self._generation_context(run_manager), stop, kwargs)
        caller = self._generation_caller(messages, prepared, run_manager)
        run = self._call_pipeline().run(prepared.request, estimate=self._estimator(prepared))
        result = await run_async(run, caller)
        await caller.arelease(result.model)
        return self._generation_result(result)

    def _generation_result(self, result: CallResult) -> ChatResult:
        """The answering ChatResult, stamped. Every answer call of this run reported through
        the routed run itself, so its usage is their sum (each provider call counted once)."""
        raw = result.answer.raw
        answers = [a for a in result.attempts if a.purpose != "verify" and a.usage is not None]
        if len(answers) > 1 and isinstance(raw, ChatResult) and raw.generations:
            total = answers[0].usage
            for attempt in answers[1:]:
                total = total + attempt.usage  # type: ignore[operator]
            message = raw.generations[0].message
            if isinstance(message, AIMessage) and total is not None:
                usage = {"input_tokens": total.input_tokens,
                         "output_tokens": total.output_tokens,
                         "total_tokens": total.input_tokens + total.output_tokens}
                message = message.model_copy(update={"usage_metadata": usage})
                raw = ChatResult(generations=[ChatGeneration(
                    message=message, generation_info=raw.generations[0].generation_info)],
                    llm_output=raw.llm_output)
        if isinstance(raw, BaseMessage):  # a verifier-style answer
            raw = ChatResult(generations=[ChatGeneration(message=raw)])
        return stamp(raw, result.record())  # type: ignore[no-any-return]

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        prepared = self._prepare(messages, self._generation_context(run_manager), stop, kwargs)
        caller = self._generation_caller(messages, prepared, run_manager)
        run = self._call_pipeline().run_stream(prepared.request,
                                               estimate=self._estimator(prepared))
        yield from stream_sync(run, caller)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        prepared = self._prepare(messages, self._generation_context(run_manager), stop, kwargs)
        caller = self._generation_caller(messages, prepared, run_manager)
        run = self._call_pipeline().run_stream(prepared.request,
                                               estimate=self._estimator(prepared))
        async with aclosing(stream_async(run, caller)) as chunks:
            async for chunk in chunks:
                yield chunk
