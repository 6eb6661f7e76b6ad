"""Append-only arrays for routers that learn one feedback event at a time.

Copying every stored row per event (``np.concatenate``) cost ~200 ms at 100k exemplars; a
``Rows`` keeps spare room at the end of its buffer, so appending is amortised O(new rows).
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

__all__ = ["Rows"]

#: Spare room a full ``Rows`` buffer grows by, as a share of its rows: any share > 0 makes
#: appending amortised O(new rows); a quarter keeps the idle memory (float32 and float64
#: copies of every embedding) at most 25% above what is stored.
_GROWTH = 0.25


class _Backing:
    """The buffer ``Rows`` share, and how many of its rows one of them has claimed."""

    __slots__ = ("array", "filled", "lock")

    def __init__(self, array: np.ndarray, filled: int) -> None:
        self.array = array
        self.filled = filled
        self.lock = threading.Lock()


class Rows:
    """An append-only array: the first ``n`` rows of a buffer with spare room at its end.

    ``appended`` writes new rows into the spare room and returns a new ``Rows`` of the same
    buffer, or copies into a buffer ``_GROWTH`` larger when the room is short or already
    claimed (by a shallow copy of the router that appended first). Rows below a ``Rows``'s
    ``n`` are never written again, so the arrays a router hands out never change under a
    reader, and a shallow copy (``_incremental.onboarding_copy``) may share them. Pickles
    and deep copies hold the ``n`` rows only.
    """

    __slots__ = ("_backing", "n")

    def __init__(self, array: np.ndarray, capacity: int | None = None) -> None:
        array = np.ascontiguousarray(array)
        n = array.shape[0]
        if capacity is not None and capacity > n:
            buffer = np.empty((capacity, *array.shape[1:]), dtype=array.dtype)
            buffer[:n] = array
            array = buffer
        self._backing = _Backing(array, n)
        self.n = n

    @property
    def array(self) -> np.ndarray:
        """The stored rows (a read-only view)."""
        view = self._backing.array[: self.n]
        view.flags.writeable = False
        return view

    def appended(self, rows: np.ndarray) -> Rows:
        """These rows followed by ``rows``; ``self`` is left as it was."""
        backing, n, k = self._backing, self.n, rows.shape[0]
        with backing.lock:
            mine = backing.filled == n and n + k <= backing.array.shape[0]
            if mine:
                backing.filled = n + k
        if not mine:
            grown = Rows(self.array, capacity=n + k + max(int(_GROWTH * (n + k)), 16))
            return grown.appended(rows)
        backing.array[n : n + k] = rows
        out = Rows.__new__(Rows)
        out._backing, out.n = backing, n + k
        return out

    def __copy__(self) -> Rows:
        return self  # never changes: appending makes a new one

    def __deepcopy__(self, memo: dict[int, Any]) -> Rows:
        return Rows(self.array.copy())

    def __reduce__(self) -> tuple[Any, ...]:
        return Rows, (self.array.copy(),)
