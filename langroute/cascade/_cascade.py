"""``Cascade``: answer with the routed (cheaper) model, score the answer, escalate while doubtful.

The policy implements the pipeline's ``CascadeStep`` protocol (``langroute.pipeline``); the
pipeline runs it after the routed model answered (see ``CallPipeline`` for the order, tracing
and accounting). In tenacity's style it only decides:

* ``plan``: does this call cascade? Never in a tool loop (the model that made the tool calls
  answers their results), never when the routed model is already the top rung, never when a
  budget forced the cheapest model (``on_exhausted="cheapest"``: the stronger model's worst
  case does not fit, so escalating could only be denied after the cheap answer was paid for;
  noted in the trace); with ``band``, only when the router was unsure (the decision's strong
  score within ``band`` of the threshold).
* ``score``: the scorer rates the answer. A tool-call answer is accepted as is unless the
  scorer ``supports_tool_calls``: its score is None (no score was computed; a made-up one such
  as the top of an unbounded range would read as a real score and is not valid JSON), noted in
  the trace.
* ``accepts``: ``score >= accept``.
* ``escalate_to``: the next rung up the decision's ladder.

Streaming: a cheap answer cannot be delivered before it is accepted, so a cascaded stream
buffers every answer it gets (the escalations' too, scored or not) and delivers only the
accepted one, in its original chunks, once that answer is complete; a call that does not
cascade (``plan`` says no) streams live. The same holds for callbacks: a call whose answer
may still be rejected (an answer that will be scored, every verifier or judge call) is a child
run tagged ``nostream`` (LangGraph's ``stream_mode="messages"`` skips it) and
``langroute:cascade-attempt`` or ``langroute:verifier``, and sends token-streaming handlers
(``astream_events``, ``astream_log``) no tokens, so no ``on_chat_model_stream`` shows it; it is
still an ordinary run (start, end, usage) to tracers and callbacks. The accepted answer reaches
the consumer through the routed run. An answer that will not be scored (the last escalation)
is not hidden: callback handlers (``astream_events``, LangGraph's messages stream) see its
tokens live, while the stream's own consumer gets them only after that answer is complete.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Iterable
from typing import Any

from .._exceptions import CascadeConfigError
from ..pipeline import Answer, CallState, Effect, ModelRef
from ._scorers import Scorer, as_scorer

__all__ = ["Cascade"]


class Cascade:
    """Try the cheaper model first; escalate when the scorer doubts its answer.

    Parameters
    ----------
    scorer : Scorer or callable (messages, answer) -> float
        ``AgreementScorer``, ``LogprobScorer``, ``JudgeScorer`` or any callable.
    accept : float
        Answers scoring at least ``accept`` are kept; within the scorer's range.
    band : float, default=None
        None cascades every routed call below the top rung; a number in [0, 1] cascades only
        when ``|strong_score - threshold| <= band`` (the router was unsure).
    max_steps : int, default=1
        Most escalations per call (each to the next rung up).
    """

    def __init__(self, scorer: Any, accept: float, *, band: float | None = None,
                 max_steps: int = 1) -> None:
        self.scorer: Scorer = as_scorer(scorer)
        self.accept = self.scorer.check_accept(accept)
        if band is not None and (isinstance(band, bool) or not isinstance(band, (int, float))
                                 or not 0.0 <= float(band) <= 1.0):
            raise CascadeConfigError(f"band must be None or a number in [0, 1], got {band!r}")
        self.band = None if band is None else float(band)
        if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
            raise CascadeConfigError(f"max_steps must be an int >= 1, got {max_steps!r}")
        self.max_steps = max_steps

    def __repr__(self) -> str:
        band = "" if self.band is None else f", band={self.band:g}"
        return (f"Cascade(scorer={self.scorer!r}, accept={self.accept:g}{band}, "
                f"max_steps={self.max_steps})")

    @property
    def asks(self) -> tuple[ModelRef, ...]:
        """The models the scorer asks (for adapters to validate: a name must be one of the
        routed model's models; an object must be a chat model)."""
        return self.scorer.asks

    def check_models(self, known: Iterable[str], is_model: Callable[[Any], bool],
                     kind: str = "chat model") -> None:
        """For adapters, at construction: every model the scorer asks is one of ``known``
        (by name) or an object ``is_model`` accepts; else CascadeConfigError naming it."""
        names = set(known)
        for ref in self.asks:
            if ref.model is None and ref.name not in names:
                raise CascadeConfigError(
                    f"{type(self.scorer).__name__} asks {ref.name!r}, which is not one of the "
                    f"models {sorted(names)}; name one of them or pass the {kind} itself"
                )
            if ref.model is not None and not is_model(ref.model):
                raise CascadeConfigError(
                    f"{type(self.scorer).__name__} asks a {type(ref.model).__name__}, which "
                    f"is not a {kind}"
                )

    def plan(self, state: CallState) -> str | None:
        """The model the cascade starts with (the decided one), or None: no cascade."""
        decision = state.decision
        if state.tool_loop:
            return None
        if (decision.budget or {}).get("action") == "cheapest":
            state.notes["cascade"] = ("not cascaded: the budget is exhausted and forced the "
                                      "cheapest model, so no escalation can be paid for")
            return None
        if self._above(decision.rungs, decision.model, state) is None:
            return None  # already the top rung: nothing to escalate to
        if self.band is not None:
            strong = decision.strong_score
            if strong is None or not math.isfinite(strong):
                return None
            if abs(strong - decision.threshold) > self.band:
                return None
        return decision.model

    def score(self, state: CallState, answer: Answer
              ) -> Generator[Effect, Any, float | None]:
        """The scorer's rating of ``answer`` (a generator of effects returning a float), or
        None for a tool-call answer the scorer cannot rate: it is accepted unscored."""
        if answer.tool_calls and not self.scorer.supports_tool_calls:
            state.notes["cascade"] = "tool-call answer accepted unscored"
            return None
        value = yield from self.scorer.score(state, answer)
        return self.scorer.check_score(value)

    def accepts(self, score: float) -> bool:
        return score >= self.accept

    def escalate_to(self, state: CallState, model: str) -> str | None:
        """The next rung up from ``model`` on the decision's ladder (None at the top)."""
        return self._above(state.decision.rungs, model, state)

    @staticmethod
    def _above(rungs: tuple[str, ...], model: str, state: CallState) -> str | None:
        if model in rungs:
            i = rungs.index(model)
            return rungs[i + 1] if i + 1 < len(rungs) else None
        costs = state.policy.costs
        price = costs.get(model, math.inf)
        pricier = [r for r in rungs if costs.get(r, math.inf) > price]
        return pricier[0] if pricier else None
