"""What a budget commits for calls it cannot read a usage report of: estimates and holds."""

from __future__ import annotations

import pytest

from langroute import Budget
from langroute.budgets import budget_step
from langroute.pipeline import stream_async, stream_sync

from .helpers import (
    EASY,
    MAX_OUTPUT,
    PRICES,
    REFS,
    WORST,
    FakeCaller,
    estimate,
    pipeline,
    request,
    usd,
)

#: Far more text than MAX_OUTPUT (200) tokens at characters / 3.
LONG = ["word " * 40] * 5


class _Talkative(FakeCaller):
    """Streams a long answer (1000 characters) with no usage report."""

    def stream(self, ref, purpose):
        self._answer(ref, purpose)
        yield from LONG

    async def astream(self, ref, purpose):
        self._answer(ref, purpose)
        for chunk in LONG:
            yield chunk


@pytest.fixture(params=["sync", "async"])
def mode(request):
    return request.param


async def test_a_stream_cut_short_is_never_charged_past_its_max_tokens(mode):
    """A stream abandoned after delivering more characters than 3 x max_tokens was charged
    characters / 3 output tokens: more than the provider can bill (it stops at max_tokens),
    so a hard budget whose limit fitted the call's reserved worst case was overspent."""
    guard = budget_step({"*": Budget(limit_usd=WORST["small"])}, "memory://", REFS, PRICES)
    caller = _Talkative(usage=None)
    run = pipeline(guard).run_stream(request(EASY), estimate=estimate)
    if mode == "sync":
        stream = stream_sync(run, caller)
        assert len([next(stream) for _ in LONG]) == len(LONG)
        stream.close()
    else:
        stream = stream_async(run, caller)
        assert len([await anext(stream) for _ in LONG]) == len(LONG)
        await stream.aclose()
    (reserve,) = caller.budget_events("reserve")
    (commit,) = caller.budget_events("commit")
    assert commit["usage_estimated"] and reserve["reserved_usd"] == pytest.approx(WORST["small"])
    assert commit["cost_usd"] == pytest.approx(WORST["small"])  # capped at max_tokens
    (attempt,) = [p for n, p in caller.events if n == "langroute.attempt"]
    assert attempt["usage"]["output_tokens"] == MAX_OUTPUT
    (state,) = guard.store.accounts(now=guard.clock().timestamp())
    assert state.spent_nano <= state.limit_nano


class _AsksInOneString:
    """A cascade whose scorer asks "large" with its own prompt as one str (the LlamaIndex
    adapter takes a str as one user message) and accepts every answer."""

    max_steps = 1
    prompt = "Is this answer right? " * 15  # 330 characters

    def plan(self, state):
        return "small"

    def score(self, state, answer):
        yield from state.ask(REFS["large"], self.prompt)
        return 1.0

    def accepts(self, score):
        return score >= 0.5

    def escalate_to(self, state, model):
        return "large" if model == "small" else None


async def test_a_step_prompt_given_as_one_str_is_held_as_one_message(mode):
    """A str prompt was sized as a list of one-character messages (8 tokens of overhead per
    character): a check of 330 characters held 2,750 input tokens instead of 118, so a
    tight budget denied a check that fitted."""
    from langroute.pipeline import run_async, run_sync

    guard = budget_step({"*": Budget(limit_usd=1.0)}, "memory://", REFS, PRICES)
    caller = FakeCaller()
    run = pipeline(guard, cascade=_AsksInOneString()).run(request(EASY), estimate=estimate)
    if mode == "sync":
        run_sync(run, caller)
    else:
        await run_async(run, caller)
    (held,) = [e for e in caller.budget_events("reserve") if e["model"] == "large"]
    chars = len(_AsksInOneString.prompt)
    expected = usd("large", -(-chars // 3) + 8, guard.default_max_output_tokens)
    assert held["reserved_usd"] == pytest.approx(expected)
