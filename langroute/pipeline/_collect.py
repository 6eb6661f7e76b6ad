"""The decisions made within a block of code, for callers whose framework drops the answer's
metadata: a LangChain chain ending in an output parser, a LlamaIndex query engine's
``Response``, an agent's final output. The feedback methods need a decision id, which is
otherwise only in the answer's metadata and the ``langroute.route`` event.

``collect_decisions`` holds a list in a context variable; every pipeline appends the payload of
each routing decision it makes there (the ``langroute.route`` event's, ``decision_id``
included). Context variables follow the call into asyncio tasks and into the thread pools that
copy the caller's context (LangChain's ``batch``, ``asyncio.to_thread``), so decisions made
there are collected too; a thread started without the context is not seen.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

from .._decision import RouteEvent

__all__ = ["collect_decisions", "note_decision"]

_COLLECTORS: ContextVar[tuple[list[RouteEvent], ...]] = ContextVar(
    "langroute_decision_collectors", default=())


@contextlib.contextmanager
def collect_decisions() -> Iterator[list[RouteEvent]]:
    """A list that receives every routing decision made inside the ``with`` block, in order.

    Blocks may nest: each collects what is decided inside it. A denied call (its budget) is
    collected too, since its decision was made before the denial.

    >>> with collect_decisions() as made:          # doctest: +SKIP
    ...     response = query_engine.query("...")
    >>> routed_llm.record_feedback(made[-1]["decision_id"], score=1.0)  # doctest: +SKIP
    """
    made: list[RouteEvent] = []
    token = _COLLECTORS.set((*_COLLECTORS.get(), made))
    try:
        yield made
    finally:
        _COLLECTORS.reset(token)


def note_decision(event: RouteEvent) -> None:
    """Give a copy of ``event`` (a ``langroute.route`` payload) to every open
    ``collect_decisions`` (nothing is copied when none is open: every call passes here)."""
    collectors = _COLLECTORS.get()
    if collectors:
        kept: RouteEvent = dict(event)  # type: ignore[assignment]
        for made in collectors:
            made.append(kept)
