"""Strict shape checks of a Chat Completions request body, with the real API's 400 messages.

The fake exists to catch client bugs (a router forwarding a malformed payload, a dropped tool
message), so anything the real endpoint rejects is rejected here too, naming the offending
parameter the way OpenAI does (``messages[2].tool_call_id``).
"""

from __future__ import annotations

import re
from typing import Any

from ._errors import FakeAPIError
from ._schema_instances import strict_schema_problem

__all__ = ["message_text", "validate_completion_request"]

_TOP_LEVEL_KEYS = frozenset(
    {
        "model", "messages", "stream", "stream_options", "temperature", "top_p", "n", "stop",
        "max_tokens", "max_completion_tokens", "presence_penalty", "frequency_penalty",
        "logit_bias", "logprobs", "top_logprobs", "user", "seed", "tools", "tool_choice",
        "parallel_tool_calls", "response_format", "service_tier", "store", "metadata",
        "reasoning_effort", "modalities", "audio", "prediction", "verbosity",
        "prompt_cache_key", "safety_identifier", "web_search_options",
    }
)  # fmt: skip
_MESSAGE_KEYS = {
    "system": {"role", "content", "name"},
    "developer": {"role", "content", "name"},
    "user": {"role", "content", "name"},
    "assistant": {"role", "content", "name", "tool_calls", "function_call", "refusal", "audio"},
    "tool": {"role", "content", "tool_call_id"},
    "function": {"role", "content", "name"},
}
_PART_TYPES = {
    "system": {"text"},
    "developer": {"text"},
    "user": {"text", "image_url", "input_audio", "file"},
    "assistant": {"text", "refusal"},
    "tool": {"text"},
    "function": {"text"},
}
_PART_PAYLOAD = {
    "text": "text",
    "image_url": "image_url",
    "input_audio": "input_audio",
    "file": "file",
    "refusal": "refusal",
}
_FUNCTION_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def _bad(message: str, param: str | None = None, code: str | None = None) -> FakeAPIError:
    return FakeAPIError(400, message, param=param, code=code or "invalid_value")


def validate_completion_request(body: Any) -> None:
    """Raise ``FakeAPIError`` (400) for anything the real endpoint would refuse."""
    if not isinstance(body, dict):
        raise _bad("The request body must be a JSON object.", code="invalid_type")
    unknown = sorted(set(body) - _TOP_LEVEL_KEYS)
    if unknown:
        raise _bad(
            f"Unrecognized request argument supplied: {unknown[0]}",
            unknown[0],
            code="unknown_parameter",
        )
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("you must provide a model parameter", "model", code="missing_required_parameter")
    _check_sampling(body)
    _check_tools(body)
    _check_response_format(body)
    _check_messages(body.get("messages"), body.get("response_format"))
    if body.get("stream_options") is not None and body.get("stream") is not True:
        raise _bad(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            "stream_options",
        )
    if body.get("stream_options") is not None:
        options = body["stream_options"]
        if not isinstance(options, dict) or set(options) - {"include_usage", "include_obfuscation"}:
            raise _bad(f"Invalid value for 'stream_options': {options!r}.", "stream_options")


def _check_sampling(body: dict[str, Any]) -> None:
    ranges = {
        "temperature": (0, 2),
        "top_p": (0, 1),
        "presence_penalty": (-2, 2),
        "frequency_penalty": (-2, 2),
    }
    for name, (low, high) in ranges.items():
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _bad(f"Invalid type for '{name}': expected a number.", name, "invalid_type")
        if not low <= value <= high:
            raise _bad(f"Invalid '{name}': {value} is outside [{low}, {high}].", name)
    for name, low in (("n", 1), ("max_tokens", 1), ("max_completion_tokens", 1), ("seed", None)):
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise _bad(f"Invalid type for '{name}': expected an integer.", name, "invalid_type")
        if low is not None and value < low:
            raise _bad(f"Invalid '{name}': integer below minimum value {low}.", name)
    stop = body.get("stop")
    if stop is not None:
        stops = [stop] if isinstance(stop, str) else stop
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise _bad(
                "Invalid type for 'stop': expected a string or an array of strings.",
                "stop",
                "invalid_type",
            )
        if len(stops) > 4:
            raise _bad("Invalid 'stop': array too long, at most 4 sequences.", "stop")
    for flag in ("stream", "logprobs", "parallel_tool_calls", "store"):
        if body.get(flag) is not None and not isinstance(body[flag], bool):
            raise _bad(f"Invalid type for '{flag}': expected a boolean.", flag, "invalid_type")


def _check_tools(body: dict[str, Any]) -> list[str]:
    tools = body.get("tools")
    names: list[str] = []
    if tools is not None:
        if not isinstance(tools, list):
            raise _bad("Invalid type for 'tools': expected an array.", "tools", "invalid_type")
        for index, tool in enumerate(tools):
            where = f"tools[{index}]"
            if not isinstance(tool, dict) or tool.get("type") != "function":
                raise _bad(f"Invalid value for '{where}.type': expected 'function'.", where)
            function = tool.get("function")
            if not isinstance(function, dict) or set(function) - {
                "name",
                "description",
                "parameters",
                "strict",
            }:
                raise _bad(f"Invalid '{where}.function': {function!r}.", f"{where}.function")
            name = function.get("name")
            if not isinstance(name, str) or not _FUNCTION_NAME.match(name):
                raise _bad(
                    f"Invalid '{where}.function.name': string does not match pattern "
                    "'^[a-zA-Z0-9_-]+$' or is longer than 64 characters.",
                    f"{where}.function.name",
                )
            if name in names:
                raise _bad(f"Duplicate function name in tools: '{name}'.", f"{where}.function.name")
            names.append(name)
            parameters = function.get("parameters", {"type": "object", "properties": {}})
            if not isinstance(parameters, dict) or parameters.get("type", "object") != "object":
                raise _bad(
                    f"Invalid schema for function '{name}': schema must be a JSON Schema of "
                    "'type: \"object\"'.",
                    f"{where}.function.parameters",
                    "invalid_function_parameters",
                )
            if function.get("strict") is True and (problem := strict_schema_problem(parameters)):
                raise _bad(
                    f"Invalid schema for function '{name}': {problem}",
                    f"{where}.function.parameters",
                    "invalid_function_parameters",
                )
    choice = body.get("tool_choice")
    if choice is not None and not names:
        raise _bad(
            "Invalid value for 'tool_choice': 'tool_choice' is only allowed when "
            "'tools' are specified.",
            "tool_choice",
        )
    if body.get("parallel_tool_calls") is not None and not names:
        raise _bad(
            "Invalid value for 'parallel_tool_calls': 'parallel_tool_calls' is only "
            "allowed when 'tools' are specified.",
            "parallel_tool_calls",
        )
    if choice is not None and choice not in ("none", "auto", "required"):
        chosen = choice.get("function", {}).get("name") if isinstance(choice, dict) else None
        if not (isinstance(choice, dict) and choice.get("type") == "function" and chosen):
            raise _bad(f"Invalid value for 'tool_choice': {choice!r}.", "tool_choice")
        if chosen not in names:
            raise _bad(
                f"Invalid value for 'tool_choice': no function named '{chosen}' was "
                "specified in the 'tools' parameter.",
                "tool_choice",
            )
    return names


def _check_response_format(body: dict[str, Any]) -> None:
    response_format = body.get("response_format")
    if response_format is None:
        return
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind not in ("text", "json_object", "json_schema"):
        raise _bad(f"Invalid value for 'response_format': {response_format!r}.", "response_format")
    if kind != "json_schema":
        return
    spec = response_format.get("json_schema")
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise _bad(
            "Missing required parameter: 'response_format.json_schema.name'.",
            "response_format.json_schema.name",
            "missing_required_parameter",
        )
    if set(spec) - {"name", "description", "schema", "strict"}:
        extra = sorted(set(spec) - {"name", "description", "schema", "strict"})[0]
        raise _bad(
            f"Unrecognized argument: 'response_format.json_schema.{extra}'.",
            f"response_format.json_schema.{extra}",
            "unknown_parameter",
        )
    schema = spec.get("schema", {})
    if not isinstance(schema, dict):
        raise _bad(
            "Invalid type for 'response_format.json_schema.schema': expected an object.",
            "response_format.json_schema.schema",
            "invalid_type",
        )
    if spec.get("strict") is True and (problem := strict_schema_problem(schema)):
        raise _bad(
            f"Invalid schema for response_format '{spec['name']}': {problem}",
            "response_format",
            "invalid_json_schema",
        )


def _check_messages(messages: Any, response_format: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise _bad(
            "Invalid 'messages': empty array. Expected an array with minimum length 1.",
            "messages",
            "empty_array",
        )
    pending: list[str] = []  # tool_call ids the next messages must answer
    answered: set[str] = set()
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise _bad(f"Invalid type for '{where}': expected an object.", where, "invalid_type")
        role = message.get("role")
        if role not in _MESSAGE_KEYS:
            raise _bad(
                f"Invalid value: '{role}'. Supported values are: 'system', 'assistant', "
                "'user', 'function', 'tool', and 'developer'.",
                f"{where}.role",
            )
        extra = sorted(set(message) - _MESSAGE_KEYS[role])
        if extra:
            raise _bad(
                f"Unrecognized argument: '{where}.{extra[0]}'.",
                f"{where}.{extra[0]}",
                "unknown_parameter",
            )
        if pending and role != "tool":
            raise _bad(
                "An assistant message with 'tool_calls' must be followed by tool messages "
                "responding to each 'tool_call_id'. The following tool_call_ids did not "
                f"have response messages: {', '.join(pending)}",
                f"{where}.role",
            )
        if "name" in message and not isinstance(message["name"], str):
            raise _bad(
                f"Invalid type for '{where}.name': expected a string.",
                f"{where}.name",
                "invalid_type",
            )
        _check_content(message, role, where)
        if role == "assistant":
            pending = _check_tool_calls(message, where)
            answered = set()
        elif role == "tool":
            call_id = message.get("tool_call_id")
            if not isinstance(call_id, str):
                raise _bad(
                    f"Missing required parameter: '{where}.tool_call_id'.",
                    f"{where}.tool_call_id",
                    "missing_required_parameter",
                )
            if call_id not in pending and call_id not in answered:
                raise _bad(
                    "Invalid parameter: messages with role 'tool' must be a response to a "
                    "preceeding message with 'tool_calls'.",
                    f"{where}.role",
                )
            if call_id in pending:
                pending.remove(call_id)
                answered.add(call_id)
    if pending:
        raise _bad(
            "An assistant message with 'tool_calls' must be followed by tool messages "
            "responding to each 'tool_call_id'. The following tool_call_ids did not have "
            f"response messages: {', '.join(pending)}",
            "messages",
        )
    if isinstance(response_format, dict) and response_format.get("type") == "json_object":
        if not any("json" in message_text(m.get("content")).lower() for m in messages):
            raise _bad(
                "'messages' must contain the word 'json' in some form, to use "
                "'response_format' of type 'json_object'.",
                "messages",
            )


def _check_content(message: dict[str, Any], role: str, where: str) -> None:
    content = message.get("content")
    if content is None:
        if role == "assistant" and (message.get("tool_calls") or message.get("function_call")):
            return
        raise _bad(
            f"Invalid value for '{where}.content': expected a string, got null.",
            f"{where}.content",
            "invalid_type",
        )
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise _bad(
            f"Invalid type for '{where}.content': expected one of a string or array of objects.",
            f"{where}.content",
            "invalid_type",
        )
    if not content and role != "assistant":
        raise _bad(
            f"Invalid '{where}.content': empty array. Expected an array with minimum length 1.",
            f"{where}.content",
            "empty_array",
        )
    for part_index, part in enumerate(content):
        part_where = f"{where}.content[{part_index}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in _PART_TYPES[role]:
            allowed = ", ".join(f"'{t}'" for t in sorted(_PART_TYPES[role]))
            raise _bad(
                f"Invalid value: '{kind}'. Supported values are: {allowed}.", f"{part_where}.type"
            )
        payload_key = _PART_PAYLOAD[kind]
        extra = sorted(set(part) - {"type", payload_key})
        if extra:
            raise _bad(
                f"Unrecognized argument: '{part_where}.{extra[0]}'.",
                f"{part_where}.{extra[0]}",
                "unknown_parameter",
            )
        payload = part.get(payload_key)
        expected = str if kind in ("text", "refusal") else dict
        if not isinstance(payload, expected):
            raise _bad(
                f"Invalid type for '{part_where}.{payload_key}': expected "
                f"{'a string' if expected is str else 'an object'}.",
                f"{part_where}.{payload_key}",
                "invalid_type",
            )
        if kind == "image_url" and not isinstance(payload.get("url"), str):
            raise _bad(
                f"Missing required parameter: '{part_where}.image_url.url'.",
                f"{part_where}.image_url.url",
                "missing_required_parameter",
            )


def _check_tool_calls(message: dict[str, Any], where: str) -> list[str]:
    tool_calls = message.get("tool_calls")
    if tool_calls is None:
        return []
    if not isinstance(tool_calls, list) or not tool_calls:
        raise _bad(
            f"Invalid '{where}.tool_calls': expected a non-empty array.", f"{where}.tool_calls"
        )
    ids: list[str] = []
    for call_index, call in enumerate(tool_calls):
        call_where = f"{where}.tool_calls[{call_index}]"
        if not isinstance(call, dict) or set(call) - {"id", "type", "function"}:
            raise _bad(f"Invalid '{call_where}': {call!r}.", call_where)
        function = call.get("function")
        if (
            call.get("type") != "function"
            or not isinstance(call.get("id"), str)
            or not isinstance(function, dict)
            or not isinstance(function.get("name"), str)
            or not isinstance(function.get("arguments"), str)
        ):
            raise _bad(
                f"Invalid '{call_where}': needs 'id', 'type': 'function' and a 'function' "
                "with string 'name' and 'arguments'.",
                call_where,
            )
        ids.append(call["id"])
    return ids


def message_text(content: Any) -> str:
    """Plain text of a message's content (text parts joined; images, audio, files ignored)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            part.get("text", "")
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""
