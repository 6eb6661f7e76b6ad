"""Routers without partial_fit learn from feedback by scheduled refits (FeedbackRefitter)."""

from __future__ import annotations

import contextlib
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from langroute import ClusterRouter, IRTRouter
from langroute._exceptions import RouterConfigError
from langroute.feedback import (
    DEFAULT_REFIT,
    DecisionRecord,
    FeedbackRefitter,
    MemoryFeedbackStore,
    RefitEvery,
    RefitState,
    feedback_outcomes,
    open_feedback_store,
    replay,
)
from langroute.routers._calibration_scores import calibration_scores_disabled

from ..routers.synthetic import MODELS, poem_prompt, split_battles, split_outcomes


@pytest.fixture(autouse=True)
def _no_calibration_refits():
    with calibration_scores_disabled():
        yield


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class CountingLock:
    def __init__(self) -> None:
        self.entered = 0

    def __enter__(self) -> None:
        self.entered += 1

    def __exit__(self, *exc: object) -> None:
        return None


def cheap_writes_poems(store, n: int, *, first: int = 0) -> list[str]:
    """Record ``n`` poem decisions answered by "cheap", each scored 1.0 (it did well)."""
    ids = []
    for i in range(first, first + n):
        ids.append(f"poem{i}")
        store.record_decision(DecisionRecord(ids[-1], poem_prompt(300 + i), "cheap", MODELS))
        store.add_score(ids[-1], 1.0)
    return ids


def test_refit_every_counts_events_share_and_time():
    state = RefitState(new_events=5, seconds=10.0, n_training=100)
    assert RefitEvery(events=5)(state) and not RefitEvery(events=6)(state)
    assert RefitEvery(share=0.05)(state) and not RefitEvery(share=0.1)(state)
    assert RefitEvery(seconds=10)(state) and not RefitEvery(seconds=11)(state)
    # Nothing new: never due, however long ago the last refit was.
    assert not RefitEvery(seconds=1)(RefitState(new_events=0, seconds=1e9, n_training=100))
    either = RefitEvery(events=6) | RefitEvery(seconds=10)
    both = RefitEvery(events=6) & RefitEvery(seconds=10)
    assert either(state) and not both(state)
    assert (RefitEvery(events=1) & (lambda s: s.seconds > 60))(state) is False
    assert DEFAULT_REFIT(RefitState(new_events=10, seconds=0.0, n_training=100))
    assert DEFAULT_REFIT(RefitState(new_events=1, seconds=86400.0, n_training=100))
    assert not DEFAULT_REFIT(RefitState(new_events=9, seconds=3600.0, n_training=100))
    for bad in ({}, {"events": 0}, {"share": -0.1}, {"seconds": float("nan")}, {"events": 2.5}):
        with pytest.raises(RouterConfigError, match="RefitEvery"):
            RefitEvery(**bad)


def test_refitter_refits_on_schedule_and_swaps_the_fit_in(hashing_embedder):
    train = split_outcomes(20, seed=4)
    router = ClusterRouter(hashing_embedder, n_clusters=2, per_cluster="quality",
                           random_state=0).fit(train)
    quality, costs = router.quality_.copy(), router.costs_.copy()
    store = open_feedback_store("memory://")
    clock, lock = Clock(), CountingLock()
    refitter = FeedbackRefitter(store, router, train, policy=RefitEvery(events=10, seconds=60),
                                lock=lock, clock=clock)
    poems = [poem_prompt(900), poem_prompt(901)]
    before = router.win_matrices(poems)
    version = router.fit_version_

    cheap_writes_poems(store, 6)
    assert not refitter.poll()  # 6 events, 0 s: not due
    assert router.fit_version_ == version and refitter.position == 6
    clock.now = 61.0
    assert refitter.poll()  # 6 events after a minute: due
    assert router.fit_version_ != version and refitter.refits == 1 and lock.entered == 1
    # The router object learned in place: cheap succeeded on poems, so it wins more there.
    after = router.win_matrices(poems)
    assert np.all(after[:, 0, 2] > before[:, 0, 2] + 0.02)
    # The fit equals a fresh fit on the training data plus the feedback rows...
    union = train.subset(np.arange(len(train)))
    rows = feedback_outcomes(store.events(), {d.decision_id: d for d in
                                              store.decisions([e.decision_id for e in
                                                               store.events()])}, MODELS)
    assert len(rows) == 6 and np.isnan(rows.scores[:, 1:]).all()
    fresh = ClusterRouter(hashing_embedder, n_clusters=2, per_cluster="quality",
                          random_state=0).fit(type(train)(
                              ids=[*union.ids, *rows.ids], prompts=[*union.prompts, *rows.prompts],
                              models=MODELS, scores=np.concatenate([union.scores, rows.scores]),
                              costs=np.concatenate([union.costs, rows.costs])))
    np.testing.assert_allclose(after, fresh.win_matrices(poems))
    # ... except the population means, which biased feedback must not move.
    assert fresh.quality_[0] > quality[0]
    np.testing.assert_array_equal(router.quality_, quality)
    np.testing.assert_array_equal(router.costs_, costs)

    # The clock restarts at the refit; the next refit needs new events again.
    clock.now = 500.0
    assert not refitter.poll()
    cheap_writes_poems(store, 10, first=6)
    assert refitter.poll() and refitter.refits == 2 and refitter.state().new_events == 0


def test_a_score_based_router_learns_from_single_scores(hashing_embedder):
    train = split_outcomes(20, seed=4)
    router = IRTRouter(hashing_embedder, random_state=0).fit(train)
    store = open_feedback_store("memory://")
    refitter = FeedbackRefitter(store, router, train, policy=RefitEvery(events=20))
    poems = [poem_prompt(900), poem_prompt(901)]
    before = router.win_matrices(poems)[:, 0, 2]
    cheap_writes_poems(store, 20)
    assert refitter.poll()
    assert np.all(router.win_matrices(poems)[:, 0, 2] > before)


def test_preferences_are_skipped_or_learned_as_battles(hashing_embedder):
    train = split_outcomes(20, seed=4)
    router = ClusterRouter(hashing_embedder, n_clusters=2, random_state=0).fit(train)
    store = open_feedback_store("memory://")
    ids = cheap_writes_poems(store, 3)
    store.add_preference(ids[0], "poet")
    # "error" (the default) refuses to record one through a model; one already in the shared
    # store is left out with a warning, counted, and the scores still refit.
    refuse = FeedbackRefitter(store, router, train, policy=RefitEvery(events=1))
    version = router.fit_version_
    with pytest.warns(RuntimeWarning, match="preference"):
        assert refuse.poll()
    assert router.fit_version_ != version and refuse.refits == 1
    assert refuse.skipped_preferences == refuse.skipped_events == 1
    assert refuse.position == 4 and refuse.state().new_events == 0
    skip = FeedbackRefitter(store, router, train, policy=RefitEvery(events=1),
                            preferences="skip")
    assert skip.poll() and skip.skipped_preferences == 1
    # Trained on battles, the refit learns feedback as partial_fit routers do (battles).
    on_battles = ClusterRouter(hashing_embedder, n_clusters=2, random_state=0).fit(
        split_battles(20))
    win_rates = on_battles.quality_.copy()
    learner = FeedbackRefitter(store, on_battles, split_battles(20), policy=RefitEvery(events=4))
    before = on_battles.win_matrices([poem_prompt(300)])[0, 2, 0]
    assert learner.poll()
    assert on_battles.win_matrices([poem_prompt(300)])[0, 2, 0] != before
    np.testing.assert_array_equal(on_battles.quality_, win_rates)


def test_a_stored_preference_does_not_stop_later_refits(hashing_embedder):
    """A preference another writer stored used to fail every later poll, forever."""
    train = split_outcomes(20, seed=4)
    router = IRTRouter(hashing_embedder, random_state=0).fit(train)
    store = open_feedback_store("memory://")
    ids = cheap_writes_poems(store, 2)
    store.add_preference(ids[0], "poet")
    refitter = FeedbackRefitter(store, router, train, policy=RefitEvery(events=1))
    with pytest.warns(RuntimeWarning, match="leaves it out"):
        assert refitter.poll()
    cheap_writes_poems(store, 1, first=2)
    assert refitter.poll() and refitter.refits == 2 and refitter.skipped_preferences == 1


def test_events_naming_unknown_models_are_skipped_not_fatal(hashing_embedder):
    """The store is shared: a decision another router recorded may name other models."""
    train = split_outcomes(20, seed=4)
    router = IRTRouter(hashing_embedder, random_state=0).fit(train)
    store = open_feedback_store("memory://")
    store.record_decision(DecisionRecord("other", poem_prompt(1), "stranger",
                                         (*MODELS, "stranger")))
    store.add_score("other", 1.0)
    cheap_writes_poems(store, 1)
    refitter = FeedbackRefitter(store, router, train, policy=RefitEvery(events=1))
    with pytest.warns(RuntimeWarning, match="stranger"):
        assert refitter.poll()
    assert refitter.skipped_events == 1 and refitter.skipped_preferences == 0
    assert refitter.position == 2 and refitter.refits == 1


class MeetingStore(MemoryFeedbackStore):
    """Readers of the log meet at a barrier after reading it: unserialised polls all read
    the same events before any of them advances its position."""

    def __init__(self, parties: int) -> None:
        super().__init__()
        self.barrier = threading.Barrier(parties)

    def events(self, start: int = 0):
        fresh = super().events(start)
        with contextlib.suppress(threading.BrokenBarrierError):
            # A serialised poll waits alone; the timeout breaks the barrier for all.
            self.barrier.wait(timeout=0.5)
        return fresh


def test_concurrent_polls_read_each_event_once(hashing_embedder):
    """RoutedChatModel polls from every thread recording feedback; each event counts once."""
    train = split_outcomes(20, seed=4)
    router = IRTRouter(hashing_embedder, random_state=0).fit(train)
    threads = 8
    store = MeetingStore(threads)
    cheap_writes_poems(store, 40)
    refitter = FeedbackRefitter(store, router, train, policy=RefitEvery(events=10**9))
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda _: refitter.poll(), range(threads)))
    assert refitter.position == 40 and refitter.state().new_events == 40
    refitter.refit()  # learns each of the 40 events once
    assert refitter.state().new_events == 0 and refitter.position == 40


def test_refitter_checks_its_inputs(hashing_embedder):
    train = split_outcomes(10)
    router = ClusterRouter(hashing_embedder, n_clusters=2, random_state=0)
    store = open_feedback_store("memory://")
    with pytest.raises(RouterConfigError, match="fitted"):
        FeedbackRefitter(store, router, train)
    router.fit(train)
    with pytest.raises(RouterConfigError, match="differ"):
        FeedbackRefitter(store, router, train.select_models(["poet", "calc", "cheap"]))
    for bad in ({"policy": 3}, {"preferences": "drop"}, {"start": -1}):
        with pytest.raises(RouterConfigError):
            FeedbackRefitter(store, router, train, **bad)
    with pytest.raises(TypeError, match="FeedbackStore"):
        FeedbackRefitter("memory://", router, train)
    # replay() names the refitter for routers without partial_fit.
    with pytest.raises(RouterConfigError, match="FeedbackRefitter"):
        replay(store, router)


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_a_refitter_in_another_process_sees_the_shared_log(backend, request, tmp_path,
                                                           hashing_embedder):
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'fb.db'}"
    else:
        url = request.getfixturevalue("redis_url") + f"?prefix=refit{uuid.uuid4().hex}"
    train = split_outcomes(20, seed=4)

    def make():
        return ClusterRouter(hashing_embedder, n_clusters=2, per_cluster="quality",
                             random_state=0).fit(train)

    here, there = make(), make()
    with open_feedback_store(url) as writer, open_feedback_store(url) as reader:
        ours = FeedbackRefitter(writer, here, train, policy=RefitEvery(events=5))
        theirs = FeedbackRefitter(reader, there, train, policy=RefitEvery(events=5))
        cheap_writes_poems(writer, 4)
        assert not ours.poll() and not theirs.poll()
        cheap_writes_poems(writer, 1, first=4)
        assert ours.poll() and theirs.poll() and theirs.position == 5
        poems = [poem_prompt(900)]
        np.testing.assert_allclose(there.win_matrices(poems), here.win_matrices(poems))
        assert ours.refits == theirs.refits == 1


def test_refit_rows_are_named_by_their_log_positions(hashing_embedder, monkeypatch):
    """A skipped preference and a repeated event shift the rows: ids still name positions."""
    train = split_outcomes(20, seed=4)
    router = ClusterRouter(hashing_embedder, n_clusters=2, random_state=0).fit(train)
    store = open_feedback_store("memory://")
    ids = cheap_writes_poems(store, 1)  # position 0
    store.add_preference(ids[0], "poet")  # 1: skipped (training is Outcomes)
    store._append_event(store.events()[0])  # 2: event 0 again, learned once
    cheap_writes_poems(store, 1, first=1)  # 3
    fitted_on = []
    clone = ClusterRouter.clone
    monkeypatch.setattr(ClusterRouter, "clone", lambda self: _Spy(clone(self), fitted_on))
    refitter = FeedbackRefitter(store, router, train, policy=RefitEvery(events=1),
                                preferences="skip")
    assert refitter.poll()
    assert fitted_on[0].ids[len(train):] == ["feedback:0", "feedback:3"]


class _Spy:
    """A router clone whose ``fit`` records its data, then fits the router."""

    def __init__(self, router, seen):
        self.router, self.seen = router, seen

    def fit(self, data):
        self.seen.append(data)
        return self.router.fit(data)


def test_feedback_outcomes_names_rows_by_the_positions_given():
    store = open_feedback_store("memory://")
    cheap_writes_poems(store, 2)
    events = store.events()
    decisions = {d.decision_id: d for d in store.decisions(["poem0", "poem1"])}
    assert feedback_outcomes(events, decisions, MODELS, start=5).ids == [
        "feedback:5", "feedback:6"]
    assert feedback_outcomes(events, decisions, MODELS, positions=[2, 9]).ids == [
        "feedback:2", "feedback:9"]


class _WatchedState(dict):
    """A router's ``__dict__`` that records, at every change, whether it still held a
    model list (what a reader without the lock would find)."""

    def __init__(self, *args, seen):
        super().__init__(*args)
        self.seen = seen

    def clear(self):
        super().clear()
        self.seen.append("models_" in self)

    def update(self, *args, **kwargs):
        self.seen.append("models_" in self)
        super().update(*args, **kwargs)
        self.seen.append("models_" in self)

    def __delitem__(self, key):
        super().__delitem__(key)
        self.seen.append("models_" in self)


def test_a_refit_swap_never_leaves_the_router_empty(hashing_embedder):
    train = split_outcomes(20, seed=4)
    router = ClusterRouter(hashing_embedder, n_clusters=2, random_state=0).fit(train)
    seen = []
    router.__dict__ = _WatchedState(vars(router), seen=seen)
    store = open_feedback_store("memory://")
    cheap_writes_poems(store, 2)
    version = router.fit_version_
    assert FeedbackRefitter(store, router, train, policy=RefitEvery(events=1)).poll()
    assert router.fit_version_ != version and seen and all(seen)


def test_a_refit_error_survives_pickling_with_its_event():
    """A process pool sends errors back pickled; ``RefitError(message)`` without ``event``
    could not be rebuilt (TypeError)."""
    import pickle

    from langroute import RefitError

    store = open_feedback_store("memory://")
    cheap_writes_poems(store, 1)
    event = store.events()[0]
    error = pickle.loads(pickle.dumps(RefitError("the refit failed", event=event)))
    assert type(error) is RefitError and str(error) == "the refit failed"
    assert error.event == event
