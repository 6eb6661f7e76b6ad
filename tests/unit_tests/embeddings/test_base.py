"""The Embedder contract: batching, normalisation, the in-memory cache and bad backend output."""

from __future__ import annotations

import numpy as np
import pytest

from langroute import EmbeddingError, RouterConfigError
from langroute.embeddings import (
    Embedder,
    HashingEmbedder,
    OpenAIEmbedder,
    SentenceTransformerEmbedder,
    embedder_from_config,
)


class RecordingEmbedder(Embedder):
    """Deterministic vectors from a text's characters; records every backend batch."""

    kind = "recording-test"

    def __init__(self, *, batch_size=4, cache_size=100, cache_dir=False, output=None):
        super().__init__(batch_size=batch_size, cache_size=cache_size, cache_dir=cache_dir)
        self.batches: list[list[str]] = []
        self.output = output

    @property
    def dimension(self) -> int:
        return 3

    def get_config(self):
        return {}

    def _embed_batch(self, texts):
        self.batches.append(list(texts))
        if self.output is not None:
            return self.output(texts)
        return np.array([[len(t) + 1.0, t.count("a"), 2.0] for t in texts])


def expected(texts):
    raw = np.array([[len(t) + 1.0, t.count("a"), 2.0] for t in texts], dtype=np.float32)
    return raw / np.linalg.norm(raw, axis=1, keepdims=True)


def test_unit_float32_rows_in_input_order():
    texts = ["banana", "a", "", "cat", "aa"]
    out = RecordingEmbedder().embed(texts)
    assert out.dtype == np.float32 and out.shape == (5, 3)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(out, expected(texts), rtol=1e-6)


def test_batches_respect_batch_size_and_duplicates_are_embedded_once():
    embedder = RecordingEmbedder(batch_size=3)
    texts = ["t1", "t2", "t1", "t3", "t4", "t2", "t5", "t6", "t7"]
    out = embedder.embed(texts)
    assert [len(b) for b in embedder.batches] == [3, 3, 1]
    assert sorted(sum(embedder.batches, [])) == ["t1", "t2", "t3", "t4", "t5", "t6", "t7"]
    np.testing.assert_array_equal(out[0], out[2])
    np.testing.assert_allclose(out, expected(texts), rtol=1e-6)


def test_cache_hits_do_not_call_the_backend():
    embedder = RecordingEmbedder()
    first = embedder.embed(["x", "yy"])
    embedder.batches.clear()
    again = embedder.embed(["yy", "x", "yy"])
    assert embedder.batches == []
    np.testing.assert_array_equal(again, first[[1, 0, 1]])
    embedder.embed(["x", "new"])
    assert embedder.batches == [["new"]]


def test_lru_cache_forgets_the_least_recently_used():
    embedder = RecordingEmbedder(cache_size=2)
    embedder.embed(["a"])
    embedder.embed(["b"])
    embedder.embed(["a"])  # a is now the most recent
    embedder.embed(["c"])  # evicts b
    embedder.batches.clear()
    embedder.embed(["a", "c"])
    assert embedder.batches == []
    embedder.embed(["b"])
    assert embedder.batches == [["b"]]


def test_no_memory_cache_when_cache_size_is_zero():
    embedder = RecordingEmbedder(cache_size=0)
    embedder.embed(["a"])
    embedder.embed(["a"])
    assert embedder.batches == [["a"], ["a"]]


@pytest.mark.parametrize(
    ("output", "message"),
    [
        (lambda t: np.zeros((len(t), 3)), "zero vector"),
        (lambda t: np.full((len(t), 3), np.nan), "non-finite"),
        (lambda t: np.ones((len(t), 2)), r"shape \(1, 2\)"),
        (lambda t: np.ones((len(t) + 1, 3)), r"shape \(2, 3\)"),
    ],
)
def test_bad_backend_output_raises(output, message):
    embedder = RecordingEmbedder(output=output)
    with pytest.raises(EmbeddingError, match=message):
        embedder.embed(["hello"])
    # nothing bad was cached: a fixed backend is asked again
    embedder.output = None
    np.testing.assert_allclose(embedder.embed(["hello"]), expected(["hello"]), rtol=1e-6)


def test_input_type_errors():
    embedder = RecordingEmbedder()
    with pytest.raises(TypeError, match="not a single str"):
        embedder.embed("hello")
    with pytest.raises(TypeError, match="text #1"):
        embedder.embed(["ok", 3])
    assert embedder.embed([]).shape == (0, 3)
    np.testing.assert_allclose(embedder.embed_one("cat"), expected(["cat"])[0], rtol=1e-6)


@pytest.mark.parametrize("make", [RecordingEmbedder, lambda: HashingEmbedder(dimension=16)])
def test_a_lone_surrogate_is_an_embedding_error_naming_the_text(make):
    """It has no UTF-8 form for the cache key: a raw UnicodeEncodeError named no text."""
    embedder = make()
    message = r"text #1 is not valid Unicode.*position 4.*surrogate"
    with pytest.raises(EmbeddingError, match=message):
        embedder.embed(["fine", "bad \ud800 text"])
    assert embedder.embed(["fine"]).shape == (1, embedder.dimension)


@pytest.mark.parametrize("kwargs", [{"batch_size": 0}, {"cache_size": -1}, {"batch_size": 1.5}])
def test_invalid_settings(kwargs):
    with pytest.raises(ValueError):
        RecordingEmbedder(**kwargs)


def test_hashing_embedder_is_deterministic_and_similarity_aware():
    a, b = HashingEmbedder(64), HashingEmbedder(64)
    texts = ["the cat sat on the mat", "the cat sat on a mat", "quarterly revenue grew"]
    va, vb = a.embed(texts), b.embed(texts)
    np.testing.assert_array_equal(va, vb)
    assert va[0] @ va[1] > va[0] @ va[2]
    with pytest.raises(ValueError, match="dimension"):
        HashingEmbedder(1)


@pytest.mark.parametrize(
    "embedder",
    [HashingEmbedder(32), OpenAIEmbedder("text-embedding-3-large", dimensions=256),
     SentenceTransformerEmbedder(device="cpu")],
    ids=["hashing", "openai", "sentence-transformers"],
)
def test_config_round_trip(embedder):
    config = {"kind": embedder.kind, **embedder.get_config()}
    rebuilt = embedder_from_config(config)
    assert type(rebuilt) is type(embedder) and rebuilt.get_config() == embedder.get_config()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"kind": "word2vec"}, "unknown embedder kind"),
        ({"dimension": 8}, "unknown embedder kind None"),
        ({"kind": "hashing", "dimension": 1}, "invalid hashing embedder"),
        ({"kind": "hashing", "colour": "red"}, "invalid hashing embedder"),
        ({"kind": "openai", "model": "my-model"}, "pass dimensions="),
    ],
)
def test_config_errors(config, message):
    with pytest.raises(RouterConfigError, match=message):
        embedder_from_config(config)
