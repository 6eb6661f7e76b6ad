"""What a feedback store holds: routed decisions, and feedback events about them.

Both are plain frozen records with a JSON form (``to_json`` / ``from_json``), so every store
(memory, SQLite, Redis) keeps exactly the same fields and a record read back is the record
written. Validation lives here, in one place: a score outside [0, 1] or NaN, a model the
decision did not offer, or a malformed stored record each raise a clear error.

Events carry no id, but their content identifies them: ``FeedbackEvent.fingerprint`` hashes
the canonical JSON of every field (the time to full float precision), so the event a store
reads back has the fingerprint of the event written. Routers keep the fingerprints of the
events they learned (``learned_feedback_``), which makes replaying a store idempotent.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._exceptions import FeedbackError, FeedbackStoreError

__all__ = ["SCORE", "PREFERENCE", "DecisionRecord", "FeedbackEvent", "check_score",
           "fingerprints", "unique_events"]

#: Event kinds: a quality score of one model's answer, or a pairwise preference.
SCORE = "score"
PREFERENCE = "preference"


def check_score(score: Any) -> float:
    """``score`` as a float in [0, 1]; anything else (NaN, bool, out of range) is an error.

    Any real number is one, numpy's too (``np.float32``, ``np.int64``: a grader's output),
    but not a bool (numpy's neither): a thumbs up must be said as 1.0.
    """
    if isinstance(score, (bool, np.bool_)) or not isinstance(score, numbers.Real):
        raise FeedbackError(f"score must be a number in [0, 1], got {score!r}")
    value = float(score)
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise FeedbackError(f"score must lie in [0, 1], got {score!r}")
    return value


def _check_name(what: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise FeedbackError(f"{what} must be a non-empty str, got {value!r}")
    return value


@dataclass(frozen=True)
class DecisionRecord:
    """One routed call, as feedback will refer to it.

    Parameters
    ----------
    decision_id : str
        The call's id (``CallContext.call_id``, ``decision_id`` in the trace).
    prompt : str
        The text the router routed on.
    model : str
        The model that answered.
    candidates : tuple of str
        The models the call could have gone to.
    time : float, default=now
        Unix time of the decision.
    metadata : mapping, default={}
        JSON-serialisable extras (e.g. the caller's agent name, a LangSmith run id).
    """

    decision_id: str
    prompt: str
    model: str
    candidates: tuple[str, ...]
    time: float = field(default_factory=time.time)
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_name("decision_id", self.decision_id)
        if not isinstance(self.prompt, str):
            raise FeedbackError(f"prompt must be a str, got {type(self.prompt).__name__}")
        _check_name("model", self.model)
        object.__setattr__(self, "candidates", tuple(self.candidates))
        for name in self.candidates:
            _check_name("candidate", name)
        if self.model not in self.candidates:
            raise FeedbackError(
                f"model {self.model!r} is not one of the candidates {list(self.candidates)}"
            )

    def to_json(self) -> str:
        return json.dumps({
            "decision_id": self.decision_id, "prompt": self.prompt, "model": self.model,
            "candidates": list(self.candidates), "time": self.time,
            "metadata": dict(self.metadata),
        })

    @classmethod
    def from_json(cls, text: str | bytes) -> DecisionRecord:
        try:
            raw = json.loads(text)
            return cls(raw["decision_id"], raw["prompt"], raw["model"],
                       tuple(raw["candidates"]), float(raw["time"]), raw.get("metadata") or {})
        except (KeyError, TypeError, ValueError) as exc:
            raise FeedbackStoreError(f"malformed decision record in the store: {exc}") from exc


@dataclass(frozen=True)
class FeedbackEvent:
    """Feedback on one decision: a score of one model's answer, or a preference.

    ``kind == "score"``: ``model`` got quality ``score`` in [0, 1] on the decision's prompt.
    ``kind == "preference"``: ``model`` (preferred) beat ``other`` on it; ``score`` is 1.0
    (0.5 for a tie). ``key`` names the feedback source (a LangSmith feedback key such as
    ``"correctness"`` or ``"user_thumb"``).
    """

    decision_id: str
    kind: str
    model: str
    score: float
    other: str | None = None
    key: str | None = None
    time: float = field(default_factory=time.time)
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_name("decision_id", self.decision_id)
        _check_name("model", self.model)
        object.__setattr__(self, "score", check_score(self.score))
        if self.kind == SCORE:
            if self.other is not None:
                raise FeedbackError("a score event names one model; other must be None")
        elif self.kind == PREFERENCE:
            _check_name("other", self.other)
            if self.other == self.model:
                raise FeedbackError(f"a preference compares two models; got {self.model!r} twice")
            if self.score not in (0.5, 1.0):
                raise FeedbackError(
                    f"a preference's score is 1.0 (model preferred) or 0.5 (tie), got {self.score}"
                )
        else:
            raise FeedbackError(f"kind must be {SCORE!r} or {PREFERENCE!r}, got {self.kind!r}")
        if self.key is not None:
            _check_name("key", self.key)
        try:  # every store keeps the JSON form: refuse what it cannot hold, in all of them
            json.dumps(dict(self.metadata))
        except (TypeError, ValueError) as exc:
            raise FeedbackError(f"feedback metadata must be JSON-serialisable: {exc}") from exc

    def check_against(self, decision: DecisionRecord) -> None:
        """Refuse an event about models the decision did not offer."""
        named = [self.model] + ([self.other] if self.other is not None else [])
        foreign = [name for name in named if name not in decision.candidates]
        if foreign:
            raise FeedbackError(
                f"decision {decision.decision_id!r} offered {list(decision.candidates)}; "
                f"feedback names {foreign}"
            )

    def to_json(self) -> str:
        return json.dumps({
            "decision_id": self.decision_id, "kind": self.kind, "model": self.model,
            "score": self.score, "other": self.other, "key": self.key, "time": self.time,
            "metadata": dict(self.metadata),
        })

    @property
    def fingerprint(self) -> int:
        """The event's identity: the first 8 bytes of the SHA-256 of its canonical JSON, as
        an unsigned 64-bit int.

        Canonical means what every store reads back: the time as a float (``from_json``
        makes it one), metadata as JSON gives it back (tuples become lists, keys strings),
        keys sorted. JSON writes floats by ``repr``, which round-trips exactly, so an event
        read from any store has the fingerprint of the one written. Two events with the
        same fields, time included, are the same event.
        """
        raw = json.loads(self.to_json())
        raw["time"] = float(raw["time"])
        text = json.dumps(raw, sort_keys=True, separators=(",", ":"))
        return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")

    @classmethod
    def from_json(cls, text: str | bytes) -> FeedbackEvent:
        try:
            raw = json.loads(text)
            return cls(raw["decision_id"], raw["kind"], raw["model"], raw["score"],
                       raw.get("other"), raw.get("key"), float(raw["time"]),
                       raw.get("metadata") or {})
        except (KeyError, TypeError, ValueError) as exc:
            raise FeedbackStoreError(f"malformed feedback event in the store: {exc}") from exc


def fingerprints(events: Iterable[FeedbackEvent]) -> np.ndarray:
    """``FeedbackEvent.fingerprint`` of each event, in order: uint64 array of shape (n,)."""
    return np.fromiter((event.fingerprint for event in events), dtype=np.uint64)


def unique_events(events: Sequence[FeedbackEvent]
                  ) -> tuple[list[FeedbackEvent], np.ndarray, np.ndarray]:
    """The first occurrence of each event (a log may hold one twice), in order.

    Returns ``(events, fingerprints, rows)``: those events, their fingerprints (uint64) and
    their positions in ``events``, so callers fingerprint each event once.
    """
    prints = fingerprints(events)
    rows = np.sort(np.unique(prints, return_index=True)[1])
    return [events[i] for i in rows], prints[rows], rows
