"""Synthetic outcomes and scripted fake chat models for the RoutedChatModel tests.

The router is an ``SWRouter(HashingEmbedder())`` fitted on arithmetic prompts the strong model
wins and chit-chat both models answer, so routing in these tests is real and deterministic: maths
scores ~0.84 and chit-chat ~0.61 on P(strong wins), and ``THRESHOLD`` sits between them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from langchain_core.callbacks import BaseCallbackHandler, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import Field

from langroute import Outcomes

STRONG, WEAK = "strong-model", "weak-model"
THRESHOLD = 0.7
HARD = "What is 17 * 23?"
EASY = "Hello"

MATHS = [
    "What is 17 * 23?",
    "Solve for x: 3x + 5 = 20.",
    "Compute the integral of x^2 from 0 to 3.",
    "What is 3^3 plus 12 divided by 4?",
    "A train travels 120 km in 1.5 hours; what is its average speed?",
    "What is 48 divided by 6 times 7?",
]
CHAT = [
    "Hello",
    "Hey",
    "hi there, how are you",
    "Tell me a joke about cats.",
    "Write me 2 haikus. Only include the haikus.",
    "Good morning!",
]


def synthetic_outcomes() -> Outcomes:
    prompts = MATHS + CHAT
    scores = np.array([[1.0, 0.0]] * len(MATHS) + [[1.0, 1.0]] * len(CHAT))
    return Outcomes(
        ids=[f"p{i}" for i in range(len(prompts))],
        prompts=prompts,
        models=(STRONG, WEAK),
        scores=scores,
        costs=np.array([[5e-3, 2e-4]] * len(prompts)),
    )


class ScriptedChatModel(BaseChatModel):
    """A fake provider: answers "answer from <model_name>" with usage, streams word by word,
    makes one tool call when tools are bound (until a ToolMessage answers it), records what it
    received, and fails with ``error`` when set."""

    model_name: str
    tool_args: dict[str, Any] = Field(default_factory=dict)
    error: Exception | None = None
    #: Errors raised by the next calls, one per call, before the model answers normally.
    errors: list[Exception] = Field(default_factory=list)
    #: Fail with this error after streaming this many chunks (a mid-stream failure).
    fail_mid_stream: tuple[int, Exception] | None = None
    received: list[list[BaseMessage]] = Field(default_factory=list)
    received_kwargs: list[dict[str, Any]] = Field(default_factory=list)
    bind_tools_calls: list[tuple[list[Any], Any, dict[str, Any]]] = Field(default_factory=list)
    structured_calls: list[tuple[Any, bool, dict[str, Any]]] = Field(default_factory=list)
    chunks_produced: int = 0

    @property
    def _llm_type(self) -> str:
        return "scripted-fake"

    def _answer(self, messages: list[BaseMessage], kwargs: dict[str, Any],
                stop: list[str] | None) -> AIMessage:
        self.received.append(list(messages))
        self.received_kwargs.append({**kwargs, **({"stop": stop} if stop else {})})
        if self.error is not None:
            raise self.error
        if self.errors:
            raise self.errors.pop(0)
        usage = {"input_tokens": 10, "output_tokens": 3, "total_tokens": 13}
        meta = {"model_name": self.model_name}
        tools = kwargs.get("tools")
        if tools and not isinstance(messages[-1], ToolMessage):
            call = {"name": tools[0]["function"]["name"], "args": dict(self.tool_args),
                    "id": f"call-{self.model_name}-{len(self.received)}", "type": "tool_call"}
            return AIMessage(content="", tool_calls=[call], usage_metadata=usage,
                             response_metadata=meta)
        text = f"answer from {self.model_name}"
        if isinstance(messages[-1], ToolMessage):
            text += f" using {messages[-1].content}"
        return AIMessage(content=text, usage_metadata=usage, response_metadata=meta)

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None,
                  **kwargs: Any) -> ChatResult:
        message = self._answer(messages, kwargs, stop)
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None,
                **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        message = self._answer(messages, kwargs, stop)
        if message.tool_calls:
            call = message.tool_calls[0]
            yield ChatGenerationChunk(message=AIMessageChunk(
                content="", usage_metadata=message.usage_metadata,
                response_metadata=message.response_metadata, chunk_position="last",
                tool_call_chunks=[{"name": call["name"], "args": json.dumps(call["args"]),
                                   "id": call["id"], "index": 0, "type": "tool_call_chunk"}],
            ))
            return
        words = str(message.content).split(" ")
        for i, word in enumerate(words):
            last = i == len(words) - 1
            if self.fail_mid_stream is not None and i == self.fail_mid_stream[0]:
                raise self.fail_mid_stream[1]
            self.chunks_produced += 1
            yield ChatGenerationChunk(message=AIMessageChunk(
                content=word if i == 0 else " " + word,
                usage_metadata=message.usage_metadata if last else None,
                response_metadata=message.response_metadata if last else {},
                chunk_position="last" if last else None,
            ))

    def bind_tools(self, tools: Sequence[Any], *, tool_choice: Any = None, **kwargs: Any) -> Any:
        self.bind_tools_calls.append((list(tools), tool_choice, dict(kwargs)))
        formatted = [convert_to_openai_tool(tool) for tool in tools]
        extra = {} if tool_choice is None else {"tool_choice": tool_choice}
        return self.bind(tools=formatted, **extra, **kwargs)

    def with_structured_output(self, schema: Any, *, include_raw: bool = False,
                               **kwargs: Any) -> Any:
        self.structured_calls.append((schema, include_raw, dict(kwargs)))
        kwargs.pop("method", None)  # the fake supports one method: tool calling
        return super().with_structured_output(schema, include_raw=include_raw, **kwargs)


class EventRecorder(BaseCallbackHandler):
    """Records run starts (with ids, tags, metadata) and custom events."""

    def __init__(self) -> None:
        self.chain_starts: list[dict[str, Any]] = []
        self.chat_starts: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []  # every custom event
        self.llm_ends: list[dict[str, Any]] = []
        self.chain_errors: list[BaseException] = []

    def on_chain_start(self, serialized: Any, inputs: Any, *, run_id: Any,
                       parent_run_id: Any = None, tags: Any = None, metadata: Any = None,
                       **kwargs: Any) -> None:
        self.chain_starts.append({"run_id": run_id, "parent_run_id": parent_run_id,
                                  "name": kwargs.get("name"), "tags": tags, "metadata": metadata})

    def on_chat_model_start(self, serialized: Any, messages: Any, *, run_id: Any,
                            parent_run_id: Any = None, tags: Any = None, metadata: Any = None,
                            **kwargs: Any) -> None:
        self.chat_starts.append({"run_id": run_id, "parent_run_id": parent_run_id,
                                 "tags": tags, "metadata": metadata, "name": kwargs.get("name")})

    def on_custom_event(self, name: str, data: Any, *, run_id: Any, **kwargs: Any) -> None:
        self.events.append({"name": name, "data": data, "run_id": run_id})

    @property
    def custom(self) -> list[dict[str, Any]]:
        """The routing decisions (``langroute.route`` events) only."""
        return [e for e in self.events if e["name"] == "langroute.route"]

    def on_llm_end(self, response: Any, *, run_id: Any, parent_run_id: Any = None,
                   **kwargs: Any) -> None:
        self.llm_ends.append({"run_id": run_id, "parent_run_id": parent_run_id})

    def on_chain_error(self, error: BaseException, **kwargs: Any) -> None:
        self.chain_errors.append(error)
