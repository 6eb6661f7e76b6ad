"""Feedback through RoutedLLM: every call's decision is recorded in ``feedback_store`` and
``record_feedback`` / ``record_preference`` teach the router by ``decision_id``, as with
RoutedChatModel (one ``langroute.feedback.FeedbackBinding`` behind both)."""

from __future__ import annotations

import pytest
from langroute import RouterConfigError
from langroute._exceptions import FeedbackError, UnknownDecisionError
from langroute.feedback import open_feedback_store, replay
from llama_index.core.base.llms.types import ChatMessage
from tests.fake_openai._standard_suites import STRONG_MODEL, WEAK_MODEL, synthetic_outcomes

from llama_index.llms.langroute import RoutedLLM

HARD = "What is 17 * 23?"
EASY = "Hello"


def fitted_router():
    """A router of this test's own: feedback changes it (the suites' one is shared)."""
    from langroute import SWRouter
    from langroute.embeddings import HashingEmbedder

    return SWRouter(HashingEmbedder()).fit(synthetic_outcomes())


def user(text: str) -> list[ChatMessage]:
    return [ChatMessage(role="user", content=text)]


def routed_llm(strong, weak, router, **kwargs) -> RoutedLLM:
    return RoutedLLM({STRONG_MODEL: strong, WEAK_MODEL: weak}, router=router, threshold=0.7,
                     **kwargs)


def decision_id(response) -> str:
    return response.additional_kwargs["langroute"]["decision_id"]


def test_calls_are_recorded_and_feedback_teaches_the_router(fake, strong, weak, tmp_path):
    url = f"sqlite:///{tmp_path / 'feedback.db'}"
    router = fitted_router()
    llm = routed_llm(strong, weak, router, feedback_store=url)
    first = decision_id(llm.chat(user(EASY)))
    stored = llm.feedback.store().decision(first)
    assert (stored.prompt, stored.model) == (EASY, WEAK_MODEL)
    before, version = router.win_matrix(EASY)[0, 1], router.fit_version_
    for _ in range(5):  # the weak model keeps failing on greetings
        llm.record_feedback(decision_id(llm.chat(user(EASY))), score=0.0, key="thumb")
    assert router.fit_version_ != version
    assert router.win_matrix(EASY)[0, 1] > before  # P(strong beats weak) went up
    # Another process replays the same store into a router fitted like this one was.
    later = fitted_router()
    with open_feedback_store(url) as store:
        assert replay(store, later) == 5
    assert later.win_matrix(EASY)[0, 1] == pytest.approx(router.win_matrix(EASY)[0, 1])


async def test_streamed_async_and_completion_calls_are_recorded_too(fake, strong, weak):
    llm = routed_llm(strong, weak, fitted_router(), feedback_store="memory://")
    chunks = list(llm.stream_chat(user(HARD)))
    answer = await llm.achat(user(EASY))
    completion = llm.complete(HARD)
    ids = [decision_id(chunks[-1]), decision_id(answer),
           completion.additional_kwargs["langroute"]["decision_id"]]
    store = llm.feedback.store()
    assert [store.decision(i).model for i in ids] == [STRONG_MODEL, WEAK_MODEL, STRONG_MODEL]
    event = llm.record_preference(ids[1], preferred=STRONG_MODEL)
    assert (event.model, event.other, event.score) == (STRONG_MODEL, WEAK_MODEL, 1.0)


def test_feedback_errors_are_clear(fake, strong, weak):
    llm = routed_llm(strong, weak, fitted_router(), feedback_store="memory://")
    known = decision_id(llm.chat(user(EASY)))
    with pytest.raises(UnknownDecisionError):
        llm.record_feedback("not-a-call", score=1.0)
    with pytest.raises(FeedbackError, match="score"):
        llm.record_feedback(known, score=float("nan"))
    assert llm.feedback.store().events() == []  # nothing stored by the refused calls
    without = routed_llm(strong, weak, fitted_router())
    with pytest.raises(RouterConfigError, match="RoutedLLM records no decisions"):
        without.record_feedback(known, score=1.0)
    with pytest.raises(RouterConfigError, match="feedback_store must be"):
        routed_llm(strong, weak, fitted_router(), feedback_store=42)


def _feedback_of(event) -> tuple:
    return (event.kind, event.model, event.other, event.score, event.key)


async def test_async_feedback_teaches_the_router_as_sync_feedback_does(fake, strong, weak):
    synced, awaited = fitted_router(), fitted_router()
    sync_llm = routed_llm(strong, weak, synced, feedback_store="memory://")
    async_llm = routed_llm(strong, weak, awaited, feedback_store="memory://")
    before = awaited.win_matrix(EASY)[0, 1]
    sync_events, async_events = [], []
    for _ in range(3):
        sync_events.append(sync_llm.record_feedback(
            decision_id(sync_llm.chat(user(EASY))), score=0.0, key="thumb"))
        async_events.append(await async_llm.arecord_feedback(
            decision_id(await async_llm.achat(user(EASY))), score=0.0, key="thumb"))
    sync_events.append(sync_llm.record_preference(
        decision_id(sync_llm.chat(user(HARD))), preferred=WEAK_MODEL, tie=True))
    async_events.append(await async_llm.arecord_preference(
        decision_id(await async_llm.achat(user(HARD))), preferred=WEAK_MODEL, tie=True))
    assert list(map(_feedback_of, async_events)) == list(map(_feedback_of, sync_events))
    assert async_llm.feedback.store().events() == async_events  # stored as returned
    assert awaited.win_matrix(EASY)[0, 1] > before
    assert awaited.win_matrix(EASY) == pytest.approx(synced.win_matrix(EASY))
    assert awaited.win_matrix(HARD) == pytest.approx(synced.win_matrix(HARD))


async def test_async_feedback_errors_are_the_sync_ones(fake, strong, weak):
    llm = routed_llm(strong, weak, fitted_router(), feedback_store="memory://")
    known = decision_id(await llm.achat(user(EASY)))
    with pytest.raises(UnknownDecisionError):
        await llm.arecord_feedback("not-a-call", score=1.0)
    with pytest.raises(FeedbackError, match="score"):
        await llm.arecord_feedback(known, score=float("nan"))
    with pytest.raises(FeedbackError):
        await llm.arecord_preference(known, preferred="not-a-candidate")
    assert llm.feedback.store().events() == []  # nothing stored by the refused calls
    without = routed_llm(strong, weak, fitted_router())
    with pytest.raises(RouterConfigError, match="RoutedLLM records no decisions"):
        await without.arecord_feedback(known, score=1.0)


def test_a_router_without_partial_fit_learns_through_its_refitter(fake, strong, weak):
    from langroute import IRTRouter
    from langroute.embeddings import HashingEmbedder
    from langroute.feedback import FeedbackRefitter, RefitEvery
    from langroute.routers._calibration_scores import calibration_scores_disabled

    train = synthetic_outcomes()
    router = IRTRouter(HashingEmbedder(), random_state=0)
    with calibration_scores_disabled():
        router.fit(train)
    store = open_feedback_store("memory://")
    refitter = FeedbackRefitter(store, router, train, policy=RefitEvery(events=2))
    llm = routed_llm(strong, weak, router, refitter=refitter)
    version = router.fit_version_
    ids = [decision_id(llm.chat(user(EASY))) for _ in range(2)]
    assert [store.decision(i).prompt for i in ids] == [EASY, EASY]  # in refitter.store
    llm.record_feedback(ids[0], score=0.0)
    assert refitter.refits == 0 and router.fit_version_ == version
    llm.record_feedback(ids[1], score=0.0)
    assert refitter.refits == 1 and router.fit_version_ != version
    assert refitter.lock is llm.pipeline.policy.lock  # the swap took the routing lock
    with pytest.raises(RouterConfigError, match="another router"):
        routed_llm(strong, weak, fitted_router(), refitter=refitter)
