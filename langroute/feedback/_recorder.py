"""``FeedbackRecorder``: the pipeline step that remembers every routed decision.

Added to ``CallPipeline(recorders=[FeedbackRecorder(store)])`` (``RoutedChatModel``'s
``feedback_store=``), it stores each finished call's decision id, routing text, the model
that answered and the candidates, so later feedback can name the decision by its id.
"""

from __future__ import annotations

from typing import Any

from ..pipeline import Answer, CallState
from ._records import DecisionRecord
from ._store import FeedbackStore

__all__ = ["FeedbackRecorder", "answering_model"]


def answering_model(state: CallState) -> str:
    """The model whose answer the caller got: the last answer attempt that succeeded and was
    not escalated (a cascade may have moved past the decided model), or whose stream the
    caller stopped reading, else the decision's."""
    for attempt in reversed(state.attempts):
        if attempt.purpose != "verify" and attempt.outcome in ("ok", "accepted", "abandoned"):
            return attempt.model
    return state.decision.model


class FeedbackRecorder:
    """Records each routed call's decision in a feedback store (a pipeline ``Recorder``).

    Parameters
    ----------
    store : FeedbackStore
        From ``open_feedback_store(url)``.
    """

    def __init__(self, store: FeedbackStore) -> None:
        if not isinstance(store, FeedbackStore):
            raise TypeError(f"store must be a FeedbackStore, got {type(store).__name__}")
        self.store = store

    def decision_record(self, state: CallState) -> DecisionRecord:
        decision = state.decision
        metadata: dict[str, Any] = {
            "threshold": decision.threshold,
            "reason": decision.reason,
            "router": decision.router,
        }
        if state.context.scope is not None:
            metadata["scope"] = state.context.scope
        return DecisionRecord(
            decision_id=state.context.call_id,
            prompt=state.request.text,
            model=answering_model(state),
            candidates=tuple(decision.candidates),
            metadata=metadata,
        )

    def record(self, state: CallState, answer: Answer) -> None:
        self.store.record_decision(self.decision_record(state))

    async def arecord(self, state: CallState, answer: Answer) -> None:
        await self.store.arecord_decision(self.decision_record(state))

    def __repr__(self) -> str:
        return f"FeedbackRecorder({self.store!r})"
