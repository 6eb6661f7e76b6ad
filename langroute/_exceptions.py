"""Every error langroute raises, in one place.

Hierarchy::

    LangrouteError
    ├── OutcomesError (ValueError)          malformed outcome data; carries ``path`` and ``line``
    ├── RouterConfigError (ValueError)      a router or RoutedChatModel was set up wrongly
    ├── NotFittedError (ValueError, AttributeError)  a router was used before ``fit``
    ├── RouterFileError (ValueError)        a router file is truncated, tampered or foreign
    └── EmbeddingError (RuntimeError)       an embedder could not produce vectors

Each also subclasses a built-in error, so generic ``except ValueError`` handlers keep working.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "EmbeddingError",
    "LangrouteError",
    "NotFittedError",
    "OutcomesError",
    "RouterConfigError",
    "RouterFileError",
]


class LangrouteError(Exception):
    """Base class of every langroute error."""


class OutcomesError(LangrouteError, ValueError):
    """Outcome data is malformed. ``path`` and ``line`` (1-based) say where, when known."""

    def __init__(self, message: str, *, path: str | Path | None = None, line: int | None = None):
        self.path = None if path is None else str(path)
        self.line = line
        where = ""
        if self.path is not None:
            where = f"{self.path}:{line}: " if line is not None else f"{self.path}: "
        super().__init__(f"{where}{message}")


class RouterConfigError(LangrouteError, ValueError):
    """A router, policy or RoutedChatModel was given arguments that cannot work together."""


class NotFittedError(LangrouteError, ValueError, AttributeError):
    """A router was asked to score prompts before ``fit`` (or ``load``)."""


class RouterFileError(LangrouteError, ValueError):
    """A saved router file cannot be trusted: truncated, tampered with, or of another version."""


class EmbeddingError(LangrouteError, RuntimeError):
    """An embedder failed to turn texts into vectors."""
