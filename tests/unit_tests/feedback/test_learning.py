"""Feedback teaches the router: record_feedback / record_preference / replay, and the
FeedbackRecorder step driven through a real CallPipeline (sync and async)."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from langroute import ClusterRouter, SWRouter
from langroute._decision import RoutingPolicy
from langroute._exceptions import FeedbackError, RouterConfigError, UnknownDecisionError
from langroute.feedback import (
    DecisionRecord,
    FeedbackRecorder,
    feedback_battles,
    open_feedback_store,
    record_feedback,
    record_preference,
    replay,
)
from langroute.pipeline import (
    Answer,
    CallContext,
    CallPipeline,
    ModelRef,
    RouteRequest,
    run_async,
    run_sync,
)
from langroute.routers._calibration_scores import calibration_scores_disabled

from ..routers.synthetic import MODELS, math_prompt, split_outcomes

CANDIDATES = ("cheap", "calc", "poet")


@pytest.fixture(autouse=True)
def _no_calibration_refits():
    with calibration_scores_disabled():
        yield


@pytest.fixture
def router(hashing_embedder):
    return SWRouter(hashing_embedder).fit(split_outcomes(20, seed=4))


def remember(store, n: int, model: str = "cheap") -> list[str]:
    ids = []
    for i in range(n):
        ids.append(f"d{i}")
        store.record_decision(DecisionRecord(f"d{i}", math_prompt(200 + i), model, CANDIDATES))
    return ids


def test_each_event_becomes_one_exemplar_of_expected_or_real_battles(router):
    from langroute.feedback import FeedbackEvent

    decisions = {"d": DecisionRecord("d", "p", "cheap", CANDIDATES)}
    events = [FeedbackEvent("d", "score", "cheap", 0.0), FeedbackEvent("d", "score", "calc", 1.0),
              FeedbackEvent("d", "preference", "poet", 0.5, other="calc")]
    battles = feedback_battles(events, decisions, router, impute="quality")
    q = router.quality_
    assert battles.prompts == ["p", "p", "p"]
    rows = list(zip(battles.prompt_index.tolist(), battles.model_a.tolist(),
                    battles.model_b.tolist(), battles.result.tolist(), strict=True))
    # "quality": a score meets every other model as an expected battle against its mean.
    assert rows == [(0, 0, 1, (1 + 0.0 - q[1]) / 2), (0, 0, 2, (1 + 0.0 - q[2]) / 2),
                    (1, 1, 0, (1 + 1.0 - q[0]) / 2), (1, 1, 2, (1 + 1.0 - q[2]) / 2),
                    (2, 2, 1, 0.5)]
    none = feedback_battles(events, decisions, router, impute=None)
    assert len(none) == 1 and none.prompts == ["p"]  # only the preference's prompt
    assert len(feedback_battles(events[:2], decisions, router, impute=None).prompts) == 0
    # "router": the router's own prediction on the prompt, shifted by the score's surprise.
    local = feedback_battles(events[:1], decisions, router, impute="router")
    win = router.win_matrix("p")
    np.testing.assert_allclose(local.result, np.clip(win[0, [1, 2]] + (0.0 - q[0]) / 2, 0, 1))
    with pytest.raises(FeedbackError, match="impute"):
        feedback_battles(events, decisions, router, impute="magic")


def test_the_default_imputes_each_other_model_given_the_observed_score(hashing_embedder):
    from langroute import Outcomes
    from langroute.feedback import FeedbackEvent

    # "strong" succeeds wherever "cheap" does, and on half the prompts cheap fails.
    cheap = np.array([1, 1, 1, 1, 0, 0, 0, 0], float)
    strong = np.array([1, 1, 1, 1, 1, 1, 0, 0], float)
    data = Outcomes(ids=[str(i) for i in range(8)], prompts=[f"q{i}" for i in range(8)],
                    models=("cheap", "strong"),
                    scores=np.stack([cheap, strong], axis=1), costs=None)
    fitted = SWRouter(hashing_embedder).fit(data)
    decisions = {"d": DecisionRecord("d", "p", "cheap", ("cheap", "strong"))}
    up = [FeedbackEvent("d", "score", "cheap", 1.0)]
    down = [FeedbackEvent("d", "score", "cheap", 0.0)]
    # Given cheap succeeded, strong surely did: a tie, not a cheap win against q=0.75.
    assert feedback_battles(up, decisions, fitted).result.tolist() == [0.5]
    assert feedback_battles(up, decisions, fitted, impute="quality").result.tolist() == [
        (1 + 1 - 0.75) / 2]
    # Given cheap failed, strong succeeded half the time: cheap wins a quarter (ties).
    assert feedback_battles(down, decisions, fitted).result.tolist() == [0.25]
    # Strong's score given: cheap's expected score from the line of cheap on strong.
    decisions["e"] = DecisionRecord("e", "p", "strong", ("cheap", "strong"))
    win = feedback_battles([FeedbackEvent("e", "score", "strong", 1.0)], decisions, fitted)
    assert win.result.tolist() == [pytest.approx((1 + 1 - 4 / 6) / 2)]


def test_feedback_moves_the_router_and_its_fit_version(router):
    store = open_feedback_store("memory://")
    ids = remember(store, 12)
    query = math_prompt(300)
    before = router.win_matrix(query)[1, 0]  # P(calc beats cheap) on maths
    version = router.fit_version_
    for decision_id in ids:
        record_feedback(store, decision_id, score=0.0, router=router, key="user_thumb")
    assert router.fit_version_ != version
    assert router.win_matrix(query)[1, 0] > before + 0.02
    assert [e.key for e in store.events()] == ["user_thumb"] * 12


def test_a_later_process_replays_the_store_into_its_router(tmp_path, hashing_embedder, router):
    url = f"sqlite:///{tmp_path / 'fb.db'}"
    with open_feedback_store(url) as store:
        ids = remember(store, 6)
        for i, decision_id in enumerate(ids):
            record_feedback(store, decision_id, score=float(i % 2), router=router)
        record_preference(store, ids[0], preferred="calc", router=router)
        record_preference(store, ids[1], preferred="poet", other="calc", tie=True, router=router)
    # "Later": a new connection and a router fitted on the same initial outcomes.
    later = SWRouter(hashing_embedder).fit(split_outcomes(20, seed=4))
    with open_feedback_store(url) as store:
        position = replay(store, later)
        assert position == 8
        queries = [math_prompt(300), "a poem about rain"]
        np.testing.assert_allclose(later.win_matrices(queries), router.win_matrices(queries),
                                   atol=1e-9)
        version = later.fit_version_
        assert replay(store, later, start=position) == position  # nothing new: no change
        assert later.fit_version_ == version
        record_feedback(store, ids[2], score=1.0, model="calc")  # stored only
        assert replay(store, later, start=position) == position + 1
        assert later.fit_version_ != version


def test_replay_over_redis_between_two_connections(redis_url, hashing_embedder, router):
    url = redis_url + f"?prefix=t{uuid.uuid4().hex}"
    with open_feedback_store(url) as writer, open_feedback_store(url) as reader:
        ids = remember(writer, 4)
        for decision_id in ids:
            record_feedback(writer, decision_id, score=0.0, router=router)
        later = SWRouter(hashing_embedder).fit(split_outcomes(20, seed=4))
        assert replay(reader, later) == 4
        np.testing.assert_allclose(later.win_matrix(math_prompt(300)),
                                   router.win_matrix(math_prompt(300)), atol=1e-9)


def test_bad_feedback_stores_nothing_and_leaves_the_router_alone(router):
    store = open_feedback_store("memory://")
    remember(store, 1)
    version = router.fit_version_
    with pytest.raises(UnknownDecisionError):
        record_feedback(store, "missing", score=1.0, router=router)
    for bad in (float("nan"), 1.01, -1.0):
        with pytest.raises(FeedbackError, match="score"):
            record_feedback(store, "d0", score=bad, router=router)
    with pytest.raises(FeedbackError, match="name the model"):
        record_preference(store, "d0", preferred="cheap", router=router)
    two_model = SWRouter(router.embedder).fit(split_outcomes(10).select_models(["cheap", "calc"]))
    with pytest.raises(FeedbackError, match="does not know"):
        record_feedback(store, "d0", score=1.0, model="poet", router=two_model)
    assert store.events() == [] and router.fit_version_ == version
    with pytest.raises(RouterConfigError, match="partial_fit"):
        record_feedback(store, "d0", score=1.0, router=ClusterRouter(router.embedder))
    assert store.events() == []


class FakeCaller:
    """Answers every call with the model's name; remembers emitted events."""

    def __init__(self):
        self.events = []

    def call(self, ref, purpose, messages=None):
        return Answer(raw=ref.name, text=f"answer from {ref.name}")

    async def acall(self, ref, purpose, messages=None):
        return self.call(ref, purpose, messages)

    def stamp(self, raw, record):
        return raw

    def emit(self, name, payload):
        self.events.append((name, payload))

    async def aemit(self, name, payload):
        self.emit(name, payload)


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_recorder_in_the_pipeline_then_feedback_by_decision_id(mode, router):
    store = open_feedback_store("memory://")
    policy = RoutingPolicy.build(router, list(MODELS), threshold=0.5)
    pipeline = CallPipeline(policy, {m: ModelRef(m) for m in MODELS},
                            recorders=[FeedbackRecorder(store)])
    caller = FakeCaller()
    context = CallContext(metadata={"agent": "grader"})
    request = RouteRequest(text=math_prompt(400), context=context)
    if mode == "sync":
        result = run_sync(pipeline.run(request), caller)
    else:
        result = await run_async(pipeline.run(request), caller)
    stored = store.decision(context.call_id)
    assert stored.model == result.model and stored.prompt == math_prompt(400)
    assert stored.candidates == policy.candidates
    assert stored.metadata["scope"] == context.scope == "grader"
    route = [p for name, p in caller.events if name == "langroute.route"]
    assert route[0]["decision_id"] == context.call_id
    version = router.fit_version_
    record_feedback(store, context.call_id, score=1.0, router=router)
    assert router.fit_version_ != version


def test_langsmith_style_feedback_maps_onto_a_decision(router):
    from langroute.feedback import record_langsmith_feedback

    store = open_feedback_store("memory://")
    remember(store, 1)
    run_metadata = {"langroute_decision_id": "d0", "langroute_model": "cheap"}
    event = record_langsmith_feedback(store, run_metadata, key="user_thumb", score=False,
                                      run_id="run-7", comment="wrong sum", router=router)
    assert (event.score, event.key, dict(event.metadata)) == (
        0.0, "user_thumb", {"langsmith_run_id": "run-7", "comment": "wrong sum"})
    with pytest.raises(FeedbackError, match="langroute_decision_id"):
        record_langsmith_feedback(store, {}, key="k", score=1.0)
    with pytest.raises(FeedbackError, match="score"):
        record_langsmith_feedback(store, run_metadata, key="stars", score=4)
    assert len(store.events()) == 1


def test_learning_under_the_policys_lock_while_other_threads_route(router):
    import threading

    store = open_feedback_store("memory://")
    ids = remember(store, 30)
    policy = RoutingPolicy.build(router, list(MODELS), threshold=0.5)
    errors, stop = [], threading.Event()

    def route():
        try:
            while not stop.is_set():
                policy.decide([math_prompt(500), "a poem about dawn"])
        except Exception as exc:  # recorded and asserted below
            errors.append(exc)

    worker = threading.Thread(target=route)
    worker.start()
    try:
        for decision_id in ids:
            record_feedback(store, decision_id, score=0.0, router=router, lock=policy._lock)
    finally:
        stop.set()
        worker.join()
    assert errors == [] and router.n_exemplars_ + router.n_feedback_ == 40 + 30
