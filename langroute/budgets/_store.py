"""The spend store interface, the in-memory store, and ``open_store`` (a store by URL).

A store keeps, per account (scope, window, period), the limit, the committed spend and the
holds of calls in flight. Its three writes are each atomic, so a limit holds under any number
of threads, processes or machines sharing the store:

- ``reserve``: drop expired holds, then, if ``spent + reserved + amount <= limit`` (or the
  reservation is not enforced), add a hold that expires at ``expires_at`` (its lease);
- ``commit``: add the actual cost to ``spent`` and drop the hold (a hold that already expired
  is still charged: the call was made);
- ``release``: drop the hold.

Amounts are integers of nano-USD (1e-9 USD), so sums are exact and independent of order.
Stores: ``memory://`` (one process), ``sqlite:///path/spend.db`` (one machine, many
processes), ``redis://host:port/0`` (many machines).
"""

from __future__ import annotations

import asyncio
import functools
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal
from typing import Any

from .._exceptions import BudgetStoreError
from .._urls import redacted

__all__ = [
    "NANO",
    "Account",
    "AccountState",
    "MemoryStore",
    "SpendStore",
    "from_nano",
    "open_store",
    "to_nano",
]

#: nano-USD per USD.
NANO = 10**9


def to_nano(usd: Decimal | float, *, ceil: bool = False) -> int:
    """USD -> integer nano-USD (rounded half up; ``ceil`` rounds up, for reservations)."""
    rounding = ROUND_CEILING if ceil else ROUND_HALF_UP
    return int((Decimal(str(usd)) * NANO).to_integral_value(rounding=rounding))


def from_nano(nano: int) -> float:
    return nano / NANO


@dataclass(frozen=True, order=True)
class Account:
    """Where one scope's spend in one window period is kept."""

    scope: str
    window: str
    period: str


@dataclass(frozen=True)
class AccountState:
    """An account's limit (None if never set), committed spend and live holds, in nano-USD."""

    account: Account
    limit_nano: int | None
    spent_nano: int
    reserved_nano: int

    @property
    def available_nano(self) -> int | None:
        if self.limit_nano is None:
            return None
        return self.limit_nano - self.spent_nano - self.reserved_nano

    def to_dict(self) -> dict[str, Any]:
        """JSON form: scope, window, period, limit_usd, spent_usd, reserved_usd, remaining_usd
        (the limit minus committed spend and live reservations)."""
        available = self.available_nano
        return {
            "scope": self.account.scope,
            "window": self.account.window,
            "period": self.account.period,
            "limit_usd": None if self.limit_nano is None else from_nano(self.limit_nano),
            "spent_usd": from_nano(self.spent_nano),
            "reserved_usd": from_nano(self.reserved_nano),
            "remaining_usd": None if available is None else from_nano(available),
        }


class SpendStore(ABC):
    """One interface over every store; async forms run the sync ones in a worker thread
    (the in-memory store answers inline). ``now`` and ``expires_at`` are Unix seconds from
    the budget's clock."""

    url: str

    @abstractmethod
    def reserve(self, account: Account, *, limit_nano: int, amount_nano: int, hold_id: str,
                now: float, expires_at: float, enforce: bool = True
                ) -> tuple[bool, AccountState]:
        """Atomically check and hold; returns (granted, state after)."""
        raise NotImplementedError(f"{type(self).__name__} must implement reserve()")

    @abstractmethod
    def commit(self, account: Account, *, hold_id: str, cost_nano: int, now: float
               ) -> AccountState:
        """Atomically charge ``cost_nano`` and drop the hold."""
        raise NotImplementedError(f"{type(self).__name__} must implement commit()")

    @abstractmethod
    def release(self, account: Account, *, hold_id: str, now: float) -> AccountState:
        """Atomically drop the hold."""
        raise NotImplementedError(f"{type(self).__name__} must implement release()")

    @abstractmethod
    def state(self, account: Account, *, now: float) -> AccountState:
        """The account's state now (holds past their lease are not counted)."""
        raise NotImplementedError(f"{type(self).__name__} must implement state()")

    @abstractmethod
    def accounts(self, *, now: float) -> list[AccountState]:
        """Every account the store holds, sorted by (scope, window, period)."""
        raise NotImplementedError(f"{type(self).__name__} must implement accounts()")

    def close(self) -> None:  # noqa: B027 (optional hook)
        """Release connections (a no-op for stores without any)."""

    async def areserve(self, account: Account, **kwargs: Any) -> tuple[bool, AccountState]:
        """``reserve`` in a worker thread. A cancelled caller (``task.cancel()``, an
        ``asyncio.wait_for`` deadline, e.g. while SQLite waits for another process's write)
        cannot stop that thread: the hold it may still grant has no owner, so it is released
        as soon as it is granted, not left counting until its lease passes. The thread
        releases it itself, so this holds even when the event loop ends meanwhile (the end
        of ``asyncio.run`` cancels the worker's task and stops running callbacks)."""
        guard = threading.Lock()
        outcome: dict[str, Any] = {}  # "result" once reserved, "abandoned" once cancelled
        release = functools.partial(self.release, account, hold_id=kwargs["hold_id"],
                                    now=kwargs["now"])

        def reserve() -> tuple[bool, AccountState]:
            result = self.reserve(account, **kwargs)
            with guard:
                outcome["result"] = result
                orphaned = "abandoned" in outcome
            if orphaned and result[0]:
                release()
            return result

        try:
            return await asyncio.to_thread(reserve)
        except asyncio.CancelledError:
            with guard:
                outcome["abandoned"] = True
                result = outcome.get("result")
            if result is not None and result[0]:  # granted before the cancellation came
                threading.Thread(target=release, name="langroute-release-orphan").start()
            raise

    async def acommit(self, account: Account, **kwargs: Any) -> AccountState:
        """``commit`` in a worker thread; done even if the caller is cancelled meanwhile
        (``_settled``): the provider call was made, so its cost is booked."""
        return await _settled(functools.partial(self.commit, account, **kwargs))

    async def arelease(self, account: Account, **kwargs: Any) -> AccountState:
        """``release`` in a worker thread; done even if the caller is cancelled meanwhile."""
        return await _settled(functools.partial(self.release, account, **kwargs))

    async def astate(self, account: Account, **kwargs: Any) -> AccountState:
        return await asyncio.to_thread(self.state, account, **kwargs)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"


async def _settled(write: Callable[[], AccountState]) -> AccountState:
    """Run a store write that settles a hold (a commit or a release) in a worker thread, and
    make sure it is done even when the caller is cancelled while it waits: a thread cannot be
    stopped once it runs the write, but ``asyncio.to_thread``'s job waiting in a busy
    executor's queue is dropped by the cancellation, and the write with it (a commit lost: a
    billed call never charged, its hold counting until its lease passed). Whichever comes
    first takes the write: the pool's worker, or, on cancellation, a thread of its own."""
    claim = threading.Lock()  # acquired once, never released: whoever gets it writes
    take = functools.partial(claim.acquire, blocking=False)

    def run() -> AccountState | None:
        return write() if take() else None

    try:
        result = await asyncio.to_thread(run)
    except asyncio.CancelledError:
        if take():  # the job never started: the write is done by a thread of its own
            threading.Thread(target=write, name="langroute-settle-orphan").start()
        raise
    assert result is not None  # the job ran, so it took the write
    return result


class MemoryStore(SpendStore):
    """A store in this process's memory (tests; one process). Each ``memory://`` is new."""

    def __init__(self) -> None:
        self.url = "memory://"
        self._lock = threading.Lock()
        self._limits: dict[Account, int] = {}
        self._spent: dict[Account, int] = {}
        self._holds: dict[Account, dict[str, tuple[int, float]]] = {}

    def _purge(self, account: Account, now: float) -> dict[str, tuple[int, float]]:
        holds = self._holds.setdefault(account, {})
        for hold_id in [h for h, (_, expires) in holds.items() if expires <= now]:
            del holds[hold_id]
        return holds

    def _state(self, account: Account) -> AccountState:
        reserved = sum(amount for amount, _ in self._holds.get(account, {}).values())
        return AccountState(account, self._limits.get(account), self._spent.get(account, 0),
                            reserved)

    def reserve(self, account: Account, *, limit_nano: int, amount_nano: int, hold_id: str,
                now: float, expires_at: float, enforce: bool = True
                ) -> tuple[bool, AccountState]:
        with self._lock:
            holds = self._purge(account, now)
            self._limits[account] = limit_nano
            self._spent.setdefault(account, 0)
            reserved = sum(amount for amount, _ in holds.values())
            if enforce and self._spent[account] + reserved + amount_nano > limit_nano:
                return False, self._state(account)
            holds[hold_id] = (amount_nano, expires_at)
            return True, self._state(account)

    def commit(self, account: Account, *, hold_id: str, cost_nano: int, now: float
               ) -> AccountState:
        with self._lock:
            self._purge(account, now).pop(hold_id, None)
            self._spent[account] = self._spent.get(account, 0) + cost_nano
            return self._state(account)

    def release(self, account: Account, *, hold_id: str, now: float) -> AccountState:
        with self._lock:
            self._purge(account, now).pop(hold_id, None)
            return self._state(account)

    def state(self, account: Account, *, now: float) -> AccountState:
        with self._lock:
            self._purge(account, now)
            return self._state(account)

    def accounts(self, *, now: float) -> list[AccountState]:
        with self._lock:
            known = sorted(set(self._limits) | set(self._spent))
            for account in known:
                self._purge(account, now)
            return [self._state(account) for account in known]

    async def areserve(self, account: Account, **kwargs: Any) -> tuple[bool, AccountState]:
        return self.reserve(account, **kwargs)

    async def acommit(self, account: Account, **kwargs: Any) -> AccountState:
        return self.commit(account, **kwargs)

    async def arelease(self, account: Account, **kwargs: Any) -> AccountState:
        return self.release(account, **kwargs)

    async def astate(self, account: Account, **kwargs: Any) -> AccountState:
        return self.state(account, **kwargs)


def open_store(url: str | SpendStore, *, create: bool = True) -> SpendStore:
    """The store a URL names: ``memory://``, ``sqlite:///path`` or ``redis://host:port/db``.

    ``create=False`` requires the store to exist already (``langroute spend`` reads, never
    creates). Raises ``BudgetStoreError`` for an unknown scheme, an unreachable server or a
    file that is not a langroute spend store.
    """
    if isinstance(url, SpendStore):
        return url
    if not isinstance(url, str):
        raise BudgetStoreError(f"spend_store must be a URL string, got {type(url).__name__}")
    if url == "memory://":
        if not create:
            raise BudgetStoreError("a memory:// store lives inside one process and cannot be "
                                   "read from outside; use sqlite:///path or redis://host:port/0")
        return MemoryStore()
    if url.startswith("sqlite:///"):
        from ._sqlite import SQLiteStore

        return SQLiteStore(url, create=create)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from ._redis import RedisStore

        return RedisStore(url)
    raise BudgetStoreError(
        f"unknown spend store URL {redacted(url)!r}; use 'memory://', 'sqlite:///path/spend.db' or "
        "'redis://host:port/0'")
