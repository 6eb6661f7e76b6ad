"""Feedback on routed calls: record decisions, store scores and preferences, learn from them.

One store interface (``open_feedback_store("memory://" | "sqlite:///path" |
"redis://host:port/db")``), a pipeline recorder that stores every decision
(``FeedbackRecorder``), and the functions that turn feedback into training data and
``partial_fit`` the router (``record_feedback``, ``record_preference``, ``replay``); routers
without ``partial_fit`` are refitted on a schedule (``FeedbackRefitter``, ``RefitEvery``).
"""

from __future__ import annotations

from ._binding import FeedbackBinding, FeedbackMethods
from ._learning import (
    DECISION_ID_KEY,
    feedback_battles,
    feedback_training,
    record_feedback,
    record_langsmith_feedback,
    record_preference,
    replay,
)
from ._recorder import FeedbackRecorder
from ._records import PREFERENCE, SCORE, DecisionRecord, FeedbackEvent
from ._redis import RedisFeedbackStore
from ._refit import (
    DEFAULT_REFIT,
    FeedbackRefitter,
    RefitAll,
    RefitAny,
    RefitEvery,
    RefitPolicy,
    RefitState,
    feedback_outcomes,
)
from ._sqlite import SQLiteFeedbackStore
from ._store import FeedbackStore, MemoryFeedbackStore, open_feedback_store

__all__ = [
    "DECISION_ID_KEY",
    "DEFAULT_REFIT",
    "PREFERENCE",
    "RefitAll",
    "RefitAny",
    "RefitEvery",
    "RefitPolicy",
    "RefitState",
    "SCORE",
    "DecisionRecord",
    "FeedbackBinding",
    "FeedbackMethods",
    "FeedbackEvent",
    "FeedbackRecorder",
    "FeedbackRefitter",
    "FeedbackStore",
    "MemoryFeedbackStore",
    "RedisFeedbackStore",
    "SQLiteFeedbackStore",
    "feedback_battles",
    "feedback_training",
    "feedback_outcomes",
    "open_feedback_store",
    "record_feedback",
    "record_langsmith_feedback",
    "record_preference",
    "replay",
]
