"""One router, a cost preference per caller (LangChain level): ``with_config`` metadata
``langroute_threshold`` picks the trade-off per call, and every decision is traced."""

from __future__ import annotations

import asyncio

import pytest

from langroute import RouterConfigError, SWRouter
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
    assert [(r["metadata"]["langroute_threshold_used"], r["metadata"]["lc_agent_name"],
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


def test_a_threshold_from_configurable_is_used_like_one_from_metadata(shared):
    """``with_config(configurable=...)`` is how LangChain users set per-agent settings."""
    routed, _, _ = shared
    careful = routed.with_config(configurable={"langroute_threshold": CAREFUL})
    thrifty = routed.with_config(configurable={"langroute_threshold": THRIFTY})
    assert [(r["threshold"], r["model"]) for r in (
        careful.invoke(HARD).response_metadata["langroute"],
        thrifty.invoke(HARD).response_metadata["langroute"])] == [(CAREFUL, STRONG),
                                                                  (THRIFTY, WEAK)]
    with pytest.raises(RouterConfigError, match="threshold must lie in"):
        routed.invoke(HARD, {"configurable": {"langroute_threshold": 1.5}})


def test_metadata_and_configurable_thresholds_that_differ_are_refused(shared):
    """Neither silently wins: the error names both."""
    routed, careful, _ = shared
    with pytest.raises(RouterConfigError, match=r"metadata langroute_threshold=0\.5 and "
                                                r"configurable langroute_threshold=0\.95"):
        careful.invoke(HARD, {"configurable": {"langroute_threshold": THRIFTY}})
    same = careful.invoke(HARD, {"configurable": {"langroute_threshold": CAREFUL}})
    assert same.response_metadata["langroute"]["threshold"] == CAREFUL


@pytest.mark.parametrize(("config", "key"), [
    ({"metadata": {"langroute_cost_weight": -5}}, "langroute_cost_weight"),
    ({"metadata": {"langroute_treshold": 0.9}}, "langroute_treshold"),
    ({"configurable": {"langroute_treshold": 0.9}}, "langroute_treshold"),
    # langroute writes it into run metadata, but it is no input
    ({"configurable": {"langroute_model": STRONG}}, "langroute_model"),
])
def test_an_unknown_langroute_key_is_refused(shared, config, key):
    routed, _, _ = shared
    with pytest.raises(RouterConfigError, match=rf"{key!r}.*'langroute_threshold'"):
        routed.invoke(HARD, config)


def test_keys_langroute_writes_are_inherited_without_error(router):
    """A routed model called inside another routed call sees the parent's keys in its run
    metadata; they are allowed, an unknown key beside them is not. None of them is an input:
    the inner model keeps its own threshold (the outer one's used to be read as its own)."""
    inner = RoutedChatModel(models={STRONG: ScriptedChatModel(model_name=STRONG),
                                    WEAK: ScriptedChatModel(model_name=WEAK)},
                            router=router, threshold=1.0)  # 1: the inner model goes weak
    outer = RoutedChatModel(models={STRONG: inner, WEAK: ScriptedChatModel(model_name=WEAK)},
                            router=router, threshold=0.0)  # 0: the inner model answers
    alone = inner.invoke(HARD).response_metadata["langroute"]
    assert (alone["threshold"], alone["model"]) == (1.0, WEAK)
    recorder = EventRecorder()
    message = outer.invoke(HARD, {"callbacks": [recorder]})
    assert message.content == f"answer from {WEAK}"
    decisions = [e["data"] for e in recorder.custom if e["name"] == "langroute.route"]
    assert [(d["threshold"], d["model"]) for d in decisions] == [(0.0, STRONG), (1.0, WEAK)]
    with pytest.raises(RouterConfigError, match="langroute_cost_weight"):
        outer.invoke(HARD, {"metadata": {"langroute_cost_weight": 1}})


def test_the_threshold_used_is_recorded_under_an_output_key_only():
    from langroute.pipeline._types import INPUT_KEYS, RECORD_KEYS, call_metadata

    assert "langroute_threshold_used" in RECORD_KEYS and "langroute_threshold" not in RECORD_KEYS
    inherited = {"langroute_model": STRONG, "langroute_threshold_used": 0.3}
    assert call_metadata(inherited) == inherited  # LangChain: inherited from a parent run
    with pytest.raises(RouterConfigError, match="langroute_threshold_used"):
        call_metadata(inherited, allowed=INPUT_KEYS)  # an adapter that writes none of them
    assert call_metadata({"langroute_threshold": 0.3}, allowed=INPUT_KEYS) == {
        "langroute_threshold": 0.3}


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_bad_threshold_is_refused_in_a_tool_loop_and_at_the_top_rung(shared, mode):
    """Only routed calls used to check it: a tool loop (its maker answers) or a call with no
    text (the top rung) ignored a bad per-call threshold without a word."""
    from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

    routed, _, _ = shared
    loop = [HumanMessage(EASY),
            AIMessage("", tool_calls=[{"name": "x", "args": {}, "id": "c1"}],
                      response_metadata={"langroute": {"model": STRONG}}),
            ToolMessage("1", tool_call_id="c1")]
    for messages in (loop, [HumanMessage("")]):
        config = {"metadata": {"langroute_threshold": "banana"}}
        with pytest.raises(RouterConfigError, match="langroute_threshold.*banana"):
            if mode == "sync":
                routed.invoke(messages, config)
            else:
                asyncio.run(routed.ainvoke(messages, config))


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_batch_checks_each_inputs_config_on_its_own(shared, mode):
    routed, _, _ = shared
    configs = [{"configurable": {"langroute_threshold": CAREFUL}},
               {"metadata": {"langroute_cost_weight": 1}},
               {"configurable": {"langroute_threshold": THRIFTY},
                "metadata": {"langroute_threshold": CAREFUL}},
               {"configurable": {"langroute_threshold": THRIFTY}}]
    inputs = [HARD] * len(configs)
    if mode == "sync":
        out = routed.batch(inputs, configs, return_exceptions=True)
    else:
        out = asyncio.run(routed.abatch(inputs, configs, return_exceptions=True))
    assert out[0].response_metadata["langroute"]["model"] == STRONG
    assert isinstance(out[1], RouterConfigError) and "langroute_cost_weight" in str(out[1])
    assert isinstance(out[2], RouterConfigError) and "configurable" in str(out[2])
    assert out[3].response_metadata["langroute"]["model"] == WEAK
