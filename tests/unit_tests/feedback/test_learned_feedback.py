"""Replay is idempotent: routers keep the fingerprints of the feedback events they learned
(``learned_feedback_``, saved with the router), so no path teaches an event twice."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from langroute import KNNRouter, SWRouter, load_router
from langroute._persistence import read_router_file, write_router_file
from langroute.feedback import (
    DecisionRecord,
    FeedbackRefitter,
    RefitEvery,
    open_feedback_store,
    record_feedback,
    record_preference,
    replay,
)
from langroute.routers._calibration_scores import calibration_scores_disabled

from ..routers.synthetic import MODELS, math_prompt, poem_prompt, split_battles, split_outcomes

ROUTERS = {"sw": lambda e: SWRouter(e), "knn": lambda e: KNNRouter(e, k=9)}
QUERIES = [math_prompt(300), poem_prompt(301), math_prompt(302), "a poem about rain"]


@pytest.fixture(autouse=True)
def _no_calibration_refits():
    with calibration_scores_disabled():
        yield


def n_exemplars(router) -> int:
    if isinstance(router, KNNRouter):
        return router.embeddings_.shape[0]
    return router.n_exemplars_ + router.n_feedback_  # SW keeps feedback apart


def teach_live(store, router, n: int = 8, *, first: int = 0) -> None:
    """Record ``n`` decisions and feedback on them (scores, a preference, a tie), learned at
    once, as ``RoutedChatModel.record_feedback`` does."""
    for i in range(first, first + n):
        prompt = math_prompt(200 + i) if i % 2 else poem_prompt(200 + i)
        store.record_decision(DecisionRecord(f"d{i}", prompt, "cheap", MODELS))
        record_feedback(store, f"d{i}", score=float(i % 3 == 0), router=router,
                        metadata={"grader": "unit", "weight": 0.1 + 0.2})
    record_preference(store, f"d{first}", preferred="calc", router=router)
    record_preference(store, f"d{first + 1}", preferred="poet", other="calc", tie=True,
                      router=router)


def assert_same_learning(router, reference) -> None:
    assert n_exemplars(router) == n_exemplars(reference)
    np.testing.assert_allclose(router.win_matrices(QUERIES), reference.win_matrices(QUERIES),
                               atol=1e-12)
    np.testing.assert_array_equal(router.learned_feedback_, reference.learned_feedback_)


@pytest.mark.parametrize("name", sorted(ROUTERS))
def test_a_router_that_learned_live_then_was_saved_and_loaded_replays_nothing_twice(
        name, hashing_embedder, tmp_path):
    make = ROUTERS[name]
    url = f"sqlite:///{tmp_path / 'fb.db'}"
    live = make(hashing_embedder).fit(split_outcomes(20, seed=4))
    before = n_exemplars(live)
    with open_feedback_store(url) as store:
        teach_live(store, live)
    assert n_exemplars(live) == before + 10
    live.save(tmp_path / "router.safetensors")
    loaded = load_router(tmp_path / "router.safetensors", embedder=hashing_embedder)
    with open_feedback_store(url) as store:  # "later": another connection, from position 0
        version = loaded.fit_version_
        assert replay(store, loaded) == 10
        assert loaded.fit_version_ == version  # nothing new to learn: untouched
        assert_same_learning(loaded, live)
        assert loaded.learned_feedback_.dtype == np.uint64
        np.testing.assert_array_equal(loaded.learned_feedback_,
                                      np.sort([e.fingerprint for e in store.events()]))
        # Feedback another process stored since is learned, once.
        store.record_decision(DecisionRecord("late", math_prompt(250), "cheap", MODELS))
        record_feedback(store, "late", score=0.0)
        assert replay(store, loaded) == 11
        record_feedback(store, "late", score=0.0, router=live)  # the same event, live
    assert n_exemplars(loaded) == before + 11
    fresh = make(hashing_embedder).fit(split_outcomes(20, seed=4))
    with open_feedback_store(url) as store:
        replay(store, fresh)
    assert n_exemplars(fresh) == before + 12  # both "late" scores: two distinct events
    assert replay(open_feedback_store(url), loaded) == 12
    assert_same_learning(loaded, fresh)


@pytest.mark.parametrize("name", sorted(ROUTERS))
def test_replaying_twice_equals_replaying_once(name, hashing_embedder, tmp_path):
    make = ROUTERS[name]
    url = f"sqlite:///{tmp_path / 'fb.db'}"
    with open_feedback_store(url) as store:
        teach_live(store, make(hashing_embedder).fit(split_outcomes(20, seed=4)))
    once = make(hashing_embedder).fit(split_outcomes(20, seed=4))
    twice = make(hashing_embedder).fit(split_outcomes(20, seed=4))
    with open_feedback_store(url) as store:
        assert replay(store, once) == 10
        assert replay(store, twice) == 10
        assert replay(store, twice) == 10
        assert replay(store, twice, start=3) == 10
    assert_same_learning(twice, once)


def test_an_event_repeated_in_the_log_is_learned_once(hashing_embedder):
    store = open_feedback_store("memory://")
    store.record_decision(DecisionRecord("d", math_prompt(1), "cheap", MODELS))
    event = store.add_score("d", 1.0)
    store._append_event(event)  # e.g. a log copied into another store twice
    router = SWRouter(hashing_embedder).fit(split_outcomes(20, seed=4))
    before = n_exemplars(router)
    assert replay(store, router) == 2
    assert n_exemplars(router) == before + 1
    np.testing.assert_array_equal(router.learned_feedback_, [event.fingerprint])


@pytest.fixture(params=["sqlite", "redis"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'feedback.db'}"
    return request.getfixturevalue("redis_url") + f"?prefix=t{uuid.uuid4().hex}"


def test_events_read_back_from_every_store_keep_their_fingerprints(store_url):
    with open_feedback_store(store_url) as writer:
        writer.record_decision(DecisionRecord("d1", "p", "cheap", MODELS))
        written = [
            writer.add_score("d1", 0.1 + 0.2, key="correctness",
                             metadata={"z": (1, 2.5e-300), "a": {"nested": 1 / 3}, "n": None}),
            writer.add_score("d1", 1, model="calc"),  # an int score is stored as 1.0
            writer.add_preference("d1", "poet", tie=True, metadata={"comment": "é ✓"}),
            writer.add_preference("d1", "calc"),
        ]
    with open_feedback_store(store_url) as reader:  # a new connection reads them back
        read = reader.events()
    assert [e.fingerprint for e in read] == [e.fingerprint for e in written]
    prints = [e.fingerprint for e in written]
    assert len(set(prints)) == 4 and all(0 <= p < 2**64 for p in prints)


def test_the_fingerprint_tells_events_apart_by_every_field():
    from langroute.feedback import FeedbackEvent

    base = FeedbackEvent("d", "score", "cheap", 0.5, key="k", time=1700000000.123456,
                         metadata={"a": 1})
    variants = [
        FeedbackEvent("e", "score", "cheap", 0.5, key="k", time=1700000000.123456,
                      metadata={"a": 1}),
        FeedbackEvent("d", "score", "calc", 0.5, key="k", time=1700000000.123456,
                      metadata={"a": 1}),
        FeedbackEvent("d", "score", "cheap", 0.75, key="k", time=1700000000.123456,
                      metadata={"a": 1}),
        FeedbackEvent("d", "score", "cheap", 0.5, key="j", time=1700000000.123456,
                      metadata={"a": 1}),
        FeedbackEvent("d", "score", "cheap", 0.5, key="k",
                      time=np.nextafter(1700000000.123456, 2e9), metadata={"a": 1}),
        FeedbackEvent("d", "score", "cheap", 0.5, key="k", time=1700000000.123456,
                      metadata={"a": 2}),
    ]
    assert len({base.fingerprint, *(v.fingerprint for v in variants)}) == 7
    # What a store gives back is the same event: metadata key order, a tuple (read back as
    # a list), an int score or time (read back as floats).
    given = FeedbackEvent("d", "score", "cheap", 1, time=5, metadata={"t": (1,), "b": 0})
    stored = FeedbackEvent("d", "score", "cheap", 1.0, time=5.0, metadata={"b": 0, "t": [1]})
    assert given.fingerprint == stored.fingerprint
    assert FeedbackEvent.from_json(given.to_json()).fingerprint == given.fingerprint


@pytest.mark.parametrize("name", sorted(ROUTERS))
def test_an_older_router_file_without_learned_feedback_loads_with_none(
        name, hashing_embedder, tmp_path):
    router = ROUTERS[name](hashing_embedder).fit(split_outcomes(20, seed=4))
    path = tmp_path / "router.safetensors"
    router.save(path)
    kind, params, state, arrays = read_router_file(path)
    # A file written before routers kept learned_feedback_: neither the state nor the array.
    state.pop("learned_feedback_")
    arrays.pop("learned_feedback")
    old = tmp_path / "old.safetensors"
    write_router_file(old, kind=kind, params=params, state=state, arrays=arrays)
    loaded = load_router(old, embedder=hashing_embedder)
    assert loaded.learned_feedback_.dtype == np.uint64 and loaded.learned_feedback_.shape == (0,)
    store = open_feedback_store("memory://")
    teach_live(store, loaded, 4)
    assert len(loaded.learned_feedback_) == 6
    assert replay(store, loaded) == 6
    assert n_exemplars(loaded) == n_exemplars(router) + 6


@pytest.mark.parametrize("name", sorted(ROUTERS))
def test_fit_forgets_the_learned_feedback(name, hashing_embedder):
    make = ROUTERS[name]
    store = open_feedback_store("memory://")
    router = make(hashing_embedder).fit(split_outcomes(20, seed=4))
    teach_live(store, router)
    live = make(hashing_embedder).fit(split_outcomes(20, seed=4))
    replay(store, live)
    assert len(router.learned_feedback_) == 10
    router.fit(split_outcomes(20, seed=4))
    assert router.learned_feedback_.shape == (0,)
    assert replay(store, router) == 10  # it forgot the events: they are learned again
    assert_same_learning(router, live)


@pytest.mark.parametrize("name", sorted(ROUTERS))
def test_add_model_keeps_the_learned_feedback(name, hashing_embedder):
    data = split_outcomes(20, seed=4)
    router = ROUTERS[name](hashing_embedder).fit(data.select_models(["cheap", "calc"]))
    store = open_feedback_store("memory://")
    for i in range(4):
        store.record_decision(DecisionRecord(f"d{i}", math_prompt(200 + i), "cheap",
                                             ("cheap", "calc")))
        record_feedback(store, f"d{i}", score=float(i % 2), router=router)
    router.add_model("poet", data.subset(list(router.quiz_prompts(6))), cost=0.02)
    count, win = n_exemplars(router), router.win_matrices(QUERIES)
    assert replay(store, router) == 4
    assert n_exemplars(router) == count
    np.testing.assert_array_equal(router.win_matrices(QUERIES), win)
    np.testing.assert_array_equal(router.learned_feedback_,
                                  np.sort([e.fingerprint for e in store.events()]))


def test_a_refitted_router_lists_the_events_its_refit_learned(hashing_embedder):
    # A router with partial_fit may be refitted too (e.g. on a schedule, to rebuild its
    # index); replaying the store afterwards must not add the events once more.
    training = split_battles(20)
    store = open_feedback_store("memory://")
    router = SWRouter(hashing_embedder).fit(training)
    refitter = FeedbackRefitter(store, router, training, policy=RefitEvery(events=3))
    for i in range(3):
        store.record_decision(DecisionRecord(f"d{i}", poem_prompt(200 + i), "cheap", MODELS))
        store.add_preference(f"d{i}", "poet")
    store._append_event(store.events()[0])  # one event twice in the log: learned once
    assert refitter.poll()
    count = n_exemplars(router)
    assert count == n_exemplars(SWRouter(hashing_embedder).fit(training)) + 3
    assert replay(store, router) == 4
    assert n_exemplars(router) == count
    np.testing.assert_array_equal(router.learned_feedback_,
                                  np.unique([e.fingerprint for e in store.events()]))


@pytest.mark.parametrize("name", sorted(ROUTERS))
def test_a_refit_on_outcomes_does_not_list_scores_it_could_not_learn(hashing_embedder, name):
    """A score becomes an Outcomes row scoring one model, from which a pairwise router learns
    nothing; the refit used to list it as learned anyway, so a later replay skipped it and
    the score was never learned."""
    training = split_outcomes(20, seed=3)
    store = open_feedback_store("memory://")
    router = ROUTERS[name](hashing_embedder).fit(training)
    refitter = FeedbackRefitter(store, router, training, policy=RefitEvery(events=2))
    for i in range(2):
        store.record_decision(DecisionRecord(f"d{i}", poem_prompt(200 + i), "cheap", MODELS))
        store.add_score(f"d{i}", 0.0)
    assert refitter.poll()
    assert len(router.learned_feedback_) == 0
    before = n_exemplars(router)
    replay(store, router)  # imputes the scores' battles: teaches them
    assert n_exemplars(router) == before + 2 and len(router.learned_feedback_) == 2


class _FlagLock:
    """A lock that says whether it is held, and can run ``before`` as it is taken (a thread
    that wins the race)."""

    def __init__(self, before=None):
        self.held, self.before = False, before

    def __enter__(self):
        if self.before is not None:
            before, self.before = self.before, None
            before()
        self.held = True
        return self

    def __exit__(self, *exc):
        self.held = False
        return False


def test_replay_learns_outside_the_routing_lock(hashing_embedder, monkeypatch):
    """Routing waits on the lock: a big replay held it for the JSON + SHA-256 of every event,
    for building the battles, and for ``partial_fit`` itself (a clustered SWRouter
    re-clusters every exemplar there: seconds at 50k exemplars, all routing stopped). Only
    the re-check, embedding the new prompts and swapping the result in need it."""
    from langroute.feedback import FeedbackEvent, _learning

    router = SWRouter(hashing_embedder).fit(split_outcomes(10))
    store = open_feedback_store("memory://")
    teach_live(store, None, 6)
    lock = _FlagLock()
    under_lock = []
    fingerprint = FeedbackEvent.fingerprint.fget
    monkeypatch.setattr(FeedbackEvent, "fingerprint",
                        property(lambda e: under_lock.append(lock.held) or fingerprint(e)))
    battles = _learning.feedback_battles
    monkeypatch.setattr(_learning, "feedback_battles",
                        lambda *a, **k: under_lock.append(lock.held) or battles(*a, **k))
    fit, embedder = SWRouter.partial_fit, type(hashing_embedder)
    monkeypatch.setattr(SWRouter, "partial_fit",
                        lambda *a, **k: under_lock.append(("fit", lock.held)) or fit(*a, **k))
    embed = embedder.embed
    monkeypatch.setattr(embedder, "embed",  # its cache is shared with routing
                        lambda *a, **k: under_lock.append(("embed", lock.held)) or embed(*a, **k))
    before = n_exemplars(router)
    assert replay(store, router, lock=lock) == 8
    assert n_exemplars(router) == before + 8
    assert under_lock.count(("fit", False)) == 1 and ("fit", True) not in under_lock
    assert under_lock.count(("embed", True)) == 1 and ("embed", False) not in under_lock
    assert not any(held is True for held in under_lock), under_lock


@pytest.mark.parametrize("name", sorted(ROUTERS))
def test_threads_learning_while_others_route_learn_every_event_once(name, hashing_embedder):
    """Learners run outside the routing lock, one at a time per router: events recorded from
    many threads while routing goes on are each learned once, as a sequential replay."""
    import concurrent.futures
    import threading

    router = ROUTERS[name](hashing_embedder).fit(split_outcomes(10))
    lock = threading.Lock()
    store = open_feedback_store("memory://")
    for i in range(12):
        store.record_decision(DecisionRecord(f"d{i}", math_prompt(400 + i), "cheap", MODELS))

    def learn(i: int) -> None:
        record_feedback(store, f"d{i}", score=float(i % 2), router=router, lock=lock)

    def route(_: int) -> None:
        with lock:
            router.win_matrices(QUERIES)

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        list(pool.map(lambda i: learn(i // 2) if i % 2 else route(i), range(24)))
    reference = ROUTERS[name](hashing_embedder).fit(split_outcomes(10))
    replay(store, reference)
    assert len(router.learned_feedback_) == 12
    np.testing.assert_array_equal(np.sort(router.learned_feedback_), reference.learned_feedback_)
    assert n_exemplars(router) == n_exemplars(reference)


class _SecondEntry(_FlagLock):
    """A lock that runs ``hook`` as it is taken the second time (the swap-in)."""

    def __init__(self, hook):
        super().__init__()
        self.hook, self.entries = hook, 0

    def __enter__(self):
        self.entries += 1
        if self.entries == 2:
            self.hook()
        return super().__enter__()


def test_a_router_changed_while_it_learned_keeps_both_changes(hashing_embedder):
    """The copy learned outside the lock is not swapped over a change made meanwhile."""
    router = SWRouter(hashing_embedder).fit(split_outcomes(10))
    store = open_feedback_store("memory://")
    store.record_decision(DecisionRecord("d0", math_prompt(500), "cheap", MODELS))
    before = n_exemplars(router)
    lock = _SecondEntry(lambda: router.partial_fit(split_outcomes(2, seed=3)))
    record_feedback(store, "d0", score=0.0, router=router, lock=lock)
    assert n_exemplars(router) == before + 4 + 1 and len(router.learned_feedback_) == 1


def test_replay_fetches_the_decisions_of_new_events_only(hashing_embedder):
    router = KNNRouter(hashing_embedder, k=9).fit(split_outcomes(10))
    store = open_feedback_store("memory://")
    teach_live(store, router, 6)  # learned live
    teach_live(store, None, 2, first=6)  # stored by another process
    asked = []
    decisions = store.decisions
    store.decisions = lambda ids: asked.extend(ids) or decisions(ids)
    assert replay(store, router) == 12
    assert sorted(asked) == ["d6", "d7"]
    asked.clear()
    assert replay(store, router) == 12
    assert asked == []


@pytest.mark.parametrize("name", sorted(ROUTERS))
def test_a_replay_racing_another_learns_each_event_once(name, hashing_embedder, monkeypatch):
    """Another replay learns the events between this one's check and its turn to learn: the
    re-check under the locks drops them (and the battles are rebuilt for what is left)."""
    from langroute.feedback import _learning

    make = ROUTERS[name]
    store = open_feedback_store("memory://")
    teach_live(store, None, 6)
    reference = make(hashing_embedder).fit(split_outcomes(10))
    replay(store, reference)
    router = make(hashing_embedder).fit(split_outcomes(10))
    half = store.events()[:4]
    ids = list(dict.fromkeys(e.decision_id for e in half))
    decisions = {d.decision_id: d for d in store.decisions(ids)}

    def rival():  # learns the first four events, as a thread whose turn to learn came first
        _learning._learn(router, *_learning._new_events(router, half), decisions, None)

    turns = _FlagLock(before=rival)
    monkeypatch.setattr(_learning, "_learning_lock", lambda router: turns)
    assert replay(store, router, lock=_FlagLock()) == 8
    assert_same_learning(router, reference)


def test_a_refit_swapped_in_while_it_learned_is_not_taught_the_event_again(hashing_embedder):
    """A scheduled refit (which learns every stored event) swapped in between the learner's
    check and its swap-in: the event was learned a second time and its fingerprint listed
    twice (a router file that then refuses to load)."""
    training = split_outcomes(10)
    router = SWRouter(hashing_embedder).fit(training)
    store = open_feedback_store("memory://")
    refitter = FeedbackRefitter(store, router, training, policy=RefitEvery(events=1))
    store.record_decision(DecisionRecord("d0", math_prompt(500), "cheap", MODELS))
    record_feedback(store, "d0", score=0.0, router=router, lock=_SecondEntry(refitter.poll))
    assert refitter.refits == 1
    assert len(router.learned_feedback_) == 1
    before = n_exemplars(router)
    replay(store, router)
    assert n_exemplars(router) == before  # learned, and once
    # The refit's one-score row (which teaches a pairwise router nothing) and the learner's
    # imputed battles: one exemplar each (taught twice, there would be another).
    assert n_exemplars(router) == n_exemplars(SWRouter(hashing_embedder).fit(training)) + 2


class _ByValue:
    """A router of the user's own that compares by value (so it is unhashable) and keeps no
    fingerprints: it learns every event given, under the routing lock."""

    __hash__ = None  # type: ignore[assignment]

    def __init__(self) -> None:
        self.models, self.learned = list(MODELS), []
        self.quality_ = np.full(len(MODELS), 0.5)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _ByValue) and other.learned == self.learned

    def partial_fit(self, battles):
        self.learned.append(battles)
        return self


def test_a_router_that_cannot_be_a_weak_key_learns_as_before():
    router = _ByValue()
    store = open_feedback_store("memory://")
    store.record_decision(DecisionRecord("d0", math_prompt(500), "cheap", MODELS))
    record_feedback(store, "d0", score=1.0, router=router, lock=_FlagLock())
    assert len(router.learned) == 1 and len(router.learned[0])
