"""Router files trained with the fast embedders: rebuilt from the allow-list, checked, warm."""

from __future__ import annotations

import numpy as np
import pytest

from langroute import Outcomes, RouterFileError, SWRouter, load_router
from langroute.embeddings import ARTIFACTS_ENV_VAR, OnnxMiniLMEmbedder

PROMPTS = [
    "add two numbers", "sum of 3 and 4", "multiply 6 by 7", "write a poem about the sea",
    "a sonnet on autumn leaves", "haiku about snow", "translate hello to French",
    "what is the capital of Peru", "explain photosynthesis", "prove sqrt 2 is irrational",
]
QUERIES = ["add 5 and 9", "a poem about rivers", "capital of Chile"]


@pytest.fixture
def outcomes():
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 2, size=(len(PROMPTS), 2)).astype(float)
    costs = np.tile([0.01, 0.001], (len(PROMPTS), 1))
    return Outcomes(ids=[f"p{i}" for i in range(len(PROMPTS))], prompts=PROMPTS,
                    models=("big", "small"), scores=scores, costs=costs)


def _round_trip(tmp_path, router, artifacts_dir, monkeypatch):
    path = tmp_path / "router.safetensors"
    router.save(path)
    monkeypatch.setenv(ARTIFACTS_ENV_VAR, str(artifacts_dir))
    return path, load_router(path)


@pytest.mark.minilm
def test_onnx_router_is_rebuilt_offline_warm_and_equal(
    tmp_path, outcomes, onnx_embedder, artifacts_dir, monkeypatch
):
    router = SWRouter(onnx_embedder).fit(outcomes)
    path, loaded = _round_trip(tmp_path, router, artifacts_dir, monkeypatch)
    rebuilt = loaded.embedder
    assert isinstance(rebuilt, OnnxMiniLMEmbedder) and rebuilt is not onnx_embedder
    assert rebuilt._session is not None  # warmed up by load: the first decision loads nothing
    assert loaded.load_seconds_ > 0
    np.testing.assert_array_equal(loaded.win_matrices(QUERIES), router.win_matrices(QUERIES))
    with pytest.raises(RouterFileError, match="not the embedder this router was trained with"):
        load_router(path, embedder=OnnxMiniLMEmbedder(False, artifacts_dir=artifacts_dir))


@pytest.mark.minilm
@pytest.mark.slow  # shares the session's distillation (30-160 s) with the static-embedder test
def test_static_router_is_rebuilt_and_equal(
    tmp_path, outcomes, static_embedder, artifacts_dir, monkeypatch
):
    router = SWRouter(static_embedder).fit(outcomes)
    _, loaded = _round_trip(tmp_path, router, artifacts_dir, monkeypatch)
    assert loaded.embedder.get_config() == static_embedder.get_config()
    np.testing.assert_array_equal(loaded.win_matrices(QUERIES), router.win_matrices(QUERIES))
