"""Session-wide derived models (distilled static, ONNX export), built once into a temp folder.

Building them is the slow part (distilling ~30-60 s, ONNX export ~10 s on one CPU core), so every
test that needs one shares the session's copy; tests pointing ``LANGROUTE_ARTIFACTS`` at it
(router files rebuilding these embedders) reuse it too.
"""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def artifacts_dir(tmp_path_factory):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return tmp_path_factory.mktemp("artifacts")


@pytest.fixture(scope="session")
def static_embedder(artifacts_dir):
    from langroute.embeddings import StaticEmbedder

    return StaticEmbedder(artifacts_dir=artifacts_dir)


@pytest.fixture(scope="session")
def onnx_embedder(artifacts_dir):
    from langroute.embeddings import OnnxMiniLMEmbedder

    return OnnxMiniLMEmbedder(artifacts_dir=artifacts_dir)
