"""When a failed provider call is worth repeating, how long to wait, and where to go next.

``RetryPolicy`` wraps tenacity's strategies (stop after ``max_retries`` retries, exponential
backoff with jitter, honouring a provider's ``Retry-After``); the pipeline drives tenacity's own
decision loop (``Retrying.iter``), so sync and async calls retry by one logic. ``Fallback`` says
which rung answers once a model's retries are spent. Only *retryable* errors (rate limits,
timeouts, connection errors, 5xx) are retried or fall back; anything else (400, 401, 403, a
validation error) propagates unchanged at once.
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import tenacity
from tenacity.wait import wait_base

from .._exceptions import CallTimeoutError, RouterConfigError

__all__ = [
    "Fallback",
    "RetryPolicy",
    "is_retryable",
    "retry_after_seconds",
    "wait_retry_after",
]

#: HTTP statuses worth retrying: request timeout, conflict, too early, rate limit, and 5xx.
_RETRYABLE_STATUS = frozenset({408, 409, 425, 429})
#: Exception class names (anywhere in the MRO) of transient failures in the SDKs providers use:
#: openai/anthropic (``APITimeoutError``, ``APIConnectionError``, ``RateLimitError``,
#: ``InternalServerError``) and httpx (``TimeoutException``, ``NetworkError``, ...).
_RETRYABLE_NAMES = frozenset({
    "APITimeoutError", "APIConnectionError", "RateLimitError", "InternalServerError",
    "ServiceUnavailableError", "OverloadedError", "TimeoutException", "NetworkError",
    "RemoteProtocolError", "ConnectTimeout", "ReadTimeout",
})
_MAX_RETRY_AFTER = 60.0


def _status_of(error: BaseException) -> int | None:
    status = getattr(error, "status_code", None)
    if not isinstance(status, int):
        status = getattr(getattr(error, "response", None), "status_code", None)
    return status if isinstance(status, int) else None


def is_retryable(error: BaseException) -> bool:
    """True for transient provider failures: rate limits, timeouts, connection errors, 5xx."""
    if isinstance(error, (CallTimeoutError, TimeoutError, ConnectionError)):
        return True
    status = _status_of(error)
    if status is not None:
        return status in _RETRYABLE_STATUS or status >= 500
    return any(cls.__name__ in _RETRYABLE_NAMES for cls in type(error).__mro__)


def retry_after_seconds(error: BaseException | None) -> float | None:
    """The wait a provider asked for (``retry-after-ms`` / ``retry-after`` headers), if any."""
    headers = getattr(getattr(error, "response", None), "headers", None)
    if not isinstance(headers, Mapping) and not hasattr(headers, "get"):
        return None
    raw_ms = headers.get("retry-after-ms")
    try:
        if raw_ms is not None:
            return min(max(float(raw_ms) / 1000.0, 0.0), _MAX_RETRY_AFTER)
    except ValueError:
        pass
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(raw) if raw else None
        if parsed is None:
            return None
        seconds = parsed.timestamp() - time.time()
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), _MAX_RETRY_AFTER)


class wait_retry_after(wait_base):  # noqa: N801 (tenacity's naming for wait strategies)
    """Wait what the provider's ``Retry-After`` says, else fall back to ``fallback``."""

    def __init__(self, fallback: wait_base) -> None:
        self.fallback = fallback

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None and outcome.failed else None
        asked = retry_after_seconds(error)
        return asked if asked is not None else float(self.fallback(retry_state))


def _default_wait() -> wait_base:
    # 0.5 s, 1 s, 2 s, ... up to 20 s, plus up to 0.5 s of jitter
    backoff = tenacity.wait_exponential(multiplier=0.5, max=20.0) + tenacity.wait_random(0, 0.5)
    return wait_retry_after(backoff)


@dataclass(frozen=True)
class RetryPolicy:
    """How one model is retried before the call falls back.

    Parameters
    ----------
    max_retries : int, default=2
        Retries after the first attempt (LangChain's standard parameter); 0 disables retrying.
    wait : tenacity wait strategy, default=Retry-After, else exponential backoff with jitter
    retry_on : callable, default=is_retryable
        Which errors are worth retrying (and falling back on).
    """

    max_retries: int = 2
    wait: wait_base = field(default_factory=_default_wait)
    retry_on: Callable[[BaseException], bool] = is_retryable

    def __post_init__(self) -> None:
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int) or (
            self.max_retries < 0
        ):
            raise RouterConfigError(f"max_retries must be an int >= 0, got {self.max_retries!r}")

    def retrying(self) -> tenacity.Retrying:
        """A fresh tenacity controller for one model's attempts (reraises the last error)."""
        return tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.max_retries + 1),
            wait=self.wait,
            retry=tenacity.retry_if_exception(self.retry_on),
            reraise=True,
        )


FallbackDirection = Literal["stronger", "cheaper"]


@dataclass(frozen=True)
class Fallback:
    """Which model answers once the current one's retries are spent on retryable errors.

    ``"stronger"`` (the default) climbs to the next pricier candidate, so a failed cheap call
    goes up, never silently down in quality; ``"cheaper"`` goes down; ``None`` (use
    ``Fallback(None)``) never falls back. A sticky tool loop never falls back: only the model
    that made the tool calls can answer them.
    """

    direction: FallbackDirection | None = "stronger"

    def __post_init__(self) -> None:
        if self.direction not in ("stronger", "cheaper", None):
            raise RouterConfigError(
                f"fallback must be 'stronger', 'cheaper' or None, got {self.direction!r}"
            )

    def next_model(self, current: str, tried: Sequence[str], costs: Mapping[str, float],
                   above: str | None = None) -> str | None:
        """The next candidate after ``current`` in the fallback direction, skipping ``tried``
        and, given ``above``, every candidate not pricier than ``above`` (an escalation falls
        back only above the highest rung whose answer it rejected)."""
        if self.direction is None:
            return None
        order = sorted(costs, key=lambda name: (costs[name], list(costs).index(name)))
        if current not in order:
            return None
        here = order.index(current)
        ahead: list[Any] = order[here + 1:] if self.direction == "stronger" else order[:here][::-1]
        floor = order.index(above) if above in order else -1
        for name in ahead:
            if name not in tried and order.index(name) > floor:
                return str(name)
        return None

    def may_go_down(self, error: BaseException, retry: RetryPolicy) -> bool:
        """Whether a call failed with ``error`` may settle for a weaker answer: the error is
        worth falling back on and the direction is ``"cheaper"`` (an escalation that failed
        then returns the doubtful answer it meant to replace, marked unconfirmed)."""
        return retry.retry_on(error) and self.direction == "cheaper"
