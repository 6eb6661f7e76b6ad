"""Deciding a batch of prompts embeds them in one backend call, and warm-up is separate."""

from __future__ import annotations

import numpy as np

from langroute import Outcomes, SWRouter
from langroute.embeddings import HashingEmbedder


class CountingEmbedder(HashingEmbedder):
    """Hashing vectors, recording every backend call."""

    def __init__(self) -> None:
        super().__init__(32, batch_size=64)
        self.calls: list[int] = []

    def _embed_batch(self, texts):
        self.calls.append(len(texts))
        return super()._embed_batch(texts)


def _router(embedder):
    prompts = [f"question {i} about {topic}" for i in range(20) for topic in ("maths", "poems")]
    scores = np.tile([[1.0, 0.0], [0.0, 1.0]], (20, 1))
    data = Outcomes(ids=[str(i) for i in range(40)], prompts=prompts, models=("a", "b"),
                    scores=scores, costs=np.tile([0.01, 0.001], (40, 1)))
    return SWRouter(embedder).fit(data)


def test_a_batch_of_64_prompts_is_one_embedding_call():
    embedder = CountingEmbedder()
    router = _router(embedder)
    embedder.calls.clear()
    matrices = router.win_matrices([f"new prompt number {i}" for i in range(64)])
    assert matrices.shape == (64, 2, 2)
    assert embedder.calls == [64]


def test_warm_up_is_a_backend_call_outside_decisions():
    embedder = CountingEmbedder()
    router = _router(embedder)
    embedder.calls.clear()
    assert router.warm_up() >= 0
    assert embedder.calls == [1]
    router.win_matrix("warm up")  # the warm-up text was not cached: a real decision embeds it
    assert embedder.calls == [1, 1]
