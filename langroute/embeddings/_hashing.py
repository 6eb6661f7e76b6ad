"""A dependency-free embedder: hashed word and character n-grams.

Deterministic and instant, so unit tests and tiny deployments need no neural model; far weaker
than MiniLM on paraphrases.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ._base import Embedder

__all__ = ["HashingEmbedder"]

_TOKEN = re.compile(r"\w+", re.UNICODE)


class HashingEmbedder(Embedder):
    """Feature-hashed bag of lower-cased words and character trigrams.

    Parameters
    ----------
    dimension : int, default=256
        Number of hash buckets.
    batch_size, cache_size, cache_dir
        See ``Embedder``.
    """

    kind = "hashing"

    def __init__(
        self,
        dimension: int = 256,
        *,
        batch_size: int = 256,
        cache_size: int = 100_000,
        cache_dir: str | Path | Literal[False] | None = None,
    ) -> None:
        if isinstance(dimension, bool) or not isinstance(dimension, int) or dimension < 2:
            raise ValueError(f"dimension must be an int >= 2, got {dimension!r}")
        super().__init__(batch_size=batch_size, cache_size=cache_size, cache_dir=cache_dir)
        self._dimension = dimension

    @property
    def dimension(self) -> int:
        return self._dimension

    def get_config(self) -> dict[str, Any]:
        return {"dimension": self._dimension}

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self._dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            lowered = text.lower()
            features = _TOKEN.findall(lowered)
            features += [f"#{lowered[i : i + 3]}" for i in range(max(len(lowered) - 2, 0))]
            if not features:
                features = ["<empty>"]
            for feature in features:
                digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest()
                value = int.from_bytes(digest, "little")
                sign = 1.0 if value & 1 else -1.0
                out[row, (value >> 1) % self._dimension] += sign
            if not out[row].any():
                out[row, 0] = 1.0
        return out
