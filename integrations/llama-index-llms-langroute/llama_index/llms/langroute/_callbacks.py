"""Which callback manager a candidate reports to, per routed call.

LlamaIndex's ``llm_chat_callback`` / ``llm_completion_callback`` send an LLM's events to the
``callback_manager`` it holds. A candidate can serve several ``RoutedLLM``s (and be called
directly), so the manager it holds cannot be any one of theirs: one candidate shared by two
RoutedLLMs reported every call to whichever set it last. A candidate without handlers of its
own holds a ``RoutedCallbackManager`` instead, which sends each event to the manager of the
``RoutedLLM`` whose call is running (a context variable, so threads, asyncio tasks and
interleaved streams each see their own call) and, outside a routed call, to the manager the
candidate had.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from llama_index.core.callbacks import CallbackManager
from llama_index.core.callbacks.base_handler import BaseCallbackHandler
from llama_index.core.llms import LLM

__all__ = ["RoutedCallbackManager", "adopt", "reporting_to"]

#: The callback manager of the RoutedLLM whose call is running, if any.
_ROUTED: ContextVar[CallbackManager | None] = ContextVar("langroute_callback_manager",
                                                         default=None)


@contextmanager
def reporting_to(manager: CallbackManager | None) -> Iterator[None]:
    """Candidates called inside this block report to ``manager``."""
    token = _ROUTED.set(manager)
    try:
        yield
    finally:
        _ROUTED.reset(token)


class RoutedCallbackManager(CallbackManager):
    """A candidate's callback manager: the running routed call's manager, else ``own``.

    ``own`` (the manager the candidate had) keeps its events once it has handlers, as a
    candidate given handlers of its own does. Every ``CallbackManager`` method acts on the
    manager chosen at the time of the call.
    """

    def __init__(self, own: CallbackManager) -> None:
        # CallbackManager.__init__ would copy handlers (Settings', the global handler) into
        # this object, which holds none of its own.
        BaseCallbackHandler.__init__(self, [], [])
        self.own = own

    @property
    def target(self) -> CallbackManager:
        routed = _ROUTED.get()
        return self.own if routed is None or self.own.handlers else routed

    @property  # type: ignore[override]
    def handlers(self) -> list[BaseCallbackHandler]:
        return self.target.handlers

    @handlers.setter
    def handlers(self, handlers: list[BaseCallbackHandler]) -> None:
        self.target.handlers = handlers

    @property
    def trace_map(self) -> dict[str, list[str]]:
        return self.target.trace_map

    def on_event_start(self, *args: Any, **kwargs: Any) -> str:
        return self.target.on_event_start(*args, **kwargs)

    def on_event_end(self, *args: Any, **kwargs: Any) -> None:
        self.target.on_event_end(*args, **kwargs)

    def add_handler(self, handler: BaseCallbackHandler) -> None:
        self.target.add_handler(handler)

    def remove_handler(self, handler: BaseCallbackHandler) -> None:
        self.target.remove_handler(handler)

    def set_handlers(self, handlers: list[BaseCallbackHandler]) -> None:
        self.target.set_handlers(handlers)

    def start_trace(self, trace_id: str | None = None) -> None:
        self.target.start_trace(trace_id)

    def end_trace(self, trace_id: str | None = None,
                  trace_map: dict[str, list[str]] | None = None) -> None:
        self.target.end_trace(trace_id, trace_map)

    def _reset_trace_events(self) -> None:
        self.target._reset_trace_events()


def adopt(llm: LLM) -> None:
    """Give ``llm`` a ``RoutedCallbackManager`` unless it has handlers of its own (or one)."""
    own = llm.callback_manager
    if isinstance(own, RoutedCallbackManager) or (own is not None and own.handlers):
        return
    llm.callback_manager = RoutedCallbackManager(own if own is not None else CallbackManager())
