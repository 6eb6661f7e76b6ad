"""The embedder interface: texts in, L2-normalised float32 rows out, cached by text hash."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._exceptions import EmbeddingError

__all__ = ["Embedder"]


class Embedder(ABC):
    """Turns texts into unit-length float32 vectors.

    Subclasses implement ``_embed_batch`` (raw vectors for up to ``batch_size`` texts) and
    ``get_config``; this class batches, normalises once, and keeps an LRU cache keyed by the
    SHA-256 of each text so a prompt seen before (in training, calibration or evaluation) is never
    embedded twice.
    """

    #: Registry name used in saved router files (``{"kind": name, **config}``).
    kind: str = ""

    def __init__(self, *, batch_size: int = 64, cache_size: int = 100_000) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.cache_size = cache_size
        self._cache: OrderedDict[bytes, np.ndarray] = OrderedDict()

    @property
    @abstractmethod
    def dimension(self) -> int:
        """Length of each vector."""

    @abstractmethod
    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        """Raw (not necessarily normalised) vectors, shape (len(texts), dimension)."""
        raise NotImplementedError("Embedder subclasses must implement _embed_batch()")

    @abstractmethod
    def get_config(self) -> dict[str, Any]:
        """JSON-serialisable settings that rebuild an equivalent embedder (see ``embedder_from_config``)."""
        raise NotImplementedError("Embedder subclasses must implement get_config()")

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length float32 vectors for ``texts``, shape (len(texts), dimension)."""
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts, not a single str")
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        keys = [hashlib.sha256(t.encode("utf-8")).digest() for t in texts]
        todo: dict[bytes, list[int]] = {}
        for i, key in enumerate(keys):
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                out[i] = hit
            else:
                todo.setdefault(key, []).append(i)
        pending = list(todo.items())
        for start in range(0, len(pending), self.batch_size):
            chunk = pending[start : start + self.batch_size]
            batch = [texts[rows[0]] for _, rows in chunk]
            raw = np.asarray(self._embed_batch(batch), dtype=np.float32)
            if raw.shape != (len(batch), self.dimension):
                raise EmbeddingError(
                    f"{type(self).__name__} returned shape {raw.shape} for {len(batch)} texts, "
                    f"expected ({len(batch)}, {self.dimension})"
                )
            norms = np.linalg.norm(raw, axis=1, keepdims=True)
            if not np.all(np.isfinite(norms)) or np.any(norms == 0):
                raise EmbeddingError(f"{type(self).__name__} returned a zero or non-finite vector")
            vectors = raw / norms
            for (key, rows), vec in zip(chunk, vectors, strict=True):
                out[rows] = vec
                self._remember(key, vec)
        return out

    def embed_one(self, text: str) -> np.ndarray:
        """One unit-length float32 vector."""
        return self.embed([text])[0]

    def _remember(self, key: bytes, vec: np.ndarray) -> None:
        if self.cache_size <= 0:
            return
        self._cache[key] = vec
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"
