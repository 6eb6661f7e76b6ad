"""What the learning benchmarks read: the shared datasets and the cached MiniLM embedder."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DATA", "dataset_names", "default_routers_aiq", "minilm_embedder"]

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


def default_routers_aiq(embedder, train, test, base, fitted: dict | None = None
                        ) -> dict[str, float]:
    """Held-out AIQ of SWRouter and KNNRouter at their defaults, fitted on ``train`` (kNN's k
    lowered to the training size where that is smaller, as its out-of-fold fits do);
    ``base`` is ``fold_baselines`` of ``test``. Keys ``"sw"`` and ``"knn"``; the fitted
    routers go into ``fitted`` under the same keys when it is given."""
    from langroute import KNNRouter, SWRouter
    from langroute.evaluation._evaluate import _router_metrics

    out = {}
    for label, router in (("sw", SWRouter(embedder)),
                          ("knn", KNNRouter(embedder)._calibration_clone(len(train)))):
        router.fit(train)
        metrics, _ = _router_metrics(router, router.win_matrices(test.prompts), test, base,
                                     None, None)
        out[label] = metrics["aiq"]
        if fitted is not None:
            fitted[label] = router
    return out
