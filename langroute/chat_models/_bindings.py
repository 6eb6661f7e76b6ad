"""Tools and output schemas waiting for a model to be chosen.

``RoutedChatModel.bind_tools`` / ``with_structured_output`` cannot format anything yet: which
provider gets the call is decided per call. They bind one of these records instead, and the call
applies it to the chosen model through that model's *own* ``bind_tools`` /
``with_structured_output``, so each provider formats tools and schemas its own way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import (
    Runnable,
    RunnableBinding,
    RunnableParallel,
    RunnableSequence,
)
from langchain_core.utils.function_calling import convert_to_openai_tool

__all__ = [
    "BINDING_KWARG",
    "PendingBinding",
    "StructuredOutputBinding",
    "ToolsBinding",
    "bind_call_kwargs",
    "call_kwargs_of",
    "described_tools",
    "sends_tools",
]

#: Call keyword under which a pending binding travels from the RunnableBinding to the model.
BINDING_KWARG = "langroute_binding"


@dataclass(frozen=True)
class ToolsBinding:
    """Arguments of a ``bind_tools`` call, replayed on the chosen model."""

    tools: Sequence[Any]
    tool_choice: Any = None
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def apply(self, model: BaseChatModel) -> Runnable[Any, Any]:
        extra = dict(self.kwargs)
        if self.tool_choice is not None:
            extra["tool_choice"] = self.tool_choice
        return model.bind_tools(list(self.tools), **extra)


@dataclass(frozen=True)
class StructuredOutputBinding:
    """Arguments of a ``with_structured_output`` call, replayed on the chosen model."""

    schema: Any
    include_raw: bool = False
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def apply(self, model: BaseChatModel) -> Runnable[Any, Any]:
        return model.with_structured_output(self.schema, include_raw=self.include_raw,
                                            **self.kwargs)


PendingBinding = ToolsBinding | StructuredOutputBinding


def described_tools(tools: Sequence[Any]) -> list[dict[str, Any]]:
    """The tools in OpenAI's format, for frameworks that read a binding's ``tools`` keyword
    (LangGraph's ``create_react_agent`` re-binds a model whose binding has none, dropping the
    options bound with them). Only a description: the call strips it, and the chosen model
    formats the tools its own way from the pending binding."""
    described = []
    for tool in tools:
        try:
            described.append(convert_to_openai_tool(tool))
        except Exception:  # noqa: BLE001 -- a tool only the chosen provider can format
            name = tool.get("name") if isinstance(tool, Mapping) else getattr(tool, "name", None)
            described.append(dict(tool) if isinstance(tool, Mapping)
                             else {"name": name or type(tool).__name__})
    return described


def call_kwargs_of(binding: PendingBinding | None, model: BaseChatModel) -> dict[str, Any]:
    """The call keywords ``binding`` adds to ``model`` (for the ``_generate`` path, which
    calls the chosen model's generation directly and so needs plain keywords, not a Runnable)."""
    if binding is None:
        return {}
    if isinstance(binding, StructuredOutputBinding):
        raise NotImplementedError(
            "structured output needs a parser after the model; call invoke/stream (or their "
            "async forms) on the with_structured_output() runnable instead of generate()"
        )
    bound = binding.apply(model)
    if not (isinstance(bound, RunnableBinding) and bound.bound is model):
        raise NotImplementedError(
            f"{type(model).__name__}.bind_tools returned a {type(bound).__name__}, not a "
            "binding of the model itself; use invoke/stream instead of generate()"
        )
    return dict(bound.kwargs)


def sends_tools(binding: StructuredOutputBinding, model: BaseChatModel) -> bool:
    """Whether ``model``'s own ``with_structured_output`` calls it with ``tools`` (what
    LangChain's ``disable_streaming="tool_calling"`` looks for), read from the keywords its
    runnable binds to the model: a provider may bind the schema as a tool without
    ``method="function_calling"`` (its default method, a model without structured outputs
    such as ChatOpenAI's ``gpt-4``, ``tools=`` given with a json schema). When the runnable
    does not show its call of the model, the ``method`` given says (``"function_calling"``
    sends tools); without one it is an error, not a guess."""
    bound = _model_call_kwargs(binding.apply(model), model)
    if bound is not None:
        return bool(bound.get("tools"))
    method = binding.kwargs.get("method")
    if method is None:
        raise NotImplementedError(
            f"{type(model).__name__}.with_structured_output returned a runnable whose call of "
            "the model langroute cannot find, so disable_streaming='tool_calling' cannot tell "
            "whether it sends tools; pass method= to with_structured_output "
            "('function_calling' sends the schema as a tool)")
    return bool(method == "function_calling")


def bind_call_kwargs(runnable: Runnable[Any, Any], model: BaseChatModel,
                     kwargs: Mapping[str, Any]) -> Runnable[Any, Any]:
    """``runnable`` (a structured output replayed on ``model``) with ``kwargs`` bound onto its
    call of ``model``, winning over the keywords bound there, as call keywords do.

    Calling the runnable with them is not enough: an ``include_raw=True`` runnable starts with
    a ``RunnableParallel``, whose invoke drops call keywords and whose stream raises on them;
    the routed call always asks for the raw message, so temperature, ``model=``... were lost.
    A runnable whose call of the model cannot be found is an error, not a call without them."""
    if not kwargs:
        return runnable
    rebound = _rebound(runnable, model, dict(kwargs))
    if rebound is None:
        raise NotImplementedError(
            f"{type(model).__name__}.with_structured_output returned a "
            f"{type(runnable).__name__} whose call of the model langroute cannot find, so the "
            f"call keywords {sorted(kwargs)} cannot reach it; call the routed structured "
            "output without them (and without the routed model's temperature, max_tokens, "
            "stop or streaming)")
    return rebound


def _rebound(runnable: Any, model: BaseChatModel,
             kwargs: dict[str, Any]) -> Runnable[Any, Any] | None:
    """``bind_call_kwargs`` on ``runnable``'s first call of ``model`` (``_model_call_path``):
    the bindings around the model get one more, and the nodes above it are copied around
    it, the rest shared; None when not found."""
    path = _model_call_path(runnable, model)
    if path is None:
        return None
    top = len(path) - 1  # the outermost of the bindings around the model
    while top > 0 and isinstance(path[top - 1], RunnableBinding):
        top -= 1
    rebuilt = path[top].bind(**kwargs)
    for i in range(top - 1, -1, -1):  # each node above, inner first, takes the new child
        rebuilt = _with_child(path[i], path[i + 1], rebuilt)
    return rebuilt  # type: ignore[no-any-return]


def _with_child(parent: Any, child: Any, new: Any) -> Any:
    """A copy of ``parent`` (a node ``_model_call_path`` walks) with ``new`` for ``child``."""
    if isinstance(parent, RunnableBinding):
        return parent.model_copy(update={"bound": new})
    if isinstance(parent, RunnableSequence):
        steps = list(parent.steps)
        steps[next(i for i, step in enumerate(steps) if step is child)] = new
        return parent.model_copy(update={"first": steps[0], "middle": steps[1:-1],
                                         "last": steps[-1]})
    key = next(k for k, step in parent.steps__.items() if step is child)
    return parent.model_copy(update={"steps__": {**parent.steps__, key: new}})


def _model_call_kwargs(runnable: Any, model: BaseChatModel) -> dict[str, Any] | None:
    """The keywords ``runnable`` calls ``model`` with (the bindings on the way merged, the
    outer winning, as a ``RunnableBinding`` passes them on); None when it does not show that
    call."""
    path = _model_call_path(runnable, model)
    if path is None:
        return None
    merged: dict[str, Any] = {}
    for node in reversed(path):
        if isinstance(node, RunnableBinding):
            merged.update(node.kwargs)
    return merged


def _model_call_path(runnable: Any, model: BaseChatModel) -> list[Any] | None:
    """The nodes from ``runnable`` down to its first call of ``model`` (the model last),
    through bindings, sequences and parallel maps; None when it does not show that call."""
    if runnable is model:
        return [runnable]
    if isinstance(runnable, RunnableBinding):
        steps: Sequence[Any] = [runnable.bound]
    elif isinstance(runnable, RunnableSequence):
        steps = runnable.steps
    elif isinstance(runnable, RunnableParallel):
        steps = list(runnable.steps__.values())
    else:
        return None
    for step in steps:
        found = _model_call_path(step, model)
        if found is not None:
            return [runnable, *found]
    return None
