"""Embedders: one small interface (``Embedder.embed``), interchangeable implementations."""

from __future__ import annotations

from typing import Any

from .._exceptions import RouterConfigError
from ._artifacts import ARTIFACTS_ENV_VAR, artifacts_root
from ._base import Embedder
from ._disk_cache import CACHE_ENV_VAR, EmbeddingDiskCache
from ._finetune import FineTunedEmbedder, fine_tune_contrastive, folder_sha256
from ._hashing import HashingEmbedder
from ._onnx import OnnxMiniLMEmbedder
from ._openai import OpenAIEmbedder
from ._sentence_transformers import SentenceTransformerEmbedder, default_model_path
from ._static import StaticEmbedder
from ._trust import (
    PROBE_TEXTS,
    check_fingerprint,
    default_embedder,
    embedder_fingerprint,
    embedder_spec,
    encoder_folder,
    trusted_embedder,
)

__all__ = [
    "ARTIFACTS_ENV_VAR",
    "CACHE_ENV_VAR",
    "Embedder",
    "EmbeddingDiskCache",
    "FineTunedEmbedder",
    "HashingEmbedder",
    "OnnxMiniLMEmbedder",
    "OpenAIEmbedder",
    "PROBE_TEXTS",
    "SentenceTransformerEmbedder",
    "StaticEmbedder",
    "artifacts_root",
    "check_fingerprint",
    "default_embedder",
    "default_model_path",
    "embedder_fingerprint",
    "embedder_from_config",
    "embedder_spec",
    "encoder_folder",
    "fine_tune_contrastive",
    "folder_sha256",
    "trusted_embedder",
]

_KINDS: dict[str, type[Embedder]] = {
    HashingEmbedder.kind: HashingEmbedder,
    OnnxMiniLMEmbedder.kind: OnnxMiniLMEmbedder,
    OpenAIEmbedder.kind: OpenAIEmbedder,
    SentenceTransformerEmbedder.kind: SentenceTransformerEmbedder,
    StaticEmbedder.kind: StaticEmbedder,
}


def embedder_from_config(config: dict[str, Any]) -> Embedder:
    """Rebuild an embedder from ``{"kind": ..., **get_config()}`` (as saved in router files).

    Raises ``RouterConfigError`` (a ValueError) for an unknown kind or settings it does not take.
    This trusts ``config`` (it may name any sentence-transformers model): for files from
    elsewhere use ``trusted_embedder``, which rebuilds only known local embedders.
    """
    if not isinstance(config, dict):
        raise RouterConfigError(f"embedder config must be a dict, got {type(config).__name__}")
    settings = dict(config)
    kind = settings.pop("kind", None)
    cls = _KINDS.get(str(kind))
    if cls is None:
        raise RouterConfigError(f"unknown embedder kind {kind!r}; known: {sorted(_KINDS)}")
    try:
        return cls(**settings)
    except (TypeError, ValueError) as exc:
        raise RouterConfigError(f"invalid {kind} embedder config {settings}: {exc}") from exc
