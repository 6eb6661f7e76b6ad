"""The shared spend store: Redis, for budgets held by many processes and machines.

Each write is one Lua script, which Redis runs atomically (no other command interleaves), so
check-and-reserve cannot race. Per account three keys: a hash (``limit``, ``spent``,
``reserved`` in nano-USD), a sorted set of hold ids scored by lease expiry, and a hash of hold
amounts; a set indexes the accounts. Needs the ``redis`` package
(``pip install "langroute[redis]"``).

Windows and leases follow each caller's clock (injectable), not the server's: keep the
machines' clocks synchronised (NTP); a skew of s seconds moves a lease's expiry by s. Redis
Cluster is not supported (an account's keys and the index are not in one hash slot).
"""

from __future__ import annotations

import json
from typing import Any

from .._exceptions import BudgetStoreError, MissingDependencyError
from .._urls import redacted
from ._store import Account, AccountState, SpendStore

__all__ = ["RedisStore"]

# Drop holds whose lease passed (KEYS: acct, holds, amounts; ARGV[1]: now).
_PURGE = """
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
for _, h in ipairs(expired) do
  local a = redis.call('HGET', KEYS[3], h)
  if a then
    if a ~= '0' then redis.call('HINCRBY', KEYS[1], 'reserved', '-' .. a) end
    redis.call('HDEL', KEYS[3], h)
  end
end
if #expired > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[1]) end
"""
_STATE = """
local v = redis.call('HMGET', KEYS[1], 'limit', 'spent', 'reserved')
return {v[1] or '', v[2] or '0', v[3] or '0'}
"""
# KEYS: acct, holds, amounts, index; ARGV: now, limit, amount, hold, expires, enforce, id.
_RESERVE = _PURGE + """
redis.call('HSET', KEYS[1], 'limit', ARGV[2])
redis.call('SADD', KEYS[4], ARGV[7])
local spent = tonumber(redis.call('HGET', KEYS[1], 'spent') or '0')
local reserved = tonumber(redis.call('HGET', KEYS[1], 'reserved') or '0')
local granted = 1
if ARGV[6] == '1' and spent + reserved + tonumber(ARGV[3]) > tonumber(ARGV[2]) then
  granted = 0
else
  redis.call('ZADD', KEYS[2], ARGV[5], ARGV[4])
  redis.call('HSET', KEYS[3], ARGV[4], ARGV[3])
  redis.call('HINCRBY', KEYS[1], 'reserved', ARGV[3])
end
local v = redis.call('HMGET', KEYS[1], 'limit', 'spent', 'reserved')
return {granted, v[1] or '', v[2] or '0', v[3] or '0'}
"""
# Drop hold ARGV[2] and its reserved amount, if it is still held (KEYS: acct, holds, amounts).
_DROP_HOLD = """
local a = redis.call('HGET', KEYS[3], ARGV[2])
if a then
  redis.call('HDEL', KEYS[3], ARGV[2])
  redis.call('ZREM', KEYS[2], ARGV[2])
  if a ~= '0' then redis.call('HINCRBY', KEYS[1], 'reserved', '-' .. a) end
end
"""
# KEYS: acct, holds, amounts, index; ARGV: now, hold, cost, id.
_COMMIT = _PURGE + _DROP_HOLD + """
redis.call('HINCRBY', KEYS[1], 'spent', ARGV[3])
redis.call('SADD', KEYS[4], ARGV[4])
""" + _STATE
# KEYS: acct, holds, amounts; ARGV: now, hold.
_RELEASE = _PURGE + _DROP_HOLD + _STATE
_READ = _PURGE + _STATE


class RedisStore(SpendStore):
    """Spend kept in Redis (``redis://host:port/db``; ``rediss://`` for TLS).

    Parameters
    ----------
    url : str
    prefix : str, default="langroute:budget:"
        Key prefix (several stores may share one database under different prefixes).
    timeout : float, default=5.0
        Connect and socket timeout in seconds: an unreachable server fails the call, loudly.
    """

    def __init__(self, url: str, *, prefix: str = "langroute:budget:",
                 timeout: float = 5.0) -> None:
        try:
            import redis
        except ImportError as exc:
            raise MissingDependencyError(
                'the Redis spend store needs the redis package: pip install "langroute[redis]"'
            ) from exc
        self.url = redacted(url)  # what errors and repr show: never the password
        self.prefix = prefix
        self._errors = (redis.exceptions.RedisError,)
        try:
            self._client = redis.Redis.from_url(url, socket_connect_timeout=timeout,
                                                socket_timeout=timeout, retry_on_timeout=False)
            self._client.ping()
        except (redis.exceptions.RedisError, ValueError) as exc:
            raise BudgetStoreError(f"cannot reach spend store {self.url!r}: {exc}") from exc
        self._reserve = self._client.register_script(_RESERVE)
        self._commit = self._client.register_script(_COMMIT)
        self._release = self._client.register_script(_RELEASE)
        self._read = self._client.register_script(_READ)

    def _keys(self, account: Account) -> tuple[list[str], str]:
        ident = json.dumps([account.scope, account.window, account.period])
        return ([f"{self.prefix}acct:{ident}", f"{self.prefix}holds:{ident}",
                 f"{self.prefix}amounts:{ident}", f"{self.prefix}accounts"], ident)

    def _run(self, script: Any, keys: list[str], args: list[Any]) -> list[Any]:
        try:
            return list(script(keys=keys, args=args))
        except self._errors as exc:
            raise BudgetStoreError(f"spend store {self.url!r} failed: {exc}") from exc

    @staticmethod
    def _state(account: Account, values: list[Any]) -> AccountState:
        limit, spent, reserved = (v.decode() if isinstance(v, bytes) else str(v) for v in values)
        return AccountState(account, int(limit) if limit else None, int(spent), int(reserved))

    def reserve(self, account: Account, *, limit_nano: int, amount_nano: int, hold_id: str,
                now: float, expires_at: float, enforce: bool = True
                ) -> tuple[bool, AccountState]:
        keys, ident = self._keys(account)
        out = self._run(self._reserve, keys, [repr(now), limit_nano, amount_nano, hold_id,
                                              repr(expires_at), "1" if enforce else "0", ident])
        return bool(int(out[0])), self._state(account, out[1:])

    def commit(self, account: Account, *, hold_id: str, cost_nano: int, now: float
               ) -> AccountState:
        keys, ident = self._keys(account)
        return self._state(account, self._run(self._commit, keys,
                                              [repr(now), hold_id, cost_nano, ident]))

    def release(self, account: Account, *, hold_id: str, now: float) -> AccountState:
        keys, _ = self._keys(account)
        return self._state(account, self._run(self._release, keys[:3], [repr(now), hold_id]))

    def state(self, account: Account, *, now: float) -> AccountState:
        keys, _ = self._keys(account)
        return self._state(account, self._run(self._read, keys[:3], [repr(now)]))

    def accounts(self, *, now: float) -> list[AccountState]:
        try:
            members = self._client.smembers(f"{self.prefix}accounts")
        except self._errors as exc:
            raise BudgetStoreError(f"spend store {self.url!r} failed: {exc}") from exc
        out = []
        for member in members:
            raw = member.decode() if isinstance(member, bytes) else str(member)
            try:
                scope, window, period = json.loads(raw)
            except (ValueError, TypeError) as exc:
                raise BudgetStoreError(
                    f"spend store {self.url!r}: malformed account entry {raw!r}") from exc
            out.append(self.state(Account(scope, window, period), now=now))
        return sorted(out, key=lambda s: s.account)

    def close(self) -> None:
        self._client.close()
