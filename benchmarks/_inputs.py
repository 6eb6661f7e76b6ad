"""What the learning benchmarks read: the shared datasets and the cached MiniLM embedder."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DATA", "dataset_names", "minilm_embedder"]

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("LANGROUTE_SHARED_DATA", REPO.parent / "shared" / "data"))


def dataset_names(selected: str | None) -> list[str]:
    """The comma-separated ``selected`` datasets, or every shared one; smallest first, so the
    small ones report while the big one embeds."""
    names = (selected.split(",") if selected
             else sorted(p.name for p in DATA.iterdir() if (p / "scores.csv").exists()))
    return sorted(names, key=lambda n: (DATA / n / "scores.csv").stat().st_size)


def minilm_embedder():
    """MiniLM through the shared disk cache (``$LANGROUTE_EMBEDDING_CACHE`` or
    ``.langroute-cache/embeddings``), as every benchmark embeds."""
    from langroute.embeddings import SentenceTransformerEmbedder

    cache_dir = (os.environ.get("LANGROUTE_EMBEDDING_CACHE")
                 or REPO / ".langroute-cache" / "embeddings")
    return SentenceTransformerEmbedder(cache_dir=cache_dir)
