"""One chat-model run per call, a child of the routed run; the decision is a custom event."""

from __future__ import annotations

import json

import pytest
from langchain_core.callbacks import UsageMetadataCallbackHandler
from langchain_core.messages import HumanMessage

from langroute.chat_models import ROUTE_EVENT, RoutedChatModel

from .fakes import EASY, HARD, STRONG, WEAK, ScriptedChatModel

ONE_CALL_USAGE = {"input_tokens": 10, "output_tokens": 3, "total_tokens": 13}


def _invoke(routed, prompt, config):
    return routed.invoke(prompt, config)


def _stream(routed, prompt, config):
    return list(routed.stream(prompt, config))


async def _ainvoke(routed, prompt, config):
    return await routed.ainvoke(prompt, config)


async def _astream(routed, prompt, config):
    return [chunk async for chunk in routed.astream(prompt, config)]


SYNC_CALLS = [_invoke, _stream]
ASYNC_CALLS = [_ainvoke, _astream]


def _check_one_child_run(recorder, model):
    (routed_run,) = [s for s in recorder.chain_starts if s["name"] == "RoutedChatModel"]
    (chat_run,) = recorder.chat_starts
    assert routed_run["parent_run_id"] is None
    assert chat_run["parent_run_id"] == routed_run["run_id"]
    (event,) = recorder.custom
    assert event["name"] == ROUTE_EVENT and event["run_id"] == routed_run["run_id"]
    assert event["data"]["model"] == model
    assert json.loads(json.dumps(event["data"])) == event["data"]
    assert {"model", "candidates", "router", "threshold", "reason", "latency_ms",
            "estimated_cost_usd", "text_chars", "text_sha256", "levels"} <= set(event["data"])
    return routed_run, chat_run


@pytest.mark.parametrize("call", SYNC_CALLS)
def test_sync_calls_make_one_chat_model_run_under_the_routed_run(routed, recorder, call):
    call(routed, HARD, {"callbacks": [recorder]})
    _check_one_child_run(recorder, STRONG)


@pytest.mark.parametrize("call", ASYNC_CALLS)
async def test_async_calls_make_one_chat_model_run_under_the_routed_run(routed, recorder, call):
    await call(routed, EASY, {"callbacks": [recorder]})
    _check_one_child_run(recorder, WEAK)


@pytest.mark.parametrize("call", SYNC_CALLS)
def test_usage_is_counted_once(routed, call):
    usage = UsageMetadataCallbackHandler()
    call(routed, HARD, {"callbacks": [usage]})
    assert usage.usage_metadata == {STRONG: ONE_CALL_USAGE}


async def test_usage_is_counted_once_async(routed):
    usage = UsageMetadataCallbackHandler()
    await routed.ainvoke(EASY, {"callbacks": [usage]})
    [chunk async for chunk in routed.astream(EASY, {"callbacks": [usage]})]
    assert usage.usage_metadata == {WEAK: {k: 2 * v for k, v in ONE_CALL_USAGE.items()}}


def test_generate_is_itself_the_one_chat_model_run(routed, recorder):
    usage = UsageMetadataCallbackHandler()
    routed.generate([[HumanMessage(HARD)]], callbacks=[recorder, usage])
    (chat_run,) = recorder.chat_starts
    (event,) = recorder.custom
    assert event["run_id"] == chat_run["run_id"] and event["data"]["model"] == STRONG
    assert usage.usage_metadata == {STRONG: ONE_CALL_USAGE}


def test_caller_tags_and_metadata_reach_the_inner_run(routed, recorder):
    config = {"callbacks": [recorder], "tags": ["team-a"],
              "metadata": {"lc_agent_name": "researcher"}, "run_name": "my-router"}
    routed.invoke(EASY, config)
    (routed_run,) = recorder.chain_starts
    (chat_run,) = recorder.chat_starts
    assert routed_run["name"] == "my-router"
    for run in (routed_run, chat_run):
        assert "team-a" in run["tags"]
        assert run["metadata"]["lc_agent_name"] == "researcher"
    # LangSmith metadata of the routed run says where the call went
    assert routed_run["metadata"]["langroute_model"] == WEAK
    assert routed_run["metadata"]["langroute_threshold_used"] == routed.threshold
    assert "langroute_threshold" not in routed_run["metadata"]  # an input only
    assert chat_run["name"] != "my-router"


def test_the_models_own_callbacks_and_tags_apply(strong, weak, router, recorder):
    routed = RoutedChatModel(models={STRONG: strong, WEAK: weak}, router=router, threshold=0.7,
                             callbacks=[recorder], tags=["routed-model"])
    routed.invoke(HARD)
    assert recorder.chain_starts[0]["tags"] == ["routed-model"]
    assert len(recorder.chat_starts) == 1 and len(recorder.custom) == 1


async def test_astream_events_contains_the_decision(routed):
    events = [e async for e in routed.astream_events(HARD, version="v2")]
    custom = [e for e in events if e["event"] == "on_custom_event"]
    assert [(e["name"], e["data"]["model"]) for e in custom] == [
        (ROUTE_EVENT, STRONG), ("langroute.attempt", STRONG)]
    kinds = [e["event"] for e in events]
    assert kinds.count("on_chat_model_start") == 1
    assert kinds.index("on_custom_event") < kinds.index("on_chat_model_start")
    assert kinds.count("on_chat_model_stream") == 3


def test_stream_events_v3_routes_through_the_models_stream(routed):
    stream = routed.stream_events(EASY, version="v3")
    list(stream)
    assert stream.output.response_metadata["langroute"]["model"] == WEAK


def test_failed_call_is_still_traced(router, recorder):
    boom = TimeoutError("slow provider")
    routed = RoutedChatModel(
        models={STRONG: ScriptedChatModel(model_name=STRONG, error=boom),
                WEAK: ScriptedChatModel(model_name=WEAK)},
        router=router, threshold=0.7, max_retries=0)
    with pytest.raises(TimeoutError):
        routed.invoke(HARD, {"callbacks": [recorder]})
    assert [e["data"]["model"] for e in recorder.custom] == [STRONG]
    assert recorder.chain_errors == [boom]
