"""The framework-free routed call: decide -> budget -> call -> cascade -> record.

Adapters (``langroute.chat_models`` for LangChain, ``llama_index.llms.langroute`` for LlamaIndex)
describe how to call a model (a ``Caller``) and run one ``CallPipeline`` with the sync or async
driver. Nothing here imports LangChain or LlamaIndex.
"""

from __future__ import annotations

from ._collect import collect_decisions
from ._effects import (
    Caller,
    Effect,
    Gather,
    Pipeline,
    StreamClosed,
    run_async,
    run_sync,
    stream_async,
    stream_sync,
)
from ._pipeline import (
    ATTEMPT_EVENT,
    BUDGET_EVENT,
    CASCADE_EVENT,
    FALLBACK_EVENT,
    ROUTE_EVENT,
    CallPipeline,
    CallResult,
)
from ._retry import Fallback, RetryPolicy, is_retryable, retry_after_seconds
from ._steps import (
    BudgetStep,
    CallState,
    CascadeStep,
    Recorder,
    RouteRequest,
    TokenEstimate,
    estimated_prompt_tokens,
    estimated_tokens,
)
from ._types import SCOPE_KEYS, THRESHOLD_KEY, Answer, Attempt, CallContext, ModelRef, Usage

__all__ = [
    "ATTEMPT_EVENT",
    "BUDGET_EVENT",
    "CASCADE_EVENT",
    "FALLBACK_EVENT",
    "ROUTE_EVENT",
    "SCOPE_KEYS",
    "THRESHOLD_KEY",
    "Answer",
    "Attempt",
    "BudgetStep",
    "CallContext",
    "CallPipeline",
    "CallResult",
    "CallState",
    "Caller",
    "CascadeStep",
    "Effect",
    "Fallback",
    "Gather",
    "ModelRef",
    "Pipeline",
    "Recorder",
    "RetryPolicy",
    "RouteRequest",
    "StreamClosed",
    "TokenEstimate",
    "Usage",
    "collect_decisions",
    "estimated_prompt_tokens",
    "estimated_tokens",
    "is_retryable",
    "retry_after_seconds",
    "run_async",
    "run_sync",
    "stream_async",
    "stream_sync",
]
