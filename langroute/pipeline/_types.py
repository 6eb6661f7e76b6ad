"""The records one routed call passes between its steps, free of any framework.

An adapter (the LangChain chat model, the LlamaIndex LLM) turns its own objects into these: the
caller's context (``CallContext``), each provider answer (``Answer`` with its ``Usage``), and
reads back the attempts the pipeline made (``Attempt``). Steps (budget, cascade, recorders) see
only these, so one step works under every framework.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .._decision import check_threshold
from .._exceptions import RouterConfigError

__all__ = [
    "SCOPE_KEYS",
    "THRESHOLD_KEY",
    "THRESHOLD_USED_KEY",
    "Answer",
    "Attempt",
    "CallContext",
    "ModelRef",
    "Usage",
    "call_metadata",
]

#: Metadata keys that name who is calling, most specific first. LangChain agents set
#: ``lc_agent_name``; applications may set ``agent``, ``user`` or ``tenant`` themselves.
SCOPE_KEYS = ("lc_agent_name", "agent", "user", "tenant")

#: Metadata key of a per-call threshold: one router, a different cost preference per caller
#: (``model.with_config(metadata={"langroute_threshold": 0.8})``). An input only: langroute
#: never writes it (a routed model nested in another would read the outer one's as its own).
THRESHOLD_KEY = "langroute_threshold"
#: Metadata key under which the routed run records the threshold actually used (output only).
THRESHOLD_USED_KEY = "langroute_threshold_used"

#: The ``langroute_`` keys a caller may set per call (metadata, or LangChain ``configurable``).
INPUT_KEYS = (THRESHOLD_KEY,)
#: The keys langroute writes into a routed run's metadata (LangChain). Child runs inherit them
#: (a routed model inside a chain or another routed call), so ``call_metadata`` allows them in
#: a LangChain call's metadata; none of them is read as an input.
RECORD_KEYS = ("langroute_model", THRESHOLD_USED_KEY, "langroute_reason",
               "langroute_decision_id")
_PREFIX = "langroute_"


def _unknown(keys: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
    for key in keys:
        if isinstance(key, str) and key.startswith(_PREFIX) and key not in allowed:
            raise RouterConfigError(
                f"unknown per-call key {key!r} in the call's {where}; langroute reads only "
                f"{', '.join(map(repr, INPUT_KEYS))} (and writes "
                f"{', '.join(map(repr, RECORD_KEYS))} into run metadata)")


def _threshold(value: Any, where: str) -> float:
    try:
        return check_threshold(value)
    except RouterConfigError as exc:
        raise RouterConfigError(f"per-call {THRESHOLD_KEY} in the call's {where}: {exc}"
                                ) from None


def call_metadata(metadata: Mapping[str, Any],
                  configurable: Mapping[str, Any] | None = None, *,
                  allowed: tuple[str, ...] = INPUT_KEYS + RECORD_KEYS) -> dict[str, Any]:
    """The call's metadata with a per-call threshold from ``configurable`` merged in, checked.

    A misspelt or unsupported ``langroute_`` key would otherwise be ignored without a word, so
    it is a ``RouterConfigError``; ``allowed`` says which ``langroute_`` keys the metadata may
    carry: by default the inputs and the keys the LangChain adapter writes (inherited by child
    runs); an adapter that writes none (LlamaIndex's instrument tags) passes ``INPUT_KEYS``.
    Metadata and ``configurable`` naming different thresholds is one too: neither silently
    wins. A threshold present is checked here, whatever the call (routed, a tool loop, the top
    rung, one input of a batch), and kept as a float.
    """
    _unknown(metadata, allowed, "metadata")
    merged = dict(metadata)
    if merged.get(THRESHOLD_KEY) is not None:
        merged[THRESHOLD_KEY] = _threshold(merged[THRESHOLD_KEY], "metadata")
    if not configurable:
        return merged
    _unknown(configurable, INPUT_KEYS, "configurable")
    given = configurable.get(THRESHOLD_KEY)
    if given is None:
        return merged
    value = _threshold(given, "configurable")
    noted = merged.get(THRESHOLD_KEY)
    if noted is not None and noted != value:
        raise RouterConfigError(
            f"two per-call thresholds: metadata {THRESHOLD_KEY}={noted!r} and configurable "
            f"{THRESHOLD_KEY}={given!r}; set one")
    merged[THRESHOLD_KEY] = value
    return merged


@dataclass(frozen=True)
class CallContext:
    """Who is calling and how: the caller's metadata and tags, and the call's id.

    ``call_id`` is the decision id: stable, unique, and what feedback refers to.
    """

    metadata: Mapping[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    call_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def scope(self) -> str | None:
        """The first of ``SCOPE_KEYS`` the metadata sets (a non-empty str), as ``key:value``
        for ``agent``/``user``/``tenant`` and the bare agent name for ``lc_agent_name``."""
        for key in SCOPE_KEYS:
            value = self.metadata.get(key)
            if isinstance(value, str) and value:
                return value if key in ("lc_agent_name", "agent") else f"{key}:{value}"
        return None

    def __post_init__(self) -> None:
        # checked here, once, whatever the call becomes (routed, a tool loop, the top rung):
        # a context built without ``call_metadata`` (framework-free callers) too
        value = self.metadata.get(THRESHOLD_KEY)
        if value is not None:
            checked = _threshold(value, "metadata")
            if type(value) is not float:
                object.__setattr__(self, "metadata", {**self.metadata, THRESHOLD_KEY: checked})

    @property
    def threshold(self) -> float | None:
        """The per-call threshold override, if the caller set one (checked on construction)."""
        value = self.metadata.get(THRESHOLD_KEY)
        return None if value is None else float(value)


@dataclass(frozen=True)
class Usage:
    """Tokens one provider call used (from the provider's own usage report)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    reasoning_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.input_tokens + other.input_tokens,
                     self.output_tokens + other.output_tokens,
                     self.cache_read_tokens + other.cache_read_tokens,
                     self.reasoning_tokens + other.reasoning_tokens)

    def to_dict(self) -> dict[str, int]:
        return {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                "cache_read_tokens": self.cache_read_tokens,
                "reasoning_tokens": self.reasoning_tokens}


@dataclass(frozen=True)
class ModelRef:
    """A model a call may go to: a candidate (by its routing name) or an extra model a step
    uses (a verifier or judge), with what pricing needs to know of it.

    ``model`` is the framework object (opaque here); ``provider_model`` the provider's model id
    (e.g. ``"gpt-4o-mini"``), None when the adapter cannot tell. ``provisional`` marks a call
    whose answer a cascade will score, so may still reject: adapters keep it from token
    streams (it is still an ordinary, traced and metered call).
    """

    name: str
    model: Any = field(default=None, repr=False, compare=False)
    provider_model: str | None = None
    provider: str | None = None
    candidate: bool = True
    provisional: bool = False


@dataclass(frozen=True)
class Answer:
    """One provider answer as steps see it; the framework's object stays in ``raw``.

    ``text`` is the answer's text (for structured output, its JSON); ``tool_calls`` how many
    tool calls it makes; ``token_logprobs`` the sampled tokens' log-probabilities when the
    provider returned them.
    """

    raw: Any = field(repr=False)
    text: str
    usage: Usage | None = None
    tool_calls: int = 0
    token_logprobs: tuple[float, ...] | None = None
    #: True when ``usage`` is the pipeline's estimate, not the provider's report (a stream
    #: cut short: the provider bills what it generated, but never reported it).
    usage_estimated: bool = False


@dataclass
class Attempt:
    """One provider call the pipeline made, whatever came of it.

    ``purpose`` is ``"answer"`` (the routed model), ``"retry"`` (the same model again),
    ``"fallback"`` (another rung after errors), ``"cascade"`` (an escalation after a doubtful
    answer) or ``"verify"`` (a call a scorer made). ``outcome`` is ``"ok"``, ``"error"``,
    ``"accepted"``, ``"escalated"``, ``"abandoned"`` (its stream's consumer stopped reading)
    or ``"cancelled"`` (the caller's task was cancelled, or the process interrupted, mid-call).
    """

    model: str
    purpose: str
    outcome: str = "ok"
    error: str | None = None
    latency_ms: float = 0.0
    usage: Usage | None = None
    cost_usd: float | None = None
    score: float | None = None
    #: True when ``usage`` (and so ``cost_usd``) is estimated: a stream cut short.
    usage_estimated: bool = False

    def to_event(self) -> dict[str, Any]:
        event: dict[str, Any] = {
            "model": self.model,
            "purpose": self.purpose,
            "outcome": self.outcome,
            "error": self.error,
            "latency_ms": round(self.latency_ms, 3),
            "usage": None if self.usage is None else self.usage.to_dict(),
            "cost_usd": self.cost_usd,
            "score": self.score,
        }
        if self.usage_estimated:
            event["usage_estimated"] = True
        return event
