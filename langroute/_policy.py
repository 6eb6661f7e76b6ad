"""From a win matrix and a threshold to one model: the escalation ladder.

Models are ordered by price into a ladder, keeping only the cost-quality frontier (a model that
costs more than another but was no better on the training data is never worth calling). For a
prompt, the policy walks up the ladder from the cheapest model and stops at the first model ``m``
that no pricier rung beats with probability ``>= threshold``:

    choose the first m such that  max_{e above m} P(e beats m) < threshold

With two models this is exactly RouteLLM's rule -- call the strong model iff
P(strong wins) >= threshold -- and for N models the same knob moves monotonically from "always
the best model" (threshold 0) to "almost always the cheapest" (threshold 1). Raising the
threshold never makes a decision more expensive, so calibrating it to a cost or share target is a
one-dimensional search.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ._exceptions import RouterConfigError

__all__ = ["EscalationLadder"]


@dataclass(frozen=True)
class EscalationLadder:
    """The ordered rungs a routing decision climbs.

    Parameters
    ----------
    models : list of str
        Names of the candidate models, in the router's win-matrix order restricted to the
        candidates (see ``columns``).
    columns : ndarray of int
        For each candidate, its row/column in the router's win matrix.
    costs : ndarray of float
        Price of each candidate (any unit, only the order matters).
    rungs : ndarray of int
        Indices into ``models`` from cheapest to most expensive frontier model.
    """

    models: tuple[str, ...]
    columns: np.ndarray
    costs: np.ndarray
    rungs: np.ndarray

    @classmethod
    def build(
        cls,
        router_models: Sequence[str],
        costs: Sequence[float] | np.ndarray,
        *,
        quality: Sequence[float] | np.ndarray | None = None,
        candidates: Sequence[str] | None = None,
    ) -> EscalationLadder:
        """A ladder over ``candidates`` (default: all router models).

        ``costs`` and ``quality`` are aligned with ``router_models``. With ``quality`` known for
        every candidate, a candidate that is pricier than a cheaper candidate without being
        strictly better is left off the ladder, and of equally priced candidates only the best
        stays (the first in router order if their quality ties too); if any candidate's
        quality is unknown (NaN, e.g. a model with no battles) the ladder keeps every
        candidate.
        """
        names = list(router_models)
        cand = list(candidates) if candidates is not None else names
        unknown = [c for c in cand if c not in names]
        if unknown:
            raise RouterConfigError(f"models {unknown} are unknown to the router; it knows {names}")
        if len(cand) < 1:
            raise RouterConfigError("a routing ladder needs at least one model")
        cost_arr = np.asarray(costs, dtype=np.float64)
        if cost_arr.shape != (len(names),) or not np.all(np.isfinite(cost_arr)):
            raise RouterConfigError(
                f"need one finite cost per router model ({len(names)}), got {cost_arr.tolist()}"
            )
        columns = np.asarray([names.index(c) for c in cand], dtype=np.int64)
        cand_costs = cost_arr[columns]
        q = None
        if quality is not None:
            all_q = np.asarray(quality, dtype=np.float64)
            if all_q.shape != (len(names),):
                raise RouterConfigError(
                    f"need one quality per router model ({len(names)}), got {all_q.tolist()}"
                )
            q = all_q[columns]
        if q is None or not np.all(np.isfinite(q)):  # unknown quality: keep every candidate
            order = np.lexsort((columns, cand_costs))  # by cost, ties by router order
        else:
            # By cost; among equal costs the best first, so the frontier walk below keeps it
            # and drops the equally priced models that are no better (ties: router order).
            order = np.lexsort((columns, -q, cand_costs))
            keep = []
            best = -np.inf
            for i in order:
                if q[i] > best:
                    keep.append(i)
                    best = q[i]
            order = np.asarray(keep, dtype=np.int64)
        return cls(tuple(cand), columns, cand_costs, np.asarray(order, dtype=np.int64))

    @property
    def rung_names(self) -> list[str]:
        return [self.models[i] for i in self.rungs]

    def levels(self, win: np.ndarray) -> np.ndarray:
        """Per prompt and rung, the highest P(a pricier rung beats this one); -inf on the top rung.

        ``win`` is a router win matrix (M, M) or a batch (B, M, M); returns (L,) or (B, L).
        The rung at position i is accepted iff ``levels[..., i] < threshold``.
        """
        w = np.asarray(win, dtype=np.float64)
        idx = self.columns[self.rungs]
        sub = w[..., idx[:, None], idx[None, :]]  # (..., L, L): P(rung a beats rung b)
        n = len(idx)
        above = np.triu(np.ones((n, n), dtype=bool), k=1)  # above[i, j]: j is pricier than i
        beaten_by = np.swapaxes(sub, -1, -2)  # [..., i, j] = P(j beats i)
        masked = np.where(above, beaten_by, -np.inf)
        return masked.max(axis=-1)

    def choose(self, levels: np.ndarray, threshold: float | np.ndarray) -> np.ndarray:
        """Index into ``models`` of the chosen candidate for each row of ``levels``."""
        lv = np.asarray(levels, dtype=np.float64)
        accepted = lv < np.asarray(threshold, dtype=np.float64)[..., None]
        position = np.argmax(accepted, axis=-1)  # the top rung is always accepted
        return self.rungs[position]

    @staticmethod
    def strong_scores(levels: np.ndarray) -> np.ndarray:
        """Per prompt, the threshold at or below which the top rung is chosen.

        With two models this is P(strong beats weak): RouteLLM's router score.
        """
        lv = np.asarray(levels, dtype=np.float64)
        if lv.shape[-1] == 1:
            return np.full(lv.shape[:-1], np.inf)
        return lv[..., :-1].min(axis=-1)
