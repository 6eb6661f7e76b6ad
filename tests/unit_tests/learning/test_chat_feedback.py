"""Feedback through RoutedChatModel: every call's decision is recorded in ``feedback_store``,
and ``record_feedback`` / ``record_preference`` teach the router by ``decision_id``."""

from __future__ import annotations

import asyncio
import threading

import pytest

from langroute import SWRouter
from langroute._exceptions import FeedbackError, RouterConfigError, UnknownDecisionError
from langroute.chat_models import RoutedChatModel
from langroute.embeddings import HashingEmbedder
from langroute.feedback import MemoryFeedbackStore, open_feedback_store, replay
from langroute.routers._calibration_scores import calibration_scores_disabled

from ..chat_models.fakes import (
    EASY,
    HARD,
    STRONG,
    THRESHOLD,
    WEAK,
    ScriptedChatModel,
    synthetic_outcomes,
)


def fitted_router() -> SWRouter:
    return SWRouter(HashingEmbedder(dimension=256, cache_dir=False)).fit(synthetic_outcomes())


def routed_model(router, store) -> RoutedChatModel:
    return RoutedChatModel(models={STRONG: ScriptedChatModel(model_name=STRONG),
                                   WEAK: ScriptedChatModel(model_name=WEAK)},
                           router=router, threshold=THRESHOLD, feedback_store=store)


def test_every_call_is_recorded_and_feedback_teaches_the_router(tmp_path):
    url = f"sqlite:///{tmp_path / 'feedback.db'}"
    router = fitted_router()
    model = routed_model(router, url)
    answer = model.invoke(EASY)
    decision_id = answer.response_metadata["langroute"]["decision_id"]
    stored = model.feedback.store().decision(decision_id)
    assert (stored.prompt, stored.model) == (EASY, WEAK)
    before, version = router.win_matrix(EASY)[0, 1], router.fit_version_
    for _ in range(5):  # the weak model keeps failing on this kind of prompt
        decision_id = model.invoke(EASY).response_metadata["langroute"]["decision_id"]
        model.record_feedback(decision_id, score=0.0, key="user_thumb")
    assert router.fit_version_ != version
    assert router.win_matrix(EASY)[0, 1] > before  # P(strong beats weak) went up
    # A process started later replays the same store into its own router.
    later = fitted_router()
    with open_feedback_store(url) as store:
        assert replay(store, later) == 5
    assert later.win_matrix(EASY)[0, 1] == pytest.approx(router.win_matrix(EASY)[0, 1])


async def test_async_and_streamed_calls_are_recorded_too():
    model = routed_model(fitted_router(), "memory://")
    answer = await model.ainvoke(HARD)
    chunks = list(model.stream(HARD))
    ids = [answer.response_metadata["langroute"]["decision_id"],
           chunks[0].response_metadata["langroute"]["decision_id"]]
    store = model.feedback.store()
    assert [store.decision(i).model for i in ids] == [STRONG, STRONG]
    event = model.record_preference(ids[0], preferred=WEAK, tie=True)
    assert (event.model, event.other, event.score) == (WEAK, STRONG, 0.5)


def test_feedback_errors_are_clear():
    model = routed_model(fitted_router(), "memory://")
    decision_id = model.invoke(EASY).response_metadata["langroute"]["decision_id"]
    with pytest.raises(UnknownDecisionError):
        model.record_feedback("not-a-call", score=1.0)
    with pytest.raises(FeedbackError, match="score"):
        model.record_feedback(decision_id, score=2.0)
    without = routed_model(fitted_router(), None)
    with pytest.raises(RouterConfigError, match="feedback_store="):
        without.record_feedback(decision_id, score=1.0)
    with pytest.raises(RouterConfigError, match="feedback_store must be"):
        routed_model(fitted_router(), 42)


def _feedback_of(event) -> tuple:
    return (event.kind, event.model, event.other, event.score, event.key)


async def test_async_feedback_teaches_the_router_as_sync_feedback_does():
    synced, awaited = fitted_router(), fitted_router()
    sync_model, async_model = routed_model(synced, "memory://"), routed_model(awaited, "memory://")
    before = awaited.win_matrix(EASY)[0, 1]
    sync_events, async_events = [], []
    for _ in range(3):
        decision_id = sync_model.invoke(EASY).response_metadata["langroute"]["decision_id"]
        sync_events.append(sync_model.record_feedback(decision_id, score=0.0, key="thumb"))
        answer = await async_model.ainvoke(EASY)
        async_events.append(await async_model.arecord_feedback(
            answer.response_metadata["langroute"]["decision_id"], score=0.0, key="thumb"))
    decision_id = sync_model.invoke(HARD).response_metadata["langroute"]["decision_id"]
    sync_events.append(sync_model.record_preference(decision_id, preferred=WEAK, tie=True))
    answer = await async_model.ainvoke(HARD)
    async_events.append(await async_model.arecord_preference(
        answer.response_metadata["langroute"]["decision_id"], preferred=WEAK, tie=True))
    assert list(map(_feedback_of, async_events)) == list(map(_feedback_of, sync_events))
    assert async_model.feedback.store().events(0) == async_events  # stored as returned
    assert awaited.win_matrix(EASY)[0, 1] > before
    assert awaited.win_matrix(EASY) == pytest.approx(synced.win_matrix(EASY))
    assert awaited.win_matrix(HARD) == pytest.approx(synced.win_matrix(HARD))


async def test_async_feedback_errors_are_the_sync_ones():
    model = routed_model(fitted_router(), "memory://")
    decision_id = (await model.ainvoke(EASY)).response_metadata["langroute"]["decision_id"]
    with pytest.raises(UnknownDecisionError):
        await model.arecord_feedback("not-a-call", score=1.0)
    with pytest.raises(FeedbackError, match="score"):
        await model.arecord_feedback(decision_id, score=2.0)
    with pytest.raises(UnknownDecisionError):
        await model.arecord_preference("not-a-call", preferred=STRONG)
    assert model.feedback.store().events(0) == []  # refused before anything was stored
    without = routed_model(fitted_router(), None)
    with pytest.raises(RouterConfigError, match="feedback_store="):
        await without.arecord_feedback(decision_id, score=1.0)


class HeldStore(MemoryFeedbackStore):
    """A store whose feedback write is slow: it holds until the test releases it."""

    def __init__(self) -> None:
        super().__init__()
        self.writing, self.release = threading.Event(), threading.Event()

    def _append_event(self, event) -> None:
        self.writing.set()
        if not self.release.wait(timeout=5):
            raise TimeoutError("nobody released the write: the event loop was blocked")
        super()._append_event(event)


async def test_async_feedback_does_not_block_the_event_loop():
    store = HeldStore()
    model = routed_model(fitted_router(), store)
    decision_id = (await model.ainvoke(EASY)).response_metadata["langroute"]["decision_id"]
    task = asyncio.create_task(model.arecord_feedback(decision_id, score=0.0))

    async def other_task() -> None:  # progresses while the write is held
        while not store.writing.is_set():
            await asyncio.sleep(0.005)
        assert not task.done()
        store.release.set()

    await asyncio.wait_for(other_task(), timeout=5)
    event = await task
    assert store.events(0) == [event]


def irt_model():
    """An IRT-routed model (no partial_fit) and its training data."""
    from langroute import IRTRouter

    train = synthetic_outcomes()
    router = IRTRouter(HashingEmbedder(dimension=256, cache_dir=False), random_state=0)
    with calibration_scores_disabled():
        router.fit(train)
    return router, train


def test_a_router_without_partial_fit_learns_through_its_refitter():
    from langroute.feedback import FeedbackRefitter, RefitEvery

    router, train = irt_model()
    store = open_feedback_store("memory://")
    refitter = FeedbackRefitter(store, router, train, policy=RefitEvery(events=3))
    model = RoutedChatModel(models={STRONG: ScriptedChatModel(model_name=STRONG),
                                    WEAK: ScriptedChatModel(model_name=WEAK)},
                            router=router, threshold=THRESHOLD, refitter=refitter)
    version = router.fit_version_
    ids = [model.invoke(EASY).response_metadata["langroute"]["decision_id"] for _ in range(3)]
    assert [store.decision(i).prompt for i in ids] == [EASY] * 3  # recorded in refitter.store
    model.record_feedback(ids[0], score=0.0)
    model.record_feedback(ids[1], score=0.0)
    assert refitter.refits == 0 and router.fit_version_ == version  # not due yet
    model.record_feedback(ids[2], score=0.0)
    assert refitter.refits == 1 and router.fit_version_ != version
    assert refitter.lock is model.pipeline.policy.lock  # the swap took the routing lock
    assert len(store.events(0)) == 3
    # A preference cannot become an Outcomes row: refused before it is stored.
    with pytest.raises(FeedbackError, match="preferences='skip'"):
        model.record_preference(ids[0], preferred=STRONG)
    assert len(store.events(0)) == 3


def refitted_model(refitter, router) -> RoutedChatModel:
    return RoutedChatModel(models={STRONG: ScriptedChatModel(model_name=STRONG),
                                   WEAK: ScriptedChatModel(model_name=WEAK)},
                           router=router, threshold=THRESHOLD, refitter=refitter)


def test_a_preference_from_another_writer_does_not_fail_later_feedback():
    """Used to: every later record_feedback stored its event, then raised FeedbackError."""
    from langroute.feedback import FeedbackRefitter, RefitEvery

    router, train = irt_model()
    store = open_feedback_store("memory://")
    refitter = FeedbackRefitter(store, router, train, policy=RefitEvery(events=1))
    model = refitted_model(refitter, router)
    ids = [model.invoke(EASY).response_metadata["langroute"]["decision_id"] for _ in range(3)]
    store.add_preference(ids[0], preferred=STRONG)  # e.g. a job writing to the shared store
    with pytest.warns(RuntimeWarning, match="preference"):
        model.record_feedback(ids[1], score=0.0)
    model.record_feedback(ids[2], score=0.0)
    assert refitter.refits == 2 and refitter.skipped_preferences == 1
    assert len(store.events(0)) == 3


def test_a_failed_refit_says_the_feedback_was_stored(monkeypatch):
    """A caller retrying on a FeedbackError would store the event twice: a failure after
    storing is a RefitError carrying the stored event, and the next poll learns it."""
    from langroute import RefitError
    from langroute.feedback import FeedbackRefitter, RefitEvery

    router, train = irt_model()
    store = open_feedback_store("memory://")
    refitter = FeedbackRefitter(store, router, train, policy=RefitEvery(events=1))
    model = refitted_model(refitter, router)
    ids = [model.invoke(EASY).response_metadata["langroute"]["decision_id"] for _ in range(2)]

    def broken_clone():
        raise MemoryError("no room to fit")

    monkeypatch.setattr(router, "clone", broken_clone)
    with pytest.raises(RefitError, match="was stored") as failed:
        model.record_feedback(ids[0], score=0.0)
    assert not isinstance(failed.value, FeedbackError)
    assert failed.value.event == store.events(0)[0] and refitter.refits == 0
    monkeypatch.undo()
    model.record_feedback(ids[1], score=0.0)
    assert refitter.refits == 1 and refitter.state().new_events == 0
    assert [e.decision_id for e in store.events(0)] == ids  # each stored once


def test_refitter_misuse_is_a_clear_error():
    from langroute.feedback import FeedbackRefitter

    router, train = irt_model()
    store = open_feedback_store("memory://")
    models = {STRONG: ScriptedChatModel(model_name=STRONG),
              WEAK: ScriptedChatModel(model_name=WEAK)}
    with pytest.raises(RouterConfigError, match="no partial_fit"):
        RoutedChatModel(models=models, router=router, threshold=THRESHOLD,
                        feedback_store=store).record_feedback("x", score=1.0)
    other, _ = irt_model()
    with pytest.raises(RouterConfigError, match="another router"):
        RoutedChatModel(models=models, router=router, threshold=THRESHOLD,
                        refitter=FeedbackRefitter(store, other, train))
    with pytest.raises(RouterConfigError, match="refitter.store"):
        RoutedChatModel(models=models, router=router, threshold=THRESHOLD,
                        feedback_store="memory://",
                        refitter=FeedbackRefitter(store, router, train))
    with pytest.raises(RouterConfigError, match="FeedbackRefitter"):
        RoutedChatModel(models=models, router=router, threshold=THRESHOLD,
                        refitter="every day")


def test_decisions_hidden_by_a_chain_are_collected_for_feedback():
    """An output parser drops the answer's metadata, and with it the decision id."""
    from langchain_core.output_parsers import StrOutputParser

    from langroute import collect_decisions

    model = routed_model(fitted_router(), "memory://")
    chain = model | StrOutputParser()
    with collect_decisions() as made:
        assert chain.invoke(EASY) == f"answer from {WEAK}"
        with collect_decisions() as inner:  # blocks nest: each sees what is decided inside
            chain.batch([HARD, EASY])  # a thread pool that copies the caller's context
    assert made[0]["model"] == WEAK  # the batch's two may be decided in either order
    assert sorted(d["model"] for d in inner) == sorted([STRONG, WEAK]) and inner == made[1:]
    assert len({d["decision_id"] for d in made}) == 3
    model.record_feedback(made[0]["decision_id"], score=1.0)  # the id the store knows
    assert chain.invoke(EASY) and len(made) == 3  # nothing is collected after the block


async def test_async_calls_in_tasks_are_collected():
    from langroute import collect_decisions

    model = routed_model(fitted_router(), "memory://")
    with collect_decisions() as made:
        answers = await asyncio.gather(model.ainvoke(EASY), model.ainvoke(HARD))
    assert sorted(d["decision_id"] for d in made) == sorted(
        a.response_metadata["langroute"]["decision_id"] for a in answers)
