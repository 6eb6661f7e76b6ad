"""The persistent embedding cache: reuse across instances and processes, no silent corruption."""

from __future__ import annotations

import multiprocessing
import pickle
from pathlib import Path

import numpy as np
import pytest

import langroute
from langroute import EmbeddingError
from langroute.embeddings import CACHE_ENV_VAR, EmbeddingDiskCache, HashingEmbedder

from .test_base import RecordingEmbedder, expected


@pytest.fixture(autouse=True)
def _no_cache_env(monkeypatch):
    monkeypatch.delenv(CACHE_ENV_VAR, raising=False)


def shards(root: Path) -> list[Path]:
    return sorted(root.glob("*/shard-*.npz"))


def test_second_instance_reads_the_cache_without_the_backend(tmp_path):
    texts = [f"prompt {i}" for i in range(10)]
    first = RecordingEmbedder(batch_size=4, cache_dir=tmp_path)
    vectors = first.embed(texts)
    assert sum(len(b) for b in first.batches) == 10
    second = RecordingEmbedder(cache_dir=tmp_path)
    np.testing.assert_array_equal(second.embed(texts[::-1]), vectors[::-1])
    assert second.batches == []
    # only what is new reaches the backend, and is added to the cache
    mixed = second.embed(["prompt 3", "fresh"])
    assert second.batches == [["fresh"]]
    np.testing.assert_allclose(mixed, expected(["prompt 3", "fresh"]), rtol=1e-6)
    third = RecordingEmbedder(cache_dir=tmp_path)
    third.embed(["fresh"])
    assert third.batches == []


def test_files_are_npz_of_uint8_keys_and_float32_vectors(tmp_path):
    HashingEmbedder(16, cache_dir=tmp_path).embed(["a", "b"])
    (shard,) = shards(tmp_path)
    with np.load(shard, allow_pickle=False) as npz:
        assert npz["keys"].dtype == np.uint8 and npz["keys"].shape == (2, 32)
        assert npz["vectors"].dtype == np.float32 and npz["vectors"].shape == (2, 16)
    identity = (shard.parent / "config.json").read_text()
    assert identity.strip() == ('{"dimension": 16, "kind": "hashing", "package_versions": '
                                f'{{"langroute": "{langroute.__version__}"}}}}')
    assert not list(tmp_path.rglob(".tmp-*"))


def test_environment_variable_turns_the_cache_on_and_false_turns_it_off(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path))
    RecordingEmbedder(cache_dir=None).embed(["x"])
    assert len(shards(tmp_path)) == 1
    reader = RecordingEmbedder(cache_dir=None)
    reader.embed(["x"])
    assert reader.batches == []
    off = RecordingEmbedder(cache_dir=False)
    off.embed(["x", "y"])
    assert off.batches == [["x", "y"]] and len(shards(tmp_path)) == 1


def test_cache_is_namespaced_by_kind_and_config(tmp_path):
    small, large = HashingEmbedder(16, cache_dir=tmp_path), HashingEmbedder(32, cache_dir=tmp_path)
    assert small.embed(["same text"]).shape == (1, 16)
    assert large.embed(["same text"]).shape == (1, 32)
    assert len({p.parent for p in shards(tmp_path)}) == 2
    # batch_size and cache_dir do not change the vectors, so they share a namespace
    assert HashingEmbedder(16, batch_size=3, cache_dir=tmp_path).disk_cache.directory == \
        small.disk_cache.directory


def test_vectors_computed_before_a_failure_are_kept(tmp_path):
    def fail_on_boom(texts):
        if "boom" in texts:
            raise RuntimeError("backend down")
        return np.ones((len(texts), 3))

    embedder = RecordingEmbedder(batch_size=2, cache_dir=tmp_path, output=fail_on_boom)
    with pytest.raises(RuntimeError, match="backend down"):
        embedder.embed(["a", "b", "c", "boom"])
    reader = RecordingEmbedder(cache_dir=tmp_path, output=fail_on_boom)
    reader.embed(["a", "b"])
    assert reader.batches == []


def test_many_small_writes_are_compacted(tmp_path):
    embedder = RecordingEmbedder(cache_dir=tmp_path)
    for i in range(40):
        embedder.embed([f"text {i}"])
    assert 1 <= len(shards(tmp_path)) <= 33
    reader = RecordingEmbedder(cache_dir=tmp_path)
    out = reader.embed([f"text {i}" for i in range(40)])
    assert reader.batches == [] and len(reader.disk_cache) == 40
    np.testing.assert_allclose(out, expected([f"text {i}" for i in range(40)]), rtol=1e-6)


def _embed_range(root: str, start: int, stop: int) -> None:
    HashingEmbedder(16, batch_size=7, cache_dir=root).embed([f"t{i}" for i in range(start, stop)])


def test_concurrent_writer_processes_do_not_clobber_each_other(tmp_path):
    context = multiprocessing.get_context("spawn")  # no fork: torch may hold locks
    workers = [context.Process(target=_embed_range, args=(str(tmp_path), k * 50, k * 50 + 80))
               for k in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
        assert w.exitcode == 0
    texts = [f"t{i}" for i in range(180)]
    reader = HashingEmbedder(16, cache_dir=tmp_path)
    reader._embed_batch = None  # any backend call would now fail
    np.testing.assert_array_equal(reader.embed(texts), HashingEmbedder(16).embed(texts))


def test_new_shards_of_another_process_are_picked_up(tmp_path):
    reader = RecordingEmbedder(cache_dir=tmp_path)
    reader.embed(["mine"])
    RecordingEmbedder(cache_dir=tmp_path).embed(["theirs"])
    reader.embed(["theirs"])
    assert reader.batches == [["mine"]]


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),
        lambda p: p.write_bytes(b"not a zip file at all"),
        lambda p: np.savez(p.open("wb"), keys=np.zeros((2, 32), np.uint8), vectors=np.ones((3, 3))),
        lambda p: np.savez(p.open("wb"), keys=np.zeros((1, 32), np.uint8),
                           vectors=np.array([[np.nan, 0, 0]], np.float32)),
        lambda p: np.savez(p.open("wb"), keys=np.zeros((1, 32), np.uint8)),
        lambda p: p.write_bytes(pickle.dumps({"keys": 1})),
        # Finite, right shape and dtype, but not the unit vectors ``embed`` promises.
        lambda p: np.savez(p.open("wb"), keys=np.zeros((1, 32), np.uint8),
                           vectors=np.full((1, 3), 40.0, np.float32)),
        lambda p: np.savez(p.open("wb"), keys=np.zeros((1, 32), np.uint8),
                           vectors=np.zeros((1, 3), np.float32)),
    ],
    ids=["truncated", "garbage", "shape-mismatch", "nan", "missing-array", "pickle",
         "not-unit", "zero"],
)
def test_a_damaged_cache_file_raises_naming_it(tmp_path, damage):
    RecordingEmbedder(cache_dir=tmp_path).embed(["a", "b"])
    (shard,) = shards(tmp_path)
    damage(shard)
    with pytest.raises(EmbeddingError, match="corrupt") as info:
        RecordingEmbedder(cache_dir=tmp_path).embed(["a"])
    assert str(shard) in str(info.value)


def test_object_arrays_are_never_unpickled(tmp_path):
    RecordingEmbedder(cache_dir=tmp_path).embed(["a"])
    (shard,) = shards(tmp_path)
    with shard.open("wb") as fh:
        np.savez(fh, keys=np.array([object()], dtype=object), vectors=np.ones((1, 3), np.float32))
    with pytest.raises(EmbeddingError, match="corrupt"):
        RecordingEmbedder(cache_dir=tmp_path).embed(["a"])


def test_store_validates_its_arguments(tmp_path):
    cache = EmbeddingDiskCache(tmp_path, "x", {})
    with pytest.raises(ValueError, match="32-byte"):
        cache.store([b"short"], np.ones((1, 3), np.float32))


def test_poisoned_vectors_are_never_served(tmp_path):
    """A shard holding a stranger's vector for a prompt: not unit length, so refused."""
    import hashlib

    cache = RecordingEmbedder(cache_dir=tmp_path).disk_cache
    key = hashlib.sha256(b"a").digest()
    with pytest.raises(ValueError, match="unit vectors"):
        cache.store([key], np.full((1, 3), 40.0, np.float32))
    cache.directory.mkdir(parents=True)
    with (cache.directory / "shard-planted.npz").open("wb") as fh:
        np.savez(fh, keys=np.frombuffer(key, np.uint8).reshape(1, 32),
                 vectors=np.full((1, 3), 40.0, np.float32))
    with pytest.raises(EmbeddingError, match="shard-planted.npz is corrupt .*not of unit length"):
        RecordingEmbedder(cache_dir=tmp_path).embed(["a"])


def test_a_cache_of_vectors_of_another_length_is_named_not_the_new_shard(tmp_path):
    """Vectors of another model under this embedder's folder: the error names the folder,
    and no new shard is written next to them."""
    cache = RecordingEmbedder(cache_dir=tmp_path).disk_cache
    other = np.eye(5, dtype=np.float32)[:2]
    cache.store([bytes([1]) * 32, bytes([2]) * 32], other)
    before = shards(tmp_path)
    with pytest.raises(EmbeddingError, match=r"holds 5-d vectors, but .* gives 3-d ones") as info:
        RecordingEmbedder(cache_dir=tmp_path).embed(["a"])
    assert str(cache.directory) in str(info.value)
    assert shards(tmp_path) == before


def test_threads_sharing_an_embedder_with_a_disk_cache_get_the_right_vectors(tmp_path):
    # Async calls decide in worker threads and routers may share one embedder: its disk
    # cache's index and vector blocks must change together, or a lookup serves another text's
    # row (or indexes past the end) while another thread stores or compacts.
    import sys
    import threading

    texts = [f"prompt number {i}" for i in range(200)]
    truth = HashingEmbedder(cache_dir=False, cache_size=0).embed(texts)
    shared = HashingEmbedder(cache_size=50, cache_dir=tmp_path, batch_size=3)
    failures: list[str] = []

    def work(seed: int) -> None:
        rng = np.random.default_rng(seed)
        for _ in range(150):
            rows = rng.choice(len(texts), size=5)
            try:
                got = shared.embed([texts[i] for i in rows])
            except Exception as exc:  # noqa: BLE001 - any failure is the bug
                failures.append(repr(exc))
                continue
            if not np.allclose(got, truth[rows], atol=1e-6):
                failures.append(f"wrong vectors for rows {rows.tolist()}")

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often, so interleavings actually happen
    try:
        threads = [threading.Thread(target=work, args=(seed,)) for seed in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert failures == []


def test_a_cache_that_cannot_be_written_warns_and_the_call_still_gets_its_vectors(
    tmp_path, monkeypatch
):
    # A full disk or a cache path that is not a folder must not fail every embedding call:
    # the vectors are computed; only keeping them failed.
    import errno

    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    embedder = HashingEmbedder(16, cache_dir=not_a_folder)
    with pytest.warns(RuntimeWarning, match="could not write 2 embeddings"):
        out = embedder.embed(["a", "b"])
    np.testing.assert_array_equal(out, HashingEmbedder(16).embed(["a", "b"]))

    def disk_full(self, name, keys, vectors):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(EmbeddingDiskCache, "_write_atomic", disk_full)
    full = HashingEmbedder(16, cache_dir=tmp_path / "cache")
    with pytest.warns(RuntimeWarning, match="No space left on device"):
        np.testing.assert_array_equal(full.embed(["c"]), HashingEmbedder(16).embed(["c"]))

    # and a backend failure is still the error raised, not the cache's
    def fail_on_boom(texts):
        if "boom" in texts:
            raise RuntimeError("backend down")
        return np.ones((len(texts), 3))

    failing = RecordingEmbedder(batch_size=1, cache_dir=tmp_path / "other", output=fail_on_boom)
    with pytest.warns(RuntimeWarning), pytest.raises(RuntimeError, match="backend down"):
        failing.embed(["x", "boom"])


def test_a_disk_cache_in_use_can_be_deep_copied(tmp_path):
    import copy

    embedder = HashingEmbedder(16, cache_dir=tmp_path)
    vectors = embedder.embed(["a", "b"])
    twin = copy.deepcopy(embedder)
    twin._embed_batch = None  # served from the copied cache
    np.testing.assert_array_equal(twin.embed(["a", "b"]), vectors)


def test_a_memory_cache_hit_evicted_by_another_thread_meanwhile_is_still_served():
    # Threads share an embedder (async calls embed in worker threads). Another thread may
    # evict a key between this one finding it in the memory cache and marking it recent:
    # that was a KeyError failing the call (seen with 8 threads and a small cache_size).
    import threading
    from collections import OrderedDict

    embedder = HashingEmbedder(16, cache_dir=False, cache_size=2)
    truth = HashingEmbedder(16, cache_dir=False, cache_size=0).embed(["a", "b", "c", "d"])
    embedder.embed(["a"])

    class OtherThreadRunsAfterGet(OrderedDict):
        interleave = True

        def get(self, key, default=None):
            hit = super().get(key, default)
            if OtherThreadRunsAfterGet.interleave:
                OtherThreadRunsAfterGet.interleave = False
                other = threading.Thread(target=embedder.embed, args=(["b", "c", "d"],))
                other.start()
                other.join()  # it evicted "a" (cache_size=2)
            return hit

    embedder._cache = OtherThreadRunsAfterGet(embedder._cache)
    np.testing.assert_array_equal(embedder.embed(["a"]), truth[:1])
    assert not OtherThreadRunsAfterGet.interleave and len(embedder._cache) == 2
