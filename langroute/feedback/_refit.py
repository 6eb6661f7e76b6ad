"""Refit schedules for routers that cannot learn incrementally (no ``partial_fit``).

``MFRouter``, ``IRTRouter``, ``ClusterRouter`` and ``StackedRouter`` summarise their training
data (factors, centroids, a stacked combination), so new outcomes cannot be added exactly.
A ``FeedbackRefitter`` keeps such a router up to date with a feedback store instead: each
``poll()`` reads the events recorded since the last one and asks its ``RefitPolicy`` whether a
refit is due; if so it fits a clone of the router on the router's own training data plus
every feedback event so far, and swaps the new fit into the router object (under ``lock``),
so ``fit_version_`` changes and every policy built on the router rebuilds.

Policies are small objects in tenacity's style: ``RefitEvery(events=500)``,
``RefitEvery(share=0.1) | RefitEvery(seconds=86400)`` (``|``: either, ``&``: both), or any
callable taking a ``RefitState`` and returning a bool. ``DEFAULT_REFIT`` is the documented
schedule: when the feedback reaches 10% of the training prompts, or daily.

What a refit learns from the feedback: with training ``Outcomes``, each score becomes one
row scoring only the model that got it (score-based routers such as ``IRTRouter`` learn from
such rows; pairwise ones only from rows scoring two models, so a single score teaches them
nothing); a preference -- which ``Outcomes`` cannot hold -- is left out and counted in
``skipped_preferences`` (``preferences="error"``, the default, also warns, and makes
``RoutedChatModel.record_preference`` refuse one before storing it). With training
``Battles``, the feedback becomes the same battles ``partial_fit`` routers learn
(``feedback_battles``). An event naming a model the router does not know is left out too
(``skipped_events`` counts every event left out): the store is shared, so an event the refit
cannot use may come from another writer, and raising on it would fail every later poll.
Either way ``quality_`` and ``costs_`` stay the training data's means: feedback only scores
the model the router chose, a selection-biased sample (see
``langroute.routers._incremental.update_means``).

A refit cannot count an event twice: it starts from ``training`` (not from what the router
learned since), reads each log position once, and learns an event repeated in the log once.
A refitted router that keeps ``learned_feedback_`` (``SWRouter``, ``KNNRouter``) lists the
events the refit learned, so a later ``replay`` skips them: with training ``Battles`` every
event; with training ``Outcomes`` none (those routers learn pairwise, so a one-score row
taught them nothing, and a replay imputes its battles).
"""

from __future__ import annotations

import contextlib
import dataclasses
import numbers
import threading
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .._checks import check_positive
from .._exceptions import FeedbackError, RouterConfigError
from .._outcomes import Battles, Outcomes
from ..routers._incremental import swap_in
from ._learning import feedback_battles
from ._records import PREFERENCE, DecisionRecord, FeedbackEvent, unique_events
from ._store import FeedbackStore

__all__ = [
    "DEFAULT_REFIT",
    "FeedbackRefitter",
    "RefitAll",
    "RefitAny",
    "RefitEvery",
    "RefitPolicy",
    "RefitState",
    "feedback_outcomes",
]


@dataclasses.dataclass(frozen=True)
class RefitState:
    """What a refit policy decides on.

    Attributes
    ----------
    new_events : int
        Feedback events the refit can learn recorded since the last refit (since the
        refitter started, before the first); events it leaves out do not count.
    seconds : float
        Seconds since the last refit (since the refitter started, before the first).
    n_training : int
        Prompts (battles' prompts) in the router's own training data.
    """

    new_events: int
    seconds: float
    n_training: int


class RefitPolicy(ABC):
    """Whether a router without ``partial_fit`` is due for a refit (one ``__call__``)."""

    @abstractmethod
    def __call__(self, state: RefitState) -> bool:
        """True when the router should be refitted now."""
        raise NotImplementedError(f"{type(self).__name__} must implement __call__()")

    def __or__(self, other: RefitPolicyLike) -> RefitAny:
        return RefitAny(self, other)

    def __and__(self, other: RefitPolicyLike) -> RefitAll:
        return RefitAll(self, other)


#: A ``RefitPolicy`` or any callable with its signature.
RefitPolicyLike = RefitPolicy | Callable[[RefitState], bool]


def _check_policies(policies: Sequence[Any]) -> tuple[RefitPolicyLike, ...]:
    for policy in policies:
        if not callable(policy):
            raise RouterConfigError(f"a refit policy must be callable, got {policy!r}")
    return tuple(policies)


class RefitAny(RefitPolicy):
    """Due when any of ``policies`` is (``a | b``)."""

    def __init__(self, *policies: RefitPolicyLike) -> None:
        self.policies = _check_policies(policies)

    def __call__(self, state: RefitState) -> bool:
        return any(policy(state) for policy in self.policies)

    def __repr__(self) -> str:
        return " | ".join(map(repr, self.policies))


class RefitAll(RefitPolicy):
    """Due when all of ``policies`` are (``a & b``)."""

    def __init__(self, *policies: RefitPolicyLike) -> None:
        self.policies = _check_policies(policies)

    def __call__(self, state: RefitState) -> bool:
        return all(policy(state) for policy in self.policies)

    def __repr__(self) -> str:
        return " & ".join(map(repr, self.policies))


class RefitEvery(RefitPolicy):
    """Due once any given limit is reached since the last refit, and only with new feedback.

    Parameters
    ----------
    events : int, default=None
        New feedback events.
    share : float, default=None
        New feedback events per training prompt (0.1: when the feedback adds 10%).
    seconds : float, default=None
        Time since the last refit (86400: daily).
    """

    def __init__(self, *, events: int | None = None, share: float | None = None,
                 seconds: float | None = None) -> None:
        if events is None and share is None and seconds is None:
            raise RouterConfigError("RefitEvery needs at least one of events, share, seconds")
        for name, value in (("events", events), ("share", share), ("seconds", seconds)):
            check_positive(f"RefitEvery {name}", value)  # None passes; numpy's numbers too
        if events is not None and not isinstance(events, numbers.Integral):
            raise RouterConfigError(f"RefitEvery events must be an int, got {events!r}")
        self.events = events
        self.share = share
        self.seconds = seconds

    def __call__(self, state: RefitState) -> bool:
        if state.new_events <= 0:
            return False
        return bool(
            (self.events is not None and state.new_events >= self.events)
            or (self.share is not None
                and state.new_events >= self.share * max(state.n_training, 1))
            or (self.seconds is not None and state.seconds >= self.seconds)
        )

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in
                         (("events", self.events), ("share", self.share),
                          ("seconds", self.seconds)) if v is not None)
        return f"RefitEvery({args})"


#: The documented schedule: when feedback reaches 10% of the training prompts, or daily.
DEFAULT_REFIT = RefitEvery(share=0.1, seconds=24 * 3600.0)


def feedback_outcomes(
    events: Sequence[FeedbackEvent],
    decisions: Mapping[str, DecisionRecord],
    models: Sequence[str],
    *,
    start: int = 0,
    positions: Sequence[int] | None = None,
) -> Outcomes:
    """Score events as ``Outcomes`` rows: the event's prompt, scored for its model only.

    Row ids are ``feedback:<log position>``: ``positions`` gives each event's (events picked
    out of a log, as ``FeedbackRefitter`` passes them), else they are consecutive from
    ``start``. Costs are unknown (NaN). Preferences are not scores: pass only score events.
    """
    if positions is not None and len(positions) != len(events):
        raise FeedbackError(f"positions must give one log position per event, got "
                            f"{len(positions)} for {len(events)} events")
    names = list(models)
    column = {name: i for i, name in enumerate(names)}
    ids, prompts = [], []
    scores = np.full((len(events), len(names)), np.nan)
    for row, event in enumerate(events):
        if event.kind == PREFERENCE:
            raise FeedbackError("feedback_outcomes takes score events; a preference is no score")
        decision = decisions.get(event.decision_id)
        if decision is None:
            raise FeedbackError(f"no decision record given for feedback on {event.decision_id!r}")
        if event.model not in column:
            raise FeedbackError(
                f"feedback on decision {event.decision_id!r} scores {event.model!r}, which the "
                f"router does not know (it knows {names})"
            )
        ids.append(f"feedback:{start + row if positions is None else int(positions[row])}")
        prompts.append(decision.prompt)
        scores[row, column[event.model]] = event.score
    return Outcomes(ids=ids, prompts=prompts, models=tuple(names), scores=scores,
                    costs=np.full(scores.shape, np.nan), source="feedback")


def _union_battles(first: Battles, second: Battles) -> Battles:
    offset = len(first.prompts)
    return Battles(
        prompts=[*first.prompts, *second.prompts],
        models=first.models,
        prompt_index=np.concatenate([first.prompt_index, second.prompt_index + offset]),
        model_a=np.concatenate([first.model_a, second.model_a]),
        model_b=np.concatenate([first.model_b, second.model_b]),
        result=np.concatenate([first.result, second.result]),
        source=first.source,
    )


class FeedbackRefitter:
    """Keeps a router without ``partial_fit`` up to date with a feedback store by refitting.

    Parameters
    ----------
    store : FeedbackStore
        Where the router's decisions and their feedback are recorded.
    router : fitted router
        Refitted in place (its state is swapped for a fresh fit's, so callers holding it --
        ``RoutedChatModel`` -- see the refit; ``fit_version_`` changes).
    training : Outcomes or Battles
        The data ``router`` was fitted on, over the router's models (the refit's base).
    policy : RefitPolicy or callable, default=DEFAULT_REFIT
        When to refit (``RefitEvery``); called with a ``RefitState`` on every ``poll``.
    start : int, default=0
        Log position of the first event to learn (earlier ones are already in ``training``).
    lock : context manager, default=None
        Held while the new fit is swapped in (the fit itself runs outside it); the lock the
        router's routing takes (``RoutingPolicy``'s in ``RoutedChatModel``).
    preferences : {"error", "skip"}, default="error"
        Preferences cannot become ``Outcomes`` rows: with training ``Outcomes`` the refit
        leaves them out and counts them in ``skipped_preferences``. With "error" a model
        polling this refitter refuses to record one (``check_preferences``), and one another
        writer stored is left out with a warning (never an error: the store keeps it, so
        raising would fail every later poll). Training ``Battles`` learn them as battles.
    clock : callable, default=time.monotonic
        Seconds, for ``RefitState.seconds`` (injectable for tests).

    Attributes
    ----------
    position : int
        Log position up to which events have been read.
    refits : int
        Refits done so far.
    skipped_preferences : int
        Preference events read so far that the refit leaves out (training ``Outcomes``).
    skipped_events : int
        Every event read so far that the refit leaves out: those preferences, and events
        naming a model the router does not know.
    """

    def __init__(
        self,
        store: FeedbackStore,
        router: Any,
        training: Outcomes | Battles,
        *,
        policy: RefitPolicyLike = DEFAULT_REFIT,
        start: int = 0,
        lock: Any = None,
        preferences: str = "error",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not isinstance(store, FeedbackStore):
            raise TypeError(f"store must be a FeedbackStore, got {type(store).__name__}")
        models = getattr(router, "models_", None)
        if models is None:
            raise RouterConfigError("the router must be fitted before it can be refitted")
        if not isinstance(training, (Outcomes, Battles)):
            raise TypeError(f"training must be Outcomes or Battles, got {type(training).__name__}")
        if list(training.models) != list(models):
            raise RouterConfigError(
                f"training data models {list(training.models)} differ from the router's "
                f"{list(models)}; pass the data the router was fitted on"
            )
        if not callable(policy):
            raise RouterConfigError(f"policy must be a RefitPolicy or callable, got {policy!r}")
        if preferences not in ("error", "skip"):
            raise RouterConfigError(f'preferences must be "error" or "skip", got {preferences!r}')
        if isinstance(start, bool) or not isinstance(start, int) or start < 0:
            raise RouterConfigError(f"start must be an int >= 0, got {start!r}")
        self.store = store
        self.router = router
        self.training = training
        self.policy = policy
        self.lock = lock
        self.preferences = preferences
        self.clock = clock
        self.start = start
        self.position = start
        self.refits = 0
        self.skipped_preferences = 0
        self.skipped_events = 0
        self._events: list[FeedbackEvent] = []  # the events the refit learns
        self._positions: list[int] = []  # their positions in the store's log
        self._fitted = 0  # how many of them the last refit learned
        self._last_refit = clock()
        # Serialises reading (read, keep, advance ``position``) and refitting: a
        # RoutedChatModel polls from every thread that records feedback, and two unserialised
        # polls would read the same events twice (and skip others' positions).
        self._mutex = threading.RLock()

    def state(self) -> RefitState:
        """The policy's view now (after the last ``poll``'s read)."""
        with self._mutex:
            return RefitState(new_events=len(self._events) - self._fitted,
                              seconds=self.clock() - self._last_refit,
                              n_training=len(self.training.prompts))

    def poll(self) -> bool:
        """Read the events recorded since the last poll; refit if the policy says so.

        Returns True when the router was refitted. Safe to call from several threads: each
        event is read once and one refit runs at a time (a poll waits while another thread's
        poll reads or refits). Routing threads may keep using the router meanwhile (the swap
        takes ``lock``). An error (the store, the fit) leaves the events read kept: the next
        poll refits with them.
        """
        with self._mutex:
            fresh = self.store.events(self.position)
            for offset, event in enumerate(fresh):
                self._keep(event, self.position + offset)
            self.position += len(fresh)
            if not self.policy(self.state()):
                return False
            self.refit()
            return True

    def _keep(self, event: FeedbackEvent, position: int) -> None:
        """Add a read event to what the refit learns, or count (and warn about) one it cannot
        learn. Never raises: the event stays in the shared store whatever happens here."""
        models = self.training.models
        named = [event.model] + ([event.other] if event.other is not None else [])
        unknown = [name for name in named if name not in models]
        if unknown:
            self.skipped_events += 1
            warnings.warn(
                f"feedback event on decision {event.decision_id!r} names models {unknown} the "
                f"router does not know (it knows {list(models)}); the refit leaves it out",
                RuntimeWarning, stacklevel=3)
            return
        if event.kind == PREFERENCE and isinstance(self.training, Outcomes):
            self.skipped_preferences += 1
            self.skipped_events += 1
            if self.preferences == "error":
                warnings.warn(
                    f"a preference on decision {event.decision_id!r} is in the feedback store, "
                    "but this refitter trains on Outcomes, which cannot hold one; the refit "
                    "leaves it out (skipped_preferences counts them; preferences='skip' "
                    "expects them, or train on Battles)", RuntimeWarning, stacklevel=3)
            return
        self._events.append(event)
        self._positions.append(position)

    def refit(self) -> Any:
        """Refit now on the training data plus every event read so far; returns the router."""
        with self._mutex:
            # The log may hold one event twice (identical fields, time included): learn it
            # once, as replay does.
            events, prints, rows = unique_events(self._events)
            union = self._union(events, [self._positions[i] for i in rows])
            fitted = self.router.clone().fit(union)
            if hasattr(fitted, "learned_feedback_"):
                # fit forgot the events it learned; list them, so replay skips them after.
                # These routers learn pairwise: from training Outcomes a score is a row
                # scoring one model, which teaches them nothing, so it stays unlisted and a
                # replay (which imputes its battles) still teaches it.
                taught = prints if isinstance(self.training, Battles) else prints[:0]
                fitted.learned_feedback_ = np.sort(taught)
            # Population means stay the training data's: feedback is selection-biased.
            fitted.quality_ = np.array(self.router.quality_, dtype=np.float64)
            fitted.costs_ = (None if self.router.costs_ is None
                             else np.array(self.router.costs_, dtype=np.float64))
            with self.lock if self.lock is not None else contextlib.nullcontext():
                swap_in(self.router, fitted)  # never empty, even to a reader without the lock
            self._fitted = len(self._events)
            self._last_refit = self.clock()
            self.refits += 1
            return self.router

    def check_preferences(self) -> None:
        """Raise ``FeedbackError`` if a preference event could not be refitted (training
        ``Outcomes`` with ``preferences="error"``); callers check before storing one."""
        if isinstance(self.training, Outcomes) and self.preferences == "error":
            raise FeedbackError(
                "this refitter trains on Outcomes, which cannot hold a preference (it compares "
                "two answers, not scores one); build it with preferences='skip' or train on "
                "Battles")

    def _union(self, events: list[FeedbackEvent], positions: list[int]) -> Outcomes | Battles:
        """The training data plus ``events`` (distinct, at log ``positions``)."""
        if not events:
            return self.training
        ids = list(dict.fromkeys(e.decision_id for e in events))
        decisions = {record.decision_id: record for record in self.store.decisions(ids)}
        if isinstance(self.training, Battles):
            extra = feedback_battles(events, decisions, self.router)
            return _union_battles(self.training, extra) if len(extra) else self.training
        rows = feedback_outcomes(events, decisions, self.training.models,  # no preferences
                                 positions=positions)
        t, k = self.training, len(rows)
        return dataclasses.replace(
            t,
            ids=[*t.ids, *rows.ids],
            prompts=[*t.prompts, *rows.prompts],
            scores=np.concatenate([t.scores, rows.scores]),
            costs=None if t.costs is None else np.concatenate([t.costs, rows.costs]),
            tasks=None if t.tasks is None else [*t.tasks, *["feedback"] * k],
            answers=None if t.answers is None else np.concatenate(
                [t.answers, np.full((k, len(t.models)), "", dtype=t.answers.dtype)]),
            reference=None if t.reference is None else np.concatenate(
                [t.reference, np.full(k, "", dtype=t.reference.dtype)]),
        )

    def __repr__(self) -> str:
        return (f"FeedbackRefitter({self.store!r}, {type(self.router).__name__}, "
                f"policy={self.policy!r}, position={self.position}, "
                f"skipped_events={self.skipped_events})")
