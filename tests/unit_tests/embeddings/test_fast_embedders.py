"""Fast embedders derived offline from the packaged MiniLM: model2vec static and ONNX int8."""

from __future__ import annotations

import numpy as np
import pytest

from langroute import EmbeddingError, RouterConfigError
from langroute.embeddings import (
    HashingEmbedder,
    OnnxMiniLMEmbedder,
    StaticEmbedder,
    artifacts_root,
)
from langroute.embeddings._artifacts import ARTIFACTS_ENV_VAR, build_once

PROMPTS = [
    "How do I reset my password?",
    "What are the steps to change my login password?",
    "The mitochondria is the powerhouse of the cell.",
    "Solve for x: 3x + 5 = 20, step by step.",
    "Write a haiku about the sea at night.",
    "def f(x): return x * 2  # what does f(3) return?",
]


# -- the artefact folder -------------------------------------------------------------------------
def test_build_once_builds_a_folder_once_and_leaves_no_temporary_folders(tmp_path):
    calls = []

    def build(folder):
        calls.append(folder)
        (folder / "weights.bin").write_bytes(b"x")

    first = build_once(tmp_path, "thing", {"v": 1}, build)
    again = build_once(tmp_path, "thing", {"v": 1}, build)
    other = build_once(tmp_path, "thing", {"v": 2}, build)
    assert first == again != other and len(calls) == 2
    assert (first / "weights.bin").read_bytes() == b"x"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([first.name, other.name])


def test_a_failed_build_leaves_nothing_behind(tmp_path):
    def build(folder):
        (folder / "half.bin").write_bytes(b"x")
        raise EmbeddingError("exporter crashed")

    with pytest.raises(EmbeddingError, match="exporter crashed"):
        build_once(tmp_path, "thing", {"v": 1}, build)
    assert list(tmp_path.iterdir()) == []


def test_artifacts_root_follows_argument_then_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(ARTIFACTS_ENV_VAR, str(tmp_path / "env"))
    assert artifacts_root() == tmp_path / "env"
    assert artifacts_root(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv(ARTIFACTS_ENV_VAR)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert artifacts_root() == tmp_path / "xdg" / "langroute"


@pytest.mark.parametrize(
    "make",
    [
        lambda: StaticEmbedder(pca_dims=1),
        lambda: StaticEmbedder(pca_dims=512),
        lambda: StaticEmbedder(pca_dims=True),
        lambda: OnnxMiniLMEmbedder(num_threads=0),
    ],
)
def test_bad_settings_are_refused_at_construction(make):
    with pytest.raises(RouterConfigError):
        make()


def test_router_files_name_only_settings_that_change_vectors(tmp_path):
    assert StaticEmbedder(128, artifacts_dir=tmp_path).get_config() == {"pca_dims": 128}
    assert OnnxMiniLMEmbedder(num_threads=2, artifacts_dir=tmp_path).get_config() == {
        "quantize": True
    }


def test_warm_up_runs_the_backend_without_filling_the_cache():
    embedder = HashingEmbedder(32)
    seconds = embedder.warm_up()
    assert seconds >= 0 and len(embedder._cache) == 0


# -- model2vec, distilled locally -------------------------------------------------------------
@pytest.mark.minilm
@pytest.mark.slow  # distilling takes 30-160 s on one busy core
def test_static_embedder_distils_offline_and_reloads_to_the_same_vectors(
    static_embedder, artifacts_dir, monkeypatch
):
    vectors = static_embedder.embed(PROMPTS)
    assert vectors.shape == (len(PROMPTS), 256) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    folder = static_embedder.model_path()
    assert folder.parent == artifacts_dir and (folder / "model.safetensors").is_file()

    # A second embedder (another process, say) reuses the folder: distilling again would fail.
    import model2vec.distill

    def no_distill(*args, **kwargs):
        raise AssertionError("distilled twice")

    monkeypatch.setattr(model2vec.distill, "distill", no_distill)
    reloaded = StaticEmbedder(artifacts_dir=artifacts_dir, cache_size=0)
    assert reloaded.model_path() == folder
    np.testing.assert_allclose(reloaded.embed(PROMPTS), vectors, atol=1e-6)
    paraphrase, unrelated = vectors[0] @ vectors[1], vectors[0] @ vectors[2]
    assert paraphrase > unrelated + 0.2



def _tiny_static_model():
    """A real model2vec StaticModel on MiniLM's tokenizer with random rows (no distilling)."""
    from model2vec import StaticModel
    from tokenizers import Tokenizer

    from langroute.embeddings import default_model_path

    tokenizer = Tokenizer.from_file(f"{default_model_path()}/tokenizer.json")
    rows = np.random.default_rng(0).normal(size=(tokenizer.get_vocab_size(), 8))
    return StaticModel(rows.astype(np.float32), tokenizer, normalize=True)


@pytest.mark.parametrize(
    "text", ["\U0001f642", "\U0001f600\U0001f600", "\u216b", "\u200b", "", " "]
)
def test_static_embedder_gives_a_text_of_only_unknown_pieces_the_unknown_token_row(text):
    # model2vec drops unknown pieces, so an emoji-only reply came out as a zero vector and
    # embed() raised ("no direction to compare"): the routed call failed.
    model = _tiny_static_model()
    embedder = StaticEmbedder(pca_dims=8, cache_dir=False)
    embedder._model = model
    unknown = model.embedding[model.unk_token_id]
    out = embedder.embed([text, "hello world"])
    np.testing.assert_allclose(out[0], unknown / np.linalg.norm(unknown), rtol=1e-5)
    np.testing.assert_allclose(out[1], embedder.embed(["hello world"])[0])
    assert not np.allclose(out[1], out[0])


@pytest.mark.minilm
@pytest.mark.slow  # distilling takes 30-160 s on one busy core
def test_distilled_static_embedder_embeds_emoji_only_prompts(static_embedder):
    out = static_embedder.embed(["\U0001f44d", "\U0001f600\U0001f600", "What is 2 + 2?"])
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(out[0], out[1])  # both read as the unknown token


# -- ONNX Runtime, int8 -----------------------------------------------------------------------
@pytest.mark.minilm
def test_onnx_int8_agrees_with_minilm_on_torch(onnx_embedder, artifacts_dir, minilm):
    reference = minilm.embed(PROMPTS)
    cosines = np.sum(onnx_embedder.embed(PROMPTS) * reference, axis=1)
    # int8 costs a little: measured mean 0.994, least 0.990 (the maths prompt) on this set.
    assert cosines.mean() > 0.99 and cosines.min() > 0.985, cosines
    exact = OnnxMiniLMEmbedder(quantize=False, artifacts_dir=artifacts_dir, cache_size=0)
    np.testing.assert_allclose(np.sum(exact.embed(PROMPTS) * reference, axis=1), 1.0, atol=1e-4)


@pytest.mark.minilm
def test_onnx_embedder_warm_up_loads_the_session(artifacts_dir, onnx_embedder):
    onnx_embedder.model_path()  # the session's export exists
    fresh = OnnxMiniLMEmbedder(artifacts_dir=artifacts_dir)
    assert fresh._session is None
    assert fresh.warm_up() > 0 and fresh._session is not None


@pytest.mark.minilm
def test_onnx_vectors_do_not_depend_on_batch_mates(onnx_embedder):
    # Dynamic int8 scales activations per run: batched texts would shift each other's vectors.
    embedder = OnnxMiniLMEmbedder(artifacts_dir=onnx_embedder.artifacts_dir, cache_size=0)
    batch = embedder.embed(PROMPTS)
    single = np.stack([embedder.embed([p])[0] for p in PROMPTS])
    np.testing.assert_array_equal(batch, single)


def test_routers_default_to_minilm_on_onnx_int8():
    from langroute import SWRouter
    from langroute.embeddings import default_embedder

    assert isinstance(default_embedder(), OnnxMiniLMEmbedder)
    resolved = SWRouter()._resolve_embedder()
    assert isinstance(resolved, OnnxMiniLMEmbedder) and resolved.quantize
    assert resolved._session is None  # nothing loaded until used


@pytest.mark.minilm
def test_a_thread_that_sees_the_onnx_session_sees_its_tokenizer(artifacts_dir, onnx_embedder):
    """``_load`` checks the session: it is set last, so another thread never gets a session
    without the tokenizer (it used to be set before the tokenizer)."""
    from langroute.embeddings import OnnxMiniLMEmbedder

    onnx_embedder.model_path()  # the export exists: only the loading is under test
    seen = []

    class Watched(OnnxMiniLMEmbedder):
        def __setattr__(self, name, value):
            if name == "_session" and value is not None:
                seen.append(self.__dict__.get("_tokenizer") is not None)
            super().__setattr__(name, value)

    fresh = Watched(artifacts_dir=artifacts_dir)
    fresh.embed(["warm up"])
    assert seen == [True]


def _long_texts(rng: np.random.Generator, n: int) -> list[str]:
    """Texts past the prefix the ONNX embedder reads first, mixing scripts and spacing."""
    pieces = ["word", "Überprüfung", "naïve", "数学问题", "🙂", "x" * 150, "\u200b", "a\u0301",
              "3.14159", "e-mail", "(see", "[1]", "tab\tbed", "ＡＢＣ", "\x1c", "\u3000"]
    seps = [" ", "  ", "\n", "\t", "", ",", " \u0301"]
    texts = []
    for _ in range(n):
        count = int(rng.integers(1500, 6000))
        words = rng.choice(pieces, size=count)
        glue = rng.choice(seps, size=count)
        texts.append("".join(f"{w}{g}" for w, g in zip(words, glue, strict=True)))
    texts += ["数" * 20_000, "x" * 20_000, " " * 20_000 + "end", "word " * 200_000]
    return texts


@pytest.mark.minilm
def test_onnx_reads_a_long_texts_start_as_it_reads_the_whole_text(onnx_embedder):
    """A 1 MB prompt took 0.8 s to tokenise for 256 pieces; the embedder now encodes a
    prefix first, which must give the very same pieces (and so the same vector)."""
    from langroute.embeddings._onnx import _read_part

    _, tokenizer = onnx_embedder._load()
    for text in _long_texts(np.random.default_rng(0), 60):
        part = _read_part(tokenizer, text)
        assert tokenizer.encode(part).ids == tokenizer.encode(text).ids
    text = "word " * 200_000
    assert len(_read_part(tokenizer, text)) < 10_000  # the prefix was enough
    whole = OnnxMiniLMEmbedder(artifacts_dir=onnx_embedder.artifacts_dir, cache_size=0)
    np.testing.assert_array_equal(whole.embed([text]), whole.embed([text[:9000]]))
