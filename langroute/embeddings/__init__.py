"""Embedders: one small interface (``Embedder.embed``), interchangeable implementations."""

from __future__ import annotations

from typing import Any

from ._base import Embedder
from ._hashing import HashingEmbedder
from ._sentence_transformers import SentenceTransformerEmbedder, default_model_path

__all__ = [
    "Embedder",
    "HashingEmbedder",
    "SentenceTransformerEmbedder",
    "default_model_path",
    "embedder_from_config",
]

_KINDS: dict[str, type[Embedder]] = {
    HashingEmbedder.kind: HashingEmbedder,
    SentenceTransformerEmbedder.kind: SentenceTransformerEmbedder,
}


def embedder_from_config(config: dict[str, Any]) -> Embedder:
    """Rebuild an embedder from ``{"kind": ..., **embedder.get_config()}`` (as saved in router files)."""
    settings = dict(config)
    kind = settings.pop("kind", None)
    cls = _KINDS.get(str(kind))
    if cls is None:
        raise ValueError(f"unknown embedder kind {kind!r}; known: {sorted(_KINDS)}")
    return cls(**settings)
