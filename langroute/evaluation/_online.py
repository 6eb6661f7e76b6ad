"""Online evaluation: a router that learns from its own traffic, replayed from logged outcomes.

For each train/test split of ``evaluate``:

1. the training rows, in the split's (shuffled) order, are cut into an *initial* share (default
   25%) and a *stream* (the rest): the traffic a deployed router sees after launch;
2. the **static** router is fitted on the initial share and never changes;
3. the **online** router starts as the same fit, then routes the stream in ``steps`` batches.
   Each stream prompt carries a threshold drawn uniformly from [0, 1] (callers with different
   cost preferences share the router, as ``langroute_threshold`` allows); the router picks a
   model, and only *that model's* logged score is fed back -- what a deployment observes --
   through ``feedback_training`` and ``partial_fit`` after each batch;
4. both routers are scored on the held-out test fold (AIQ and the rest, exactly as ``evaluate``
   scores any router), and along the stream the quality and cost of their choices are recorded
   at the same thresholds ("over time").

The test fold is never fed back, so the final AIQ is measured on prompts neither router saw.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._calibration import routing_ladder
from .._exceptions import RouterConfigError
from .._outcomes import Outcomes
from ..feedback import DecisionRecord, FeedbackEvent, feedback_training
from ..feedback._learning import learn_battles
from ..routers import BaseRouter
from ..routers._calibration_scores import calibration_scores_disabled

__all__ = [
    "DEFAULT_INITIAL_SHARE",
    "DEFAULT_STEPS",
    "check_initial_share",
    "online_fold",
    "online_labels",
    "plot_online",
    "summarise_timelines",
]

#: Share of each training fold the static and online routers start from (fixed a priori).
DEFAULT_INITIAL_SHARE = 0.25
#: Feedback batches along the stream (the online router learns after each).
DEFAULT_STEPS = 20
#: How a score becomes battles (``feedback_battles``' ``impute``), fixed a priori.
DEFAULT_IMPUTE = "conditional"


def check_initial_share(share: Any) -> float:
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not (
        0.0 < float(share) < 1.0
    ):
        raise RouterConfigError(f"online initial share must lie strictly in (0, 1), got {share!r}")
    return float(share)


def online_labels(label: str, share: float) -> tuple[str, str]:
    """Report labels of the static and online rows derived from router ``label``."""
    pct = f"{100 * share:g}%"
    return f"{label} static@{pct}", f"{label} online@{pct}"


def _choices(router: BaseRouter, win: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Router-model column chosen for each prompt at its own threshold."""
    ladder = routing_ladder(router)
    picks = ladder.choose(ladder.levels(win), thresholds)
    return np.asarray(ladder.columns[picks], dtype=np.int64)


def online_fold(
    template: BaseRouter,
    train: Outcomes,
    *,
    initial_share: float = DEFAULT_INITIAL_SHARE,
    steps: int = DEFAULT_STEPS,
    seed: int = 0,
    impute: str | None = DEFAULT_IMPUTE,
) -> tuple[BaseRouter, BaseRouter, dict[str, np.ndarray]]:
    """Fit the static router, stream the rest of ``train`` into the online one.

    Returns ``(static, online, timeline)``; ``timeline`` has one entry per batch:
    ``seen`` (stream prompts fed back so far, after the batch), and the mean ``*_quality`` /
    ``*_cost`` of the online and static choices on the batch's prompts. ``impute`` is passed to
    ``feedback_training``.
    """
    share = check_initial_share(initial_share)
    if not callable(getattr(template, "partial_fit", None)):
        raise RouterConfigError(
            f"{type(template).__name__} has no partial_fit; online evaluation needs a router "
            "that learns incrementally (sw, knn)"
        )
    assert train.costs is not None
    n = len(train)
    n_initial = max(2, int(round(share * n)))
    if n - n_initial < steps:
        raise RouterConfigError(
            f"{n} training prompts leave {n - n_initial} to stream after the initial "
            f"{share:.0%}; need at least {steps}"
        )
    initial = train.subset(np.arange(n_initial))
    # A parameter the initial share cannot support (kNN's k) is lowered as for out-of-fold fits.
    with calibration_scores_disabled():  # never calibrated here: skip the out-of-fold refits
        static = template._calibration_clone(n_initial).fit(initial)
        online = template._calibration_clone(n_initial).fit(initial)
    rng = np.random.default_rng(seed)
    stream = np.arange(n_initial, n)
    thresholds = rng.uniform(0.0, 1.0, len(stream))
    models = list(train.models)
    rows = np.arange(len(stream))
    static_pick = _choices(static, static.win_matrices([train.prompts[i] for i in stream]),
                           thresholds)
    timeline: dict[str, list[float]] = {k: [] for k in (
        "seen", "online_quality", "online_cost", "static_quality", "static_cost")}
    for batch in np.array_split(rows, steps):
        prompts = [train.prompts[stream[i]] for i in batch]
        pick = _choices(online, online.win_matrices(prompts), thresholds[batch])
        scores = train.scores[stream[batch], pick]
        costs = train.costs[stream[batch], pick]
        decisions = {}
        events = []
        for k, (i, column) in enumerate(zip(batch, pick, strict=True)):
            decision_id = f"stream-{int(i)}"
            decisions[decision_id] = DecisionRecord(decision_id, prompts[k], models[column],
                                                    tuple(models), time=0.0)
            events.append(FeedbackEvent(decision_id, "score", models[column],
                                        float(scores[k]), time=0.0))
        battles, weight = feedback_training(events, decisions, online, impute=impute)
        if len(battles):  # impute=None: scores teach nothing
            learn_battles(online, battles, weight)
        s_pick = static_pick[batch]
        timeline["seen"].append(float(batch[-1] + 1))
        timeline["online_quality"].append(float(scores.mean()))
        timeline["online_cost"].append(float(costs.mean()))
        timeline["static_quality"].append(float(train.scores[stream[batch], s_pick].mean()))
        timeline["static_cost"].append(float(train.costs[stream[batch], s_pick].mean()))
    return static, online, {k: np.asarray(v) for k, v in timeline.items()}


def summarise_timelines(timelines: Sequence[Mapping[str, np.ndarray]]) -> dict[str, Any]:
    """Fold-averaged timeline for the report: the stream share seen, and mean per batch."""
    total = np.array([t["seen"][-1] for t in timelines])
    out: dict[str, Any] = {
        "stream_share": np.mean([t["seen"] / t["seen"][-1] for t in timelines], axis=0).tolist(),
        "stream_prompts": float(total.mean()),
    }
    for key in ("online_quality", "online_cost", "static_quality", "static_cost"):
        out[key] = np.mean([t[key] for t in timelines], axis=0).tolist()
    return out


def plot_online(report: Any, path: str | Path) -> Path:
    """Quality and cost per stream batch, online vs static, one panel pair per online row.

    ``report`` is an ``EvaluationReport`` (or its ``data``) from ``evaluate(..., online=True)``;
    returns the written path.
    """
    data = getattr(report, "data", report)
    from .._exceptions import MissingDependencyError

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise MissingDependencyError(
            "plotting needs matplotlib: pip install 'langroute[plot]'"
        ) from exc
    rows = [(label, entry["online"]) for label, entry in data["routers"].items()
            if "online" in entry]
    if not rows:
        raise RouterConfigError("the report has no online rows (evaluate(..., online=True))")
    fig, axes = plt.subplots(len(rows), 2, figsize=(10, 3.2 * len(rows)), squeeze=False)
    for (label, timeline), (ax_q, ax_c) in zip(rows, axes, strict=True):
        x = np.asarray(timeline["stream_share"]) * 100
        for ax, key, what in ((ax_q, "quality", "quality"), (ax_c, "cost", "USD per call")):
            ax.plot(x, timeline[f"online_{key}"], label="online", color="tab:blue")
            ax.plot(x, timeline[f"static_{key}"], label="static", color="tab:gray",
                    linestyle="--")
            ax.set_xlabel("stream seen (%)")
            ax.set_ylabel(what)
            ax.set_title(f"{label}: {what} per batch")
            ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
