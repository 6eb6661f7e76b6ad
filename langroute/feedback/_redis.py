"""The shared feedback store: Redis (``redis://host:port/db``), for many processes and machines.

Layout under a key prefix (default ``langroute:feedback``): ``<prefix>:decision:<id>`` holds a
decision's JSON (written with ``SET NX``, so an id is recorded once), and ``<prefix>:events``
is a list of event JSON appended with ``RPUSH`` -- Redis orders concurrent appends, so every
process sees the same log and positions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit

from .._exceptions import FeedbackStoreError, MissingDependencyError
from .._urls import redacted
from ._records import DecisionRecord, FeedbackEvent
from ._store import FeedbackStore

__all__ = ["RedisFeedbackStore"]

_DEFAULT_PREFIX = "langroute:feedback"


class RedisFeedbackStore(FeedbackStore):
    """Decisions and events in Redis, shared by every process that opens the same URL.

    Parameters
    ----------
    client : redis.Redis
        A connected client (``decode_responses`` may be either).
    prefix : str, default="langroute:feedback"
        Key prefix; stores with different prefixes share a server without mixing.
    """

    def __init__(self, client: Any, *, prefix: str = _DEFAULT_PREFIX, url: str = "") -> None:
        self._client = client
        self.prefix = prefix
        self.url = url or f"redis (prefix {prefix})"

    @classmethod
    def from_url(cls, url: str) -> RedisFeedbackStore:
        """``redis://host:port/db`` (optionally ``?prefix=...``; other query options, such as
        ``socket_timeout=5``, go to ``redis.Redis.from_url``); checks the server answers."""
        try:
            import redis
        except ImportError as exc:
            raise MissingDependencyError(
                "the Redis feedback store needs the redis package: pip install 'langroute[redis]'"
            ) from exc
        parts = urlsplit(url)
        prefix = parse_qs(parts.query).get("prefix", [_DEFAULT_PREFIX])[0]
        # The client's own options (socket_timeout=, ssl_cert_reqs=, ...) stay in the URL.
        options = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                   if k != "prefix"]
        plain = parts._replace(query=urlencode(options)).geturl()
        shown = redacted(url)  # the URL messages and repr show: never the password
        try:
            client = redis.Redis.from_url(plain)
            client.ping()
        except (redis.RedisError, ValueError) as exc:
            raise FeedbackStoreError(f"cannot reach the feedback store {shown}: {exc}") from exc
        return cls(client, prefix=prefix, url=shown)

    def _key(self, decision_id: str) -> str:
        return f"{self.prefix}:decision:{decision_id}"

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        import redis

        try:
            return getattr(self._client, name)(*args, **kwargs)
        except redis.RedisError as exc:
            raise FeedbackStoreError(f"feedback store {self.url} failed ({name}): {exc}") from exc

    def _insert_decision(self, record: DecisionRecord) -> bool:
        return bool(self._call("set", self._key(record.decision_id), record.to_json(), nx=True))

    def _get_decisions(self, decision_ids: Sequence[str]) -> list[DecisionRecord | None]:
        if not decision_ids:
            return []
        values = self._call("mget", [self._key(i) for i in decision_ids])
        return [None if v is None else DecisionRecord.from_json(v) for v in values]

    def _append_event(self, event: FeedbackEvent) -> None:
        self._call("rpush", f"{self.prefix}:events", event.to_json())

    def _read_events(self, start: int) -> list[FeedbackEvent]:
        values = self._call("lrange", f"{self.prefix}:events", start, -1)
        return [FeedbackEvent.from_json(v) for v in values]

    def close(self) -> None:
        self._client.close()
