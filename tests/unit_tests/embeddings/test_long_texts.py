"""``long_texts="head+tail"``: prompts longer than MiniLM's limit are read at both ends."""

from __future__ import annotations

import numpy as np
import pytest

from langroute import Outcomes, RouterConfigError, RouterFileError, SWRouter, load_router
from langroute.embeddings import (
    OnnxMiniLMEmbedder,
    SentenceTransformerEmbedder,
    embedder_fingerprint,
)
from langroute.embeddings._long_texts import head_and_tail, untruncated
from langroute.embeddings._trust import PROBE_TEXTS, check_fingerprint, trusted_embedder

#: About 600 word pieces of shared context, as few-shot and retrieval prompts start.
CONTEXT = " ".join(f"Example {i}: the answer to item {i} is {3 * i}." for i in range(50))
LONG = [CONTEXT + " Question: write a sonnet about the sea.",
        CONTEXT + " Question: what is 17 times 23?"]


@pytest.fixture(scope="module")
def tokenizer(minilm):
    return untruncated(minilm._load().tokenizer.backend_tokenizer)


def _pieces(tokenizer, text):
    return len(tokenizer.encode(text, add_special_tokens=False).ids)


def test_a_text_within_the_limit_is_untouched(tokenizer):
    text = "What is the capital of France?"
    assert head_and_tail(text, tokenizer, 254) is text
    exact = " ".join(["word"] * 254)
    assert _pieces(tokenizer, exact) == 254
    assert head_and_tail(exact, tokenizer, 254) is exact


def test_a_long_text_keeps_a_quarter_from_its_start_and_the_rest_from_its_end(tokenizer):
    text = LONG[1]
    assert _pieces(tokenizer, text) > 500
    cut = head_and_tail(text, tokenizer, 254)
    assert 240 <= _pieces(tokenizer, cut) <= 254
    # a prefix of the text and a suffix of it, joined by one space
    splits = [i for i in range(1, len(cut)) if cut[i] == " " and text.startswith(cut[:i])
              and text.endswith(cut[i + 1:])]
    assert splits, f"{cut!r} is not a prefix and a suffix of the text"
    head, tail = cut[: splits[0]], cut[splits[0] + 1 :]
    assert 50 <= _pieces(tokenizer, head) <= 254 // 4
    assert tail.endswith("Question: what is 17 times 23?")
    # cut at word boundaries: the head does not end, nor the tail start, inside a word
    assert not (head[-1].isalnum() and text[len(head)].isalnum())
    start = len(text) - len(tail)
    assert not (text[start - 1].isalnum() and tail[0].isalnum())


def test_head_reads_two_long_prompts_as_one_and_head_plus_tail_tells_them_apart(minilm):
    both = SentenceTransformerEmbedder(long_texts="head+tail", cache_size=0)
    head_vectors, both_vectors = minilm.embed(LONG), both.embed(LONG)
    np.testing.assert_allclose(head_vectors[0], head_vectors[1], atol=1e-6)
    assert float(both_vectors[0] @ both_vectors[1]) < 0.99
    # the question decides which short prompt a long one is closest to
    short = minilm.embed(["write a sonnet about the sea", "what is 17 times 23?"])
    assert np.argmax(both_vectors @ short.T, axis=1).tolist() == [0, 1]
    # a text within the limit is read the same either way
    text = ["What is the capital of France?"]
    np.testing.assert_allclose(both.embed(text), minilm.embed(text), atol=1e-6)


@pytest.mark.minilm
def test_onnx_reads_the_same_words_as_sentence_transformers(onnx_embedder, artifacts_dir):
    fp32 = OnnxMiniLMEmbedder(False, artifacts_dir=artifacts_dir, long_texts="head+tail")
    reference = SentenceTransformerEmbedder(long_texts="head+tail").embed(LONG)
    assert np.sum(fp32.embed(LONG) * reference, axis=1).min() > 0.999


def test_the_setting_is_recorded_only_when_it_changes_vectors(tmp_path):
    assert SentenceTransformerEmbedder().get_config() == {"model": "all-MiniLM-L6-v2",
                                                          "device": "cpu"}
    assert SentenceTransformerEmbedder(long_texts="head+tail").get_config()["long_texts"] \
        == "head+tail"
    assert OnnxMiniLMEmbedder(artifacts_dir=tmp_path, long_texts="head+tail").get_config() == {
        "quantize": True, "long_texts": "head+tail"}
    rebuilt = trusted_embedder({"kind": "sentence-transformers", "model": "all-MiniLM-L6-v2",
                                "device": "cpu", "long_texts": "head+tail"}, source="f")
    assert rebuilt.long_texts == "head+tail"


@pytest.mark.parametrize("value", ["tail", "", None, 3])
def test_an_unknown_setting_is_refused_by_name(value, tmp_path):
    with pytest.raises(RouterConfigError, match="long_texts must be one of"):
        SentenceTransformerEmbedder(long_texts=value)
    with pytest.raises(RouterConfigError, match="long_texts must be one of"):
        OnnxMiniLMEmbedder(artifacts_dir=tmp_path, long_texts=value)
    with pytest.raises(RouterFileError, match="invalid settings"):
        trusted_embedder({"kind": "sentence-transformers", "model": "all-MiniLM-L6-v2",
                          "device": "cpu", "long_texts": value}, source="f")


def test_a_router_file_rebuilds_the_setting_and_refuses_the_other_reading(tmp_path, minilm):
    prompts = LONG + ["add two numbers", "a poem about rivers"]
    outcomes = Outcomes(ids=[f"p{i}" for i in range(4)], prompts=prompts, models=("big", "small"),
                        scores=np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]]),
                        costs=np.tile([0.01, 0.001], (4, 1)))
    router = SWRouter(SentenceTransformerEmbedder(long_texts="head+tail")).fit(outcomes)
    path = tmp_path / "router.safetensors"
    router.save(path)
    loaded = load_router(path)
    assert loaded.embedder.long_texts == "head+tail"
    np.testing.assert_array_equal(loaded.win_matrices(LONG), router.win_matrices(LONG))
    # The long probe text tells the two readings apart; the short ones alone could not.
    with pytest.raises(RouterFileError, match="not the embedder this router was trained with"):
        load_router(path, embedder=minilm)


def test_a_fingerprint_without_the_long_probe_is_still_checked(minilm):
    recorded = embedder_fingerprint(SentenceTransformerEmbedder(long_texts="head+tail"))
    assert len(recorded["probe"]) == len(PROBE_TEXTS) == 5
    older = {"dimension": recorded["dimension"], "probe": recorded["probe"][:4]}
    check_fingerprint(minilm, older, source="older file")  # same short probes: accepted
    with pytest.raises(RouterFileError, match="not the embedder"):
        check_fingerprint(minilm, recorded, source="new file")
    with pytest.raises(RouterFileError, match="probe shape"):
        check_fingerprint(minilm, {"dimension": 384, "probe": recorded["probe"][:3]}, source="f")


def test_the_cli_offers_both_readings():
    from langroute.cli import EMBEDDERS

    assert EMBEDDERS["minilm-head+tail"]().long_texts == "head+tail"
    assert EMBEDDERS["minilm"]().long_texts == "head"


def test_a_model_the_cut_cannot_read_is_an_embedding_error(tokenizer):
    from langroute import EmbeddingError
    from langroute.embeddings._long_texts import LongTextCutter

    with pytest.raises(EmbeddingError, match="fast .tokenizers. tokenizer; my-model"):
        LongTextCutter(object(), 256, "my-model")
    with pytest.raises(EmbeddingError, match="length limit; my-model has max_seq_length=None"):
        LongTextCutter(tokenizer, None, "my-model")
    cutter = LongTextCutter(tokenizer, 256, "MiniLM")
    assert cutter.max_pieces == 254
    assert cutter(LONG[:1]) == [head_and_tail(LONG[0], tokenizer, 254)]
