"""``Budget``: one scope's spending limit, its window, and what happens as it runs down.

A window is a UTC calendar period: ``"total"`` (one period, forever), ``"day"`` (``2026-12-01``)
or ``"month"`` (``2026-12``). Spend is kept per (scope, window, period), so a new day or month
starts at zero by the clock alone; the clock is injectable (tests roll windows over).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from .._exceptions import RouterConfigError
from ._store import from_nano, to_nano

__all__ = [
    "DEFAULT_SCOPE",
    "MAX_LIMIT_NANO",
    "MODES",
    "ON_EXHAUSTED",
    "WINDOWS",
    "Budget",
    "Clock",
    "period_of",
    "utc_now",
]

#: The budget key that applies to every caller without a budget of its own (one shared account).
DEFAULT_SCOPE = "*"
WINDOWS = ("total", "day", "month")
MODES = ("hard", "soft")
ON_EXHAUSTED = ("deny", "cheapest")
#: The largest limit in nano-USD: stores keep amounts as signed 64-bit integers (SQLite's
#: INTEGER, Redis' counters), so a larger limit could not be kept by every store.
MAX_LIMIT_NANO = 2**63 - 1

Window = Literal["total", "day", "month"]
Mode = Literal["hard", "soft"]
OnExhausted = Literal["deny", "cheapest"]
#: A clock returns the current time as an aware datetime (UTC).
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The default clock."""
    return datetime.now(UTC)


def period_of(window: str, now: datetime) -> str:
    """The UTC period ``now`` falls in for ``window`` (the store's account key)."""
    if now.tzinfo is None:
        raise RouterConfigError(f"the budget clock must return an aware datetime, got {now!r}")
    now = now.astimezone(UTC)
    if window == "total":
        return "total"
    if window == "day":
        return now.strftime("%Y-%m-%d")
    if window == "month":
        return now.strftime("%Y-%m")
    raise RouterConfigError(f"window must be one of {WINDOWS}, got {window!r}")


@dataclass(frozen=True)
class Budget:
    """A spending limit for one scope (an agent, a user, a tenant, or ``"*"``: everyone else).

    Parameters
    ----------
    limit_usd : float
        The limit in USD per window; finite, >= 0 and at most ~$9.22e9 (``MAX_LIMIT_NANO``
        nano-USD: every store keeps amounts as signed 64-bit integers).
    window : {"total", "day", "month"}, default="total"
        The UTC period the limit applies to; a new period starts from zero.
    mode : {"hard", "soft"}, default="hard"
        ``"hard"``: routing is left alone; a call whose worst-case cost does not fit in what is
        left is denied with ``BudgetExceededError`` before any provider call.
        ``"soft"``: routing shifts cheaper as the budget runs down (the rule below); the limit
        still holds as in ``"hard"`` unless ``on_exhausted="cheapest"``.
    on_exhausted : {"deny", "cheapest"}, default="deny"
        ``"deny"``: raise ``BudgetExceededError``. ``"cheapest"``: when the routed model's
        worst-case cost does not fit in what is left, the cheapest candidate answers instead.
        Under a hard budget the cheapest call must still fit (else it is denied: a hard limit is
        never passed); under a soft budget the cheapest model is always allowed, so spend may
        pass the limit, by cheapest calls only.
    soft_start : float, default=0.5
        Soft mode: the used share of the budget (``(spent + reserved) / limit``) at which the
        routing threshold starts to rise.

    Notes
    -----
    The soft rule: with ``u`` the used share and ``t`` the call's threshold, the threshold used
    is ``t + (1 - t) * clip((u - soft_start) / (1 - soft_start), 0, 1)``. A pricier rung is
    taken only when P(it wins) >= threshold, so a higher threshold picks cheaper models; at
    ``u = 1`` the threshold is 1 and only a certain win escalates. The decision is re-read at
    the new threshold (``RoutingDecision.with_threshold``), with no second router call.

    A stream that ends without the provider's usage report after its first chunk (its consumer
    stopped reading, or it failed mid-stream) is still billed by the provider, so it is charged
    an estimate, never $0: the prompt's estimated input plus the text it delivered
    (``langroute.pipeline.estimated_tokens``, at most the call's ``max_tokens``) as output,
    marked ``usage_estimated`` in its attempt and ``langroute.budget`` event.
    """

    limit_usd: float
    window: Window = "total"
    mode: Mode = "hard"
    on_exhausted: OnExhausted = "deny"
    soft_start: float = 0.5

    def __post_init__(self) -> None:
        limit = self.limit_usd
        if isinstance(limit, bool) or not isinstance(limit, (int, float)) or not (
            limit >= 0 and (isinstance(limit, int) or math.isfinite(limit))  # a huge int is finite
        ):
            raise RouterConfigError(
                f"Budget limit_usd must be a finite number of USD >= 0, got {limit!r}")
        if limit >= 1e10 or to_nano(limit) > MAX_LIMIT_NANO:
            # Refused here, so no store fails on it at the first call. (``limit >= 1e10`` first:
            # Python will not str() an int of thousands of digits.)
            shown = repr(limit) if limit < 1e300 else "> 1e300"
            raise RouterConfigError(
                f"Budget limit_usd must be at most {from_nano(MAX_LIMIT_NANO):.2f} USD (spend "
                f"stores keep nano-USD in signed 64-bit integers), got {shown}")
        if self.window not in WINDOWS:
            raise RouterConfigError(f"Budget window must be one of {WINDOWS}, got {self.window!r}")
        if self.mode not in MODES:
            raise RouterConfigError(f"Budget mode must be one of {MODES}, got {self.mode!r}")
        if self.on_exhausted not in ON_EXHAUSTED:
            raise RouterConfigError(
                f"Budget on_exhausted must be one of {ON_EXHAUSTED}, got {self.on_exhausted!r}")
        start = self.soft_start
        if isinstance(start, bool) or not isinstance(start, (int, float)) or not (
            0.0 <= start < 1.0
        ):
            raise RouterConfigError(f"Budget soft_start must lie in [0, 1), got {start!r}")

    def soft_threshold(self, threshold: float, used_share: float) -> float:
        """The threshold a soft budget routes with at ``used_share`` of its limit (see Notes)."""
        if self.mode != "soft":
            return threshold
        ramp = (used_share - self.soft_start) / (1.0 - self.soft_start)
        ramp = min(max(ramp, 0.0), 1.0)
        return threshold + (1.0 - threshold) * ramp
