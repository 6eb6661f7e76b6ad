"""One feedback-store interface, three backends, chosen by URL.

``open_feedback_store(url)``:

* ``memory://`` -- this process only (tests, notebooks);
* ``sqlite:///path/to/feedback.db`` -- embedded, the default for one machine (WAL journal, so
  readers never block the writer and several processes may share the file);
* ``redis://host:port/db`` -- shared by many processes and machines (needs the ``redis``
  extra).

Every backend keeps two things: decisions (``decision_id`` -> prompt text, answering model,
candidates, time) and an append-only, ordered log of feedback events. The base class does all
checking, so the backends only store and read; feedback for an unknown decision id, a score
outside [0, 1] or NaN, or a model the decision did not offer raises before anything is
written. Nothing is dropped: ``events(start)`` returns every event from position ``start``
on, and ``replay`` feeds them to a router.
"""

from __future__ import annotations

import asyncio
import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from .._exceptions import FeedbackError, UnknownDecisionError
from .._urls import redacted
from ._records import PREFERENCE, SCORE, DecisionRecord, FeedbackEvent, check_score

__all__ = ["FeedbackStore", "MemoryFeedbackStore", "open_feedback_store"]


class FeedbackStore(ABC):
    """Decisions and the feedback on them; subclasses implement the five storage hooks."""

    #: The URL the store was opened with (for messages and ``repr``).
    url: str = ""

    # -- storage hooks (backends) -----------------------------------------------------------------
    @abstractmethod
    def _insert_decision(self, record: DecisionRecord) -> bool:
        """Store ``record`` unless its id exists; False if it already did."""

    @abstractmethod
    def _get_decisions(self, decision_ids: Sequence[str]) -> list[DecisionRecord | None]:
        """The stored decisions of ``decision_ids`` (None where unknown), in order."""

    @abstractmethod
    def _append_event(self, event: FeedbackEvent) -> None:
        """Append ``event`` to the log."""

    @abstractmethod
    def _read_events(self, start: int) -> list[FeedbackEvent]:
        """Every event from log position ``start`` on, in order."""

    @abstractmethod
    def close(self) -> None:
        """Release connections (the store is unusable afterwards)."""

    # -- decisions -------------------------------------------------------------------------------
    def record_decision(self, record: DecisionRecord) -> None:
        """Remember a routed decision; recording the same decision id twice is an error."""
        if not isinstance(record, DecisionRecord):
            raise TypeError(f"expected a DecisionRecord, got {type(record).__name__}")
        if not self._insert_decision(record):
            raise FeedbackError(f"decision {record.decision_id!r} is already recorded")

    async def arecord_decision(self, record: DecisionRecord) -> None:
        """``record_decision`` without blocking the event loop (run in a worker thread)."""
        await asyncio.to_thread(self.record_decision, record)

    def decision(self, decision_id: str) -> DecisionRecord:
        """The decision recorded under ``decision_id``; ``UnknownDecisionError`` if none."""
        found = self._get_decisions([decision_id])[0]
        if found is None:
            raise UnknownDecisionError(
                f"no decision {decision_id!r} in the feedback store {self.url}; feedback must "
                "name the decision_id of a call recorded by this store"
            )
        return found

    def decisions(self, decision_ids: Sequence[str]) -> list[DecisionRecord]:
        """The decisions of ``decision_ids`` in one round trip; unknown ids are an error."""
        ids = list(decision_ids)
        found = self._get_decisions(ids) if ids else []
        missing = [i for i, record in zip(ids, found, strict=True) if record is None]
        if missing:
            raise UnknownDecisionError(
                f"{len(missing)} decision ids are not in the feedback store {self.url}, "
                f"e.g. {missing[:3]}"
            )
        return [record for record in found if record is not None]

    # -- feedback ----------------------------------------------------------------------------------
    def add_score(
        self, decision_id: str, score: float, *, model: str | None = None,
        key: str | None = None, metadata: Mapping[str, Any] | None = None,
    ) -> FeedbackEvent:
        """Record quality ``score`` in [0, 1] of ``model``'s answer (default: the answering
        model) on the decision's prompt; returns the stored event."""
        value = check_score(score)
        decision = self.decision(decision_id)
        event = FeedbackEvent(decision_id, SCORE, model or decision.model, value, key=key,
                              metadata=dict(metadata or {}))
        event.check_against(decision)
        self._append_event(event)
        return event

    def add_preference(
        self, decision_id: str, preferred: str, *, other: str | None = None,
        tie: bool = False, key: str | None = None, metadata: Mapping[str, Any] | None = None,
    ) -> FeedbackEvent:
        """Record that ``preferred``'s answer beat ``other``'s (default: the answering model's)
        on the decision's prompt; ``tie=True`` records a tie. Returns the stored event."""
        decision = self.decision(decision_id)
        against = decision.model if other is None else other
        if against == preferred:
            raise FeedbackError(
                f"preferred={preferred!r} is the model that answered decision {decision_id!r}; "
                "name the model it was compared with in other="
            )
        event = FeedbackEvent(decision_id, PREFERENCE, preferred, 0.5 if tie else 1.0,
                              other=against, key=key, metadata=dict(metadata or {}))
        event.check_against(decision)
        self._append_event(event)
        return event

    def events(self, start: int = 0) -> list[FeedbackEvent]:
        """Every feedback event from log position ``start`` on, oldest first."""
        if isinstance(start, bool) or not isinstance(start, int) or start < 0:
            raise FeedbackError(f"start must be an int >= 0, got {start!r}")
        return self._read_events(start)

    def __enter__(self) -> FeedbackStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"


class MemoryFeedbackStore(FeedbackStore):
    """Decisions and events in this process's memory (``memory://``); thread-safe."""

    def __init__(self) -> None:
        self.url = "memory://"
        self._decisions: dict[str, DecisionRecord] = {}
        self._events: list[FeedbackEvent] = []
        self._lock = threading.Lock()

    def _insert_decision(self, record: DecisionRecord) -> bool:
        with self._lock:
            if record.decision_id in self._decisions:
                return False
            self._decisions[record.decision_id] = record
            return True

    def _get_decisions(self, decision_ids: Sequence[str]) -> list[DecisionRecord | None]:
        with self._lock:
            return [self._decisions.get(i) for i in decision_ids]

    def _append_event(self, event: FeedbackEvent) -> None:
        with self._lock:
            self._events.append(event)

    def _read_events(self, start: int) -> list[FeedbackEvent]:
        with self._lock:
            return list(self._events[start:])

    def close(self) -> None:
        return None


def open_feedback_store(url: str) -> FeedbackStore:
    """The feedback store at ``url``: ``memory://``, ``sqlite:///path`` or
    ``redis://host:port/db`` (``rediss://`` for TLS)."""
    if not isinstance(url, str):
        raise FeedbackError(f"a feedback store URL must be a str, got {type(url).__name__}")
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        return MemoryFeedbackStore()
    if scheme == "sqlite":
        from ._sqlite import SQLiteFeedbackStore

        return SQLiteFeedbackStore.from_url(url)
    if scheme in ("redis", "rediss"):
        from ._redis import RedisFeedbackStore

        return RedisFeedbackStore.from_url(url)
    raise FeedbackError(
        f"unknown feedback store URL {redacted(url)!r}; use memory://, sqlite:///path or "
        "redis://host:port/db"
    )
