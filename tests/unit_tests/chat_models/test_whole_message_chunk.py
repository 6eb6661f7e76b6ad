"""A candidate answered whole (it does not stream, or must not) reaches a stream as one chunk
that keeps everything the message had, its malformed tool calls included."""

from __future__ import annotations

from langchain_core.messages import AIMessage

from langroute.chat_models._caller import _message_chunk


def test_a_whole_answer_keeps_its_valid_and_invalid_tool_calls():
    message = AIMessage(
        content="",
        tool_calls=[{"name": "add", "args": {"a": 1, "b": 2}, "id": "call-1"}],
        invalid_tool_calls=[{"name": "add", "args": "{'a': 1,", "id": "call-2",
                             "error": "not JSON", "type": "invalid_tool_call"}],
    )
    chunk = _message_chunk(message)
    assert [(c["name"], c["args"], c["id"]) for c in chunk.tool_calls] == [
        ("add", {"a": 1, "b": 2}, "call-1")]
    assert [(c["name"], c["args"], c["id"]) for c in chunk.invalid_tool_calls] == [
        ("add", "{'a': 1,", "call-2")]
    assert chunk.chunk_position == "last"
