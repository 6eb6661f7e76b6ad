"""``LangrouteEmbedding``: a langroute ``Embedder`` as a LlamaIndex embedding model.

The router already embeds every prompt (MiniLM by default, offline); the same embedder can serve
a ``VectorStoreIndex``, so an application needs no second embedding model or API key.
"""

from __future__ import annotations

import asyncio
from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
from llama_index.core.bridge.pydantic import Field

from langroute import RouterConfigError
from langroute.embeddings import Embedder

__all__ = ["LangrouteEmbedding"]


class LangrouteEmbedding(BaseEmbedding):
    """A LlamaIndex embedding model backed by a langroute ``Embedder``.

    Parameters
    ----------
    embedder : langroute.embeddings.Embedder
        E.g. ``SentenceTransformerEmbedder()`` (MiniLM, offline) or ``HashingEmbedder()``.
    """

    embedder: Any = Field(exclude=True, description="A langroute Embedder.")

    def __init__(self, embedder: Embedder, **kwargs: Any) -> None:
        if not isinstance(embedder, Embedder):
            raise RouterConfigError(
                f"embedder must be a langroute Embedder, got {type(embedder).__name__}")
        kwargs.setdefault("model_name", f"langroute:{type(embedder).__name__}")
        super().__init__(embedder=embedder, **kwargs)

    @classmethod
    def class_name(cls) -> str:
        return "langroute_embedding"

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return [list(map(float, row)) for row in self.embedder.embed(texts)]

    def _get_text_embedding(self, text: str) -> Embedding:
        return self._get_text_embeddings([text])[0]

    def _get_query_embedding(self, query: str) -> Embedding:
        return self._get_text_embedding(query)

    async def _aget_query_embedding(self, query: str) -> Embedding:
        return await asyncio.to_thread(self._get_query_embedding, query)

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return await asyncio.to_thread(self._get_text_embeddings, texts)
