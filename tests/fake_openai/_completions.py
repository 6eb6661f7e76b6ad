"""What the fake answers to a valid request, as a completion object or as SSE chunks.

Rules (deterministic, derived only from the request, so tests can assert on them):

* tools given and ``tool_choice`` not ``"none"`` -> one tool call: the named tool, else the tool
  whose name appears in the last user message, else the first tool; with ``"auto"`` (the default)
  the fake answers in text instead once the last message is a tool result, unless the last user
  message names another tool not called since it (a multi-step task: named tools in turn);
* ``response_format`` json_schema -> JSON valid for the schema; json_object -> an object whose
  keys are the quoted words of the prompt (``'setup'``), or ``{"answer": ...}``;
* otherwise text: ``"You said: <last user text>"``, or, after a tool result,
  ``"The <tool> tool returned: <result>"``.

Text is cut at the first ``stop`` sequence and after ``max_completion_tokens`` / ``max_tokens``
tokens; a "token" is a word with its leading whitespace, which is also the streaming unit.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from ._errors import FakeAPIError
from ._requests import message_text
from ._schema_instances import PromptHints, schema_instance

__all__ = ["Completion", "answer", "count_tokens"]

CREATED = 1_700_000_000
SYSTEM_FINGERPRINT = "fp_fake"
_PIECE = re.compile(r"\s*\S+|\s+$")
_TOKEN = re.compile(r"\w+|[^\w\s]")
_IDENTIFIER = re.compile(r"^[A-Za-z_]\w*$")


def count_tokens(text: str) -> int:
    """Deterministic token count used for prompts (words and punctuation marks)."""
    return len(_TOKEN.findall(text))


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    argument_pieces: tuple[str, ...]

    @property
    def arguments(self) -> str:
        return "".join(self.argument_pieces)


@dataclass(frozen=True)
class Choice:
    index: int
    content_pieces: tuple[str, ...] | None
    tool_calls: tuple[ToolCall, ...]
    finish_reason: str

    @property
    def content(self) -> str | None:
        return None if self.content_pieces is None else "".join(self.content_pieces)

    @property
    def completion_tokens(self) -> int:
        calls = sum(1 + len(call.argument_pieces) for call in self.tool_calls)
        return len(self.content_pieces or ()) + calls


@dataclass(frozen=True)
class Completion:
    id: str
    model: str
    choices: tuple[Choice, ...]
    prompt_tokens: int
    logprobs: bool

    @property
    def usage(self) -> dict[str, Any]:
        completion_tokens = sum(choice.completion_tokens for choice in self.choices)
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": self.prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    def to_json(self) -> dict[str, Any]:
        """The non-streaming ``chat.completion`` object."""
        choices = []
        for choice in self.choices:
            message: dict[str, Any] = {
                "role": "assistant",
                "content": choice.content,
                "refusal": None,
                "annotations": [],
            }
            if choice.tool_calls:
                message["tool_calls"] = [
                    {
                        "id": call.id,
                        "type": "function",
                        "function": {"name": call.name, "arguments": call.arguments},
                    }
                    for call in choice.tool_calls
                ]
            choices.append(
                {
                    "index": choice.index,
                    "message": message,
                    "logprobs": self._logprobs(choice.content_pieces or ()),
                    "finish_reason": choice.finish_reason,
                }
            )
        return {**self._envelope("chat.completion"), "choices": choices, "usage": self.usage}

    def to_chunks(self, *, include_usage: bool) -> list[dict[str, Any]]:
        """The ``chat.completion.chunk`` objects of a stream, one per token, in order."""
        extra = {"usage": None} if include_usage else {}
        chunks: list[dict[str, Any]] = []

        def chunk(
            index: int, delta: dict[str, Any], finish: str | None = None, logprobs: Any = None
        ) -> None:
            choice = {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
            chunks.append({**self._envelope("chat.completion.chunk"), "choices": [choice], **extra})

        for choice in self.choices:
            chunk(choice.index, {"role": "assistant", "content": "", "refusal": None})
            for piece in choice.content_pieces or ():
                chunk(choice.index, {"content": piece}, logprobs=self._logprobs((piece,)))
            for position, call in enumerate(choice.tool_calls):
                head = {"name": call.name, "arguments": ""}
                chunk(
                    choice.index,
                    {
                        "tool_calls": [
                            {"index": position, "id": call.id, "type": "function", "function": head}
                        ]
                    },
                )
                for piece in call.argument_pieces:
                    chunk(
                        choice.index,
                        {"tool_calls": [{"index": position, "function": {"arguments": piece}}]},
                    )
            chunk(choice.index, {}, choice.finish_reason)
        if include_usage:
            chunks.append(
                {**self._envelope("chat.completion.chunk"), "choices": [], "usage": self.usage}
            )
        return chunks

    def _envelope(self, kind: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": kind,
            "created": CREATED,
            "model": self.model,
            "system_fingerprint": SYSTEM_FINGERPRINT,
        }

    def _logprobs(self, pieces: tuple[str, ...]) -> dict[str, Any] | None:
        if not self.logprobs:
            return None
        tokens = [
            {"token": p, "logprob": 0.0, "bytes": list(p.encode()), "top_logprobs": []}
            for p in pieces
        ]
        return {"content": tokens, "refusal": None}


def answer(body: dict[str, Any]) -> Completion:
    """The completion for a request that passed ``validate_completion_request``."""
    # ids depend on what is asked, not on how it is delivered: streamed and invoked answers match
    asked = {k: v for k, v in body.items() if k not in ("stream", "stream_options")}
    digest = hashlib.sha256(json.dumps(asked, sort_keys=True).encode()).hexdigest()
    messages = body["messages"]
    user_text = next(
        (message_text(m.get("content")) for m in reversed(messages) if m["role"] == "user"), ""
    )
    stops = body.get("stop") or []
    stops = [stops] if isinstance(stops, str) else stops
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    choices = tuple(
        _choice(body, index, user_text, stops, limit, digest) for index in range(body.get("n") or 1)
    )
    return Completion(
        id=f"chatcmpl-{digest[:24]}",
        model=body["model"],
        choices=choices,
        prompt_tokens=_prompt_tokens(body),
        logprobs=bool(body.get("logprobs")),
    )


def _choice(
    body: dict[str, Any],
    index: int,
    user_text: str,
    stops: list[str],
    limit: int | None,
    digest: str,
) -> Choice:
    hints = PromptHints.from_text(user_text)
    tool = _tool_to_call(body, user_text)
    if tool is not None:
        parameters = tool.get("parameters", {"type": "object", "properties": {}})
        arguments = _instance(
            parameters, hints, tool.get("strict") is True, f"function '{tool['name']}'"
        )
        pieces = tuple(_PIECE.findall(json.dumps(arguments, ensure_ascii=False)))
        budget = None if limit is None else max(limit - 1, 0)
        finish = "tool_calls"
        if budget is not None and len(pieces) > budget:
            pieces, finish = pieces[:budget], "length"
        call_id = f"call_{hashlib.sha256(f'{digest}:{index}'.encode()).hexdigest()[:24]}"
        return Choice(index, None, (ToolCall(call_id, tool["name"], pieces),), finish)
    text = _content(body, user_text, hints)
    finish = "stop"
    cut = min((text.find(s) for s in stops if s and s in text), default=-1)
    if cut >= 0:
        text = text[:cut]
    pieces = tuple(_PIECE.findall(text))
    if limit is not None and len(pieces) > limit:
        pieces, finish = pieces[:limit], "length"
    return Choice(index, pieces, (), finish)


def _tool_to_call(body: dict[str, Any], user_text: str) -> dict[str, Any] | None:
    functions = [tool["function"] for tool in body.get("tools") or []]
    choice = body.get("tool_choice", "auto")
    if not functions or choice == "none":
        return None
    if isinstance(choice, dict):
        return next(f for f in functions if f["name"] == choice["function"]["name"])
    mentioned = [f for f in functions if re.search(rf"\b{re.escape(f['name'])}\b", user_text)]
    if choice == "auto" and body["messages"][-1]["role"] == "tool":
        called = _called_since_user(body["messages"])
        return next((f for f in mentioned if f["name"] not in called), None)
    return (mentioned or functions)[0]


def _called_since_user(messages: list[dict[str, Any]]) -> set[str]:
    """Names of the tools the assistant called after the last user message."""
    called: set[str] = set()
    for message in reversed(messages):
        if message["role"] == "user":
            break
        called.update(call["function"]["name"] for call in message.get("tool_calls") or [])
    return called


def _content(body: dict[str, Any], user_text: str, hints: PromptHints) -> str:
    response_format = body.get("response_format") or {"type": "text"}
    if response_format["type"] == "json_schema":
        spec = response_format["json_schema"]
        where = f"response_format '{spec['name']}'"
        value = _instance(spec.get("schema", {}), hints, spec.get("strict") is True, where)
        return json.dumps(value, ensure_ascii=False)
    if response_format["type"] == "json_object":
        keys = [phrase for phrase in hints.phrases if _IDENTIFIER.match(phrase)] or ["answer"]
        return json.dumps(dict.fromkeys(keys, user_text), ensure_ascii=False)
    last = body["messages"][-1]
    if last["role"] == "tool":
        return f"The {_tool_name(body['messages'], last['tool_call_id'])} tool returned: " + (
            message_text(last.get("content"))
        )
    return f"You said: {user_text}" if user_text else "You said nothing."


def _instance(schema: dict[str, Any], hints: PromptHints, strict: bool, where: str) -> Any:
    """A schema instance, or the 400 the real API gives for a schema nothing can satisfy."""
    try:
        return schema_instance(schema, hints, strict=strict)
    except ValueError as error:
        raise FakeAPIError(400, f"Invalid schema for {where}: {error}", param=where) from error


def _tool_name(messages: list[dict[str, Any]], call_id: str) -> str:
    for message in reversed(messages):
        for call in message.get("tool_calls") or []:
            if call["id"] == call_id:
                return call["function"]["name"]
    return "unknown"


def _prompt_tokens(body: dict[str, Any]) -> int:
    total = 3
    for message in body["messages"]:
        total += 3 + count_tokens(message_text(message.get("content")))
        total += count_tokens(message.get("name", ""))
        total += count_tokens(json.dumps(message.get("tool_calls") or ""))
    if body.get("tools"):
        total += count_tokens(json.dumps(body["tools"]))
    if isinstance(body.get("response_format"), dict):
        total += count_tokens(json.dumps(body["response_format"]))
    return total
