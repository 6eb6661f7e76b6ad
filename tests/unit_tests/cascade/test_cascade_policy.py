"""The Cascade policy on the framework-free call pipeline, driven by a scripted fake Caller.

A real SWRouter (hashing embeddings) decides between three models on a three-rung ladder; the
fake Caller answers each model with scripted text, so the tests pin what the cascade does:
which models are called, for what, how often, what is traced, and what a stream delivers.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import numpy as np
import pytest

from langroute import Outcomes, SWRouter
from langroute._decision import RoutingPolicy
from langroute._exceptions import CascadeConfigError, CascadeScoreError, LangrouteError
from langroute.cascade import (
    AgreementScorer,
    Cascade,
    FunctionScorer,
    JudgeScorer,
    LogprobScorer,
)
from langroute.embeddings import HashingEmbedder
from langroute.pipeline import (
    Answer,
    CallContext,
    CallPipeline,
    ModelRef,
    RouteRequest,
    Usage,
    run_async,
    run_sync,
    stream_async,
    stream_sync,
)

SMALL, MEDIUM, LARGE = "small", "medium", "large"
VERIFY_A, VERIFY_B = "verifier-a", "verifier-b"
COSTS = {SMALL: 0.001, MEDIUM: 0.01, LARGE: 0.1}


def _outcomes() -> Outcomes:
    """Three models on a price ladder, each better than the cheaper one."""
    prompts, scores = [], []
    for i in range(30):
        prompts.append(f"Compute {i} times {i + 3} plus the arithmetic sum of {i}")
        scores.append([0.0, 1.0, 1.0])
        prompts.append(f"Write a gentle poem about rain and the sea, verse {i}")
        scores.append([1.0, 0.0 if i % 2 else 1.0, 1.0])
    n = len(prompts)
    return Outcomes(ids=[f"p{i}" for i in range(n)], prompts=prompts,
                    models=(SMALL, MEDIUM, LARGE), scores=np.asarray(scores),
                    costs=np.tile([COSTS[SMALL], COSTS[MEDIUM], COSTS[LARGE]], (n, 1)))


@pytest.fixture(scope="module")
def router() -> SWRouter:
    return SWRouter(HashingEmbedder(dimension=256, cache_dir=False)).fit(_outcomes())


@pytest.fixture(scope="module")
def policy(router) -> RoutingPolicy:
    # threshold 1: every call is routed to the cheapest rung (no P(beats) reaches 1)
    return RoutingPolicy.build(router, [SMALL, MEDIUM, LARGE], 1.0)


class ScriptedCaller:
    """Answers each model with scripted text (a list is consumed in order); records calls."""

    def __init__(self, answers: dict[str, Any], tool_calls: dict[str, int] | None = None,
                 logprobs: dict[str, tuple[float, ...]] | None = None) -> None:
        self.answers = {k: list(v) if isinstance(v, list) else v for k, v in answers.items()}
        self.tool_calls = tool_calls or {}
        self.logprobs = logprobs or {}
        self.calls: list[tuple[str, str]] = []
        self.messages: list[Any] = []
        self.events: list[tuple[str, dict[str, Any]]] = []

    def _text(self, ref: ModelRef) -> str:
        script = self.answers[ref.name]
        return script.pop(0) if isinstance(script, list) else script

    def _answer(self, ref: ModelRef, purpose: str, messages: Any = None) -> Answer:
        self.calls.append((ref.name, purpose))
        self.messages.append(messages)
        text = self._text(ref)
        return Answer(raw=text, text=text, usage=Usage(10, 3),
                      tool_calls=self.tool_calls.get(ref.name, 0),
                      token_logprobs=self.logprobs.get(ref.name))

    def call(self, ref: ModelRef, purpose: str, messages: Any = None) -> Answer:
        return self._answer(ref, purpose, messages)

    async def acall(self, ref: ModelRef, purpose: str, messages: Any = None) -> Answer:
        await asyncio.sleep(0)
        return self._answer(ref, purpose, messages)

    def stream(self, ref: ModelRef, purpose: str):
        self.calls.append((ref.name, purpose))
        return iter(f"{ref.name} says {self._text(ref)}".split(" "))

    def astream(self, ref: ModelRef, purpose: str):
        async def gen():
            for piece in self.stream(ref, purpose):
                yield piece
        return gen()

    def collect(self, ref: ModelRef, chunks: list[Any]) -> Answer:
        text = " ".join(chunks)
        return Answer(raw=text, text=text.split(" ", 2)[2], usage=Usage(10, 3))

    def stamp(self, raw: Any, record: dict[str, Any]) -> Any:
        return ("stamped", raw, record["answered_by"], len(record["attempts"]))

    def emit(self, name: str, payload: dict[str, Any]) -> None:
        self.events.append((name, payload))

    async def aemit(self, name: str, payload: dict[str, Any]) -> None:
        self.events.append((name, payload))

    def named(self, name: str) -> list[dict[str, Any]]:
        return [p for n, p in self.events if n == name]


def _request(sticky: str | None = None, messages: Any = None) -> RouteRequest:
    return RouteRequest("Compute 4 times 7 plus the arithmetic sum of 4",
                        CallContext(metadata={"user": "ada"}), sticky_model=sticky,
                        messages=messages)


def _run(policy, cascade, caller, mode, request=None):
    pipeline = CallPipeline(policy, {m: ModelRef(m) for m in COSTS}, cascade=cascade)
    gen = pipeline.run(request or _request())
    return run_sync(gen, caller) if mode == "sync" else asyncio.run(run_async(gen, caller))


MODES = ["sync", "async"]


@pytest.mark.parametrize("mode", MODES)
def test_a_doubtful_answer_escalates_one_rung_and_every_call_counts_once(policy, mode):
    caller = ScriptedCaller({SMALL: "The answer is 28.", VERIFY_A: "#### 27",
                             MEDIUM: "28"})
    cascade = Cascade(AgreementScorer([VERIFY_A]), accept=1.0)
    result = _run(policy, cascade, caller, mode)
    assert result.model == MEDIUM and result.answer.text == "28"
    # the escalated answer has no rung above it within max_steps=1: it is not scored
    assert caller.calls == [(SMALL, "answer"), (VERIFY_A, "verify"), (MEDIUM, "cascade")]
    assert [(a.model, a.purpose, a.outcome, a.score) for a in result.attempts] == [
        (SMALL, "answer", "escalated", 0.0), (VERIFY_A, "verify", "ok", None),
        (MEDIUM, "cascade", "accepted", None)]
    assert all(a.usage == Usage(10, 3) for a in result.attempts)
    attempts = caller.named("langroute.attempt")
    assert [e["model"] for e in attempts] == [SMALL, VERIFY_A, MEDIUM]
    events = caller.named("langroute.cascade")
    assert [(e["model"], e["score"], e["accepted"], e["escalate_to"]) for e in events] == [
        (SMALL, 0.0, False, MEDIUM), (MEDIUM, None, True, None)]
    assert {e["decision_id"] for e in events} == {result.decision.decision_id}


@pytest.mark.parametrize("mode", MODES)
def test_an_agreed_answer_is_kept(policy, mode):
    caller = ScriptedCaller({SMALL: "The answer is 28.", VERIFY_A: "#### 28.00"})
    result = _run(policy, Cascade(AgreementScorer([VERIFY_A]), accept=1.0), caller, mode)
    assert result.model == SMALL
    assert caller.calls == [(SMALL, "answer"), (VERIFY_A, "verify")]
    assert [(a.purpose, a.outcome, a.score) for a in result.attempts] == [
        ("answer", "accepted", 1.0), ("verify", "ok", None)]
    (event,) = caller.named("langroute.cascade")
    assert event["accepted"] and event["passed"] and event["escalate_to"] is None


@pytest.mark.parametrize("mode", MODES)
def test_verifiers_are_asked_together_and_the_score_is_their_share(policy, mode):
    answers = {SMALL: "(b)", VERIFY_A: "B", VERIFY_B: "C", MEDIUM: "B"}
    strict = _run(policy, Cascade(AgreementScorer([VERIFY_A, VERIFY_B]), accept=1.0),
                  ScriptedCaller(answers), mode)
    assert strict.model == MEDIUM and strict.attempts[0].score == 0.5
    lenient = _run(policy, Cascade(AgreementScorer([VERIFY_A, VERIFY_B]), accept=0.5),
                   ScriptedCaller(answers), mode)
    assert lenient.model == SMALL
    assert sorted(a.model for a in lenient.attempts if a.purpose == "verify") == [VERIFY_A,
                                                                                  VERIFY_B]


@pytest.mark.parametrize("mode", MODES)
def test_max_steps_climbs_rung_by_rung(policy, mode):
    caller = ScriptedCaller({SMALL: "1", VERIFY_A: ["2", "3"], MEDIUM: "4", LARGE: "5"})
    result = _run(policy, Cascade(AgreementScorer([VERIFY_A]), accept=1.0, max_steps=2),
                  caller, mode)
    assert result.model == LARGE
    assert caller.calls == [(SMALL, "answer"), (VERIFY_A, "verify"), (MEDIUM, "cascade"),
                            (VERIFY_A, "verify"), (LARGE, "cascade")]
    assert [e["model"] for e in caller.named("langroute.cascade")] == [SMALL, MEDIUM, LARGE]


def test_band_cascades_only_when_the_router_is_unsure(router):
    pipeline = CallPipeline(RoutingPolicy.build(router, [SMALL, MEDIUM, LARGE], 0.999),
                            {m: ModelRef(m) for m in COSTS})
    (decision,) = pipeline.decide([_request()])
    assert decision.model != LARGE and decision.strong_score is not None
    gap = abs(decision.strong_score - decision.threshold)
    policy = pipeline.policy
    answers = {SMALL: "1", MEDIUM: "1", VERIFY_A: "2", LARGE: "3"}
    far = ScriptedCaller(answers)
    result = _run(policy, Cascade(AgreementScorer([VERIFY_A]), accept=1.0,
                                  band=max(0.0, gap - 1e-6)), far, "sync")
    assert result.model == decision.model and far.named("langroute.cascade") == []
    assert [c[1] for c in far.calls] == ["answer"]
    near = ScriptedCaller(answers)
    result = _run(policy, Cascade(AgreementScorer([VERIFY_A]), accept=1.0,
                                  band=min(1.0, gap + 1e-6)), near, "sync")
    assert [c[1] for c in near.calls] == ["answer", "verify", "cascade"]


@pytest.mark.parametrize("mode", MODES)
def test_tool_loops_never_cascade(policy, mode):
    caller = ScriptedCaller({SMALL: "tool result read", VERIFY_A: "other"})
    result = _run(policy, Cascade(AgreementScorer([VERIFY_A]), accept=1.0), caller, mode,
                  request=_request(sticky=SMALL))
    assert result.model == SMALL and caller.calls == [(SMALL, "answer")]
    assert caller.named("langroute.cascade") == []


def test_the_top_rung_is_never_cascaded(router):
    policy = RoutingPolicy.build(router, [SMALL, MEDIUM, LARGE], 0.0)  # always the best
    caller = ScriptedCaller({LARGE: "1", VERIFY_A: "2"})
    result = _run(policy, Cascade(AgreementScorer([VERIFY_A]), accept=1.0), caller, "sync")
    assert result.model == LARGE and caller.calls == [(LARGE, "answer")]


@pytest.mark.parametrize("mode", MODES)
def test_a_tool_call_answer_is_accepted_unscored_unless_the_scorer_handles_tools(policy, mode):
    caller = ScriptedCaller({SMALL: "", VERIFY_A: "2"}, tool_calls={SMALL: 1})
    result = _run(policy, Cascade(AgreementScorer([VERIFY_A]), accept=1.0), caller, mode)
    assert result.model == SMALL and caller.calls == [(SMALL, "answer")]
    assert result.notes["cascade"] == "tool-call answer accepted unscored"
    seen = []

    def tool_aware(messages, answer):
        seen.append(answer.tool_calls)
        return 0.0

    caller = ScriptedCaller({SMALL: "", MEDIUM: "ok"}, tool_calls={SMALL: 1})
    scorer = FunctionScorer(tool_aware, bounds=(0.0, 1.0), supports_tool_calls=True)
    result = _run(policy, Cascade(scorer, accept=0.5), caller, mode)
    assert seen == [1] and result.model == MEDIUM


@pytest.mark.parametrize("mode", MODES)
def test_a_scorer_error_fails_the_call_and_is_traced(policy, mode):
    def broken(messages, answer):
        raise ZeroDivisionError("scorer bug")

    caller = ScriptedCaller({SMALL: "1"})
    with pytest.raises(ZeroDivisionError, match="scorer bug"):
        _run(policy, Cascade(broken, accept=0.0), caller, mode)
    (event,) = caller.named("langroute.cascade")
    assert event["error"].startswith("ZeroDivisionError") and not event["accepted"]

    caller = ScriptedCaller({SMALL: "1", "judge": "Looks right to me!"})
    with pytest.raises(CascadeScoreError, match="judge 'judge' did not reply"):
        _run(policy, Cascade(JudgeScorer("judge"), accept=0.5), caller, mode)


@pytest.mark.parametrize("mode", MODES)
def test_a_score_outside_the_range_or_nan_is_an_error(policy, mode):
    caller = ScriptedCaller({SMALL: "1"})
    scorer = FunctionScorer(lambda m, a: math.nan, bounds=(0.0, 1.0))
    with pytest.raises(CascadeScoreError, match="outside its range"):
        _run(policy, Cascade(scorer, accept=0.5), caller, mode)
    scorer = FunctionScorer(lambda m, a: 2.0, bounds=(0.0, 1.0))
    with pytest.raises(CascadeScoreError, match="outside its range"):
        _run(policy, Cascade(scorer, accept=0.5), ScriptedCaller({SMALL: "1"}), mode)


@pytest.mark.parametrize("mode", MODES)
def test_a_callable_scorer_gets_the_messages_and_the_answer(policy, mode):
    got = []

    def scorer(messages, answer):
        got.append((messages, answer.text))
        return 0.9

    messages = [("user", "what is 4 * 7?")]
    result = _run(policy, Cascade(scorer, accept=0.5), ScriptedCaller({SMALL: "28"}), mode,
                  request=_request(messages=messages))
    assert result.model == SMALL and got == [(messages, "28")]


@pytest.mark.parametrize("mode", MODES)
def test_the_judge_sees_question_and_answer_and_its_confidence_scores(policy, mode):
    caller = ScriptedCaller({SMALL: "28", "judge": '{"verdict": "incorrect", "confidence": 0.9}',
                             MEDIUM: "29"})
    result = _run(policy, Cascade(JudgeScorer("judge"), accept=0.5), caller, mode)
    assert result.model == MEDIUM
    assert result.attempts[0].score == pytest.approx(0.1)
    ((role, text),) = caller.messages[1]
    assert role == "user" and "Compute 4 times 7" in text and "<answer>\n28\n</answer>" in text


def test_a_cascaded_stream_delivers_only_the_accepted_answer(policy):
    caller = ScriptedCaller({SMALL: "27", VERIFY_A: "28", MEDIUM: "28"})
    pipeline = CallPipeline(policy, {m: ModelRef(m) for m in COSTS},
                            cascade=Cascade(AgreementScorer([VERIFY_A]), accept=1.0))
    chunks = list(stream_sync(pipeline.run_stream(_request()), caller))
    # the first chunk carries the record (answered by MEDIUM, after 3 attempts), then the rest
    assert chunks == [("stamped", MEDIUM, MEDIUM, 3), "says", "28"]
    assert caller.calls == [(SMALL, "answer"), (VERIFY_A, "verify"), (MEDIUM, "cascade")]


def test_a_stream_that_does_not_cascade_is_delivered_live(router):
    policy = RoutingPolicy.build(router, [SMALL, MEDIUM, LARGE], 0.0)
    caller = ScriptedCaller({LARGE: "28"})
    pipeline = CallPipeline(policy, {m: ModelRef(m) for m in COSTS},
                            cascade=Cascade(AgreementScorer([VERIFY_A]), accept=1.0))
    stream = stream_sync(pipeline.run_stream(_request()), caller)
    assert next(stream) == ("stamped", LARGE, LARGE, 1)
    assert list(stream) == ["says", "28"]


def test_logprob_scorer_scores_a_quantile_and_calibrates_its_threshold(policy):
    scorer = LogprobScorer(quantile=0.0)
    assert scorer.value([-0.1, -2.0, -0.5]) == -2.0
    caller = ScriptedCaller({SMALL: "28", MEDIUM: "29"}, logprobs={SMALL: (-0.01, -3.0)})
    result = _run(policy, Cascade(scorer, accept=-1.0), caller, "sync")
    assert result.model == MEDIUM and result.attempts[0].score == -3.0
    # confident answers were right, unsure ones wrong: the threshold separates them
    logprobs = [[-0.01, -0.02], [-0.05], [-0.1, -0.2], [-2.0], [-3.0, -0.1]]
    correct = [True, True, True, False, False]
    threshold = LogprobScorer(quantile=0.0).calibrate(logprobs, correct, precision=1.0)
    assert threshold == pytest.approx(-0.2)
    assert LogprobScorer(quantile=0.0).calibrate(logprobs, correct, precision=0.75) == -2.0
    with pytest.raises(CascadeConfigError, match="no threshold reaches"):
        LogprobScorer().calibrate([[-1.0], [-0.1]], [False, False], precision=0.9)
    with pytest.raises(CascadeScoreError, match="no token log-probabilities"):
        _run(policy, Cascade(LogprobScorer(), accept=-1.0), ScriptedCaller({SMALL: "1"}),
             "sync")


def test_judge_replies_are_parsed_strictly():
    judge = JudgeScorer("judge")
    assert judge.parse('{"verdict": "correct", "confidence": 0.8}') == pytest.approx(0.8)
    assert judge.parse('```json\n{"verdict": "incorrect", "confidence": 1}\n```') == 0.0
    for garbage in ("yes", '{"verdict": "maybe", "confidence": 0.5}',
                    '{"verdict": "correct", "confidence": 1.5}',
                    '{"verdict": "correct"}', 'Sure! {"verdict": "correct", "confidence": 1}'):
        with pytest.raises(CascadeScoreError):
            judge.parse(garbage)


@pytest.mark.parametrize("build, message", [
    (lambda: Cascade(AgreementScorer(["v"]), accept=1.5), "outside the range"),
    (lambda: Cascade(AgreementScorer(["v"]), accept=math.nan), "outside the range"),
    (lambda: Cascade(LogprobScorer(), accept=0.1), "outside the range"),
    (lambda: Cascade(JudgeScorer("j"), accept="high"), "accept must be a number"),
    (lambda: AgreementScorer([]), "has no model to agree with"),
    (lambda: AgreementScorer("gpt-4o-mini"), "takes a list of models"),
    (lambda: AgreementScorer(["v", "v"]), "lists a model twice"),
    (lambda: AgreementScorer(["v"], normalise="lower"), "normalise must be a callable"),
    (lambda: Cascade(AgreementScorer(["v"]), accept=1.0, band=-0.1), "band must be"),
    (lambda: Cascade(AgreementScorer(["v"]), accept=1.0, max_steps=0), "max_steps"),
    (lambda: Cascade(42, accept=1.0), "scorer must be a Scorer"),
    (lambda: JudgeScorer("j", prompt="Is {answer} right?"), "{question} and {answer}"),
    (lambda: JudgeScorer(None), "got None"),
    (lambda: LogprobScorer(quantile=2), "quantile"),
    (lambda: FunctionScorer(len, bounds=(1.0, 0.0)), "low < high"),
    (lambda: FunctionScorer(len, bounds=("low", "high")), "two numbers"),
    (lambda: FunctionScorer(len, bounds=(0.0, 0.5, 1.0)), "two numbers"),
])
def test_bad_configuration_is_a_clear_error(build, message):
    with pytest.raises(CascadeConfigError, match=message) as info:
        build()
    assert isinstance(info.value, LangrouteError) and isinstance(info.value, ValueError)


def test_adapters_can_check_the_models_a_scorer_asks():
    cascade = Cascade(AgreementScorer(["known", object()]), accept=1.0)
    with pytest.raises(CascadeConfigError, match="asks a object, which is not a chat model"):
        cascade.check_models(["known"], lambda m: isinstance(m, str))
    cascade = Cascade(JudgeScorer("stranger"), accept=0.5)
    with pytest.raises(CascadeConfigError, match="'stranger', which is not one of the models"):
        cascade.check_models(["known"], lambda m: True)
    Cascade(AgreementScorer(["known", "other"]), accept=1.0).check_models(
        ["known", "other"], lambda m: False)


class MeteringBudget:
    """A budget step that books every provider call: reserve then commit, per model."""

    def __init__(self) -> None:
        self.log: list[tuple[str, str]] = []

    def admit(self, state):
        return state.decision

    async def aadmit(self, state):
        return state.decision

    def reserve(self, state, ref):
        self.log.append(("reserve", ref.name))
        return ref.name

    async def areserve(self, state, ref):
        return self.reserve(state, ref)

    def commit(self, hold, answer):
        self.log.append(("commit", hold))
        return {"cost_usd": COSTS.get(hold, 0.0005)}

    async def acommit(self, hold, answer):
        return self.commit(hold, answer)

    def release(self, hold, error):
        self.log.append(("release", hold))
        return {}

    async def arelease(self, hold, error):
        return self.release(hold, error)


@pytest.mark.parametrize("mode", MODES)
def test_every_call_of_a_cascade_is_budgeted_once(policy, mode):
    budget = MeteringBudget()
    caller = ScriptedCaller({SMALL: "1", VERIFY_A: "2", MEDIUM: "1"})
    pipeline = CallPipeline(policy, {m: ModelRef(m) for m in COSTS}, budget=budget,
                            cascade=Cascade(AgreementScorer([VERIFY_A]), accept=1.0))
    gen = pipeline.run(_request())
    result = run_sync(gen, caller) if mode == "sync" else asyncio.run(run_async(gen, caller))
    assert budget.log == [("reserve", SMALL), ("commit", SMALL), ("reserve", VERIFY_A),
                          ("commit", VERIFY_A), ("reserve", MEDIUM), ("commit", MEDIUM)]
    assert [a.cost_usd for a in result.attempts] == [COSTS[SMALL], 0.0005, COSTS[MEDIUM]]
    small = caller.named("langroute.cascade")[0]
    assert small["cost_usd"] == COSTS[SMALL] and small["latency_ms"] >= 0


def test_a_cascaded_async_stream_delivers_only_the_accepted_answer(policy):
    caller = ScriptedCaller({SMALL: "27", VERIFY_A: "28", MEDIUM: "28"})
    pipeline = CallPipeline(policy, {m: ModelRef(m) for m in COSTS},
                            cascade=Cascade(AgreementScorer([VERIFY_A]), accept=1.0))

    async def collect():
        return [c async for c in stream_async(pipeline.run_stream(_request()), caller)]

    assert asyncio.run(collect()) == [("stamped", MEDIUM, MEDIUM, 3), "says", "28"]


def test_an_accept_that_every_score_passes_is_refused():
    """``accept`` at the lowest score keeps every answer: the scorer's calls buy nothing."""
    for scorer in (AgreementScorer(["v"]), FunctionScorer(len, bounds=(0.0, 1.0))):
        with pytest.raises(CascadeConfigError, match="lowest score"):
            Cascade(scorer, accept=0.0)
    assert Cascade(AgreementScorer(["v"]), accept=1.0).accept == 1.0  # only full agreement
    assert Cascade(LogprobScorer(), accept=0.0).accept == 0.0  # the top of (-inf, 0]


def test_a_scorer_class_is_refused_at_construction():
    """A class is callable, so it used to be wrapped as a FunctionScorer and fail per call."""
    for scorer in (LogprobScorer, AgreementScorer):
        with pytest.raises(CascadeConfigError, match=f"the class {scorer.__name__}"):
            Cascade(scorer, accept=-1.0)


@pytest.mark.parametrize("mode", MODES)
def test_numpy_integers_are_numbers_but_bools_are_not(policy, mode):
    """NumPy scalars are what scorers built on NumPy return; a bool is never a score."""
    scorer = FunctionScorer(lambda m, a: np.int64(1), bounds=(0.0, 1.0))
    cascade = Cascade(scorer, accept=np.int64(1))
    assert cascade.accept == 1.0
    result = _run(policy, cascade, ScriptedCaller({SMALL: "1"}), mode)
    assert result.model == SMALL and result.attempts[0].score == 1.0
    for accept in (True, np.bool_(True)):
        with pytest.raises(CascadeConfigError, match="accept must be a number"):
            Cascade(scorer, accept=accept)
    scorer = FunctionScorer(lambda m, a: np.bool_(True), bounds=(0.0, 1.0))
    with pytest.raises(CascadeScoreError, match="not a number"):
        _run(policy, Cascade(scorer, accept=0.5), ScriptedCaller({SMALL: "1"}), mode)


@pytest.mark.parametrize("mode", MODES)
def test_an_answer_accepted_unscored_records_no_score(policy, mode):
    """No score was computed for a tool-call answer: recording the top of an unbounded range
    would write ``inf`` (not JSON) and read as a real score."""
    caller = ScriptedCaller({SMALL: ""}, tool_calls={SMALL: 1})
    result = _run(policy, Cascade(lambda m, a: 0.0, accept=0.5), caller, mode)
    assert result.model == SMALL and caller.calls == [(SMALL, "answer")]
    (attempt,) = result.attempts
    assert attempt.outcome == "accepted" and attempt.score is None
    (event,) = caller.named("langroute.cascade")
    assert event["score"] is None and event["accepted"] and event["passed"] is None
    assert result.notes["cascade"] == "tool-call answer accepted unscored"


class _LargeDown(ScriptedCaller):
    """The large model is unreachable (a retryable error)."""

    def call(self, ref: ModelRef, purpose: str, messages: Any = None) -> Answer:
        if ref.name == LARGE:
            self.calls.append((ref.name, purpose))
            raise ConnectionError("large down")
        return super().call(ref, purpose, messages)

    async def acall(self, ref: ModelRef, purpose: str, messages: Any = None) -> Answer:
        return self.call(ref, purpose, messages)


@pytest.mark.parametrize("mode", MODES)
def test_a_failed_escalation_never_falls_back_below_the_answer_it_rejected(policy, mode):
    """Medium's answer is rejected, large fails: under "cheaper" the call used to fall back
    to small (answering unscored and throwing medium's paid answer away)."""
    from dataclasses import replace

    from langroute.pipeline import Fallback, RetryPolicy

    pipeline = CallPipeline(policy, {m: ModelRef(m) for m in COSTS},
                            cascade=Cascade(FunctionScorer(lambda m, a: 0.0), accept=0.5),
                            fallback=Fallback("cheaper"), retry=RetryPolicy(0))
    request = _request()
    (decision,) = pipeline.decide([request])
    caller = _LargeDown({SMALL: "s", MEDIUM: "m"})
    gen = pipeline.run(request, decision=replace(decision, model=MEDIUM))
    result = run_sync(gen, caller) if mode == "sync" else asyncio.run(run_async(gen, caller))
    assert result.model == MEDIUM and result.answer.text == "m"
    assert caller.calls == [(MEDIUM, "answer"), (LARGE, "cascade")]
    assert [(a.model, a.outcome, a.score) for a in result.attempts] == [
        (MEDIUM, "accepted", 0.0), (LARGE, "error", None)]
    assert "returned unconfirmed" in result.notes["cascade"]
    second = caller.named("langroute.cascade")[1]
    assert (second["model"], second["accepted"], second["failed"]) == (MEDIUM, True, LARGE)


class _Denying(MeteringBudget):
    """A budget that denies every call to the model named ``denied``."""

    denied = ""

    def reserve(self, state, ref):
        if ref.name == self.denied:
            from langroute._exceptions import BudgetExceededError

            raise BudgetExceededError("s", "total", "", limit_usd=0.01, spent_usd=0.0,
                                      reserved_usd=0.0, requested_usd=0.1, model=ref.name)
        return super().reserve(state, ref)


class _DenyLarge(_Denying):
    denied = LARGE


@pytest.mark.parametrize("mode", MODES)
def test_a_budget_denial_while_an_escalation_falls_back_names_the_model_denied(policy, mode):
    from langroute.pipeline import Fallback, RetryPolicy

    class MediumDown(ScriptedCaller):
        def call(self, ref, purpose, messages=None):
            if ref.name == MEDIUM:
                self.calls.append((ref.name, purpose))
                raise ConnectionError("medium down")
            return super().call(ref, purpose, messages)

        async def acall(self, ref, purpose, messages=None):
            return self.call(ref, purpose, messages)

    pipeline = CallPipeline(policy, {m: ModelRef(m) for m in COSTS}, budget=_DenyLarge(),
                            cascade=Cascade(FunctionScorer(lambda m, a: 0.0), accept=0.5),
                            fallback=Fallback("stronger"), retry=RetryPolicy(0))
    caller = MediumDown({SMALL: "s"})
    gen = pipeline.run(_request())
    result = run_sync(gen, caller) if mode == "sync" else asyncio.run(run_async(gen, caller))
    assert result.model == SMALL
    assert result.notes["cascade"].startswith(f"escalation to {LARGE!r} denied")
    assert caller.named("langroute.cascade")[1]["denied"] == LARGE


def test_fallback_during_an_escalation_goes_only_above_the_rejected_rung():
    from langroute.pipeline import Fallback

    assert Fallback("cheaper").next_model(LARGE, [LARGE], COSTS, above=MEDIUM) is None
    assert Fallback("cheaper").next_model(LARGE, [LARGE], COSTS, above=SMALL) == MEDIUM
    assert Fallback("stronger").next_model(MEDIUM, [MEDIUM], COSTS, above=SMALL) == LARGE


class _DenyVerifier(_Denying):
    denied = VERIFY_A


@pytest.mark.parametrize("mode", MODES)
def test_a_verifier_the_budget_denies_returns_the_paid_answer_unchecked(policy, mode):
    """The cheap answer was paid for: a denied check used to fail the call with a
    BudgetExceededError (which promises no provider call was made), throwing the answer away."""
    budget = _DenyVerifier()
    caller = ScriptedCaller({SMALL: "1", MEDIUM: "2"})
    pipeline = CallPipeline(policy, {m: ModelRef(m) for m in COSTS}, budget=budget,
                            cascade=Cascade(AgreementScorer([VERIFY_A]), accept=1.0))
    gen = pipeline.run(_request())
    result = run_sync(gen, caller) if mode == "sync" else asyncio.run(run_async(gen, caller))
    assert result.model == SMALL and result.answer.text == "1"
    assert caller.calls == [(SMALL, "answer")]
    assert budget.log == [("reserve", SMALL), ("commit", SMALL)]
    assert [(a.model, a.outcome, a.score) for a in result.attempts] == [(SMALL, "accepted", None)]
    assert result.notes["cascade"].startswith(f"checking the answer of {SMALL!r} was denied")
    (event,) = caller.named("langroute.cascade")
    assert (event["model"], event["denied"], event["accepted"]) == (SMALL, VERIFY_A, True)
    assert event["score"] is None and event["passed"] is None


async def test_a_failing_verifier_does_not_leave_its_siblings_running():
    """asyncio.gather once raised the first verifier's error while the others still ran: their
    attempts arrived after the call had ended (sync threads were always waited for)."""

    class OneSlowOneBroken(ScriptedCaller):
        async def acall(self, ref, purpose, messages=None):
            if ref.name == "va":
                await asyncio.sleep(0.05)
            if ref.name == "vb":
                raise ValueError("vb broken")
            return self._answer(ref, purpose, messages)

    router = SWRouter(HashingEmbedder(dimension=256, cache_dir=False)).fit(_outcomes())
    policy = RoutingPolicy.build(router, ["small", "medium", "large"], 1.0)
    caller = OneSlowOneBroken({SMALL: "1", "va": "1"})
    pipeline = CallPipeline(policy, {m: ModelRef(m) for m in COSTS},
                            cascade=Cascade(AgreementScorer(["va", "vb"]), accept=1.0))
    with pytest.raises(ValueError, match="vb broken"):
        await run_async(pipeline.run(_request()), caller)
    attempts = [d["model"] for name, d in caller.events if name == "langroute.attempt"]
    assert "va" in attempts and "vb" in attempts  # both ended before the call did
