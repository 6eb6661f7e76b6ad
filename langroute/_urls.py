"""Store URLs as they may be shown: in errors, ``repr`` and logs, never with a password."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote_plus, urlsplit

__all__ = ["redacted", "redacted_stores"]

#: Adapter fields that may hold a store URL.
_STORE_FIELDS = ("spend_store", "feedback_store")

#: Query options that carry a secret (redis-py reads ``?password=``, ``?ssl_password=``).
_SECRET_OPTIONS = ("password", "secret", "token")


def redacted(url: str) -> str:
    """``url`` with its password (``redis://user:secret@host``, or a query option such as
    ``?password=secret``) replaced by ``***``: a store's URL is in its errors (an unknown
    decision id, an unreachable server) and ``repr``, which end up in logs and in replies a
    service may echo to its caller."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # unparseable (a bad port): show no more than the scheme
        return url.split("://", 1)[0] + "://***" if "://" in url else "***"
    options = []
    for option in parts.query.split("&") if parts.query else ():
        name, equals, _ = option.partition("=")
        if equals and any(word in unquote_plus(name).lower() for word in _SECRET_OPTIONS):
            option = f"{name}=***"
        options.append(option)
    query = "&".join(options)
    if password is None and query == parts.query:
        return url  # as written (``geturl`` would turn ``sqlite:///x`` into ``sqlite:/x``)
    if password is not None:
        host = parts.netloc.rsplit("@", 1)[1]
        parts = parts._replace(netloc=f"{parts.username or ''}:***@{host}")
    return parts._replace(query=query).geturl()


def redacted_stores(fields: Iterable[tuple[str | None, Any]]) -> list[tuple[str | None, Any]]:
    """An adapter's ``__repr_args__`` with its store URLs ``redacted``: LangChain traces a model
    it cannot serialise by its ``repr`` (``dumpd``), so a password there would reach LangSmith
    (and any log that prints the model)."""
    return [(name, redacted(value) if name in _STORE_FIELDS and isinstance(value, str)
             else value) for name, value in fields]
