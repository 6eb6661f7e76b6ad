"""Every entry path runs every pipeline step: decide -> budget -> call -> cascade -> record.

Recording steps (a budget, a cascade that always checks and accepts, a recorder) are plugged into
a real RoutedChatModel; each entry point must run each of them, with the caller's context.
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import HumanMessage

from langroute import RouterConfigError
from langroute.chat_models import RoutedChatModel
from langroute.pipeline import Answer, CallState, ModelRef

from .fakes import EASY, HARD, STRONG, THRESHOLD, WEAK, EventRecorder


class RecordingSteps:
    """A budget step, a cascade step and a recorder at once, logging what each saw."""

    max_steps = 1

    def __init__(self) -> None:
        self.log: list[tuple[str, Any]] = []

    # budget
    def admit(self, state: CallState) -> Any:
        self.log.append(("admit", state.context.scope))
        return state.decision

    async def aadmit(self, state: CallState) -> Any:
        return self.admit(state)

    def reserve(self, state: CallState, ref: ModelRef) -> dict[str, Any]:
        estimate = state.estimate(ref) if state.estimate else None
        self.log.append(("reserve", (ref.name, estimate.input_tokens if estimate else None)))
        return {"model": ref.name}

    async def areserve(self, state: CallState, ref: ModelRef) -> dict[str, Any]:
        return self.reserve(state, ref)

    def commit(self, hold: Any, answer: Answer) -> dict[str, Any]:
        self.log.append(("commit", (hold["model"], answer.usage.output_tokens
                                    if answer.usage else None)))
        return {"cost_usd": 0.001}

    async def acommit(self, hold: Any, answer: Answer) -> dict[str, Any]:
        return self.commit(hold, answer)

    def release(self, hold: Any, error: BaseException | None) -> dict[str, Any]:
        self.log.append(("release", hold["model"]))
        return {}

    async def arelease(self, hold: Any, error: BaseException | None) -> dict[str, Any]:
        return self.release(hold, error)

    # cascade
    def plan(self, state: CallState) -> str | None:
        self.log.append(("plan", state.decision.model))
        return state.decision.model

    def score(self, state: CallState, answer: Answer):  # a generator of effects
        self.log.append(("score", answer.text))
        return 1.0
        yield  # noqa: B901 -- makes this a generator with no effects

    def accepts(self, score: float) -> bool:
        return score >= 0.5

    def escalate_to(self, state: CallState, model: str) -> str | None:
        # a rung to escalate to exists (so the answer is scored), but the score accepts
        return WEAK if model == STRONG else STRONG

    # recorder
    def record(self, state: CallState, answer: Answer) -> None:
        self.log.append(("record", state.context.call_id))

    async def arecord(self, state: CallState, answer: Answer) -> None:
        self.record(state, answer)

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.log]


@pytest.fixture
def steps() -> RecordingSteps:
    return RecordingSteps()


@pytest.fixture
def instrumented(routed: RoutedChatModel, steps: RecordingSteps) -> RoutedChatModel:
    pipeline = routed.pipeline
    pipeline.budget = steps
    pipeline.cascade = steps
    pipeline.recorders = (steps,)
    return routed


CONFIG = {"metadata": {"lc_agent_name": "researcher"}}


def _invoke(m: RoutedChatModel, recorder: EventRecorder) -> list[Any]:
    return [m.invoke(HARD, {**CONFIG, "callbacks": [recorder]})]


def _stream(m: RoutedChatModel, recorder: EventRecorder) -> list[Any]:
    return list(m.stream(HARD, {**CONFIG, "callbacks": [recorder]}))


def _batch(m: RoutedChatModel, recorder: EventRecorder) -> list[Any]:
    return m.batch([HARD, EASY], {**CONFIG, "callbacks": [recorder]})


def _generate(m: RoutedChatModel, recorder: EventRecorder) -> list[Any]:
    return [m.generate([[HumanMessage(HARD)]], callbacks=[recorder], metadata=CONFIG["metadata"])]


def _events_v3(m: RoutedChatModel, recorder: EventRecorder) -> list[Any]:
    stream = m.stream_events(HARD, version="v3", config={**CONFIG, "callbacks": [recorder]})
    return list(stream)


async def _ainvoke(m: RoutedChatModel, recorder: EventRecorder) -> list[Any]:
    return [await m.ainvoke(HARD, {**CONFIG, "callbacks": [recorder]})]


async def _astream(m: RoutedChatModel, recorder: EventRecorder) -> list[Any]:
    return [c async for c in m.astream(HARD, {**CONFIG, "callbacks": [recorder]})]


async def _abatch(m: RoutedChatModel, recorder: EventRecorder) -> list[Any]:
    return await m.abatch([HARD, EASY], {**CONFIG, "callbacks": [recorder]})


async def _agenerate(m: RoutedChatModel, recorder: EventRecorder) -> list[Any]:
    return [await m.agenerate([[HumanMessage(HARD)]], callbacks=[recorder],
                              metadata=CONFIG["metadata"])]


async def _aevents_v3(m: RoutedChatModel, recorder: EventRecorder) -> list[Any]:
    stream = await m.astream_events(HARD, version="v3",
                                    config={**CONFIG, "callbacks": [recorder]})
    return [event async for event in stream]


SYNC_PATHS = [_invoke, _stream, _batch, _generate, _events_v3]
ASYNC_PATHS = [_ainvoke, _astream, _abatch, _agenerate, _aevents_v3]


def _check(steps: RecordingSteps, recorder: EventRecorder, calls: int) -> None:
    kinds = steps.kinds()
    # per call, in order: admit, plan, reserve, commit, score, record
    for kind in ("admit", "plan", "reserve", "commit", "score", "record"):
        assert kinds.count(kind) == calls, (kind, kinds)
    assert kinds[:6] == ["admit", "plan", "reserve", "commit", "score", "record"] or calls > 1
    # the caller's context reached the budget step
    assert all(value == "researcher" for kind, value in steps.log if kind == "admit")
    # the worst-case estimate was available to the reservation
    assert all(value[1] is not None and value[1] > 0 for kind, value in steps.log
               if kind == "reserve")
    names = [e["name"] for e in recorder.events]
    assert names.count("langroute.route") == calls
    assert names.count("langroute.cascade") == calls
    assert names.count("langroute.budget") == 2 * calls  # reserve + commit


@pytest.mark.parametrize("path", SYNC_PATHS, ids=lambda p: p.__name__.strip("_"))
def test_every_sync_path_runs_every_step(instrumented, steps, recorder, path):
    outputs = path(instrumented, recorder)
    assert outputs
    _check(steps, recorder, calls=2 if path is _batch else 1)


@pytest.mark.parametrize("path", ASYNC_PATHS, ids=lambda p: p.__name__.strip("_"))
async def test_every_async_path_runs_every_step(instrumented, steps, recorder, path):
    outputs = await path(instrumented, recorder)
    assert outputs
    _check(steps, recorder, calls=2 if path is _abatch else 1)


def test_batch_decides_all_inputs_in_one_router_call(routed, strong, weak, monkeypatch):
    router = routed.router
    calls: list[int] = []
    original = type(router).win_matrices

    def counting(self: Any, prompts: Any) -> Any:
        calls.append(len(prompts))
        return original(self, prompts)

    monkeypatch.setattr(type(router), "win_matrices", counting)
    results = routed.batch([HARD, EASY, HARD, EASY])
    assert calls == [4]
    models = [r.response_metadata["langroute"]["answered_by"] for r in results]
    assert models == [STRONG, WEAK, STRONG, WEAK]
    assert len(strong.received) == 2 and len(weak.received) == 2


async def test_abatch_decides_all_inputs_in_one_router_call(routed, monkeypatch):
    router = routed.router
    calls: list[int] = []
    original = type(router).win_matrices

    def counting(self: Any, prompts: Any) -> Any:
        calls.append(len(prompts))
        return original(self, prompts)

    monkeypatch.setattr(type(router), "win_matrices", counting)
    results = await routed.abatch([HARD, EASY, HARD])
    assert calls == [3]
    assert [r.response_metadata["langroute"]["answered_by"] for r in results] == [
        STRONG, WEAK, STRONG]


def test_batch_with_return_exceptions_keeps_the_good_inputs(routed):
    results = routed.batch([HARD, [], EASY], return_exceptions=True)
    assert isinstance(results[1], ValueError)
    assert results[0].response_metadata["langroute"]["answered_by"] == STRONG
    assert results[2].response_metadata["langroute"]["answered_by"] == WEAK


def test_per_call_threshold_in_metadata(routed):
    """One router, two cost preferences: a caller's threshold in its metadata wins."""
    careful = routed.with_config(metadata={"langroute_threshold": 0.0})
    thrifty = routed.with_config(metadata={"langroute_threshold": 1.0})
    assert careful.invoke(EASY).response_metadata["langroute"]["model"] == STRONG
    record = thrifty.invoke(HARD).response_metadata["langroute"]
    assert record["model"] == WEAK and record["threshold"] == 1.0
    assert routed.invoke(HARD).response_metadata["langroute"]["threshold"] == THRESHOLD



@pytest.mark.filterwarnings("ignore::langchain_core._api.beta_decorator.LangChainBetaWarning")
async def test_per_call_threshold_in_configurable_reaches_the_v3_event_streams(routed):
    """stream_events(version="v3") starts a chat-model run from the config's metadata only:
    a threshold given in ``configurable`` must not be dropped on the way."""
    config = {"configurable": {"langroute_threshold": 0.0}}
    stream = routed.stream_events(EASY, config, version="v3")
    list(stream)
    assert stream.output.response_metadata["langroute"]["model"] == STRONG
    astream = await routed.astream_events(EASY, config, version="v3")
    [event async for event in astream]
    record = (await astream).response_metadata["langroute"]
    assert record["model"] == STRONG and record["threshold"] == 0.0
    with pytest.raises(RouterConfigError, match="two per-call thresholds"):
        routed.stream_events(EASY, {**config, "metadata": {"langroute_threshold": 1.0}},
                             version="v3")

def test_decision_ids_are_unique_and_traced(routed, recorder):
    first = routed.invoke(HARD, {"callbacks": [recorder]})
    second = routed.invoke(HARD, {"callbacks": [recorder]})
    ids = [m.response_metadata["langroute"]["decision_id"] for m in (first, second)]
    assert len(set(ids)) == 2 and all(len(i) == 32 for i in ids)
    assert [e["data"]["decision_id"] for e in recorder.custom] == ids
