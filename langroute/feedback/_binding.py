"""Feedback for a routed model of any framework: one logic behind ``RoutedChatModel`` (LangChain)
and ``RoutedLLM`` (LlamaIndex).

An adapter has the fields ``router``, ``feedback_store`` and ``refitter``; ``FeedbackBinding``
opens the store those name (once per URL), records every decision through the pipeline
(``recorders``), and takes feedback on a call by its ``decision_id``: a router with
``partial_fit`` learns it at once, one without is refitted by the ``refitter`` when due. The
``a``-prefixed forms run that same logic in a worker thread, off an async caller's event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from .._exceptions import RefitError, RouterConfigError
from ._learning import record_feedback, record_preference
from ._recorder import FeedbackRecorder
from ._records import FeedbackEvent
from ._refit import FeedbackRefitter
from ._store import FeedbackStore, open_feedback_store

__all__ = ["FeedbackBinding", "FeedbackMethods"]


class FeedbackBinding:
    """Feedback on the calls of ``owner`` (an adapter with ``router``, ``feedback_store`` and
    ``refitter``); ``lock`` returns the lock its routing takes, which learning must hold."""

    def __init__(self, owner: Any, lock: Callable[[], Any], *,
                 opened: tuple[str, FeedbackStore] | None = None) -> None:
        self.owner = owner
        self._lock = lock
        #: (URL, the store opened from it); a copy of the owner passes it on, sharing the store.
        self.opened = opened

    def store(self) -> FeedbackStore | None:
        """The opened feedback store, or None without ``feedback_store`` (or ``refitter``)."""
        given = self.owner.feedback_store
        if self.owner.refitter is not None:
            return self.refitter().store
        if given is None or isinstance(given, FeedbackStore):
            return given
        if not isinstance(given, str):
            raise RouterConfigError(
                "feedback_store must be a store URL (memory://, sqlite:///path, "
                f"redis://host:port/db) or a FeedbackStore, got {type(given).__name__}"
            )
        if self.opened is None or self.opened[0] != given:
            self.opened = (given, open_feedback_store(given))
        return self.opened[1]

    def refitter(self) -> FeedbackRefitter:
        """``refitter``, checked against the owner's router and feedback store."""
        refitter, given = self.owner.refitter, self.owner.feedback_store
        if not isinstance(refitter, FeedbackRefitter):
            raise RouterConfigError(
                f"refitter must be a langroute.feedback.FeedbackRefitter, got "
                f"{type(refitter).__name__}")
        if refitter.router is not self.owner.router:
            raise RouterConfigError("refitter refits another router than this model's router=")
        if given is not None and given is not refitter.store:
            raise RouterConfigError(
                "with refitter=, decisions are recorded in refitter.store; leave "
                "feedback_store=None (or pass that very store)")
        return refitter

    def recorders(self) -> tuple[FeedbackRecorder, ...]:
        """The pipeline steps that record every decision (none without a store)."""
        store = self.store()
        return () if store is None else (FeedbackRecorder(store),)

    def record_feedback(self, decision_id: str, *, score: float, model: str | None = None,
                        key: str | None = None,
                        metadata: Mapping[str, Any] | None = None) -> FeedbackEvent:
        """``langroute.feedback.record_feedback`` on the owner's store and router."""
        store = self._required_store()
        router, refitter = self._learning()
        event = record_feedback(store, decision_id, score=score, router=router, model=model,
                                key=key, metadata=metadata, lock=self._lock())
        if refitter is not None:
            _poll(refitter, event)
        return event

    def record_preference(self, decision_id: str, *, preferred: str, other: str | None = None,
                          tie: bool = False, key: str | None = None,
                          metadata: Mapping[str, Any] | None = None) -> FeedbackEvent:
        """``langroute.feedback.record_preference`` on the owner's store and router."""
        store = self._required_store()
        router, refitter = self._learning()
        if refitter is not None:
            refitter.check_preferences()  # refused before anything is stored
        event = record_preference(store, decision_id, preferred=preferred, other=other,
                                  tie=tie, router=router, key=key, metadata=metadata,
                                  lock=self._lock())
        if refitter is not None:
            _poll(refitter, event)
        return event

    async def arecord_feedback(self, decision_id: str, *, score: float,
                               model: str | None = None, key: str | None = None,
                               metadata: Mapping[str, Any] | None = None) -> FeedbackEvent:
        """``record_feedback`` in a worker thread: its store write, embedding and fit (or
        refit) would otherwise block the caller's event loop. Same locks, errors and event."""
        return await asyncio.to_thread(self.record_feedback, decision_id, score=score,
                                       model=model, key=key, metadata=metadata)

    async def arecord_preference(self, decision_id: str, *, preferred: str,
                                 other: str | None = None, tie: bool = False,
                                 key: str | None = None,
                                 metadata: Mapping[str, Any] | None = None) -> FeedbackEvent:
        """``record_preference`` in a worker thread (see ``arecord_feedback``)."""
        return await asyncio.to_thread(self.record_preference, decision_id, preferred=preferred,
                                       other=other, tie=tie, key=key, metadata=metadata)

    def _required_store(self) -> FeedbackStore:
        store = self.store()
        if store is None:
            raise RouterConfigError(
                f"this {type(self.owner).__name__} records no decisions: set feedback_store= "
                '(e.g. "sqlite:///feedback.db") to give feedback on its calls'
            )
        return store

    def _learning(self) -> tuple[Any, FeedbackRefitter | None]:
        """(router that learns a feedback event at once or None, refitter to poll or None)."""
        router = self.owner.router
        if self.owner.refitter is None or callable(getattr(router, "partial_fit", None)):
            return router, None
        refitter = self.refitter()
        if refitter.lock is None:  # swap the refit in under the lock routing takes
            refitter.lock = self._lock()
        return None, refitter


def _poll(refitter: FeedbackRefitter, event: FeedbackEvent) -> None:
    """Poll after storing ``event``. A failure must not read as "feedback not recorded" (a
    caller retrying on it would store the event twice): it is raised as ``RefitError``,
    carrying the stored event; the refitter keeps it for its next poll."""
    try:
        refitter.poll()
    except Exception as exc:
        raise RefitError(
            f"the feedback on decision {event.decision_id!r} was stored, but the refit it "
            f"triggered failed ({type(exc).__name__}: {exc}); do not record it again -- the "
            "refitter's next poll refits with it", event=event) from exc


class FeedbackMethods:
    """``feedback``, ``record_feedback`` and ``record_preference`` (and their async forms
    ``arecord_feedback`` / ``arecord_preference``) for a routed model.

    Mixed into each adapter, which declares the fields ``router``, ``feedback_store`` and
    ``refitter``, a private ``_feedback`` (default None) and a ``pipeline`` property.
    """

    _feedback: FeedbackBinding | None

    @property
    def feedback(self) -> FeedbackBinding:
        """This model's ``FeedbackBinding``: its ``store()`` holds every recorded decision
        (None without ``feedback_store`` or ``refitter``)."""
        binding = self._feedback
        if binding is None or binding.owner is not self:  # first use, or a copy
            binding = self._feedback = FeedbackBinding(
                self, lambda: self.pipeline.policy.lock,  # type: ignore[attr-defined]
                opened=None if binding is None else binding.opened)
        return binding

    def record_feedback(self, decision_id: str, *, score: float, model: str | None = None,
                        key: str | None = None,
                        metadata: Mapping[str, Any] | None = None) -> FeedbackEvent:
        """Store a quality ``score`` in [0, 1] for a call and teach the router from it
        (``langroute.feedback.record_feedback``); returns the stored event. The call's
        ``decision_id`` is in its record: LangChain's ``response_metadata["langroute"]``,
        LlamaIndex's ``additional_kwargs["langroute"]``. A ``RefitError`` (with
        ``refitter=``) means the event was stored but the refit after it failed."""
        return self.feedback.record_feedback(decision_id, score=score, model=model, key=key,
                                             metadata=metadata)

    def record_preference(self, decision_id: str, *, preferred: str, other: str | None = None,
                          tie: bool = False, key: str | None = None,
                          metadata: Mapping[str, Any] | None = None) -> FeedbackEvent:
        """Store that ``preferred``'s answer beat ``other``'s (default: the answering model's)
        on a call's prompt, and teach the router (``langroute.feedback.record_preference``)."""
        return self.feedback.record_preference(decision_id, preferred=preferred, other=other,
                                               tie=tie, key=key, metadata=metadata)

    async def arecord_feedback(self, decision_id: str, *, score: float,
                               model: str | None = None, key: str | None = None,
                               metadata: Mapping[str, Any] | None = None) -> FeedbackEvent:
        """``record_feedback`` without blocking the event loop: the store write, embedding
        and fit run in a worker thread; same arguments, errors and returned event."""
        return await self.feedback.arecord_feedback(decision_id, score=score, model=model,
                                                    key=key, metadata=metadata)

    async def arecord_preference(self, decision_id: str, *, preferred: str,
                                 other: str | None = None, tie: bool = False,
                                 key: str | None = None,
                                 metadata: Mapping[str, Any] | None = None) -> FeedbackEvent:
        """``record_preference`` without blocking the event loop (see ``arecord_feedback``)."""
        return await self.feedback.arecord_preference(decision_id, preferred=preferred,
                                                      other=other, tie=tie, key=key,
                                                      metadata=metadata)
