"""One routing decision, made by a pure policy every entry path (sync, async, batch) calls.

``RoutingPolicy`` turns a routing text into a ``RoutingDecision`` with no I/O besides the router's
embedding: the win matrix goes through the ``EscalationLadder`` and the record keeps why the model
was chosen. The record is what the chat model traces (as the ``langroute.route`` custom event),
attaches to its answers (``response_metadata["langroute"]``) and what ``RoutedChatModel.route``
returns. Nothing here knows LangChain.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, TypedDict

import numpy as np

from ._calibration import routing_ladder
from ._checks import check_unit_interval
from ._exceptions import RouterConfigError
from ._policy import EscalationLadder

__all__ = [
    "REASON_ROUTED",
    "REASON_NO_TEXT",
    "REASON_SINGLE",
    "REASON_STICKY",
    "REASON_UNIDENTIFIED_MAKER",
    "ROUTE_EVENT",
    "RouteEvent",
    "Router",
    "RoutingDecision",
    "RoutingPolicy",
    "check_threshold",
]

#: Name of the LangChain custom event every decision is dispatched as.
ROUTE_EVENT = "langroute.route"

REASON_ROUTED = "routed"
REASON_SINGLE = "single candidate"
REASON_STICKY = "sticky tool loop"
REASON_UNIDENTIFIED_MAKER = "routed: tool-call maker unidentified"
REASON_NO_TEXT = "no text to route on"


class Router(Protocol):
    """What routing needs from a router: its model order and a batched win matrix."""

    @property
    def models(self) -> list[str]: ...

    def win_matrices(self, prompts: Sequence[str]) -> np.ndarray: ...


class RouteEvent(TypedDict, total=False):
    """JSON-serialisable payload of the ``langroute.route`` event (and of
    ``response_metadata["langroute"]``).

    ``levels`` maps each ladder rung to the highest P(a pricier rung beats it); the top rung has
    None (nothing is above it). ``strong_score`` is the threshold at or below which the top rung
    is chosen (with two models: P(strong wins)). Both are None when the router was not asked
    (sticky tool loop, single candidate). ``text`` is present only when the chat model was built
    with ``trace_prompt=True``.
    """

    model: str
    candidates: list[str]
    rungs: list[str]
    router: str
    threshold: float
    reason: str
    note: str
    strong_score: float | None
    levels: dict[str, float | None] | None
    estimated_cost_usd: float | None
    latency_ms: float
    text_chars: int
    text_sha256: str
    text: str
    decision_id: str
    requested: dict[str, float]
    budget: dict[str, Any]
    attempts: list[dict[str, Any]]


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


@dataclass(frozen=True)
class RoutingDecision:
    """Which model answers one call, and why.

    ``str(decision)`` explains it in a few lines; ``to_event()`` gives the JSON payload.
    """

    model: str
    candidates: tuple[str, ...]
    rungs: tuple[str, ...]
    router: str
    threshold: float
    reason: str
    latency_ms: float
    text_chars: int
    text_sha256: str
    strong_score: float | None = None
    levels: Mapping[str, float | None] | None = None
    estimated_cost_usd: float | None = None
    note: str = ""
    text: str | None = field(default=None, repr=False)
    decision_id: str = ""
    #: The operating point the user asked for (``{"strong_fraction": 0.3}``) that ``threshold``
    #: was resolved from, or None when a threshold was given directly.
    requested: Mapping[str, float] | None = None
    #: Budget state of the caller's scope when the call was admitted (set by the budget step).
    budget: Mapping[str, Any] | None = None

    def to_event(self) -> RouteEvent:
        """The decision as a plain, JSON-serialisable dict (the custom event's payload)."""
        event = RouteEvent(
            model=self.model,
            candidates=list(self.candidates),
            rungs=list(self.rungs),
            router=self.router,
            threshold=float(self.threshold),
            reason=self.reason,
            note=self.note,
            strong_score=self.strong_score,
            levels=None if self.levels is None else dict(self.levels),
            estimated_cost_usd=self.estimated_cost_usd,
            latency_ms=float(self.latency_ms),
            text_chars=self.text_chars,
            text_sha256=self.text_sha256,
        )
        if self.text is not None:
            event["text"] = self.text
        if self.decision_id:
            event["decision_id"] = self.decision_id
        if self.requested is not None:
            event["requested"] = dict(self.requested)
        if self.budget is not None:
            event["budget"] = dict(self.budget)
        return event

    def with_threshold(self, threshold: float, ladder: EscalationLadder) -> RoutingDecision:
        """The same decision re-read at another threshold (no router call: the levels are kept).

        Used by steps that shift routing after the decision, e.g. a soft budget raising the
        threshold as spend grows. A decision the router did not make (sticky, single) is kept.
        """
        value = check_threshold(threshold)
        if self.levels is None:
            return replace(self, threshold=value)
        levels = np.array([[np.inf if self.levels[r] is None else self.levels[r]
                            for r in self.rungs]], dtype=np.float64)
        levels[0, -1] = -np.inf
        chosen = ladder.models[int(ladder.choose(levels, value)[0])]
        return replace(self, threshold=value, model=chosen)

    def explain(self) -> list[str]:
        """Why each cheaper rung was passed over and the chosen one accepted, one line each."""
        if self.levels is None:
            return [self.note] if self.note else []
        lines = []
        for rung in self.rungs:
            level = self.levels.get(rung)
            if level is None:
                lines.append(f"{rung}: top rung, nothing pricier to escalate to")
                break
            verdict = "escalate" if level >= self.threshold else "accept"
            sign = ">=" if level >= self.threshold else "<"
            lines.append(
                f"{rung}: a pricier model wins with P={level:.3f} {sign} threshold "
                f"{self.threshold:g} -> {verdict}"
            )
            if rung == self.model:
                break
        if self.note:
            lines.append(self.note)
        return lines

    def __str__(self) -> str:
        cost = "" if self.estimated_cost_usd is None else f", ~${self.estimated_cost_usd:.6f}/call"
        head = (
            f"-> {self.model} ({self.reason}; {self.router} router, threshold "
            f"{self.threshold:g}{cost}; decided in {self.latency_ms:.1f} ms)"
        )
        return "\n".join([head, *(f"   {line}" for line in self.explain())])


_ROUTER_LOCKS: weakref.WeakKeyDictionary[Any, threading.Lock] = weakref.WeakKeyDictionary()
_ROUTER_LOCKS_GUARD = threading.Lock()


def _router_lock(router: Any) -> threading.Lock:
    """One lock per router object, for as long as the router lives."""
    with _ROUTER_LOCKS_GUARD:
        try:
            return _ROUTER_LOCKS.setdefault(router, threading.Lock())
        except TypeError:  # not weak-referenceable: a lock of the policy's own
            return threading.Lock()


def check_threshold(threshold: Any) -> float:
    """``threshold`` as a float in [0, 1], else ``RouterConfigError`` (also a per-call one:
    a batch checks each input's before deciding them all, so one bad value fails its input)."""
    value = check_unit_interval("threshold", threshold)
    if value is None:
        raise RouterConfigError("threshold must be a number in [0, 1], got None")
    return value


@dataclass(frozen=True)
class RoutingPolicy:
    """A fitted router, the candidates' ladder and the threshold: text in, decision out.

    Build it with ``RoutingPolicy.build``, which checks everything that can be checked before
    the first call.
    """

    router: Router
    ladder: EscalationLadder
    threshold: float
    costs: Mapping[str, float]
    router_kind: str
    requested: Mapping[str, float] | None = None
    # Embedders keep an LRU cache that is not thread-safe; batch() decides from worker threads,
    # and feedback updates the router in place: one lock per router, shared by every policy
    # built on it (a policy rebuilt after a refit must not get a lock of its own).
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def lock(self) -> threading.Lock:
        """The router's lock: held while it scores prompts or learns from feedback."""
        return self._lock

    @classmethod
    def build(
        cls,
        router: Any,
        candidates: Sequence[str],
        threshold: Any,
        costs: Mapping[str, float] | None = None,
        *,
        requested: Mapping[str, float] | None = None,
    ) -> RoutingPolicy:
        """Validate the pieces and lay out the ladder.

        ``costs`` (USD per call, per candidate) wins over the router's ``costs_``; with neither
        the ladder cannot be ordered and ``RouterConfigError`` is raised.
        """
        value = check_threshold(threshold)
        scores = callable(getattr(router, "win_matrices", None))
        if not (hasattr(type(router), "models") and scores):
            raise RouterConfigError(
                "router must be a fitted langroute router (with .models and .win_matrices()), "
                f"got {type(router).__name__}"
            )
        router_models = list(router.models)  # raises NotFittedError if not fitted
        names = list(candidates)
        if not names:
            raise RouterConfigError("models is empty; give at least one chat model")
        unknown = [name for name in names if name not in router_models]
        if len(unknown) == len(names):
            raise RouterConfigError(
                f"the router knows none of the models {names}; it was fitted on {router_models}"
            )
        if unknown:
            raise RouterConfigError(
                f"models {unknown} are unknown to the router; it knows {router_models}"
            )
        per_call = cls._candidate_costs(router, router_models, names, costs)
        # The same ladder calibrate_threshold uses, so a calibrated threshold means the same here.
        ladder = routing_ladder(router, models=names, costs=per_call)
        kind = getattr(router, "kind", "") or type(router).__name__
        return cls(router, ladder, value, per_call, str(kind),
                   None if requested is None else dict(requested), _router_lock(router))

    @staticmethod
    def _candidate_costs(
        router: Any, router_models: list[str], names: list[str], costs: Mapping[str, float] | None
    ) -> dict[str, float]:
        if costs is not None:
            missing = [name for name in names if name not in costs]
            if missing:
                raise RouterConfigError(f"costs has no USD-per-call figure for models {missing}")
            extra = [name for name in costs if name not in names]
            if extra:
                raise RouterConfigError(f"costs names models {extra} that are not in models")
            out = {}
            for name in names:
                value = costs[name]
                if (isinstance(value, bool) or not isinstance(value, (int, float))
                        or not math.isfinite(value) or value < 0):
                    raise RouterConfigError(
                        f"costs[{name!r}] must be a finite USD-per-call number >= 0, got {value!r}"
                    )
                out[name] = float(value)
            return out
        learned = getattr(router, "costs_", None)
        if learned is None:
            raise RouterConfigError(
                "no costs to order the models by: pass costs={model: USD per call} or fit the "
                "router on outcomes that record costs"
            )
        learned = np.asarray(learned, dtype=np.float64)
        out = {name: float(learned[router_models.index(name)]) for name in names}
        unknown = [name for name, value in out.items() if not math.isfinite(value)]
        if unknown:
            raise RouterConfigError(
                f"the router has no cost for models {unknown}; pass costs={{model: USD per call}}"
            )
        return out

    @property
    def candidates(self) -> tuple[str, ...]:
        return self.ladder.models

    def decide(
        self,
        texts: Sequence[str],
        *,
        keep_text: bool = False,
        thresholds: Sequence[float | None] | None = None,
        decision_ids: Sequence[str] | None = None,
    ) -> list[RoutingDecision]:
        """One decision per routing text, batched through the router in ONE call (one embedding
        batch, one ``win_matrices``).

        ``thresholds`` overrides the policy's threshold per text (None keeps it): one router
        serves callers with different cost preferences. ``decision_ids`` name each decision.
        """
        start = time.perf_counter()
        per_text = np.full(len(texts), self.threshold)
        if thresholds is not None:
            if len(thresholds) != len(texts):
                raise RouterConfigError(f"{len(thresholds)} thresholds for {len(texts)} texts")
            for i, value in enumerate(thresholds):
                if value is not None:
                    per_text[i] = check_threshold(value)
        rungs = self.ladder.rung_names
        if len(rungs) == 1:
            levels = np.full((len(texts), 1), -np.inf)
        else:
            with self._lock:
                wins = self.router.win_matrices(list(texts))
            levels = self.ladder.levels(wins)
        chosen = self.ladder.choose(levels, per_text)
        strong = EscalationLadder.strong_scores(levels)
        latency = (time.perf_counter() - start) * 1000.0 / max(len(texts), 1)
        decisions = []
        for row, text in enumerate(texts):
            model = self.ladder.models[int(chosen[row])]
            ident = {"decision_id": decision_ids[row] if decision_ids is not None else "",
                     "threshold": float(per_text[row])}
            if len(rungs) == 1:
                decisions.append(self._decision(model, text, REASON_SINGLE, latency, keep_text,
                                                note=f"only {model} is on the ladder", **ident))
                continue
            decisions.append(self._decision(
                model, text, REASON_ROUTED, latency, keep_text, **ident,
                strong_score=_finite_or_none(strong[row]),
                levels={name: _finite_or_none(lv) for name, lv in zip(rungs, levels[row],
                                                                       strict=True)},
            ))
        return decisions

    def stick(
        self, model: str, text: str, *, note: str, keep_text: bool = False,
        decision_id: str = "",
    ) -> RoutingDecision:
        """The decision that keeps a tool loop on the model that made the calls."""
        start = time.perf_counter()
        if model not in self.candidates:
            raise RouterConfigError(f"{model!r} is not one of the candidates {self.candidates}")
        latency = (time.perf_counter() - start) * 1000.0
        return self._decision(model, text, REASON_STICKY, latency, keep_text, note=note,
                              decision_id=decision_id)

    def top_rung(
        self, text: str, *, note: str, keep_text: bool = False, decision_id: str = "",
        threshold: float | None = None,
    ) -> RoutingDecision:
        """The decision for a call with no text to route on: the router cannot score it, so
        quality comes first and the top rung (the strongest candidate) answers."""
        start = time.perf_counter()
        value = self.threshold if threshold is None else check_threshold(threshold)
        model = self.ladder.rung_names[-1]
        latency = (time.perf_counter() - start) * 1000.0
        return self._decision(model, text, REASON_NO_TEXT, latency, keep_text, note=note,
                              decision_id=decision_id, threshold=value)

    def _decision(
        self, model: str, text: str, reason: str, latency_ms: float, keep_text: bool, **extra: Any
    ) -> RoutingDecision:
        extra.setdefault("threshold", self.threshold)
        return RoutingDecision(
            model=model,
            candidates=self.candidates,
            rungs=tuple(self.ladder.rung_names),
            router=self.router_kind,
            reason=reason,
            latency_ms=latency_ms,
            text_chars=len(text),
            text_sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
            estimated_cost_usd=self.costs.get(model),
            text=text if keep_text else None,
            requested=self.requested,
            **extra,
        )
