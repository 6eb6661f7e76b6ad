"""The feedback store: one contract for memory://, sqlite:/// and a real redis-server."""

from __future__ import annotations

import math
import uuid

import numpy as np
import pytest

from langroute._exceptions import (
    FeedbackError,
    FeedbackStoreError,
    LangrouteError,
    UnknownDecisionError,
)
from langroute.feedback import (
    DecisionRecord,
    FeedbackEvent,
    MemoryFeedbackStore,
    RedisFeedbackStore,
    SQLiteFeedbackStore,
    open_feedback_store,
)

CANDIDATES = ("cheap", "calc", "poet")


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store_url(request, tmp_path):
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'feedback.db'}"
    # One key prefix per test: tests share the session's server without seeing each other.
    return request.getfixturevalue("redis_url") + f"?prefix=t{uuid.uuid4().hex}"


@pytest.fixture
def store(store_url):
    with open_feedback_store(store_url) as opened:
        yield opened


def decision(decision_id: str = "d1", model: str = "cheap") -> DecisionRecord:
    return DecisionRecord(decision_id, f"prompt of {decision_id}", model, CANDIDATES,
                          time=1000.0, metadata={"scope": "agent-a"})


def test_url_picks_the_backend(store_url, store):
    expected = {"memory": MemoryFeedbackStore, "sqlite": SQLiteFeedbackStore,
                "redis": RedisFeedbackStore}[store_url.split(":")[0]]
    assert type(store) is expected


def test_decisions_and_events_round_trip(store):
    record = decision("d1")
    store.record_decision(record)
    assert store.decision("d1") == record
    score = store.add_score("d1", 0.25, key="correctness", metadata={"run_id": "r9"})
    preference = store.add_preference("d1", "calc")
    events = store.events()
    assert events == [score, preference]
    assert (events[0].model, events[0].score, events[0].key) == ("cheap", 0.25, "correctness")
    assert events[0].metadata == {"run_id": "r9"}
    # A preference defaults to "beat the model that answered".
    assert (events[1].kind, events[1].model, events[1].other, events[1].score) == (
        "preference", "calc", "cheap", 1.0)
    assert store.events(1) == [preference]
    assert store.events(2) == []


@pytest.mark.parametrize("bad", [1.5, -0.01, math.nan, math.inf, True, "0.5", None])
def test_bad_scores_are_refused_and_nothing_is_stored(store, bad):
    store.record_decision(decision("d1"))
    with pytest.raises(FeedbackError, match="score"):
        store.add_score("d1", bad)
    assert store.events() == []


@pytest.mark.parametrize("number", [np.float32(0.5), np.int64(1), np.float16(0.25),
                                    np.uint8(0)])
def test_numpy_numbers_are_scores_like_any_other(store, number):
    """np.float64 was accepted, np.float32 / np.int64 refused as "not a number"."""
    store.record_decision(decision("d1"))
    event = store.add_score("d1", number)
    assert event.score == float(number) and type(event.score) is float
    assert store.events() == [event]
    for bad in (np.bool_(True), np.float32("nan"), np.int64(2)):  # still not scores
        with pytest.raises(FeedbackError, match="score"):
            store.add_score("d1", bad)
    assert store.events() == [event]


def test_metadata_that_is_not_json_is_refused_by_every_store(store):
    """SQLite raised a raw TypeError, memory:// stored it; refused alike, before storing."""
    store.record_decision(decision("d1"))
    for bad in ({"when": object()}, {"ids": {1, 2}}):
        with pytest.raises(FeedbackError, match="JSON"):
            store.add_score("d1", 1.0, metadata=bad)
        with pytest.raises(FeedbackError, match="JSON"):
            store.add_preference("d1", "calc", metadata=bad)
    assert store.events() == []


def test_unknown_decision_id_is_a_clear_error(store):
    store.record_decision(decision("d1"))
    with pytest.raises(UnknownDecisionError, match="no decision 'nope'") as info:
        store.add_score("nope", 1.0)
    assert isinstance(info.value, LangrouteError) and isinstance(info.value, LookupError)
    with pytest.raises(UnknownDecisionError):
        store.add_preference("nope", "calc")
    with pytest.raises(UnknownDecisionError, match="e.g."):
        store.decisions(["d1", "nope"])
    assert store.events() == []


def test_other_misuse_is_refused(store):
    store.record_decision(decision("d1"))
    with pytest.raises(FeedbackError, match="already recorded"):
        store.record_decision(decision("d1"))
    with pytest.raises(FeedbackError, match="feedback names \\['gpt-9'\\]"):
        store.add_score("d1", 1.0, model="gpt-9")
    with pytest.raises(FeedbackError, match="name the model it was compared with"):
        store.add_preference("d1", "cheap")
    with pytest.raises(FeedbackError, match="other="):
        store.add_preference("d1", "calc", other="calc")
    with pytest.raises(FeedbackError, match="start"):
        store.events(-1)
    assert store.events() == []


def test_records_validate_themselves():
    with pytest.raises(FeedbackError, match="not one of the candidates"):
        DecisionRecord("d", "p", "other", CANDIDATES)
    with pytest.raises(FeedbackError, match="kind"):
        FeedbackEvent("d", "thumbs", "cheap", 1.0)
    with pytest.raises(FeedbackError, match="preference's score"):
        FeedbackEvent("d", "preference", "calc", 0.3, other="cheap")
    with pytest.raises(FeedbackStoreError, match="malformed"):
        FeedbackEvent.from_json('{"decision_id": "d"}')


@pytest.mark.parametrize("kind", ["sqlite", "redis"])  # memory:// is one process's own
def test_a_second_connection_sees_the_same_store(kind, request, tmp_path):
    if kind == "sqlite":
        store_url = f"sqlite:///{tmp_path / 'shared.db'}"
    else:
        store_url = request.getfixturevalue("redis_url") + f"?prefix=t{uuid.uuid4().hex}"
    store = open_feedback_store(store_url)
    store.record_decision(decision("d1"))
    store.add_score("d1", 1.0)
    with open_feedback_store(store_url) as other:
        assert other.decision("d1") == decision("d1")
        other.add_score("d1", 0.0, model="calc")
    assert [e.score for e in store.events()] == [1.0, 0.0]
    store.close()


def test_bad_urls():
    with pytest.raises(FeedbackError, match="unknown feedback store URL"):
        open_feedback_store("postgres://x")
    with pytest.raises(FeedbackError, match="sqlite:///"):
        open_feedback_store("sqlite://host/x.db")
    with pytest.raises(FeedbackStoreError, match="cannot reach"):
        open_feedback_store("redis://127.0.0.1:1/0")


async def test_async_decision_recording(store):
    await store.arecord_decision(decision("d2"))
    assert store.decision("d2").model == "cheap"
