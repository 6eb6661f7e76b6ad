"""``CallPipeline``: decide -> budget -> call -> cascade -> record, for every entry path.

One routed call is one generator of effects (see ``_effects``): the LangChain chat model and the
LlamaIndex LLM only say how to call a model and where events go (a ``Caller``), then run the same
generator with ``run_sync``, ``run_async``, ``stream_sync`` or ``stream_async``. So every entry
path (invoke, ainvoke, stream, astream, batch, abatch, generate, the event streams) runs every
step, and a step written once works under both frameworks.

Order of one call:

1. **decide**: the routing policy picks a model (``decide`` is batched: ``batch()`` decides all
   its inputs in one router call, then runs each call with its decision).
2. **budget**: ``admit`` may shift the decision cheaper or deny the call; the ``langroute.route``
   event is dispatched with the admitted decision.
3. **call**: the model answers; each provider call is reserved -> committed/released on the
   budget. Retryable errors are retried with backoff (``RetryPolicy``), then fall back along the
   ladder (``Fallback``), each hop traced as ``langroute.fallback``. A stream may fall back only
   before its first chunk was delivered; after that the error propagates.
4. **cascade**: if the cascade step plans this call, the answer is scored and, while the score
   is below ``accept``, the next model up answers (``langroute.cascade`` per scored answer). A
   cascaded stream is buffered and only the accepted answer is delivered.
5. **record**: recorders are told; the result carries the decision and every attempt.
"""

from __future__ import annotations

import asyncio
import functools
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import tenacity

from .._decision import (
    REASON_NO_TEXT,
    REASON_UNIDENTIFIED_MAKER,
    ROUTE_EVENT,
    RoutingDecision,
    RoutingPolicy,
)
from .._exceptions import BudgetExceededError
from ._collect import note_decision
from ._effects import (
    END_OF_STREAM,
    CallModel,
    Collect,
    Compute,
    Deliver,
    Dual,
    Emit,
    NextChunk,
    OpenStream,
    Pipeline,
    Settle,
    Sleep,
    StreamClosed,
)
from ._retry import Fallback, RetryPolicy
from ._steps import (
    BudgetStep,
    CallState,
    CascadeStep,
    Recorder,
    RouteRequest,
    TokenEstimate,
    estimated_prompt_tokens,
    estimated_tokens,
)
from ._types import Answer, Attempt, ModelRef, Usage

__all__ = [
    "ATTEMPT_EVENT",
    "BUDGET_EVENT",
    "CASCADE_EVENT",
    "FALLBACK_EVENT",
    "ROUTE_EVENT",
    "CallPipeline",
    "CallResult",
]

#: A failed model is replaced by another rung (after its retries).
FALLBACK_EVENT = "langroute.fallback"
#: A cascaded answer was scored: accepted or escalated.
CASCADE_EVENT = "langroute.cascade"
#: A budget reservation, commit, release or denial.
BUDGET_EVENT = "langroute.budget"
#: One provider call finished (answered or failed): model, purpose, usage, cost.
ATTEMPT_EVENT = "langroute.attempt"


@dataclass
class CallResult:
    """What a routed call produced: the accepted answer, who gave it, and every attempt."""

    answer: Answer
    model: str
    decision: RoutingDecision
    attempts: list[Attempt] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)

    provider_model: str | None = None

    def record(self) -> dict[str, Any]:
        """The call's trace record: the decision's event payload plus who answered and how."""
        return _record(self.decision, self.model, self.attempts, self.notes,
                       self.provider_model)


def _record(decision: RoutingDecision, model: str, attempts: Sequence[Attempt],
            notes: Mapping[str, Any], provider_model: str | None) -> dict[str, Any]:
    record: dict[str, Any] = dict(decision.to_event())
    record["answered_by"] = model
    record["provider_model"] = provider_model
    record["attempts"] = [a.to_event() for a in attempts]
    if notes:
        record["notes"] = dict(notes)
    return record


class CallPipeline:
    """The steps of a routed call, composed once and run by any adapter.

    Parameters
    ----------
    policy : RoutingPolicy
        Decides which candidate answers.
    refs : dict of str to ModelRef
        The candidates as the adapter describes them (provider model ids, for pricing).
    retry : RetryPolicy, default=RetryPolicy()
    fallback : Fallback, default=Fallback("stronger")
    timeout : float, default=None
        Per-attempt deadline in seconds.
    budget : BudgetStep, default=None
    cascade : CascadeStep, default=None
    recorders : sequence of Recorder, default=()
    keep_text : bool, default=False
        Keep the routing text in decisions (``trace_prompt``).
    sleep, asleep : callables, default=time.sleep, asyncio.sleep
        How the backoff waits (injectable: tests record the waits).
    """

    def __init__(
        self,
        policy: RoutingPolicy,
        refs: Mapping[str, ModelRef],
        *,
        retry: RetryPolicy | None = None,
        fallback: Fallback | None = None,
        timeout: float | None = None,
        budget: BudgetStep | None = None,
        cascade: CascadeStep | None = None,
        recorders: Sequence[Recorder] = (),
        keep_text: bool = False,
        sleep: Callable[[float], None] = time.sleep,
        asleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        self.policy = policy
        self.refs = dict(refs)
        self.retry = retry if retry is not None else RetryPolicy()
        self.fallback = fallback if fallback is not None else Fallback()
        self.timeout = timeout
        self.budget = budget
        self.cascade = cascade
        self.recorders = tuple(recorders)
        self.keep_text = keep_text
        self.sleep = sleep
        self.asleep = asleep

    # -- 1. decide (pure, batched) ----------------------------------------------------------------
    def decide(self, requests: Sequence[RouteRequest]) -> list[RoutingDecision]:
        """One decision per request; all routed ones in ONE router call."""
        out: list[RoutingDecision | None] = [None] * len(requests)
        routed = []
        for i, request in enumerate(requests):
            if request.sticky_model is not None:
                out[i] = self.policy.stick(request.sticky_model, request.text, note=request.note,
                                           keep_text=self.keep_text,
                                           decision_id=request.context.call_id)
            elif not request.text.strip():
                # nothing for the router to score: quality first, and the reason is traced
                out[i] = self.policy.top_rung(
                    request.text, note=request.note or f"{REASON_NO_TEXT}; the top rung answers",
                    keep_text=self.keep_text, decision_id=request.context.call_id,
                    threshold=request.context.threshold)
            else:
                routed.append(i)
        if routed:
            decided = self.policy.decide(
                [requests[i].text for i in routed], keep_text=self.keep_text,
                thresholds=[requests[i].context.threshold for i in routed],
                decision_ids=[requests[i].context.call_id for i in routed],
            )
            for i, decision in zip(routed, decided, strict=True):
                if requests[i].unidentified_loop:
                    decision = replace(decision, reason=REASON_UNIDENTIFIED_MAKER,
                                       note=requests[i].note)
                out[i] = decision
        return [d for d in out if d is not None]

    # -- the two entry shapes ----------------------------------------------------------------------
    def run(self, request: RouteRequest, *, decision: RoutingDecision | None = None,
            estimate: Callable[[ModelRef], TokenEstimate] | None = None
            ) -> Pipeline[CallResult]:
        """One routed call answered whole (invoke, ainvoke, batch, generate)."""
        state = yield from self._begin(request, decision, False, estimate)
        start = self.cascade.plan(state) if self.cascade is not None else None
        model, answer = yield from self._answer(
            state, start or state.decision.model, "answer",
            self._call if start is None else _provisional(self._call, self._scored(state, 0)))
        if start is not None:
            model, answer = yield from self._escalate(state, model, answer, self._call)
        yield from self._finish(state, answer)
        return CallResult(answer, model, state.decision, state.attempts, state.notes,
                          self._provider_model(request, model))

    def _provider_model(self, request: RouteRequest, model: str) -> str | None:
        """What was actually called: the caller's per-call override, else the client's model."""
        return request.model_override or self._ref(model).provider_model

    def run_stream(self, request: RouteRequest, *, decision: RoutingDecision | None = None,
                   estimate: Callable[[ModelRef], TokenEstimate] | None = None
                   ) -> Pipeline[CallResult]:
        """One routed call delivered as chunks (stream, astream, the event streams).

        Without a cascade the chosen model's chunks are delivered as they arrive; a cascaded
        call buffers each answer and delivers only the accepted one. The first chunk delivered
        comes with the call record as it stands (``Deliver.stamp``: the answering attempt
        still in flight), which the adapter's ``stamp`` attaches as it sees fit: the
        Runnable stream puts the keys already final (the decision, its id, who answers) on
        it; the ``generate()`` path's streams (the event streams) leave chunks unstamped, so
        there the decision id comes with the ``langroute.route`` event and the closing chunk.
        Once the call is settled and recorded, the final record (every attempt with its usage,
        latency and cost) follows on a closing chunk (``Settle``): consumers that keep a
        stream's last chunk, or merge its chunks, end with the record ``run`` would have
        given.

        A stream that delivered its first chunk is recorded (``Recorder.record``) however it
        ends: when it is exhausted, or when its consumer stops reading (``close()``,
        ``aclose()``, ``break``). An abandoned stream is recorded with the answer its consumer
        was given (the chunks delivered so far, merged once) and ``notes["stream"]`` saying
        so; a provider call still streaming is settled once, with outcome ``"abandoned"``. A
        stream cut short after its first chunk (abandoned, or failed mid-stream) has no usage
        report, but the provider bills it: with a budget hold an estimate is committed
        (``_estimated``; ``usage_estimated`` in its attempt and budget event); without a
        budget its attempt has no usage. A stream that fails is not recorded, like any failed
        call. Until the stream ends the decision is not yet in the feedback store.
        """
        state = yield from self._begin(request, decision, True, estimate)
        start = self.cascade.plan(state) if self.cascade is not None else None
        if start is None:
            model, opened = yield from self._answer(state, state.decision.model, "answer",
                                                    self._open)
            answer, last = yield from self._pump(state, model, opened)
        else:
            model, answer = yield from self._answer(state, start, "answer",
                                                    _provisional(self._buffered,
                                                                 self._scored(state, 0)))
            model, answer = yield from self._escalate(state, model, answer, self._buffered)
            chunks = answer.raw[1]
            last = chunks[-1] if chunks else None
            answer = replace(answer, raw=answer.raw[0])
            record = _record(state.decision, model, state.attempts, state.notes,
                             self._provider_model(request, model))
            for i, chunk in enumerate(chunks):
                try:
                    yield Deliver(chunk, record if i == 0 else None)
                except StreamClosed:
                    given = yield from self._merged(state, self._ref(model), chunks[:i + 1])
                    yield from self._abandoned(state, given, i + 1, len(chunks))
                    raise
        yield from self._finish(state, answer)
        result = CallResult(answer, model, state.decision, state.attempts, state.notes,
                            self._provider_model(request, model))
        try:
            yield Settle(last, result.record(), answer.raw)
        except StreamClosed:  # the consumer left at the closing chunk: all is settled already
            pass
        return result

    # -- steps -------------------------------------------------------------------------------------
    def _begin(self, request: RouteRequest, decision: RoutingDecision | None, streaming: bool,
               estimate: Callable[[ModelRef], TokenEstimate] | None) -> Pipeline[CallState]:
        if decision is None:
            (decision,) = yield Compute(self.decide, ([request],))
        state = CallState(context=request.context, request=request, policy=self.policy,
                          decision=decision, streaming=streaming, estimate=estimate)
        state.ask = functools.partial(self._ask, state)
        if self.budget is not None:
            try:
                state.decision = yield Dual(self.budget.admit, self.budget.aadmit, (state,))
            except Exception as exc:
                yield Emit(ROUTE_EVENT, _noted(_route_event(state)))
                yield Emit(BUDGET_EVENT, {"action": "deny", "decision_id": request.context.call_id,
                                          "scope": request.context.scope,
                                          "error": f"{type(exc).__name__}: {exc}"})
                raise
        yield Emit(ROUTE_EVENT, _noted(_route_event(state)))
        return state

    def _scored(self, state: CallState, steps: int) -> Callable[[str], bool]:
        """Whether a model answering after ``steps`` escalations will have its answer scored
        (``_escalate``: not after ``max_steps``, nor at the top rung)."""
        cascade = self.cascade
        assert cascade is not None
        return lambda model: (steps < cascade.max_steps
                              and cascade.escalate_to(state, model) is not None)

    def _ref(self, model: str) -> ModelRef:
        return self.refs.get(model) or ModelRef(model)

    def _answer(self, state: CallState, model: str, purpose: str,
                attempt: Callable[[CallState, ModelRef, str], Pipeline[Any]],
                above: str | None = None) -> Pipeline[tuple[str, Any]]:
        """``model`` answers, with retries, then fallback along the ladder; given ``above``
        (an escalation: the highest rung whose answer this call rejected), only to a model
        pricier than it."""
        tried: list[str] = []
        while True:
            tried.append(model)
            try:
                result = yield from self._retrying(state, self._ref(model), purpose, attempt)
                return model, result
            except Exception as exc:
                if not self.retry.retry_on(exc) or state.request.sticky_model is not None:
                    raise
                following = self.fallback.next_model(model, tried, self.policy.costs, above)
                if following is None:
                    raise
                yield Emit(FALLBACK_EVENT, {
                    "decision_id": state.context.call_id, "failed_model": model,
                    "error": type(exc).__name__, "message": str(exc)[:500],
                    "next_model": following, "attempts": len(state.attempts),
                })
                model, purpose = following, "fallback"

    def _retrying(self, state: CallState, ref: ModelRef, purpose: str,
                  attempt: Callable[[CallState, ModelRef, str], Pipeline[Any]]
                  ) -> Pipeline[Any]:
        """tenacity's decision loop (``Retrying.iter``), with the attempt and the wait as
        effects, so sync and async retry alike."""
        retrying = self.retry.retrying()
        retrying.begin()
        retry_state = tenacity.RetryCallState(retrying, fn=None, args=(), kwargs={})
        first = True
        while True:
            action = retrying.iter(retry_state)
            if isinstance(action, tenacity.DoAttempt):
                try:
                    result = yield from attempt(state, ref, purpose if first else "retry")
                except Exception:
                    retry_state.set_exception(sys.exc_info())  # type: ignore[arg-type]
                else:
                    retry_state.set_result(result)
                first = False
            elif isinstance(action, tenacity.DoSleep):
                retry_state.prepare_for_next_attempt()
                yield Sleep(float(action), self.sleep, self.asleep)
            else:
                return action

    def _reserve(self, state: CallState, ref: ModelRef) -> Pipeline[Any]:
        if self.budget is None:
            return None
        try:
            hold = yield Dual(self.budget.reserve, self.budget.areserve, (state, ref))
        except BudgetExceededError as exc:  # this call's worst case does not fit: no call
            yield Emit(BUDGET_EVENT, {"action": "deny", "decision_id": state.context.call_id,
                                      "scope": state.context.scope, "model": ref.name,
                                      "error": f"{type(exc).__name__}: {exc}"})
            raise
        return hold  # None: no budget applies to this caller

    def _settle(self, hold: Any, answer: Answer | None, error: BaseException | None,
                attempt: Attempt, state: CallState) -> Pipeline[None]:
        """Book the attempt on the budget (commit or release), then trace it."""
        yield from self._book(hold, answer, error, attempt)
        # the USD-per-call figure the ladder was ordered by (None for a model not on it): what
        # a tracer can charge a call to a model it has no prices for, whichever rung answered
        yield Emit(ATTEMPT_EVENT, {"decision_id": state.context.call_id,
                                   "scope": state.context.scope, **attempt.to_event(),
                                   "estimated_cost_usd": self.policy.costs.get(attempt.model)})

    def _book(self, hold: Any, answer: Answer | None, error: BaseException | None,
              attempt: Attempt) -> Pipeline[None]:
        if hold is None or self.budget is None:
            return
        if answer is not None:
            info = yield Dual(self.budget.commit, self.budget.acommit, (hold, answer))
            info = dict(info or {})
            cost = info.get("cost_usd")
            attempt.cost_usd = float(cost) if isinstance(cost, (int, float)) else None
            yield Emit(BUDGET_EVENT, {"action": "commit", **info})
        else:
            info = yield Dual(self.budget.release, self.budget.arelease, (hold, error))
            yield Emit(BUDGET_EVENT, {"action": "release", **dict(info or {})})

    def _meter(self, state: CallState, ref: ModelRef, purpose: str,
               messages: Any = None) -> Pipeline[_Meter]:
        """Start one provider call: reserve its worst case, open its attempt record, trace the
        hold (a cancellation or callback error while that event is dispatched frees it).
        ``messages``: a step's own prompt (a judge's), which the hold is sized for."""
        hold = yield from self._reserve(_sized_for(state, ref, messages), ref)
        attempt = Attempt(ref.name, purpose)
        state.attempts.append(attempt)
        meter = _Meter(self, state, hold, attempt, time.perf_counter())
        if hold is not None:
            try:
                yield Emit(BUDGET_EVENT, {"action": "reserve", **_event_of(hold)})
            except GeneratorExit:
                raise
            except BaseException as exc:
                yield from meter.failed(exc, _outcome_of(exc))
                raise
        return meter

    def _call(self, state: CallState, ref: ModelRef, purpose: str,
              messages: Any = None) -> Pipeline[Answer]:
        """One budgeted, recorded provider call answered whole."""
        meter = yield from self._meter(state, ref, purpose, messages)
        try:
            answer = yield CallModel(ref, purpose, self.timeout, messages)
        except GeneratorExit:
            raise
        except BaseException as exc:  # a cancellation too: its hold is freed, not leased out
            yield from meter.failed(exc, _outcome_of(exc))
            raise
        yield from meter.answered(answer)
        return answer  # type: ignore[no-any-return]

    def _open(self, state: CallState, ref: ModelRef, purpose: str) -> Pipeline[Any]:
        """Open a stream and wait for its first chunk (errors until then can be retried)."""
        meter = yield from self._meter(state, ref, purpose)
        try:
            stream = yield OpenStream(ref, purpose)
            first = yield NextChunk(stream, self.timeout)
        except GeneratorExit:
            raise
        except BaseException as exc:
            yield from meter.failed(exc, _outcome_of(exc))
            raise
        return _Opened(ref, stream, first, meter)

    def _pump(self, state: CallState, model: str, opened: _Opened
              ) -> Pipeline[tuple[Answer, Any]]:
        """Deliver an open stream's chunks as they come; merge them into the answer (returned
        with the last chunk, for the closing ``Settle``)."""
        chunks: list[Any] = []
        chunk = opened.first
        try:
            record = _record(state.decision, model, state.attempts, state.notes,
                             self._provider_model(state.request, model))
            while chunk is not END_OF_STREAM:
                chunks.append(chunk)
                yield Deliver(chunk, record if len(chunks) == 1 else None)
                chunk = yield NextChunk(opened.stream)
            answer: Answer = yield Collect(opened.ref, chunks)
        except StreamClosed as exc:
            given = yield from self._cut_short(state, opened.meter, opened.ref, chunks, exc,
                                               "abandoned")
            yield from self._abandoned(state, given, len(chunks), None)
            raise
        except GeneratorExit:
            raise
        except BaseException as exc:
            yield from self._cut_short(state, opened.meter, opened.ref, chunks, exc,
                                       _outcome_of(exc))
            raise
        yield from opened.meter.answered(answer)
        return answer, chunks[-1] if chunks else None

    def _cut_short(self, state: CallState, meter: _Meter, ref: ModelRef, chunks: list[Any],
                   error: BaseException, outcome: str) -> Pipeline[Answer | None]:
        """Settle a stream that ended without its usage report (abandoned or failed); returns
        the chunks received, merged once (None: no chunk, or they did not merge).

        Before its first chunk it is released, as any failed call. After it, the provider
        bills the prompt and what it generated, so with a budget hold an estimate is
        committed (never $0: an agent could otherwise dodge its budget by stopping streams
        early), and the attempt carries it (``usage_estimated``). Without a budget nothing is
        estimated (the estimate may need the model's tokenizer): the attempt has no usage."""
        if not chunks:  # nothing billed yet
            yield from meter.failed(error, outcome=outcome)
            return None
        merged = yield from self._merged(state, ref, chunks)
        if meter.hold is None:  # no budget to charge
            yield from meter.failed(error, outcome=outcome)
        else:
            yield from meter.failed(error, outcome=outcome,
                                    answer=self._estimated(state, ref, chunks, merged))
        return merged

    def _merged(self, state: CallState, ref: ModelRef, chunks: list[Any]
                ) -> Pipeline[Answer | None]:
        """The chunks of a stream cut short, merged; None when they do not merge (a stream cut
        mid-structure: the adapter's merge refuses the pieces), the error noted in
        ``notes["stream_merge"]``."""
        try:
            answer: Answer = yield Collect(ref, chunks)
        except (TypeError, ValueError) as exc:
            state.notes["stream_merge"] = (
                f"the {len(chunks)} chunks {ref.name!r} streamed before it stopped do not "
                f"merge ({type(exc).__name__}: {exc}); usage estimated from their size")[:500]
            return None
        return answer

    def _estimated(self, state: CallState, ref: ModelRef, chunks: list[Any],
                   merged: Answer | None) -> Answer:
        """What a stream cut short cost, estimated as its reservation is: the prompt's input
        tokens from the adapter's estimate (else the routing text's ``estimated_tokens``), the
        output as ``estimated_tokens`` of the text received (a deliberate over-estimate; chunks
        that did not merge count their printed size), but never more than the call's
        ``max_tokens``, which the provider stops at (so the estimate stays within the worst
        case reserved); a usage report among the chunks, if any, gives the input count and
        the output count when larger."""
        limit: int | None = None
        if state.estimate is not None:
            sized = state.estimate(ref)
            input_tokens = int(sized.input_tokens)
            limit = sized.max_output_tokens
        else:  # a budget step of its own that reserves without the adapter's estimate
            input_tokens = estimated_prompt_tokens([state.request.text])
        if merged is not None:
            output_tokens = estimated_tokens(merged.text or "")
            reported = merged.usage
        else:
            output_tokens = estimated_tokens("".join(str(chunk) for chunk in chunks))
            reported = None
        if limit is not None:
            output_tokens = min(output_tokens, int(limit))
        if reported is not None:
            usage = Usage(reported.input_tokens or input_tokens,
                          max(reported.output_tokens, output_tokens),
                          reported.cache_read_tokens, reported.reasoning_tokens)
        else:
            usage = Usage(input_tokens, output_tokens)
        return Answer(raw=None if merged is None else merged.raw,
                      text="" if merged is None else merged.text, usage=usage,
                      usage_estimated=True)

    def _abandoned(self, state: CallState, answer: Answer | None, delivered: int,
                   total: int | None) -> Pipeline[None]:
        """Record a stream its consumer left after its first chunk (and decision id) went out:
        with what was delivered (``answer``: those chunks merged; None if they did not
        merge), marked abandoned."""
        of = "" if total is None else f" of {total}"
        state.notes["stream"] = f"abandoned by its consumer after {delivered}{of} chunks"
        yield from self._finish(state, answer if answer is not None else Answer(raw=None,
                                                                                 text=""))

    def _buffered(self, state: CallState, ref: ModelRef, purpose: str) -> Pipeline[Answer]:
        """A whole stream, buffered: an Answer whose ``raw`` is ``(merged, chunks)``."""
        meter = yield from self._meter(state, ref, purpose)
        chunks: list[Any] = []
        try:
            stream = yield OpenStream(ref, purpose)
            while (chunk := (yield NextChunk(stream, self.timeout))) is not END_OF_STREAM:
                chunks.append(chunk)
            answer: Answer = yield Collect(ref, chunks)
        except GeneratorExit:
            raise
        except BaseException as exc:
            yield from self._cut_short(state, meter, ref, chunks, exc, _outcome_of(exc))
            raise
        yield from meter.answered(answer)
        return replace(answer, raw=(answer.raw, chunks))

    def _ask(self, state: CallState, ref: ModelRef, messages: Any = None) -> Pipeline[Answer]:
        """A call a step makes of its own (a verifier, a judge): budgeted, traced, retried.

        A ref with no model object names one of the candidates: the adapter's model of that
        name answers, as a non-candidate call.
        """
        known = self.refs.get(ref.name)
        if ref.model is None and known is not None:
            ref = replace(known, candidate=False)

        def attempt(state: CallState, ref: ModelRef, purpose: str) -> Pipeline[Answer]:
            return self._call(state, ref, "verify", messages)

        result = yield from self._retrying(state, ref, "verify", attempt)
        return result  # type: ignore[no-any-return]

    def _escalate(self, state: CallState, model: str, answer: Answer,
                  attempt: Callable[[CallState, ModelRef, str], Pipeline[Any]]
                  ) -> Pipeline[tuple[str, Answer]]:
        """Score the answer; while it is doubtful, the next model up answers.

        An answer with no rung above it (or after ``max_steps`` escalations) is accepted
        without scoring: nothing could come of the score but the scorer's cost; so is one the
        step declines to score (``score`` returns None, e.g. a tool-call answer). A scorer's
        error is traced (``langroute.cascade`` with ``error``) and fails the call, except a
        verifier's call the budget denies: the answer was paid for, so, as for a denied
        escalation below, it is returned, unchecked (no score, ``notes["cascade"]`` and a
        ``langroute.cascade`` event with ``denied``), never thrown away for a
        ``BudgetExceededError`` that promises no provider call was made.

        An escalation the budget denies (``BudgetExceededError`` reserving the next model) does
        not fail the call: the doubtful answer was checked and paid for, so it is returned,
        marked as such (its attempt ``accepted`` with its failing score, a second
        ``langroute.cascade`` event with ``denied`` naming the model refused, and a
        ``notes["cascade"]`` saying why). Throwing a paid answer away helps no one; the caller
        sees from the record that it was not confirmed.

        An escalation that fails (its retries spent) falls back like any call, but only to a
        model above the rung whose answer it rejected: a model at or below it could only give
        an answer no better than the one already paid for, and unscored. When no model above
        can answer, ``fallback`` decides, as it does for any failed call: ``"cheaper"``
        accepts a weaker answer, so the doubtful answer is
        returned unconfirmed as when the budget denies (``notes["cascade"]`` and the second
        ``langroute.cascade`` event carry ``failed`` and the provider's ``error``; the failed
        attempts stay in the record); ``"stronger"`` and None never go down in quality, so the
        provider's error is raised (after a ``langroute.cascade`` event with ``failed`` and
        ``error``), for the caller's own handling (``with_fallbacks``, ``with_retry``). An
        error that is not retryable (400, 401, ...) is always raised.
        """
        cascade = self.cascade
        assert cascade is not None
        steps = 0
        while True:
            answered = _last_answer(state.attempts, model)
            scored = answer if not isinstance(answer.raw, tuple) else replace(
                answer, raw=answer.raw[0])
            above = cascade.escalate_to(state, model) if steps < cascade.max_steps else None
            score: float | None = None
            accepted = True
            if above is not None:
                try:
                    value = yield from cascade.score(state, scored)
                    score = None if value is None else float(value)
                except BudgetExceededError as exc:  # a verifier's call did not fit
                    denied = exc.model or "a verifier"
                    note = (f"checking the answer of {model!r} was denied by the budget "
                            f"({exc}); it is returned unchecked")
                    yield from self._unconfirmed(state, model, answered, note, {
                        "score": None, "passed": None, "step": steps, "denied": denied})
                    return model, answer
                except Exception as exc:
                    yield Emit(CASCADE_EVENT, {
                        "decision_id": state.context.call_id, "model": model, "score": None,
                        "accepted": False, "passed": None, "escalate_to": None, "step": steps,
                        "error": f"{type(exc).__name__}: {exc}"[:500]})
                    raise
                accepted = True if score is None else cascade.accepts(score)
            following = None if accepted else above
            if answered is not None:
                answered.score = score
                answered.outcome = "escalated" if following is not None else "accepted"
            yield Emit(CASCADE_EVENT, {
                "decision_id": state.context.call_id, "model": model, "score": score,
                "accepted": following is None, "passed": None if score is None else bool(accepted),
                "escalate_to": following, "step": steps,
                "latency_ms": None if answered is None else round(answered.latency_ms, 3),
                "cost_usd": None if answered is None else answered.cost_usd,
            })
            if following is None:
                return model, answer
            # the next answer is scored in turn unless it is the last step or the top rung
            try:
                model_up, answer_up = yield from self._answer(
                    state, following, "cascade",
                    _provisional(attempt, self._scored(state, steps + 1)), above=model)
            except BudgetExceededError as exc:
                denied = exc.model or following
                note = (f"escalation to {denied!r} denied by the budget ({exc}); the "
                        f"answer of {model!r} is returned unconfirmed (score {score:g} < "
                        "accept)")
                yield from self._unconfirmed(state, model, answered, note, {
                    "score": score, "step": steps, "denied": denied})
                return model, answer
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"[:500]
                event = {"score": score, "step": steps, "failed": following, "error": error}
                if not self.fallback.may_go_down(exc, self.retry):
                    yield Emit(CASCADE_EVENT, {
                        "decision_id": state.context.call_id, "model": model,
                        "accepted": False, "passed": False, "escalate_to": None, **event})
                    raise
                note = (f"escalation to {following!r} failed ({error}) and no model above "
                        f"{model!r} could answer; the answer of {model!r} is returned "
                        f"unconfirmed (score {score:g} < accept)")
                yield from self._unconfirmed(state, model, answered, note, event)
                return model, answer
            model, answer = model_up, answer_up
            steps += 1

    def _unconfirmed(self, state: CallState, model: str, answered: Attempt | None, note: str,
                     event: dict[str, Any]) -> Pipeline[None]:
        """Keep ``model``'s doubtful answer after its escalation was denied or failed: its
        attempt accepted (with its failing score), ``notes["cascade"]`` and a second
        ``langroute.cascade`` event (``event``: why) saying it was not confirmed."""
        state.notes["cascade"] = note
        if answered is not None:
            answered.outcome = "accepted"
        yield Emit(CASCADE_EVENT, {
            "decision_id": state.context.call_id, "model": model, "accepted": True,
            "passed": False, "escalate_to": None, **event, "note": note[:500]})

    def _finish(self, state: CallState, answer: Answer) -> Pipeline[None]:
        for recorder in self.recorders:
            yield Dual(recorder.record, recorder.arecord, (state, answer))


@dataclass
class _Meter:
    """One provider call in flight: its budget hold and attempt record, settled once."""

    pipeline: CallPipeline
    state: CallState
    hold: Any
    attempt: Attempt
    start: float

    settled: bool = False

    def _settling(self) -> None:
        """Each provider call is booked once: a second settle is a pipeline bug, not a no-op
        (it would hide a call booked twice, or an outcome overwritten)."""
        if self.settled:
            raise RuntimeError(f"the {self.attempt.purpose} call to {self.attempt.model!r} "
                               "was already settled")
        self.settled = True

    def failed(self, error: BaseException, outcome: str = "error",
               answer: Answer | None = None) -> Pipeline[None]:
        """Settle a call that failed: released, or committed at ``answer``'s estimated usage
        (a stream cut short after its first chunk)."""
        self._settling()
        self.attempt.outcome = outcome
        self.attempt.error = f"{type(error).__name__}: {error}"[:500]
        self.attempt.latency_ms = (time.perf_counter() - self.start) * 1000.0
        if answer is not None:
            self.attempt.usage = answer.usage
            self.attempt.usage_estimated = answer.usage_estimated
        yield from self.pipeline._settle(self.hold, answer, error if answer is None else None,
                                         self.attempt, self.state)

    def answered(self, answer: Answer) -> Pipeline[None]:
        self._settling()
        self.attempt.latency_ms = (time.perf_counter() - self.start) * 1000.0
        self.attempt.usage = answer.usage
        yield from self.pipeline._settle(self.hold, answer, None, self.attempt, self.state)


@dataclass
class _Opened:
    ref: ModelRef
    stream: Any
    first: Any
    meter: _Meter


def _outcome_of(error: BaseException) -> str:
    """An attempt's outcome when ``error`` stopped it: ``"error"``, or ``"cancelled"`` for a
    cancellation or interruption (not an ``Exception``), which is settled, never retried."""
    return "error" if isinstance(error, Exception) else "cancelled"


def _route_event(state: CallState) -> dict[str, Any]:
    event: dict[str, Any] = dict(state.decision.to_event())
    if state.context.scope is not None:
        event["scope"] = state.context.scope
    return event


def _noted(event: dict[str, Any]) -> dict[str, Any]:
    """``event``, after handing a copy to the open ``collect_decisions`` blocks."""
    note_decision(event)  # type: ignore[arg-type]
    return event


def _provisional(attempt: Callable[[CallState, ModelRef, str], Pipeline[Any]],
                 scored: Callable[[str], bool]
                 ) -> Callable[[CallState, ModelRef, str], Pipeline[Any]]:
    """``attempt`` on a provisional ref when ``scored(model)``: its answer will be scored, so
    the adapter keeps it from token streams (``ModelRef.provisional``). Asked per model, as a
    fallback may answer instead: one at the top rung is not scored, so it is not hidden."""
    def provisional(state: CallState, ref: ModelRef, purpose: str) -> Pipeline[Any]:
        return attempt(state, replace(ref, provisional=True) if scored(ref.name) else ref,
                       purpose)
    return provisional


def _last_answer(attempts: Sequence[Attempt], model: str) -> Attempt | None:
    for attempt in reversed(attempts):
        if attempt.model == model and attempt.purpose != "verify" and attempt.outcome == "ok":
            return attempt
    return None


def _sized_for(state: CallState, ref: ModelRef, messages: Any) -> CallState:
    """The state a call is reserved with. A step's own prompt (``messages``: ``(role, text)``
    pairs, as a judge is asked, or any form an adapter takes; a str is one user message)
    replaces the request's messages, and the caller's ``max_tokens`` does not apply to it
    (the adapters send it none), so its estimate is the prompt's ``estimated_tokens`` (the
    adapters' over-estimate for a model that cannot count offline) and the asked model's own
    ``max_tokens`` if it has one, else the budget's cap.
    Sized from the caller's short question and ``max_tokens=6``, a judge's hold was once a
    twentieth of its bill."""
    if messages is None or state.estimate is None:
        return state
    pairs = [messages] if isinstance(messages, str) else list(messages)  # a str: one message
    limit = getattr(ref.model, "max_tokens", None)
    estimate = TokenEstimate(
        estimated_prompt_tokens(_text_of(message) for message in pairs),
        limit if isinstance(limit, int) and not isinstance(limit, bool) else None,
        method="chars/3")
    return replace(state, estimate=lambda _ref: estimate)


def _text_of(message: Any) -> str:
    """A step message's text: a ``(role, text)`` pair's text, a ``{"role", "content"}``
    dict's content, else its ``content`` (or the message itself) as a string, which
    over-counts structured content, as a hold should."""
    if isinstance(message, (tuple, list)) and len(message) == 2:
        return str(message[1])
    if isinstance(message, Mapping) and "content" in message:
        return str(message["content"])
    return str(getattr(message, "content", message))


def _event_of(hold: Any) -> dict[str, Any]:
    to_event = getattr(hold, "to_event", None)
    return dict(to_event()) if callable(to_event) else {}

