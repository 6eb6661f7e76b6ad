"""Store URLs as they may be shown: in errors, ``repr`` and logs, never with a password."""

from __future__ import annotations

from urllib.parse import urlsplit

__all__ = ["redacted"]


def redacted(url: str) -> str:
    """``url`` with its password (``redis://user:secret@host``) replaced by ``***``: a store's
    URL is in its errors (an unknown decision id, an unreachable server) and ``repr``, which
    end up in logs and in replies a service may echo to its caller."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # unparseable (a bad port): show no more than the scheme
        return url.split("://", 1)[0] + "://***" if "://" in url else "***"
    if password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return parts._replace(netloc=f"{parts.username or ''}:***@{host}").geturl()
