"""One router, a cost preference per caller (LangChain level): ``with_config`` metadata
``langroute_threshold`` picks the trade-off per call, and every decision is traced."""

from __future__ import annotations

import pytest

from langroute import SWRouter
from langroute.chat_models import RoutedChatModel
from langroute.embeddings import HashingEmbedder

from ..chat_models.fakes import (
    EASY,
    HARD,
    STRONG,
    THRESHOLD,
    WEAK,
    EventRecorder,
    ScriptedChatModel,
    synthetic_outcomes,
)

CAREFUL, THRIFTY = 0.5, 0.95  # P(strong wins) on HARD is ~0.84: between the two


@pytest.fixture(scope="module")
def router():
    return SWRouter(HashingEmbedder(dimension=256, cache_dir=False)).fit(synthetic_outcomes())


@pytest.fixture
def shared(router):
    """Two agents built on ONE RoutedChatModel (so one router), each with its preference."""
    routed = RoutedChatModel(models={STRONG: ScriptedChatModel(model_name=STRONG),
                                     WEAK: ScriptedChatModel(model_name=WEAK)},
                             router=router, threshold=THRESHOLD)
    careful = routed.with_config(metadata={"langroute_threshold": CAREFUL,
                                           "lc_agent_name": "reviewer"})
    thrifty = routed.with_config(metadata={"langroute_threshold": THRIFTY,
                                           "lc_agent_name": "summariser"})
    return routed, careful, thrifty


def test_two_callers_sharing_a_router_get_different_models(shared):
    routed, careful, thrifty = shared
    strong_score = routed.route(HARD).strong_score
    assert CAREFUL < strong_score < THRIFTY
    assert careful.invoke(HARD).response_metadata["langroute"]["model"] == STRONG
    assert thrifty.invoke(HARD).response_metadata["langroute"]["model"] == WEAK
    # The model's own threshold still applies to callers that set none.
    assert routed.invoke(HARD).response_metadata["langroute"]["threshold"] == THRESHOLD
    # Both are cheap enough to agree where the strong model is not needed.
    assert thrifty.invoke(EASY).response_metadata["langroute"]["model"] == WEAK


def test_each_decision_is_traced_with_its_callers_threshold(shared):
    _, careful, thrifty = shared
    recorder = EventRecorder()
    careful.invoke(HARD, {"callbacks": [recorder]})
    thrifty.invoke(HARD, {"callbacks": [recorder]})
    events = [e["data"] for e in recorder.custom]
    assert [(e["threshold"], e["model"]) for e in events] == [(CAREFUL, STRONG), (THRIFTY, WEAK)]
    assert events[0]["decision_id"] != events[1]["decision_id"]
    # LangSmith sees the threshold actually used, and the caller's agent, on the routed run.
    routed_runs = [run for run in recorder.chain_starts
                   if (run["metadata"] or {}).get("langroute_model")]
    assert [(r["metadata"]["langroute_threshold"], r["metadata"]["lc_agent_name"],
             r["metadata"]["langroute_model"]) for r in routed_runs] == [
        (CAREFUL, "reviewer", STRONG), (THRIFTY, "summariser", WEAK)]


async def test_async_and_batched_callers_keep_their_own_preference(shared):
    routed, careful, thrifty = shared
    assert (await careful.ainvoke(HARD)).response_metadata["langroute"]["model"] == STRONG
    assert (await thrifty.ainvoke(HARD)).response_metadata["langroute"]["model"] == WEAK
    mixed = await routed.abatch(
        [HARD, HARD], [{"metadata": {"langroute_threshold": CAREFUL}},
                       {"metadata": {"langroute_threshold": THRIFTY}}])
    assert [m.response_metadata["langroute"]["model"] for m in mixed] == [STRONG, WEAK]


@pytest.mark.parametrize("bad", [1.5, -0.1, float("nan"), "high"])
def test_a_bad_per_call_threshold_is_a_clear_error(shared, bad):
    routed, _, _ = shared
    with pytest.raises(ValueError, match="threshold"):
        routed.with_config(metadata={"langroute_threshold": bad}).invoke(HARD)


async def test_a_bad_per_call_threshold_fails_only_its_own_input_in_a_batch(shared):
    """The batch's one decide() used to check every threshold at once: one bad value failed
    every input, even with return_exceptions=True."""
    routed, _, _ = shared
    configs = [{"metadata": {"langroute_threshold": CAREFUL}},
               {"metadata": {"langroute_threshold": 2.0}}, {}]
    for out in (routed.batch([HARD, HARD, EASY], configs, return_exceptions=True),
                await routed.abatch([HARD, HARD, EASY], configs, return_exceptions=True)):
        assert isinstance(out[1], ValueError) and "threshold" in str(out[1])
        assert [m.response_metadata["langroute"]["model"] for m in (out[0], out[2])] == [
            STRONG, WEAK]
    with pytest.raises(ValueError, match="threshold"):  # without it, raised as before
        routed.batch([HARD, HARD, EASY], configs)
