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
from langchain_core.runnables import Runnable, RunnableBinding
from langchain_core.utils.function_calling import convert_to_openai_tool

__all__ = [
    "BINDING_KWARG",
    "PendingBinding",
    "StructuredOutputBinding",
    "ToolsBinding",
    "call_kwargs_of",
    "described_tools",
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
