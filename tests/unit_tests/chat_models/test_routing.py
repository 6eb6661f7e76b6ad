"""Every entry point routes: hard prompts reach the strong model, easy ones the weak one."""

from __future__ import annotations

import json

import numpy as np
import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage

from langroute import Outcomes, SWRouter
from langroute.chat_models import RoutedChatModel, RoutingDecision
from langroute.embeddings import HashingEmbedder
from langroute.pipeline import Attempt

from .fakes import (
    CHAT,
    EASY,
    HARD,
    MATHS,
    STRONG,
    THRESHOLD,
    WEAK,
    ScriptedChatModel,
    synthetic_outcomes,
)


def test_is_a_chat_model_that_keeps_the_candidates(routed, strong, weak):
    assert isinstance(routed, BaseChatModel)
    assert routed.models[STRONG] is strong and routed.models[WEAK] is weak


def test_the_router_separates_hard_from_easy_around_the_threshold(routed):
    hard, easy = routed.route(HARD), routed.route(EASY)
    assert hard.strong_score > THRESHOLD > easy.strong_score
    assert (hard.model, easy.model) == (STRONG, WEAK)
    assert hard.reason == easy.reason == "routed"


def test_invoke_routes_and_carries_the_decision(routed, strong, weak):
    hard = routed.invoke(HARD)
    easy = routed.invoke([SystemMessage("be brief"), HumanMessage(EASY)])
    assert isinstance(hard, AIMessage)
    assert hard.content == f"answer from {STRONG}"
    assert easy.content == f"answer from {WEAK}"
    assert len(strong.received) == 1 and len(weak.received) == 1
    meta = hard.response_metadata["langroute"]
    assert meta["model"] == STRONG
    assert meta["router"] == "sw" and meta["threshold"] == THRESHOLD
    assert meta["strong_score"] > THRESHOLD and meta["latency_ms"] >= 0
    # the inner model's own metadata and usage are untouched
    assert hard.response_metadata["model_name"] == STRONG
    assert hard.usage_metadata == {"input_tokens": 10, "output_tokens": 3, "total_tokens": 13}
    json.dumps(meta)


async def test_ainvoke_routes(routed, strong, weak):
    assert (await routed.ainvoke(HARD)).content == f"answer from {STRONG}"
    assert (await routed.ainvoke(EASY)).content == f"answer from {WEAK}"


def test_stream_yields_the_chosen_models_chunks_as_they_come(routed, strong, weak):
    stream = routed.stream(HARD)
    first = next(stream)
    assert strong.chunks_produced == 1  # the rest is not produced yet: a real stream
    rest = list(stream)
    # the closing chunk adds no text: it brings the settled attempts
    assert [c.content for c in [first, *rest]] == ["answer", " from", f" {STRONG}", ""]
    assert weak.chunks_produced == 0
    full = first
    for chunk in rest:
        full = full + chunk
    assert isinstance(full, AIMessageChunk)
    assert full.content == f"answer from {STRONG}"
    assert full.response_metadata["langroute"]["model"] == STRONG
    assert ["langroute" in c.response_metadata for c in [first, *rest]] == [
        True, False, False, True]
    assert full.usage_metadata["total_tokens"] == 13


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_an_explicit_stream_false_keyword_is_not_overridden(routed, weak, mode):
    """``stream(..., stream=False)`` asks for no streaming, as BaseChatModel's own rule reads
    it; the routed model used to force ``stream=True`` over it."""
    import asyncio

    async def collect():
        return [chunk async for chunk in routed.astream(EASY, stream=False)]

    chunks = (list(routed.stream(EASY, stream=False)) if mode == "sync"
              else asyncio.run(collect()))
    assert len(chunks) == 1 and chunks[0].content == f"answer from {WEAK}"
    assert weak.chunks_produced == 0


async def test_astream_routes_and_streams(routed, weak):
    chunks = [chunk async for chunk in routed.astream(EASY)]
    assert "".join(c.content for c in chunks) == f"answer from {WEAK}"
    assert len(chunks) == 4 and weak.chunks_produced == 3  # and the closing chunk
    assert chunks[-1].chunk_position == "last"


def _attempt_of(message):
    return {k: message.response_metadata["langroute"]["attempts"][-1][k]
            for k in ("outcome", "usage", "latency_ms")}


#: The latency an attempt still in flight has in the record the first chunk is stamped with.
OPENING_LATENCY = Attempt("model", "answer").to_event()["latency_ms"]


def _settled_latency(latency_ms) -> bool:
    return latency_ms is not None and latency_ms != OPENING_LATENCY


def test_a_merged_stream_ends_with_the_settled_record(routed):
    """Merged chunks must carry the attempts as invoke reports them (usage known, latency
    measured), not the snapshot taken when the first chunk went out."""
    chunks = list(routed.stream(HARD))
    full = chunks[0]
    for chunk in chunks[1:]:
        full = full + chunk
    whole = routed.invoke(HARD)
    record = full.response_metadata["langroute"]
    assert record["model"] == record["answered_by"] == STRONG
    assert len(record["attempts"]) == 1
    settled = _attempt_of(full)
    assert settled["usage"] == _attempt_of(whole)["usage"] is not None
    assert _settled_latency(settled["latency_ms"])


async def test_a_merged_astream_ends_with_the_settled_record(routed):
    chunks = [chunk async for chunk in routed.astream(EASY)]
    full = chunks[0]
    for chunk in chunks[1:]:
        full = full + chunk
    assert full.response_metadata["langroute"]["decision_id"] == (
        chunks[0].response_metadata["langroute"]["decision_id"])
    assert _attempt_of(full)["usage"] is not None
    assert _settled_latency(_attempt_of(full)["latency_ms"])


def test_stream_events_v3_ends_with_the_settled_record(routed):
    stream = routed.stream_events(EASY, version="v3")
    list(stream)
    record = stream.output.response_metadata["langroute"]
    assert record["model"] == WEAK
    assert record["attempts"][-1]["usage"] is not None
    assert _settled_latency(record["attempts"][-1]["latency_ms"])


def test_batch_routes_each_input(routed):
    answers = routed.batch([HARD, EASY, HARD])
    assert [a.response_metadata["langroute"]["model"] for a in answers] == [STRONG, WEAK, STRONG]


async def test_abatch_routes_each_input(routed):
    answers = await routed.abatch([EASY, HARD])
    assert [a.content for a in answers] == [f"answer from {WEAK}", f"answer from {STRONG}"]


@pytest.mark.parametrize(("threshold", "expected"), [(0.0, STRONG), (1.0, WEAK)])
def test_threshold_extremes(strong, weak, router, threshold, expected):
    routed = RoutedChatModel(models={STRONG: strong, WEAK: weak}, router=router,
                             threshold=threshold)
    for prompt in (HARD, EASY):
        assert routed.invoke(prompt).response_metadata["langroute"]["model"] == expected


def test_generate_routes_too(routed, strong, weak):
    result = routed.generate([[HumanMessage(HARD)], [HumanMessage(EASY)]])
    messages = [generations[0].message for generations in result.generations]
    assert [m.content for m in messages] == [f"answer from {STRONG}", f"answer from {WEAK}"]
    assert messages[1].response_metadata["langroute"]["model"] == WEAK


async def test_agenerate_routes_too(routed):
    result = await routed.agenerate([[HumanMessage(HARD)]])
    assert result.generations[0][0].message.response_metadata["langroute"]["model"] == STRONG


def test_route_decides_without_calling_any_model(routed, strong, weak):
    decision = routed.route([HumanMessage(HARD)])
    assert isinstance(decision, RoutingDecision)
    assert strong.received == [] and weak.received == []
    text = str(decision)
    assert text.startswith(f"-> {STRONG} (routed; sw router, threshold {THRESHOLD:g}")
    assert f"{WEAK}: a pricier model wins with P=" in text and "-> escalate" in text
    easy = str(routed.route(EASY))
    assert f"{WEAK}: a pricier model wins" in easy and "-> accept" in easy


def test_the_trace_holds_the_text_length_and_hash_not_the_text(routed, strong, weak, router):
    event = routed.route(HARD).to_event()
    assert event["text_chars"] == len(HARD) and len(event["text_sha256"]) == 64
    assert HARD not in json.dumps(event)
    verbose = RoutedChatModel(models={STRONG: strong, WEAK: weak}, router=router,
                              threshold=THRESHOLD, trace_prompt=True)
    assert verbose.route(HARD).to_event()["text"] == HARD


def test_routes_on_the_last_user_text_and_passes_other_parts_unchanged(routed, strong):
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    content = [{"type": "text", "text": HARD}, image]
    messages = [HumanMessage(EASY), AIMessage("hi"), HumanMessage(content=content)]
    assert routed.route(messages).text_chars == len(HARD)
    routed.invoke(messages)
    assert strong.received[-1][-1].content == content


def test_text_blocks_around_an_image_are_routed_as_separate_lines(routed):
    """They were joined with nothing ("Translate this:into French"), as BaseMessage.text
    joins a stream's fragments; the LlamaIndex adapter joins them with newlines."""
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    content = [{"type": "text", "text": "Translate this:"}, image,
               {"type": "text", "text": "into French"}, "please"]
    verbose = routed.model_copy(update={"trace_prompt": True})
    assert verbose.route([HumanMessage(content=content)]).to_event()["text"] == (
        "Translate this:\ninto French\nplease")


def test_single_candidate_is_always_chosen(strong, router):
    routed = RoutedChatModel(models={STRONG: strong}, router=router, threshold=0.99)
    decision = routed.route(EASY)
    assert decision.model == STRONG and decision.reason == "single candidate"
    assert decision.strong_score is None and decision.levels is None
    assert routed.invoke(EASY).content == f"answer from {STRONG}"


def test_costs_given_explicitly_order_the_ladder(strong, weak, router):
    cheap_weak = RoutedChatModel(models={STRONG: strong, WEAK: weak}, router=router,
                                 threshold=THRESHOLD, costs={STRONG: 0.01, WEAK: 0.001})
    assert cheap_weak.route(EASY).rungs == (WEAK, STRONG)
    assert cheap_weak.route(EASY).estimated_cost_usd == 0.001
    # priced above a model that is better on the training data, "weak" is never worth calling
    dominated = RoutedChatModel(models={STRONG: strong, WEAK: weak}, router=router,
                                threshold=1.0, costs={STRONG: 0.001, WEAK: 0.01})
    decision = dominated.route(EASY)
    assert decision.rungs == (STRONG,)
    assert (decision.model, decision.reason) == (STRONG, "single candidate")


def test_standard_params_and_unknown_kwargs_reach_the_chosen_model(strong, weak, router):
    routed = RoutedChatModel(models={STRONG: strong, WEAK: weak}, router=router,
                             threshold=THRESHOLD, temperature=0.2, stop=["END"])
    routed.invoke(HARD, seed=7)
    assert strong.received_kwargs[-1] == {"temperature": 0.2, "seed": 7, "stop": ["END"]}
    routed.invoke(HARD, stop=["STOP"], temperature=0.9)
    assert strong.received_kwargs[-1] == {"temperature": 0.9, "stop": ["STOP"]}
    ls = routed._get_ls_params(model="override")
    assert ls["ls_model_name"] == "override" and ls["ls_provider"] == "langroute"
    assert routed._get_ls_params()["ls_model_name"] == f"{STRONG}|{WEAK}"


def test_reassigning_the_threshold_takes_effect(routed):
    assert routed.route(HARD).model == STRONG
    routed.threshold = 1.0
    assert routed.route(HARD).model == WEAK


def test_streaming_flag_makes_the_chosen_model_stream_under_invoke(strong, weak, router):
    tokens = []

    class Collect(BaseCallbackHandler):
        def on_llm_new_token(self, token, **kwargs):
            tokens.append(token)

    plain = RoutedChatModel(models={STRONG: strong, WEAK: weak}, router=router,
                            threshold=THRESHOLD)
    plain.invoke(HARD, {"callbacks": [Collect()]})
    assert tokens == []
    streaming = plain.model_copy(update={"streaming": True})
    answer = streaming.invoke(HARD, {"callbacks": [Collect()]})
    assert tokens == ["answer", " from", f" {STRONG}"]
    assert answer.content == f"answer from {STRONG}"


def test_three_models_climb_the_ladder():
    prompts = MATHS + CHAT
    # "mid" solves every maths prompt but the last, "small" only chit-chat, "big" everything
    maths = [[1.0, 1.0, 0.0]] * (len(MATHS) - 1) + [[1.0, 0.0, 0.0]]
    scores = np.array(maths + [[1.0, 1.0, 1.0]] * len(CHAT))
    outcomes = Outcomes(ids=[f"p{i}" for i in range(len(prompts))], prompts=prompts,
                        models=("big", "mid", "small"), scores=scores,
                        costs=np.array([[1e-2, 1e-3, 1e-4]] * len(prompts)))
    three = SWRouter(HashingEmbedder(dimension=256, cache_dir=False)).fit(outcomes)
    routed = RoutedChatModel(
        models={name: ScriptedChatModel(model_name=name) for name in ("big", "mid", "small")},
        router=three, threshold=THRESHOLD)
    hard, easy = routed.route(HARD), routed.route(EASY)
    assert hard.rungs == ("small", "mid", "big")
    assert (hard.model, easy.model) == ("mid", "small")
    assert set(hard.levels) == {"small", "mid", "big"} and hard.levels["big"] is None
    assert hard.levels["small"] >= THRESHOLD > hard.levels["mid"]
    lines = str(hard).splitlines()
    assert lines[1].startswith("   small:") and "escalate" in lines[1]
    assert lines[2].startswith("   mid:") and "accept" in lines[2] and len(lines) == 3
    assert routed.invoke(HARD).content == "answer from mid"
    assert routed.model_copy(update={"threshold": 0.0}).route(HARD).model == "big"


def test_refitting_the_router_in_place_takes_effect(strong, weak):
    router = SWRouter(HashingEmbedder(dimension=256, cache_dir=False)).fit(synthetic_outcomes())
    routed = RoutedChatModel(models={STRONG: strong, WEAK: weak}, router=router,
                             threshold=THRESHOLD)
    assert routed.route(EASY).estimated_cost_usd == pytest.approx(2e-4)
    cheaper = synthetic_outcomes()
    router.fit(Outcomes(ids=cheaper.ids, prompts=cheaper.prompts, models=cheaper.models,
                        scores=cheaper.scores, costs=cheaper.costs / 2))
    assert routed.route(EASY).estimated_cost_usd == pytest.approx(1e-4)


def test_a_moved_private_streaming_module_fails_loudly_at_import():
    """The token-streaming marker classes are private langchain-core API: if the module moves,
    importing langroute says so instead of silently treating no handler as a token stream."""
    import subprocess
    import sys

    code = ("import importlib, sys, types\n"
            "import langroute.chat_models, langchain_core.tracers as tracers\n"
            "moved = types.ModuleType('langchain_core.tracers._streaming')\n"
            "sys.modules[moved.__name__] = tracers._streaming = moved\n"
            "del sys.modules['langroute.chat_models._caller']\n"
            "importlib.import_module('langroute.chat_models._caller')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={"HF_HUB_OFFLINE": "1", "PATH": ""}, timeout=120)
    assert done.returncode != 0
    assert "ImportError: langroute needs langchain_core.tracers._streaming" in done.stderr
