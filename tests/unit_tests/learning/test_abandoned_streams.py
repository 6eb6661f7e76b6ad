"""A stream hands out its decision id with the first chunk, so the decision is recorded even
when the consumer stops reading (feedback on a stopped answer is the common case)."""

from __future__ import annotations

from langroute.chat_models import RoutedChatModel

from ..chat_models.fakes import HARD, STRONG, WEAK, ScriptedChatModel
from .test_chat_feedback import fitted_router, routed_model


def _decision_id(chunk) -> str:
    return chunk.response_metadata["langroute"]["decision_id"]


def test_a_closed_stream_is_recorded_as_abandoned():
    model = routed_model(fitted_router(), "memory://")
    stream = model.stream(HARD)
    decision_id = _decision_id(next(stream))
    stream.close()  # the user hit "stop"
    assert model.feedback.store().decision(decision_id).model == STRONG
    model.record_feedback(decision_id, score=0.0)


async def test_an_async_stream_closed_by_its_consumer_is_recorded_at_once():
    model = routed_model(fitted_router(), "memory://")
    stream = model.astream(HARD)
    decision_id = _decision_id(await anext(stream))
    await stream.aclose()
    assert model.feedback.store().decision(decision_id).model == STRONG
    model.record_feedback(decision_id, score=0.0)


def test_an_abandoned_fallback_stream_records_the_model_that_was_streaming():
    """The decided model failed before its first chunk; the fallback was answering."""
    strong = ScriptedChatModel(model_name=STRONG, errors=[ConnectionError("down")])
    model = RoutedChatModel(models={STRONG: strong, WEAK: ScriptedChatModel(model_name=WEAK)},
                            router=fitted_router(), threshold=0.0, max_retries=0,
                            fallback="cheaper", feedback_store="memory://")
    stream = model.stream(HARD)
    decision_id = _decision_id(next(stream))
    stream.close()
    assert model.feedback.store().decision(decision_id).model == WEAK
