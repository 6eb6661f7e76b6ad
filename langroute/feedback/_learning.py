"""Feedback -> training data -> ``router.partial_fit``: record, replay, and learn.

A score is feedback on *one* model's answer, but routers learn which model *beats* which. So
each feedback event becomes one new exemplar (its decision's prompt) holding battles:

* a score ``s_m`` of model ``m`` meets every other model ``j`` in an *expected* battle:
  ``m`` wins the share of it a battle with that score is expected to win (``1`` if m scores
  higher, a tie half, as routers count measured battles). By default
  (``impute="conditional"``) that share is the least-squares line of the battle's outcome
  on ``s_m`` over the training outcomes (``routers._incremental.conditional_outcomes``); for
  0/1 scores it is exactly ``(1 + s_m - e_j) / 2`` with ``e_j = P(j succeeds | s_m)``: a
  failure of a cheap model says "a model that usually succeeds would likely have won here",
  a success "it would at best have tied". Models' successes are correlated -- a prompt one
  model gets right is usually easy -- so assuming independence (``(1 + s_m - q_j) / 2``,
  ``q_j`` the router's ``quality_``: ``impute="quality"``) over-credits a cheap model's
  success and a strong model's win over a cheap failure. An imputed battle is worth less
  than a measured one: ``feedback_training`` also gives each score's exemplar a weight, the
  share of its battles' outcome variance the score explains
  (``routers._incremental.outcome_reliability``), which ``SWRouter.partial_fit`` takes as
  ``sample_weight``;
* a preference is one real battle (``preferred`` wins, or a tie).

Pairs without ``m`` get no battle, so feedback only moves what it observed. One exemplar per
event (not per decision) makes learning order-free: a router that learned each event as it
came equals one that replays the whole log later. An event that yields no battle (a score
with ``impute=None``) adds no exemplar.

Each event is learned once: routers that learn from feedback keep the fingerprints of the
events they learned (``learned_feedback_``, saved with the router), and ``record_feedback``,
``record_preference`` and ``replay`` skip those. A router that learned live, was saved and
loaded, then replays the whole store, equals one that learned each event once.

Feedback teaches the router *where* each model wins, never how good a model is overall:
``quality_`` (and ``costs_``) stay the means of the training outcomes. The router chose the
model that got feedback because it expected it to do well there, so a model's feedback
scores are a selection-biased sample of its quality; see ``routers._incremental.update_means``
for why an inverse-propensity update is not possible with deterministic routing.
"""

from __future__ import annotations

import contextlib
import inspect
import threading
import weakref
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from .._exceptions import FeedbackError, RefitError, RouterConfigError
from .._outcomes import Battles
from ..routers._incremental import (
    FEEDBACK_SOURCE,
    conditional_outcomes,
    onboarding_copy,
    outcome_reliability,
    swap_in,
)
from ..routers._knn import KNNRouter
from ..routers._sw import SWRouter
from ._records import PREFERENCE, SCORE, DecisionRecord, FeedbackEvent, unique_events
from ._store import FeedbackStore

__all__ = [
    "DECISION_ID_KEY",
    "IMPUTATIONS",
    "feedback_battles",
    "feedback_training",
    "learn_battles",
    "record_feedback",
    "record_langsmith_feedback",
    "record_preference",
    "replay",
]


#: How a score of one model becomes battles against the others (see the module docstring).
IMPUTATIONS = ("conditional", "quality", "router", None)


def feedback_battles(
    events: Iterable[FeedbackEvent],
    decisions: Mapping[str, DecisionRecord],
    router: Any,
    *,
    impute: str | None = "conditional",
) -> Battles:
    """The battles the feedback ``events`` add to ``router`` (see the module docstring).

    ``decisions`` maps each event's decision id to its record. ``impute`` says how a score
    ``s_m`` meets each other model ``j``: ``"conditional"`` (default) with the outcome
    expected given ``s_m`` (``routers._incremental.conditional_outcomes``, from the
    router's ``score_moments_``; a router without them -- fitted on battles -- imputes
    ``quality_``, as ``"quality"``); ``"quality"`` against ``j``'s mean quality,
    ``(1 + s_m - q_j) / 2``; ``"router"`` as the router's own prediction on the prompt
    shifted by the surprise, ``P(m beats j | prompt) + (s_m - q_m) / 2`` (clipped to
    [0, 1]); None keeps only the real battles (preferences), so scores teach nothing.
    """
    return feedback_training(events, decisions, router, impute=impute)[0]


def feedback_training(
    events: Iterable[FeedbackEvent],
    decisions: Mapping[str, DecisionRecord],
    router: Any,
    *,
    impute: str | None = "conditional",
) -> tuple[Battles, np.ndarray]:
    """``feedback_battles``, and a weight per battle prompt (in ``Battles.prompts`` order)
    for routers whose ``partial_fit`` takes ``sample_weight``.

    A preference is a measured battle: weight 1. A score's battles are imputed, and weigh
    the mean over them of the share of the battle outcome's variance the score explains
    (``routers._incremental.outcome_reliability``; ``impute="conditional"`` with a router
    that keeps the outcome sums, else 1): a cheap model's thumbs-up says little about
    whether it beat a strong model, and weighs accordingly.
    """
    if impute not in IMPUTATIONS:
        raise FeedbackError(f"impute must be one of {list(IMPUTATIONS)}, got {impute!r}")
    models = list(router.models)
    m = len(models)
    quality = np.asarray(getattr(router, "quality_", np.full(m, np.nan)), float)
    column = {name: i for i, name in enumerate(models)}
    prompts: list[str] = []
    rows: list[tuple[int, int, int, float]] = []  # prompt, model a, model b, a's win share
    scored: list[tuple[int, int, float]] = []  # prompt, model, score
    for event in events:
        decision = decisions.get(event.decision_id)
        if decision is None:
            raise FeedbackError(f"no decision record given for feedback on {event.decision_id!r}")
        named = [event.model] + ([event.other] if event.other is not None else [])
        unknown = [name for name in named if name not in column]
        if unknown:
            raise FeedbackError(
                f"feedback on decision {event.decision_id!r} names models {unknown} the router "
                f"does not know (it knows {models}); onboard them with add_model() first"
            )
        p = len(prompts)
        prompts.append(decision.prompt)
        if event.kind == PREFERENCE:
            assert event.other is not None
            rows.append((p, column[event.model], column[event.other], event.score))
        elif impute is not None:
            scored.append((p, column[event.model], event.score))
    table = np.asarray(rows, dtype=np.float64).reshape(-1, 4)
    weight = np.ones(len(prompts))
    if scored:
        imputed = _imputed(scored, prompts, router, quality, impute)
        table = np.concatenate([table, imputed])
        table = table[np.lexsort((table[:, 2], table[:, 0]))]  # event order, then model
        reliability = (outcome_reliability(getattr(router, "score_moments_", None))
                       if impute == "conditional" else None)
        if reliability is not None and len(imputed):
            p, a, b = (imputed[:, k].astype(np.int64) for k in range(3))
            weight[np.unique(p)] = 0.0
            np.add.at(weight, p, reliability[a, b] / np.bincount(p, minlength=len(prompts))[p])
    # A prompt left without a battle (a score with impute=None, or against models with no
    # known quality) teaches nothing; stored, it would only crowd the router's neighbours.
    used, index = np.unique(table[:, 0].astype(np.int64), return_inverse=True)
    table[:, 0] = index
    battles = Battles(
        prompts=[prompts[i] for i in used],
        models=tuple(models),
        prompt_index=table[:, 0].astype(np.int64),
        model_a=table[:, 1].astype(np.int64),
        model_b=table[:, 2].astype(np.int64),
        result=table[:, 3],
        source=FEEDBACK_SOURCE,
    )
    return battles, weight[used]


def _imputed(scored: list[tuple[int, int, float]], prompts: list[str], router: Any,
             quality: np.ndarray, impute: str | None) -> np.ndarray:
    """Rows (prompt, m, j, share) of every scored model against every other model."""
    m = quality.shape[0]
    events = np.asarray(scored, dtype=np.float64)
    p, a, s = events[:, 0].astype(np.int64), events[:, 1].astype(np.int64), events[:, 2]
    others = np.broadcast_to(np.arange(m), (len(p), m))
    if impute == "router":
        win = router.win_matrices([prompts[i] for i in p])  # one batch for all events
        q_a = np.where(np.isfinite(quality[a]), quality[a], 0.5)
        share = win[np.arange(len(p)), a, :] + 0.5 * (s - q_a)[:, None]
        keep = others != a[:, None]
    else:
        moments = getattr(router, "score_moments_", None) if impute == "conditional" else None
        share = conditional_outcomes(moments, quality, a, s)
        keep = (others != a[:, None]) & np.isfinite(share)
    share = np.clip(share, 0.0, 1.0)
    cols = [np.broadcast_to(p[:, None], (len(p), m)), np.broadcast_to(a[:, None], (len(p), m)),
            others, share]
    return np.stack([c[keep] for c in cols], axis=1).astype(np.float64)


def learn_battles(router: Any, battles: Battles, weight: np.ndarray, **kwargs: Any) -> None:
    """``router.partial_fit(battles)``, with the exemplars' weights where it takes them
    (``sample_weight``, as scikit-learn's ``has_fit_parameter`` asks)."""
    if "sample_weight" in inspect.signature(router.partial_fit).parameters:
        kwargs["sample_weight"] = weight
    router.partial_fit(battles, **kwargs)


def _learner(router: Any) -> Any:
    if not callable(getattr(router, "partial_fit", None)):
        raise RouterConfigError(
            f"{type(router).__name__} cannot learn incrementally (no partial_fit); refit it on "
            "its training data plus the feedback on a schedule with "
            "langroute.feedback.FeedbackRefitter(store, router, training, policy=RefitEvery(...)) "
            "(RoutedChatModel(refitter=...) polls it after each feedback)"
        )
    return router


def _not_learned(learned: np.ndarray, prints: np.ndarray) -> np.ndarray:
    """Which of ``prints`` the sorted fingerprints ``learned`` do not hold (searchsorted)."""
    if not len(learned):
        return np.ones(len(prints), dtype=bool)
    at = np.minimum(np.searchsorted(learned, prints), len(learned) - 1)
    return learned[at] != prints


def _new_events(router: Any, events: Sequence[FeedbackEvent]
                ) -> tuple[list[FeedbackEvent], np.ndarray | None]:
    """The events ``router`` has not learned (each once), and their fingerprints.

    A router without ``learned_feedback_`` learns every event given (fingerprints None).
    Read without the routing lock: ``learned_feedback_`` is replaced, never changed in
    place, and ``_learn`` checks again under the lock.
    """
    learned = getattr(router, "learned_feedback_", None)
    if learned is None:
        return list(events), None
    events, prints, _ = unique_events(events)
    fresh = _not_learned(learned, prints)
    return [event for event, keep in zip(events, fresh, strict=True) if keep], prints[fresh]


def _learn(router: Any, events: Sequence[FeedbackEvent], prints: np.ndarray | None,
           decisions: Mapping[str, DecisionRecord], lock: Any,
           embedded: Mapping[str, np.ndarray] | None = None) -> None:
    """``partial_fit`` ``router`` on ``events`` (from ``_new_events``) and record them.

    The battles are built before taking ``lock`` (routing waits on it); under it only the
    fingerprints are checked again against ``learned_feedback_`` -- another thread may have
    learned some events since -- before ``partial_fit`` and the record, so two threads
    replaying at once cannot both learn an event (the battles are rebuilt for the events
    left, the rare case). ``prints`` None: the router keeps no fingerprints.

    ``SWRouter`` and ``KNNRouter`` learn on a shallow copy outside ``lock`` (only the new
    prompts are embedded under it), swapped in under it: ``partial_fit`` copies every stored
    exemplar, and a clustered ``SWRouter`` re-clusters them all once they have doubled
    (seconds at 50k exemplars), which must not stop routing. Learners of one router take turns
    (``_learning_lock``), so no event is learned twice nor lost; a router changed meanwhile
    (a ``FeedbackRefitter`` refit swapped in, ``add_model``) is not swapped over: the events
    are checked against it again and learned on it under ``lock``, the rare case.
    ``embedded`` maps prompts to the vectors ``_embed_first`` computed before the event was
    stored; those are not embedded again.
    """
    if not events:
        return
    models = list(router.models)
    battles, weight = feedback_training(events, decisions, router)
    routing = lock if lock is not None else contextlib.nullcontext()
    with _learning_lock(router):
        with routing:
            events, prints, (battles, weight) = _still_new(
                router, events, prints, decisions, models, (battles, weight))
            if not (len(battles) and isinstance(router, _STAGED_ROUTERS)):
                if len(battles):
                    learn_battles(router, battles, weight)
                _note_learned(router, prints)
                return
            # embedded under the lock: the embedder's cache is shared with routing
            prompts = list(battles.prompts)
            if embedded is not None and all(p in embedded for p in prompts):
                vectors = np.stack([embedded[p] for p in prompts])
            else:
                vectors = router._embed_new(prompts, None)
            version, models = router.fit_version_, list(router.models)
            staged = onboarding_copy(router)
        # routing goes on with the old state meanwhile
        learn_battles(staged, battles, weight, embeddings=vectors)
        with routing:
            if router.fit_version_ == version:
                swap_in(router, staged)
            else:  # changed meanwhile (a refit swapped in, add_model, a direct partial_fit)
                staged_on = battles
                events, prints, (battles, weight) = _still_new(
                    router, events, prints, decisions, models, (battles, weight))
                if len(battles):
                    learn_battles(router, battles, weight,
                                 embeddings=vectors if battles is staged_on else None)
            _note_learned(router, prints)


def _still_new(router: Any, events: Sequence[FeedbackEvent], prints: np.ndarray | None,
               decisions: Mapping[str, DecisionRecord], models: list[str],
               training: tuple[Battles, np.ndarray]
               ) -> tuple[Sequence[FeedbackEvent], np.ndarray | None, tuple[Battles, np.ndarray]]:
    """Under the routing lock: ``events`` (``prints``) less those ``router`` learned since
    ``training`` (battles, weights) was built for its ``models`` (another learner, a refit
    swapped in), and their battles and weights -- ``training`` itself unless that or the
    model list (``add_model``) changed."""
    learned = getattr(router, "learned_feedback_", None)
    stale = list(router.models) != models
    if prints is not None and learned is not None:
        fresh = _not_learned(learned, prints)
        if not fresh.all():
            events = [event for event, keep in zip(events, fresh, strict=True) if keep]
            prints, stale = prints[fresh], True
    if stale:
        training = feedback_training(events, decisions, router)
    return events, prints, training


def _learning_lock(router: Any) -> Any:
    """One lock per router, taken by whoever learns on it (routing never waits on it). A
    router that cannot be a weak key (unhashable, or without ``__weakref__``: a router of the
    user's own) is never staged; it learns under the routing lock alone."""
    with _LEARNING_LOCKS_GUARD:
        try:
            return _LEARNING_LOCKS.setdefault(router, threading.Lock())
        except TypeError:
            return contextlib.nullcontext()


def _note_learned(router: Any, prints: np.ndarray | None) -> None:
    """Add ``prints`` to ``router.learned_feedback_`` (kept sorted)."""
    learned = getattr(router, "learned_feedback_", None)
    if prints is not None and learned is not None and len(prints):
        new = np.sort(prints)
        router.learned_feedback_ = np.insert(learned, np.searchsorted(learned, new), new)


def _learn_stored(router: Any, event: FeedbackEvent, decision: DecisionRecord, lock: Any,
                  embedded: Mapping[str, np.ndarray] | None) -> None:
    """Teach ``router`` an event already stored. A failure here (``partial_fit`` out of
    memory, say) must not read as "feedback not recorded", the meaning of a
    ``FeedbackError``: a caller retrying on it would store, and later replay, the event
    twice. It is raised as ``RefitError`` carrying the stored event; replaying the store
    teaches it."""
    try:
        _learn(router, *_new_events(router, [event]), {event.decision_id: decision}, lock,
               embedded)
    except Exception as exc:
        raise RefitError(
            f"the feedback on decision {event.decision_id!r} was stored, but the router failed "
            f"to learn it ({type(exc).__name__}: {exc}); do not record it again -- replaying "
            "the store (langroute.feedback.replay) teaches it", event=event) from exc


def _embed_first(router: Any, battles: Battles, lock: Any) -> dict[str, np.ndarray] | None:
    """The prompts of ``battles`` embedded by ``router`` (under ``lock``: the embedder's cache
    is shared with routing), before the event they come from is stored: an embedder that
    fails (a remote service down) then fails the call with nothing stored, so retrying it
    cannot store -- and teach -- the feedback twice."""
    if not (len(battles) and isinstance(router, _STAGED_ROUTERS)):
        return None
    prompts = list(battles.prompts)
    with lock if lock is not None else contextlib.nullcontext():
        vectors = router._embed_new(prompts, None)
    return dict(zip(prompts, vectors, strict=True))


#: Routers whose ``partial_fit`` replaces its attributes, never changing them in place, so it
#: can run on a shallow copy (``onboarding_copy``) swapped in afterwards.
_STAGED_ROUTERS = (SWRouter, KNNRouter)
_LEARNING_LOCKS: weakref.WeakKeyDictionary[Any, threading.Lock] = weakref.WeakKeyDictionary()
_LEARNING_LOCKS_GUARD = threading.Lock()


def record_feedback(
    store: FeedbackStore,
    decision_id: str,
    *,
    score: float,
    router: Any = None,
    model: str | None = None,
    key: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    lock: Any = None,
) -> FeedbackEvent:
    """Store a quality ``score`` in [0, 1] for a decision and teach ``router`` from it.

    Parameters
    ----------
    store : FeedbackStore
        Where the decision was recorded (by ``FeedbackRecorder``).
    decision_id : str
        The call's ``decision_id`` (``response_metadata["langroute"]["decision_id"]``).
    score : float
        Quality of the answer in [0, 1] (a thumbs up is 1, down 0; a grader's score).
    router : router with ``partial_fit``, default=None
        Learns from the feedback at once (its ``fit_version_`` changes, so policies rebuild).
        None only stores it (another process replays the store).
    model : str, default=None
        The model whose answer was scored; default: the one that answered.
    key, metadata
        The feedback's source (a LangSmith feedback key) and JSON extras, stored with it.
    lock : context manager, default=None
        Held around ``partial_fit``. ``partial_fit`` swaps several arrays, so a router that
        other threads route with must be updated under the lock its scoring takes (the
        ``RoutingPolicy``'s lock in ``RoutedChatModel``).

    Returns
    -------
    FeedbackEvent
        The stored event. An unknown decision id, a score outside [0, 1] or NaN, or a model
        the decision did not offer raise before anything is stored, and so does a failure to
        embed the decision's prompt (the router's embedder runs first). A failure to learn
        the stored event raises ``RefitError``, which carries it (do not record it again).
    """
    if router is not None:
        _learner(router)
        decision = store.decision(decision_id)
        # Check the router can take it, and embed its prompt, before storing anything.
        embedded = _embed_first(router, feedback_battles(
            [FeedbackEvent(decision_id, SCORE, model or decision.model, score)],
            {decision_id: decision}, router), lock)
    event = store.add_score(decision_id, score, model=model, key=key, metadata=metadata)
    if router is not None:
        _learn_stored(router, event, decision, lock, embedded)
    return event


def record_preference(
    store: FeedbackStore,
    decision_id: str,
    *,
    preferred: str,
    other: str | None = None,
    tie: bool = False,
    router: Any = None,
    key: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    lock: Any = None,
) -> FeedbackEvent:
    """Store that ``preferred``'s answer beat ``other``'s (default: the answering model's) on
    a decision's prompt (``tie=True``: neither), and teach ``router`` from it.

    Same contract as ``record_feedback``; naming the answering model as ``preferred`` without
    ``other`` is an error (a preference needs two models).
    """
    embedded = None
    if router is not None:
        _learner(router)
        decision = store.decision(decision_id)
        against = decision.model if other is None else other
        if against != preferred:  # else add_preference refuses it
            embedded = _embed_first(router, feedback_battles(
                [FeedbackEvent(decision_id, PREFERENCE, preferred, 0.5 if tie else 1.0,
                               other=against)],
                {decision_id: decision}, router,
            ), lock)
    event = store.add_preference(decision_id, preferred, other=other, tie=tie, key=key,
                                 metadata=metadata)
    if router is not None:
        _learn_stored(router, event, decision, lock, embedded)
    return event


#: Metadata key under which ``RoutedChatModel`` puts the decision id on its routed run.
DECISION_ID_KEY = "langroute_decision_id"


def record_langsmith_feedback(
    store: FeedbackStore,
    run_metadata: Mapping[str, Any],
    *,
    key: str,
    score: float | bool,
    run_id: Any = None,
    comment: str | None = None,
    router: Any = None,
    lock: Any = None,
) -> FeedbackEvent:
    """Record LangSmith-style feedback (``key``, ``score``, the run's metadata) on a decision.

    LangSmith feedback names a *run*; the routed run's metadata carries the decision id under
    ``langroute_decision_id``, so ``run_metadata`` is that run's metadata (e.g.
    ``client.read_run(run_id).metadata``). A boolean score is 1.0 / 0.0; a numeric one must
    already lie in [0, 1] (normalise other scales first). ``key``, ``run_id`` and ``comment``
    are stored with the event.

    Runs of ``invoke``/``stream``/``batch`` (and async forms) carry the id; a ``generate()``
    run cannot (LangChain fixes a chat-model run's metadata when it starts, before the
    decision): use ``record_feedback`` with the id from ``response_metadata["langroute"]``.
    """
    decision_id = run_metadata.get(DECISION_ID_KEY)
    if not isinstance(decision_id, str) or not decision_id:
        raise FeedbackError(
            f"the run's metadata has no {DECISION_ID_KEY!r}; is it the routed run of a "
            "RoutedChatModel call?"
        )
    value = float(score) if isinstance(score, bool) else score
    extra = {k: v for k, v in (("langsmith_run_id", None if run_id is None else str(run_id)),
                               ("comment", comment)) if v is not None}
    return record_feedback(store, decision_id, score=value, router=router, key=key,
                           metadata=extra, lock=lock)


def replay(store: FeedbackStore, router: Any, *, start: int = 0, lock: Any = None) -> int:
    """Teach ``router`` every feedback event from log position ``start`` on that it has not
    learned yet, in one ``partial_fit``; returns the position to resume from next time.

    Replay is idempotent: ``SWRouter`` and ``KNNRouter`` keep the fingerprints of the events
    they learned (``learned_feedback_``, saved with the router file), whether live through
    ``record_feedback`` / ``record_preference`` or by an earlier replay, and an event listed
    there is skipped. So ``replay(store, router)`` from 0 is always safe, whatever the router
    learned before (a router loaded from a file, a second replay); ``start`` only spares
    reading the events before it. A process that starts later calls
    ``position = replay(store, router)`` once, then ``replay(store, router, start=position)``
    whenever it wants to catch up with feedback other processes recorded. ``lock`` as in
    ``record_feedback``. Events already in a router's training data (``fit``) are not known
    to it: replay from after them.
    """
    _learner(router)
    events = store.events(start)
    new, prints = _new_events(router, events)
    if new:  # decisions are fetched for the events to learn only
        ids = list(dict.fromkeys(e.decision_id for e in new))
        decisions = {record.decision_id: record for record in store.decisions(ids)}
        _learn(router, new, prints, decisions, lock)
    return start + len(events)
