"""What a LlamaIndex conversation tells the router, and who owns a tool loop.

Routing reads the text blocks of the last user message (images and other blocks still reach the
model); a turn without text falls back to the nearest message with text, earlier ones first, and
a conversation (or a ``complete`` prompt) with no text at all goes to the top rung, the note
saying why (``langroute._routing_text``, the rule RoutedChatModel follows too).

A conversation ending in tool results (``role="tool"`` messages) after an assistant message that
made tool calls is mid tool loop: the candidate that made the calls answers them, since another
provider would not recognise the call ids. ``RoutedLLM`` stamps the candidate's name into every
answer's ``message.additional_kwargs`` under ``MODEL_KEY`` so the loop's maker is
known; the stamp is removed again before messages go to a provider.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    CompletionResponse,
    MessageRole,
    TextBlock,
    ToolCallBlock,
)

from langroute import MessageError
from langroute._routing_text import Turn

__all__ = [
    "MODEL_KEY",
    "RECORD_KEY",
    "ToolLoop",
    "as_messages",
    "find_tool_loop",
    "prompt_turns",
    "stamp_response",
    "stamped_model",
    "turns",
    "unstamped",
]

#: ``message.additional_kwargs`` key naming the candidate that wrote an assistant message.
MODEL_KEY = "langroute_model"
#: ``ChatResponse.additional_kwargs`` / ``CompletionResponse.additional_kwargs`` key of the
#: call record (the decision, who answered, every attempt).
RECORD_KEY = "langroute"


def _text_of(message: ChatMessage) -> str:
    return "\n".join(block.text for block in message.blocks if isinstance(block, TextBlock))


def _holds(message: ChatMessage) -> str:
    """What a message without text holds, for the no-text note."""
    kinds = [getattr(b, "block_type", type(b).__name__) for b in message.blocks
             if not isinstance(b, TextBlock)]
    return f"blocks {kinds}" if kinds else "empty text"


def turns(messages: Sequence[ChatMessage]) -> list[Turn]:
    """The conversation as routing reads it (``langroute._routing_text.shape_request`` picks
    the text to route on and the note): each message's text blocks, and what it holds."""
    return [Turn(m.role == MessageRole.USER, _text_of(m), _holds(m)) for m in messages]


def prompt_turns(prompt: str) -> list[Turn]:
    """A ``complete`` prompt as routing reads it: one user turn."""
    return [Turn(True, prompt, "empty text")]


def _makes_tool_calls(message: ChatMessage) -> bool:
    return any(isinstance(b, ToolCallBlock) for b in message.blocks) or bool(
        message.additional_kwargs.get("tool_calls")
    )


@dataclass(frozen=True)
class ToolLoop:
    """A tool loop in flight: ``maker`` is the candidate that made the calls, or None with
    ``note`` saying why it could not be identified."""

    maker: str | None
    note: str


def find_tool_loop(messages: Sequence[ChatMessage], names: Collection[str]) -> ToolLoop | None:
    """The tool loop the conversation ends in, or None if it does not end in one."""
    tail = 0
    while tail < len(messages) and messages[-1 - tail].role == MessageRole.TOOL:
        tail += 1
    if tail == 0 or tail == len(messages):
        return None
    caller = messages[-1 - tail]
    if caller.role != MessageRole.ASSISTANT or not _makes_tool_calls(caller):
        return None
    maker = caller.additional_kwargs.get(MODEL_KEY)
    if isinstance(maker, str) and maker in names:
        return ToolLoop(maker, f"tool calls made by {maker} ({MODEL_KEY} stamp); it answers them")
    if maker is None:
        return ToolLoop(None, "tool calls in flight, but the assistant message carries no "
                              f"{MODEL_KEY} stamp; routed normally")
    return ToolLoop(None, f"tool calls made by {maker!r}, which is none of the candidates; "
                          "routed normally")


def unstamped(messages: Sequence[ChatMessage]) -> list[ChatMessage]:
    """The messages without langroute's stamp (providers must not receive it)."""
    out = []
    for message in messages:
        if MODEL_KEY in message.additional_kwargs:
            kwargs = {k: v for k, v in message.additional_kwargs.items() if k != MODEL_KEY}
            message = message.model_copy(update={"additional_kwargs": kwargs})
        out.append(message)
    return out


def as_messages(value: Any) -> list[ChatMessage]:
    """Messages a pipeline step passes to ``state.ask``: a str (one user message), ChatMessages,
    ``(role, text)`` pairs or ``{"role": ..., "content": ...}`` dicts."""
    if isinstance(value, str):
        return [ChatMessage(role=MessageRole.USER, content=value)]
    out = []
    for item in value:
        if isinstance(item, ChatMessage):
            out.append(item)
        elif isinstance(item, tuple) and len(item) == 2:
            out.append(ChatMessage(role=item[0], content=item[1]))
        elif isinstance(item, dict) and "role" in item:
            out.append(ChatMessage(role=item["role"], content=item.get("content")))
        else:
            raise MessageError(f"cannot turn {type(item).__name__} into a ChatMessage")
    return out


def stamped_model(response: ChatResponse | CompletionResponse) -> str | None:
    """The candidate that wrote a response, from langroute's stamps (None if unstamped)."""
    if isinstance(response, ChatResponse):
        name = response.message.additional_kwargs.get(MODEL_KEY)
        if isinstance(name, str):
            return name
    record = response.additional_kwargs.get(RECORD_KEY)
    if isinstance(record, dict) and isinstance(record.get("answered_by"), str):
        return str(record["answered_by"])
    return None


def stamp_response(response: Any, model: str, record: dict[str, Any] | None = None) -> Any:
    """A copy of a Chat/CompletionResponse naming ``model`` as its writer (and carrying the call
    record under ``RECORD_KEY`` when given)."""
    update: dict[str, Any] = {}
    if record is not None:
        update["additional_kwargs"] = {**response.additional_kwargs, RECORD_KEY: record}
    if isinstance(response, ChatResponse):
        message = response.message
        update["message"] = message.model_copy(
            update={"additional_kwargs": {**message.additional_kwargs, MODEL_KEY: model}})
    return response.model_copy(update=update) if update else response
