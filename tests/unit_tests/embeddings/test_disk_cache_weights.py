"""The embedding disk cache is keyed by which files a named model is read from -- a hub model's
snapshot commit, a local folder's files -- so new weights under the same name start a new cache,
while embedders of the same model share one."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from langroute.embeddings import SentenceTransformerEmbedder, default_model_path

A, B = "a" * 40, "b" * 40


def download(hub: Path, repo: str, commit: str, files: dict[str, str | Path]) -> Path:
    """Lay out ``repo`` at ``commit`` in the Hugging Face cache ``hub`` as a download leaves it
    (``refs/main`` names the commit). ``files`` maps names to text, or to a file to link to."""
    repo_dir = hub / f"models--{repo.replace('/', '--')}"
    snapshot = repo_dir / "snapshots" / commit
    for name, content in files.items():
        path = snapshot / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Path):
            path.symlink_to(content)
        else:
            path.write_text(content, encoding="utf-8")
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / "main").write_text(commit, encoding="utf-8")
    return snapshot


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty Hugging Face cache, the one sentence-transformers reads, read offline (its
    repositories are made up). huggingface_hub reads ``HF_HUB_OFFLINE`` once, on import."""
    import huggingface_hub.constants

    root = tmp_path / "hub"
    monkeypatch.setenv("SENTENCE_TRANSFORMERS_HOME", str(root))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return root


def recorded_weights(embedder) -> dict:
    """The weights a cache folder records in its ``config.json`` (written with a first vector)."""
    cache = embedder.disk_cache
    cache.store([bytes(32)], np.eye(1, 4, dtype=np.float32))
    return json.loads((cache.directory / "config.json").read_text())["weights"]


@pytest.mark.parametrize(("name", "repo"), [
    ("acme/encoder", "acme/encoder"),
    ("encoder", "sentence-transformers/encoder"),  # a bare name, as sentence-transformers reads it
], ids=["full-id", "bare-name"])
def test_a_new_snapshot_of_a_hub_model_starts_a_new_cache(name, repo, hub, tmp_path):
    root = tmp_path / "cache"
    download(hub, repo, A, {"modules.json": "[]"})
    before = SentenceTransformerEmbedder(name, cache_dir=root)
    same = SentenceTransformerEmbedder(name, cache_dir=root)
    assert same.disk_cache.directory == before.disk_cache.directory  # so the cache hits
    download(hub, repo, B, {"modules.json": "[]"})  # a newer commit is downloaded
    after = SentenceTransformerEmbedder(name, cache_dir=root)
    assert after.disk_cache.directory != before.disk_cache.directory
    assert (recorded_weights(before), recorded_weights(after)) == ({"revision": A},
                                                                   {"revision": B})


def test_a_folder_in_the_hub_cache_is_named_by_its_commit(hub, tmp_path):
    snapshot = download(hub, "acme/encoder", A, {"modules.json": "[]"})
    embedder = SentenceTransformerEmbedder(str(snapshot), cache_dir=tmp_path / "cache")
    assert recorded_weights(embedder) == {"revision": A}


def test_rewriting_a_local_model_folder_starts_a_new_cache(tmp_path):
    folder = tmp_path / "encoder"
    (folder / "1_Pooling").mkdir(parents=True)
    (folder / "modules.json").write_text("[]", encoding="utf-8")
    (folder / "1_Pooling" / "config.json").write_text("{}", encoding="utf-8")
    weights = folder / "model.safetensors"
    weights.write_bytes(b"\x01" * 64)

    def cache_folder() -> Path:
        return SentenceTransformerEmbedder(str(folder), cache_dir=tmp_path / "cache") \
            .disk_cache.directory

    first = cache_folder()
    assert cache_folder() == first
    # A fine-tune saved again into the same folder: same names and sizes, new weights (and a
    # later modification time, set here so a coarse file-system clock cannot hide it).
    weights.write_bytes(b"\x02" * 64)
    stamp = weights.stat().st_mtime_ns + 2_000_000_000
    os.utime(weights, ns=(stamp, stamp))
    assert cache_folder() != first
    rewritten = cache_folder()
    config = folder / "1_Pooling" / "config.json"
    config.write_text('{"pooling_mode_cls_token": true}', encoding="utf-8")
    assert cache_folder() != rewritten


def test_the_packaged_model_is_keyed_by_its_files_and_shared_by_its_embedders(tmp_path):
    first = SentenceTransformerEmbedder(cache_dir=tmp_path)
    assert set(recorded_weights(first)) == {"files"}
    assert SentenceTransformerEmbedder(cache_dir=tmp_path).disk_cache.directory == \
        first.disk_cache.directory
    assert first._model is None  # working out the key loaded no model


@pytest.mark.minilm
def test_a_hub_model_is_read_at_the_commit_its_cache_is_keyed_by(hub, tmp_path, minilm):
    """A newer snapshot arriving between keying the cache and loading the model must not put
    its vectors under the older commit's key."""
    source = Path(default_model_path())
    files: dict[str, str | Path] = {
        p.relative_to(source).as_posix(): p for p in source.rglob("*") if p.is_file()}
    download(hub, "acme/minilm", A, files)
    texts = ["How do I reset my password?", "Write a poem about the sea."]
    embedder = SentenceTransformerEmbedder("acme/minilm", cache_dir=tmp_path / "cache")
    keyed = embedder.disk_cache.directory
    # The newer commit pools the CLS token instead of averaging: other vectors.
    pooling = json.loads((source / "1_Pooling" / "config.json").read_text())
    pooling.update(pooling_mode_cls_token=True, pooling_mode_mean_tokens=False)
    download(hub, "acme/minilm", B, {**files, "1_Pooling/config.json": json.dumps(pooling)})
    np.testing.assert_allclose(embedder.embed(texts), minilm.embed(texts), atol=1e-5)
    assert embedder.disk_cache.directory == keyed
    newer = SentenceTransformerEmbedder("acme/minilm", cache_dir=tmp_path / "cache")
    assert newer.disk_cache.directory != keyed
    assert np.min(np.sum(newer.embed(texts) * minilm.embed(texts), axis=1)) < 0.99
