"""Every error langroute raises, in one place.

Hierarchy::

    LangrouteError
    ├── OutcomesError (ValueError)          malformed outcome data; carries ``path`` and ``line``
    ├── RouterConfigError (ValueError)      a router or RoutedChatModel was set up wrongly
    ├── NotFittedError (ValueError, AttributeError)  a router was used before ``fit``
    ├── RouterFileError (ValueError)        a router file is truncated, tampered or foreign
    ├── MessageError (ValueError)           a call's messages cannot be routed (no user text)
    ├── EmbeddingError (RuntimeError)       an embedder could not produce vectors
    ├── ConvergenceError (RuntimeError)     a fit (Bradley-Terry's Newton steps) did not converge
    ├── MissingDependencyError (ImportError)  an optional extra (e.g. matplotlib) is not installed
    ├── BudgetExceededError (RuntimeError)  a call would pass its scope's budget; names scope,
    │                                       limit and spend (never retried, never falls back)
    ├── BudgetStoreError (RuntimeError)     a spend store is unreachable, malformed or failed
    ├── FeedbackError (ValueError)          feedback that cannot be recorded (score outside
    │   │                                   [0, 1] or NaN, unknown model, bad store URL)
    │   └── UnknownDecisionError (LookupError)  feedback names a decision id never recorded
    ├── FeedbackStoreError (RuntimeError)   a feedback store is unreachable or malformed
    ├── RefitError (RuntimeError)           feedback WAS stored, but the refit it triggered
    │                                       failed; carries ``event`` (do not record it again)
    ├── CascadeConfigError (ValueError)     a cascade or scorer was set up wrongly (accept out of
    │                                       the scorer's range, no verifier models, ...)
    ├── CascadeScoreError (RuntimeError)    a scorer could not rate an answer (a judge's reply is
    │                                       not the JSON asked for, no log-probabilities, ...)
    └── CallTimeoutError (TimeoutError)     a provider call passed the routed model's timeout

Each also subclasses a built-in error, so generic ``except ValueError`` handlers keep working.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = [
    "BudgetExceededError",
    "BudgetStoreError",
    "CallTimeoutError",
    "CascadeConfigError",
    "CascadeScoreError",
    "ConvergenceError",
    "EmbeddingError",
    "FeedbackError",
    "FeedbackStoreError",
    "LangrouteError",
    "MessageError",
    "MissingDependencyError",
    "NotFittedError",
    "OutcomesError",
    "RefitError",
    "RouterConfigError",
    "RouterFileError",
    "UnknownDecisionError",
]


class LangrouteError(Exception):
    """Base class of every langroute error."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Unpickling would call the class with ``args`` (the formatted message) only, which
        # several subclasses cannot take (keyword-only fields); rebuild from the message and
        # the fields instead, so a process pool can send any langroute error back intact.
        return _rebuild, (type(self), self.args, self.__dict__)


def _rebuild(cls: type[LangrouteError], args: tuple[Any, ...], state: dict[str, Any]
             ) -> LangrouteError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


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


class ConvergenceError(LangrouteError, RuntimeError):
    """An iterative fit did not converge (e.g. Bradley-Terry on extreme win counts)."""


class MissingDependencyError(LangrouteError, ImportError):
    """A feature needs an optional dependency that is not installed; the message says which."""


class CallTimeoutError(LangrouteError, TimeoutError):
    """A provider call did not answer within the routed model's ``timeout`` (retryable)."""


class MessageError(LangrouteError, ValueError):
    """A call's messages cannot be used: an empty message list, a message of an unknown role
    (a step's own prompt), or (LlamaIndex) a message that cannot be read. A call with no user
    message, or no text to route on, is not an error: the top rung answers it."""


class BudgetExceededError(LangrouteError, RuntimeError):
    """A call would take its scope past its budget; raised before any provider call.

    Carries ``scope``, ``window``, ``period``, ``limit_usd``, ``spent_usd`` (committed),
    ``reserved_usd`` (held by calls in flight) and ``requested_usd`` (this call's worst case).
    """

    def __init__(self, scope: str, window: str, period: str, *, limit_usd: float,
                 spent_usd: float, reserved_usd: float, requested_usd: float | None = None,
                 model: str | None = None) -> None:
        self.scope, self.window, self.period = scope, window, period
        self.limit_usd, self.spent_usd = limit_usd, spent_usd
        self.reserved_usd, self.requested_usd, self.model = reserved_usd, requested_usd, model
        where = "total" if window == "total" else f"{window} {period}"
        state = "is exhausted" if requested_usd is None else (
            f"cannot cover a call to {model} that may cost up to ${requested_usd:.6f}")
        super().__init__(
            f"budget of scope {scope!r} ({where}) {state}: limit ${limit_usd:.6f}, spent "
            f"${spent_usd:.6f}, reserved by calls in flight ${reserved_usd:.6f}"
        )


class BudgetStoreError(LangrouteError, RuntimeError):
    """A spend store cannot be used: unreachable, malformed, or it failed mid-call (the call
    fails rather than spend without recording)."""


class FeedbackError(LangrouteError, ValueError):
    """Feedback that cannot be recorded: a score outside [0, 1] or NaN, a model the decision
    did not offer, a decision id recorded twice, or a store URL of an unknown kind."""


class UnknownDecisionError(FeedbackError, LookupError):
    """Feedback names a decision id the feedback store never recorded."""


class FeedbackStoreError(LangrouteError, RuntimeError):
    """A feedback store cannot be used: unreachable, or it holds malformed records."""


class RefitError(LangrouteError, RuntimeError):
    """Feedback was stored, but learning it failed: the router's ``partial_fit``, or the
    ``FeedbackRefitter`` poll it triggered.

    ``event`` is the stored ``FeedbackEvent``: recording the feedback again would store it
    twice. Replaying the store teaches it (the refitter keeps what it read, so its next poll
    refits with it). Not a ``FeedbackError``, whose meaning is "nothing was recorded".
    """

    def __init__(self, message: str, *, event: object) -> None:
        self.event = event
        super().__init__(message)


class CascadeConfigError(LangrouteError, ValueError):
    """A cascade or one of its scorers was given arguments that cannot work (an ``accept``
    outside the scorer's range, an empty list of verifier models, a bad normaliser, ...)."""


class CascadeScoreError(LangrouteError, RuntimeError):
    """A scorer could not rate an answer: a judge replied with something other than the JSON
    it was asked for, the provider returned no log-probabilities, a score was NaN or out of
    range. The call fails with it (a cascade never guesses a score)."""
