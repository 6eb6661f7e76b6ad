"""What a conversation tells the router: the text to route on, and who owns a tool loop.

Routing reads the last user message's text parts (images, audio and other blocks are ignored
for routing but reach the model unchanged); a user message is a HumanMessage or a ChatMessage
with role "user". When the last user message has no text, the nearest message with text is
routed on, earlier ones first (a user message first, then any role, e.g. the system prompt);
a conversation with no text at all goes to the top rung, the strongest candidate. The rule is
langroute's own (``langroute._routing_text``), shared with the LlamaIndex adapter.

A conversation whose last messages are ToolMessages answering the latest AIMessage's tool calls
is mid tool loop: the model that made those calls must answer them, since another provider would
not recognise the tool-call ids.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    ToolMessage,
)

from .._routing_text import Turn

__all__ = [
    "ToolLoop",
    "find_tool_loop",
    "is_user_message",
    "turns",
]


def is_user_message(message: BaseMessage) -> bool:
    """A user turn: a HumanMessage, or a ChatMessage with role "user" (ChatOpenAI sends both
    as ``{"role": "user"}``)."""
    return isinstance(message, HumanMessage) or (
        isinstance(message, ChatMessage) and message.role == "user")


def turns(messages: Sequence[BaseMessage]) -> list[Turn]:
    """The conversation as routing reads it (``langroute._routing_text.shape_request`` picks
    the text to route on and the note): each message's text parts, joined by newlines, and
    what it holds."""
    return [Turn(is_user_message(m), _text_parts(m.content), _describe(m.content))
            for m in messages]


def _text_parts(content: object) -> str:
    """A message's text: its string, or its text blocks joined by newlines (as the LlamaIndex
    adapter joins them). ``BaseMessage.text`` joins blocks with nothing, made for a stream's
    fragments, so ``["Translate this:", <image>, "into French"]`` was routed as
    "Translate this:into French"."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    parts = [block if isinstance(block, str) else block["text"] for block in content
             if isinstance(block, str) or (isinstance(block, dict) and block.get("type") == "text"
                                           and isinstance(block.get("text"), str))]
    return "\n".join(part for part in parts if part)


def _describe(content: object) -> str:
    if isinstance(content, str):
        return "empty text"
    if isinstance(content, list):
        kinds = [b.get("type", "?") if isinstance(b, dict) else type(b).__name__ for b in content]
        return f"blocks {kinds}" if kinds else "no blocks"
    return type(content).__name__


@dataclass(frozen=True)
class ToolLoop:
    """A tool loop in flight: ``maker`` is the candidate that made the calls, or None with
    ``note`` saying why it could not be identified."""

    maker: str | None
    note: str


def find_tool_loop(
    messages: Sequence[BaseMessage], models: Mapping[str, BaseChatModel]
) -> ToolLoop | None:
    """The tool loop the conversation ends in, or None if it does not end in one."""
    tail = 0
    while tail < len(messages) and isinstance(messages[-1 - tail], ToolMessage):
        tail += 1
    if tail == 0 or tail == len(messages):
        return None
    caller = messages[-1 - tail]
    if not isinstance(caller, AIMessage) or not caller.tool_calls:
        return None
    call_ids = {call.get("id") for call in caller.tool_calls}
    answered = {m.tool_call_id for m in messages[len(messages) - tail:]}  # type: ignore[attr-defined]
    if not answered <= call_ids:
        return None
    return _identify_maker(caller, models)


def _identify_maker(message: AIMessage, models: Mapping[str, BaseChatModel]) -> ToolLoop:
    stamped = message.response_metadata.get("langroute")
    if isinstance(stamped, Mapping):
        # who answered, not what was decided: a fallback or an escalation made these calls
        maker = stamped.get("answered_by", stamped.get("model"))
        if isinstance(maker, str) and maker in models:
            return ToolLoop(maker, f"tool calls made by {maker} (langroute metadata); "
                                   "it answers them")
    served = message.response_metadata.get("model_name") or message.response_metadata.get("model")
    if not isinstance(served, str) or not served:
        return ToolLoop(None, "tool calls in flight, but the AIMessage names no model; "
                              "routed normally")
    if served in models:
        return ToolLoop(served, f"tool calls made by {served} (model_name); it answers them")
    matches = _match_model_name(served, models)
    if len(matches) == 1:
        return ToolLoop(matches[0],
                        f"tool calls made by {served!r} = {matches[0]}; it answers them")
    if matches:
        return ToolLoop(None, f"tool calls made by {served!r}, which matches several candidates "
                              f"{matches}; routed normally")
    return ToolLoop(None, f"tool calls made by {served!r}, which is none of the candidates; "
                          "routed normally")


def _match_model_name(served: str, models: Mapping[str, BaseChatModel]) -> list[str]:
    """Candidates whose configured model name is ``served``, or the longest dated prefix of it
    (providers answer "gpt-4o" requests as "gpt-4o-2024-08-06")."""
    configured = {}
    for name, model in models.items():
        value = getattr(model, "model_name", None) or getattr(model, "model", None)
        if isinstance(value, str) and value:
            configured[name] = value
    exact = [name for name, value in configured.items() if value == served]
    if exact:
        return exact
    prefixed = {name: value for name, value in configured.items()
                if served.startswith(value + "-")}
    if not prefixed:
        return []
    longest = max(len(value) for value in prefixed.values())
    return [name for name, value in prefixed.items() if len(value) == longest]
