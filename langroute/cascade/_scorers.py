"""Scorers: how sure a cascade is that a cheap answer is good enough.

A scorer is a small object with ``bounds`` (the range of its scores), ``supports_tool_calls``
and ``score(state, answer)``: a *generator of effects* (see ``langroute.pipeline``) that returns
a float. Asking another model is ``answer = yield from state.ask(ref)``; several at once is
``yield Gather(...)``. The same generator runs under the sync and the async driver, so every
scorer has one logic for both. Calls made through ``state.ask`` are budgeted, traced and
recorded as ``verify`` attempts like any other call.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Generator, Sequence
from typing import Any

import numpy as np

from .._exceptions import CascadeConfigError, CascadeScoreError
from ..pipeline import Answer, CallState, Effect, Gather, ModelRef
from ._normalise import normalise_answer

__all__ = [
    "DEFAULT_JUDGE_PROMPT",
    "AgreementScorer",
    "FunctionScorer",
    "JudgeScorer",
    "LogprobScorer",
    "Scorer",
    "as_scorer",
]

Score = Generator[Effect, Any, float]


class Scorer:
    """Base of the scorers: ``bounds`` is the closed range of scores (``-inf``/``inf`` for
    unbounded sides); a tool-call answer is only scored when ``supports_tool_calls``."""

    bounds: tuple[float, float] = (0.0, 1.0)
    supports_tool_calls: bool = False
    #: The models the scorer asks (``candidate=False`` refs; ``model`` None: a name the adapter
    #: resolves among its own models). Adapters validate them at construction.
    asks: tuple[ModelRef, ...] = ()

    def score(self, state: CallState, answer: Answer) -> Score:
        raise NotImplementedError(f"{type(self).__name__} must implement score()")

    def check_accept(self, accept: Any) -> float:
        """``accept`` as a float, or CascadeConfigError when it is not a finite number within
        ``bounds`` (a threshold no score can pass, or every score passes, is a mistake: so
        ``accept`` equal to the lowest score is refused, since every answer would pass it)."""
        lo, hi = self.bounds
        if not _is_number(accept):
            raise CascadeConfigError(f"accept must be a number, got {accept!r}")
        value = float(accept)
        if not math.isfinite(value) or not lo <= value <= hi:
            raise CascadeConfigError(
                f"accept={accept!r} is outside the range [{lo:g}, {hi:g}] of "
                f"{type(self).__name__}'s scores"
            )
        if value == lo:
            raise CascadeConfigError(
                f"accept={accept!r} is the lowest score {type(self).__name__} gives: every "
                "answer would pass and the scorer's calls would buy nothing; raise it"
            )
        return value

    def check_score(self, value: Any) -> float:
        """The scorer's result as a float within ``bounds``, else CascadeScoreError."""
        if not _is_number(value):
            raise CascadeScoreError(
                f"{type(self).__name__} returned {value!r}, not a number"
            )
        lo, hi = self.bounds
        out = float(value)
        if math.isnan(out) or not lo <= out <= hi:
            raise CascadeScoreError(
                f"{type(self).__name__} returned {out!r}, outside its range [{lo:g}, {hi:g}]"
            )
        return out


def _is_number(value: Any) -> bool:
    """A real number, NumPy's included (``np.int64`` as well as ``np.float32``); bools (Python's
    and NumPy's) are refused: ``True`` as a score or threshold is a bug, not 1.0."""
    return not isinstance(value, bool) and isinstance(
        value, (int, float, np.integer, np.floating))


def _ref(model: Any, where: str) -> ModelRef:
    """A verifier or judge as a ModelRef that is not a routing candidate.

    A str names a model the adapter knows (one of the routed model's candidates); a
    ``ModelRef`` is kept (with ``candidate=False``); any other object is the framework's model
    itself (the adapter checks that it is one, at construction). Such an object is only named
    here (the model id it says it calls, else its class): the adapter describes it as it
    describes its candidates (provider, model id) when the pipeline is built, so a budget
    prices its calls like any other (``langroute.pipeline._assembly.verifier_refs``).
    """
    if isinstance(model, ModelRef):
        return ModelRef(model.name, model.model, model.provider_model, model.provider,
                        candidate=False)
    if isinstance(model, str):
        if not model:
            raise CascadeConfigError(f"{where}: a model name must be a non-empty str")
        return ModelRef(model, candidate=False)
    if model is None:
        raise CascadeConfigError(f"{where}: got None instead of a model")
    return ModelRef(_name_of(model), model, candidate=False)


def _name_of(model: Any) -> str:
    """A model object's name in records: the model id it calls, else its class name."""
    for attr in ("model_name", "model"):
        value = getattr(model, attr, None)
        if isinstance(value, str) and value:
            return value
    return type(model).__name__


def _check_normaliser(normalise: Any) -> Callable[[str], str]:
    if not callable(normalise):
        raise CascadeConfigError(f"normalise must be a callable str -> str, got {normalise!r}")
    return normalise  # type: ignore[no-any-return]


class AgreementScorer(Scorer):
    """The share of other models whose final answer agrees with the cheap answer.

    The verifier models are asked the same messages, all at once; their answers and the cheap
    one are normalised (``normalise``, default ``normalise_answer``: numbers, multiple-choice
    letters, exact text) and the score is the fraction of verifiers agreeing, in [0, 1]. An
    answer with nothing gradable (normalised to "") agrees with nothing. This is the scorer
    ``langroute eval --cascade agreement`` evaluates offline.

    Parameters
    ----------
    models : sequence of (str, ModelRef or chat model)
        Verifiers: names of the routed model's models, or model objects. At least one.
    normalise : callable str -> str, default=normalise_answer
    """

    def __init__(self, models: Sequence[Any],
                 normalise: Callable[[str], str] = normalise_answer) -> None:
        if isinstance(models, (str, bytes)) or not isinstance(models, Sequence):
            raise CascadeConfigError(
                f"AgreementScorer(models=...) takes a list of models, got {models!r}"
            )
        if not models:
            raise CascadeConfigError("AgreementScorer(models=[]) has no model to agree with; "
                                     "give at least one verifier model")
        self.models = list(models)
        self.asks = tuple(_ref(m, "AgreementScorer(models=...)") for m in self.models)
        names = [r.name for r in self.asks]
        if len(set(names)) != len(names):
            raise CascadeConfigError(f"AgreementScorer lists a model twice: {names}")
        self.normalise = _check_normaliser(normalise)

    def __repr__(self) -> str:
        return f"AgreementScorer(models={[r.name for r in self.asks]!r})"

    def score(self, state: CallState, answer: Answer) -> Score:
        ask = _asker(state)
        others: list[Answer] = yield Gather(tuple(ask(ref) for ref in self.asks))
        mine = self.normalise(answer.text)
        if not mine:
            return 0.0
        agree = sum(1 for other in others if self.normalise(other.text) == mine)
        return agree / len(others)


class LogprobScorer(Scorer):
    """A low quantile of the answer's token log-probabilities (the provider must return them,
    e.g. ``ChatOpenAI(logprobs=True)``); scores lie in [-inf, 0] (-inf when the quantile falls
    on a token of probability 0).

    The accept threshold is calibrated from data, not guessed: ``calibrate(logprobs,
    correct, precision=0.95)`` returns the lowest threshold whose accepted answers were correct
    at least that often.

    Parameters
    ----------
    quantile : float in [0, 1], default=0.1
        0 is the least likely token, 0.5 the median.
    """

    bounds = (-math.inf, 0.0)

    def __init__(self, quantile: float = 0.1) -> None:
        if (isinstance(quantile, bool) or not isinstance(quantile, (int, float))
                or not 0.0 <= quantile <= 1.0):
            raise CascadeConfigError(f"quantile must be a number in [0, 1], got {quantile!r}")
        self.quantile = float(quantile)

    def __repr__(self) -> str:
        return f"LogprobScorer(quantile={self.quantile:g})"

    def value(self, logprobs: Sequence[float]) -> float:
        """The score of one answer's token log-probabilities."""
        values = np.asarray(logprobs, dtype=np.float64)
        if values.ndim != 1 or values.size == 0:
            raise CascadeScoreError("no token log-probabilities to score")
        if not np.all(values <= 0) or np.isnan(values).any():
            raise CascadeScoreError("token log-probabilities must be <= 0 and not NaN")
        with np.errstate(invalid="ignore"):
            value = float(np.quantile(values, self.quantile))
        # NaN only from interpolating next to a -inf token (probability 0): the quantile is -inf
        return -math.inf if math.isnan(value) else value

    def score(self, state: CallState, answer: Answer) -> Score:
        if answer.token_logprobs is None:
            raise CascadeScoreError(
                "the answer carries no token log-probabilities; LogprobScorer needs a provider "
                "that returns them (e.g. ChatOpenAI(logprobs=True))"
            )
        return self.value(answer.token_logprobs)
        yield  # pragma: no cover  (a generator that asks nothing)

    def calibrate(self, logprobs: Sequence[Sequence[float]], correct: Sequence[bool], *,
                  precision: float = 0.95) -> float:
        """The lowest accept threshold at which accepted answers were correct ``precision``
        of the time, on labelled answers (each answer's token log-probabilities and whether it
        was right). Pass it as ``Cascade(accept=...)``. Raises CascadeConfigError when no
        threshold reaches ``precision`` or the inputs do not line up."""
        if not _is_number(precision) or not 0.0 < precision <= 1.0:
            raise CascadeConfigError(f"precision must be a number in (0, 1], got {precision!r}")
        labels = np.asarray(correct)
        if len(logprobs) != labels.shape[0] or labels.ndim != 1 or not labels.size:
            raise CascadeConfigError(
                f"need one correctness label per answer, got {len(logprobs)} answers and "
                f"{labels.shape[0] if labels.ndim else 0} labels"
            )
        if labels.dtype != bool and not np.isin(labels, (0, 1)).all():
            raise CascadeConfigError("correct must hold booleans (or 0/1)")
        scores = np.array([self.value(lp) for lp in logprobs])
        order = np.argsort(-scores, kind="stable")
        ranked, hits = scores[order], np.cumsum(labels[order].astype(np.float64))
        ends = np.append(np.flatnonzero(ranked[1:] != ranked[:-1]), ranked.size - 1)
        prec = hits[ends] / (ends + 1)
        ok = np.flatnonzero(prec >= precision - 1e-12)
        if not ok.size:
            raise CascadeConfigError(
                f"no threshold reaches precision {precision:g} on these {labels.size} answers "
                f"(the most confident answer group is right {prec[0]:.0%} of the time)"
            )
        return float(ranked[ends[ok[-1]]])


DEFAULT_JUDGE_PROMPT = (
    "You check another assistant's answer. Question:\n<question>\n{question}\n</question>\n"
    "Answer:\n<answer>\n{answer}\n</answer>\n"
    "Is the answer correct and complete? Reply with ONLY a JSON object, no other text: "
    '{{"verdict": "correct" or "incorrect", "confidence": a number from 0 to 1}}'
)


class JudgeScorer(Scorer):
    """An LLM judges the answer (AutoMix-style self-verification): verdict plus confidence.

    The judge gets ``prompt`` formatted with ``{question}`` (the routing text of the call) and
    ``{answer}`` as one user message (a ``(role, text)`` pair, the form steps ask with), and
    must reply with one JSON object ``{"verdict": "correct" | "incorrect",
    "confidence": 0..1}`` (a fenced ```json block is accepted). The score is the confidence
    that the answer is correct: ``confidence`` for "correct", ``1 - confidence`` for
    "incorrect". Any other reply raises CascadeScoreError naming the judge and the reply.

    Parameters
    ----------
    model : str, ModelRef or chat model
    prompt : str, default=DEFAULT_JUDGE_PROMPT
        Must contain ``{question}`` and ``{answer}``.
    """

    def __init__(self, model: Any, prompt: str = DEFAULT_JUDGE_PROMPT) -> None:
        self.model = model
        self.ref = _ref(model, "JudgeScorer(model=...)")
        self.asks = (self.ref,)
        if not isinstance(prompt, str) or "{question}" not in prompt or "{answer}" not in prompt:
            raise CascadeConfigError(
                "JudgeScorer(prompt=...) must be a str containing {question} and {answer}"
            )
        try:
            prompt.format(question="", answer="")
        except (KeyError, IndexError, ValueError) as exc:
            raise CascadeConfigError(
                f"JudgeScorer(prompt=...) is not a valid format string ({exc!r}); "
                "double literal braces as {{ }}"
            ) from None
        self.prompt = prompt

    def __repr__(self) -> str:
        return f"JudgeScorer(model={self.ref.name!r})"

    def score(self, state: CallState, answer: Answer) -> Score:
        text = self.prompt.format(question=state.request.text, answer=answer.text)
        reply: Answer = yield from _asker(state)(self.ref, (("user", text),))
        return self.parse(reply.text)

    def parse(self, reply: str) -> float:
        """The score of a judge's reply (see the class docstring)."""
        body = reply.strip()
        if body.startswith("```"):
            lines = body.split("\n")
            if len(lines) >= 2 and lines[-1].strip() == "```" and lines[0].strip() in (
                    "```", "```json"):
                body = "\n".join(lines[1:-1]).strip()
        try:
            obj = json.loads(body)
        except ValueError:
            obj = None
        verdict = obj.get("verdict") if isinstance(obj, dict) else None
        confidence = obj.get("confidence") if isinstance(obj, dict) else None
        if (verdict not in ("correct", "incorrect") or isinstance(confidence, bool)
                or not isinstance(confidence, (int, float))
                or not 0.0 <= float(confidence) <= 1.0):
            raise CascadeScoreError(
                f"judge {self.ref.name!r} did not reply with "
                '{"verdict": "correct"|"incorrect", "confidence": 0..1}; '
                f"it replied {reply[:200]!r}"
            )
        return float(confidence) if verdict == "correct" else 1.0 - float(confidence)


class FunctionScorer(Scorer):
    """Any callable ``(messages, answer) -> float`` as a scorer.

    ``messages`` is the call's input as the adapter passed it (``RouteRequest.messages``; the
    LangChain adapter passes its list of messages), or ``(("user", <routing text>),)`` when the
    adapter passes none; ``answer``
    is the ``Answer``. ``bounds`` states the callable's range (default unbounded), which
    ``accept`` is checked against and every score is checked to lie in.
    """

    def __init__(self, fn: Callable[[Any, Answer], float], *,
                 bounds: tuple[float, float] = (-math.inf, math.inf),
                 supports_tool_calls: bool = False) -> None:
        if not callable(fn):
            raise CascadeConfigError(f"a scorer must be callable, got {fn!r}")
        if (isinstance(bounds, (str, bytes)) or not isinstance(bounds, Sequence)
                or len(bounds) != 2 or not all(_is_number(b) for b in bounds)
                or not bounds[0] < bounds[1]):
            raise CascadeConfigError(
                f"bounds must be (low, high), two numbers with low < high, got {bounds!r}")
        lo, hi = bounds
        self.fn = fn
        self.bounds = (float(lo), float(hi))
        self.supports_tool_calls = bool(supports_tool_calls)

    def __repr__(self) -> str:
        return f"FunctionScorer({getattr(self.fn, '__name__', self.fn)!r})"

    def score(self, state: CallState, answer: Answer) -> Score:
        messages = state.request.messages
        if messages is None:
            messages = (("user", state.request.text),)
        return self.fn(messages, answer)
        yield  # pragma: no cover


def as_scorer(scorer: Any) -> Scorer:
    """A ``Scorer`` as is; a plain callable wrapped in ``FunctionScorer``. A Scorer class
    (``LogprobScorer`` for ``LogprobScorer()``) is refused: it is callable, but wrapped it would
    only fail at call time."""
    if isinstance(scorer, Scorer):
        return scorer
    if isinstance(scorer, type) and issubclass(scorer, Scorer):
        raise CascadeConfigError(
            f"scorer is the class {scorer.__name__}, not a scorer; pass an instance, e.g. "
            f"{scorer.__name__}(...)"
        )
    if callable(scorer):
        return FunctionScorer(scorer)
    raise CascadeConfigError(
        "scorer must be a Scorer (AgreementScorer, LogprobScorer, JudgeScorer, ...) or a "
        f"callable (messages, answer) -> float, got {scorer!r}"
    )


def _asker(state: CallState) -> Callable[..., Generator[Effect, Any, Answer]]:
    if state.ask is None:
        raise CascadeScoreError("the call state has no ask(); run the scorer inside CallPipeline")
    return state.ask
