"""Router files: exact round trips, and every kind of damaged or foreign file is refused."""

from __future__ import annotations

import json
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from langroute import (
    ClusterRouter,
    MFRouter,
    NotFittedError,
    Outcomes,
    RouterConfigError,
    RouterFileError,
    SWRouter,
    load_router,
)
from langroute._persistence import (
    FORMAT_VERSION,
    _digest,
    read_router_file,
    write_router_file,
)
from langroute.embeddings import (
    Embedder,
    HashingEmbedder,
    SentenceTransformerEmbedder,
    embedder_fingerprint,
    embedder_spec,
)

PROMPTS = [
    "add two numbers", "sum of 3 and 4", "multiply 6 by 7", "write a poem about the sea",
    "a sonnet on autumn leaves", "haiku about snow", "translate hello to French",
    "what is the capital of Peru", "explain photosynthesis", "prove sqrt 2 is irrational",
]


@pytest.fixture
def outcomes():
    rng = np.random.default_rng(7)
    scores = rng.integers(0, 2, size=(len(PROMPTS), 3)).astype(float)
    scores[3, 2] = np.nan
    costs = np.tile([0.01, 0.001, 0.0001], (len(PROMPTS), 1))
    return Outcomes(ids=[f"p{i}" for i in range(len(PROMPTS))], prompts=PROMPTS,
                    models=("big", "mid", "small"), scores=scores, costs=costs)


@pytest.fixture
def saved(tmp_path, outcomes):
    router = SWRouter(HashingEmbedder(64), gamma=5.0, top_k=4, prior=0.5).fit(outcomes)
    path = tmp_path / "router.safetensors"
    router.save(path)
    return router, path


QUERIES = ["add 5 and 9", "a poem about rivers", "capital of Chile"]


def test_round_trip_gives_identical_win_matrices_and_params(saved):
    router, path = saved
    loaded = load_router(path)
    assert type(loaded) is SWRouter
    params, original = loaded.get_params(), router.get_params()
    assert params.pop("embedder").get_config() == original.pop("embedder").get_config()
    assert params == original and params["gamma"] == 5.0 and params["top_k"] == 4
    assert loaded.models == router.models
    np.testing.assert_array_equal(loaded.costs_, router.costs_)
    np.testing.assert_array_equal(loaded.quality_, router.quality_)
    np.testing.assert_array_equal(loaded.win_matrices(QUERIES), router.win_matrices(QUERIES))
    assert SWRouter.load(path).models == router.models
    assert not list(path.parent.glob(".*tmp"))  # the atomic write left nothing behind


def test_a_failed_write_is_an_oserror_with_its_errno(tmp_path, saved):
    """safetensors reports write failures as its own error; callers catch OSError."""
    router, _ = saved
    with pytest.raises(FileNotFoundError, match="writing the router file"):
        router.save(tmp_path / "no-such-folder" / "router.safetensors")
    assert not list(tmp_path.rglob(".*tmp"))


def test_unfitted_router_cannot_be_saved(tmp_path):
    with pytest.raises(NotFittedError):
        SWRouter(HashingEmbedder()).save(tmp_path / "x.safetensors")


def header_bounds(data: bytes) -> tuple[int, int]:
    (size,) = struct.unpack("<Q", data[:8])
    return 8, 8 + size


def rewrite_header(path: Path, edit) -> None:
    """Edit the langroute JSON header in place (keeping the safetensors framing valid)."""
    data = path.read_bytes()
    start, end = header_bounds(data)
    outer = json.loads(data[start:end])
    inner = json.loads(outer["__metadata__"]["langroute"])
    edit(inner)
    outer["__metadata__"]["langroute"] = json.dumps(inner)
    raw = json.dumps(outer).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data[end:])


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda h: h.update(version=FORMAT_VERSION + 1), "format version 3.*newer langroute"),
        (lambda h: h.update(version=2.0), "format version 2.0, this langroute reads"),
        (lambda h: h.update(version=True), "format version True, this langroute reads"),
        (lambda h: h.update(version=0), r"format version 0, this langroute reads .*2\]$"),
        (lambda h: h.update(format="other.tool"), "format 'other.tool'"),
        (lambda h: h.update(kind="knn"), "checksum mismatch"),
        (lambda h: h["params"].update(gamma=-3), "checksum mismatch"),
        (lambda h: h["state"].update(models_=["a", "b", "c"]), "checksum mismatch"),
        (lambda h: h.update(params="gamma=3"), "header lacks"),
        (lambda h: h.pop("sha256"), "checksum mismatch"),
    ],
)
def test_edited_header_is_refused(saved, edit, message):
    _, path = saved
    rewrite_header(path, edit)
    with pytest.raises(RouterFileError, match=message):
        load_router(path)


@pytest.mark.parametrize(
    "header",
    ["[" * 100_000 + "]" * 100_000,  # nesting deeper than the JSON parser's recursion
     '{"format": "langroute.router", "version": ' + "9" * 5000 + "}"],  # int > 4300 digits
    ids=["deep-nesting", "huge-int"],
)
def test_headers_python_cannot_parse_are_refused_as_corrupt(tmp_path, header):
    from safetensors.numpy import save_file

    path = tmp_path / "crafted.safetensors"
    save_file({"x": np.ones(2, np.float32)}, str(path), metadata={"langroute": header})
    with pytest.raises(RouterFileError, match="corrupt header"):
        load_router(path)


def test_flipped_byte_in_an_array_is_detected(saved):
    _, path = saved
    data = bytearray(path.read_bytes())
    _, end = header_bounds(bytes(data))
    data[end + (len(data) - end) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(RouterFileError, match="checksum mismatch"):
        load_router(path)


@pytest.mark.parametrize("keep", [0.99, 0.5, 0.01])
def test_truncated_file_is_refused(saved, keep):
    _, path = saved
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(RouterFileError, match="not a readable router file"):
        load_router(path)


def test_random_bytes_and_missing_files_are_refused(tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(RouterFileError, match="not a readable router file"):
        load_router(junk)
    with pytest.raises(RouterFileError, match="no such router file"):
        load_router(tmp_path / "missing.safetensors")
    with pytest.raises(RouterFileError, match="a folder, not a router file"):
        load_router(tmp_path)  # a folder said "no such router file", which misled


class _Exploit:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickle_file_is_refused_and_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "router.pkl"
    path.write_bytes(pickle.dumps(_Exploit(marker)))
    with pytest.raises(RouterFileError):
        load_router(path)
    assert not marker.exists()
    pickle.loads(path.read_bytes())  # the payload is live: unpickling would have run it
    assert marker.exists()


def test_safetensors_file_without_langroute_header(tmp_path):
    from safetensors.numpy import save_file

    path = tmp_path / "model.safetensors"
    save_file({"weight": np.ones((2, 2), np.float32)}, str(path))
    with pytest.raises(RouterFileError, match="no langroute header"):
        load_router(path)


def _embedder_record(router) -> dict:
    embedder = router._resolve_embedder()
    return {"spec": embedder_spec(embedder), "fingerprint": embedder_fingerprint(embedder)}


def _write(tmp_path, router, **changes) -> Path:
    """A well-formed, correctly checksummed file whose content is nonetheless wrong."""
    state, arrays = router._get_state()
    params = router._params_for_file()
    state = {**state, "models_": router.models_, "costs_": list(router.costs_),
             "quality_": list(router.quality_), "embedder_record": _embedder_record(router)}
    fields = {"kind": router.kind, "params": params, "state": state, "arrays": arrays}
    for key, edit in changes.items():
        fields[key] = edit(fields[key])
    path = tmp_path / "crafted.safetensors"
    write_router_file(path, **fields)
    return path


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"kind": lambda k: "no-such-router"}, "unknown router kind"),
        ({"params": lambda p: {**p, "gamma": "steep"}}, "gamma must be"),
        ({"params": lambda p: {**p, "gamma": 0.5}}, "gamma must be"),
        ({"params": lambda p: {**p, "colour": 1}}, "unexpected keyword"),
        ({"state": lambda s: {**s, "embedder_record": {**s["embedder_record"],
                                                       "spec": {"kind": "word2vec"}}}},
         "will not rebuild embedder {'kind': 'word2vec'}.*embedder="),
        ({"state": lambda s: {**s, "embedder_record": {**s["embedder_record"],
                                                       "spec": {"kind": "hashing",
                                                                "dimension": 0}}}},
         "invalid settings"),
        ({"state": lambda s: {k: v for k, v in s.items() if k != "embedder_record"}},
         "does not record which embedder"),
        ({"state": lambda s: {**s, "embedder_record": {**s["embedder_record"],
                                                       "fingerprint": {"dimension": 64}}}},
         "corrupt embedder fingerprint"),
        # NaN compares as no cosine at all, long rows pass any embedder: the check would be off.
        ({"state": lambda s: {**s, "embedder_record": {**s["embedder_record"], "fingerprint": {
            "dimension": 64, "probe": [[float("nan")] * 64] * 5}}}},
         "corrupt embedder fingerprint .*not finite unit vectors"),
        ({"state": lambda s: {**s, "embedder_record": {**s["embedder_record"], "fingerprint": {
            "dimension": 64, "probe": [[1e6] * 64] * 5}}}},
         "corrupt embedder fingerprint .*not finite unit vectors"),
        ({"state": lambda s: {k: v for k, v in s.items() if k != "models_"}}, "models_"),
        # The checksum does not stop these (anyone can recompute it): caught at load.
        ({"state": lambda s: {**s, "embedder_record": {"spec": s["embedder_record"]["spec"]}}},
         "embedder record has no fingerprint"),
        ({"state": lambda s: {**s, "costs_": [1.0]}}, r"costs_ holds 1 value\(s\).*3 models"),
        ({"state": lambda s: {**s, "quality_": [1.0, 2.0, 3.0, 4.0]}},
         r"quality_ holds 4 value\(s\).*3 models"),
        ({"state": lambda s: {**s, "models_": [*s["models_"], "extra"],
                              "costs_": [*s["costs_"], 1.0], "quality_": [*s["quality_"], 1.0]}},
         "inconsistent"),
        # Values fit never produces: routing would trust them (a negative cost is the cheapest).
        ({"state": lambda s: {**s, "costs_": [-1.0, 0.001, 0.0001]}},
         r"costs_ must be finite and >= 0"),
        ({"state": lambda s: {**s, "costs_": [float("inf"), 0.001, 0.0001]}},
         r"costs_ must be finite and >= 0"),
        ({"state": lambda s: {**s, "costs_": [True, 0.001, 0.0001]}},
         "costs_ must be a list of numbers"),
        ({"state": lambda s: {**s, "quality_": [1.5, 0.5, 0.5]}}, r"quality_ must be .*\[0, 1\]"),
        ({"state": lambda s: {**s, "models_": dict.fromkeys(s["models_"], 1)}},
         "models_ must be a list of distinct non-empty model names"),
        ({"state": lambda s: {**s, "models_": ["big", "big", "small"]}},
         "models_ must be a list of distinct"),
        ({"state": lambda s: {**s, "models_": ["big", 7, "small"]}},
         "models_ must be a list of distinct"),
    ],
)
def test_consistent_but_invalid_contents_are_refused(tmp_path, saved, changes, message):
    router, _ = saved
    path = _write(tmp_path, router, **changes)
    with pytest.raises(RouterFileError, match=message):
        load_router(path)


@pytest.mark.parametrize(("router", "array"),
                         [(ClusterRouter, "cluster_ratings"), (MFRouter, "head")])
def test_learned_arrays_giving_nan_win_probabilities_are_refused(tmp_path, outcomes, router,
                                                                 array):
    """NaN in a learned array passes the checksum (anyone can recompute it) and would route
    every prompt on NaN probabilities: refused at load."""
    from langroute.routers import calibration_scores_disabled

    with calibration_scores_disabled():  # out-of-fold refits would only slow the test
        fitted = router(HashingEmbedder(64)).fit(outcomes)

    def poison(arrays):
        return {**arrays, array: np.full_like(arrays[array], np.nan)}

    np.testing.assert_array_equal(load_router(_write(tmp_path, fitted)).win_matrices(QUERIES),
                                  fitted.win_matrices(QUERIES))
    with pytest.raises(RouterFileError, match="win probabilities that are NaN"):
        load_router(_write(tmp_path, fitted, arrays=poison))


def test_costs_in_a_file_may_be_unknown_as_fit_leaves_them_but_not_negative(tmp_path, outcomes):
    """``fit`` keeps NaN for a model whose costs were never known, so a file may hold it."""
    costs = outcomes.costs.copy()
    costs[:, 1] = np.nan
    data = Outcomes(ids=outcomes.ids, prompts=outcomes.prompts, models=outcomes.models,
                    scores=outcomes.scores, costs=costs)
    router = SWRouter(HashingEmbedder(64), gamma=5.0).fit(data)
    assert np.isnan(router.costs_[1])
    router.save(tmp_path / "r.safetensors")
    np.testing.assert_array_equal(load_router(tmp_path / "r.safetensors").costs_, router.costs_)
    path = _write(tmp_path, router, state=lambda s: {**s, "costs_": [0.01, float("nan"), -1.0]})
    with pytest.raises(RouterFileError, match="costs_ must be finite and >= 0"):
        load_router(path)


@pytest.mark.parametrize("version", [True, 1.0])
def test_a_version_equal_to_1_but_not_the_int_1_is_refused(saved, version):
    """``True == 1.0 == 1`` in Python; the writer only ever writes the int."""
    from safetensors.numpy import load_file

    _, path = saved
    arrays = load_file(str(path))

    def edit(header):  # a forger who recomputes the checksum
        header["version"] = version
        described = {k: header[k] for k in ("format", "version", "kind", "params", "state")}
        header["sha256"] = _digest(arrays, described)

    rewrite_header(path, edit)
    with pytest.raises(RouterFileError, match=f"format version {version!r}"):
        read_router_file(path)


def test_every_missing_array_is_refused(tmp_path, saved):
    router, _ = saved
    names = sorted(router._get_state()[1])
    assert names
    for name in names:
        path = _write(tmp_path, router, arrays=lambda a, drop=name: {
            k: v for k, v in a.items() if k != drop})
        with pytest.raises(RouterFileError, match="inconsistent"):
            load_router(path)


def test_read_router_file_returns_exactly_what_was_written(tmp_path):
    arrays = {"a": np.arange(6, dtype=np.int32).reshape(2, 3), "b": np.linspace(0, 1, 4)}
    path = tmp_path / "raw.safetensors"
    write_router_file(path, kind="k", params={"x": 1.5, "y": None}, state={"s": [1, 2]},
                      arrays=arrays)
    kind, params, state, back = read_router_file(path)
    assert (kind, params, state) == ("k", {"x": 1.5, "y": None}, {"s": [1, 2]})
    for name, arr in arrays.items():
        assert back[name].dtype == arr.dtype
        np.testing.assert_array_equal(back[name], arr)
    with pytest.raises(TypeError, match="JSON-serialisable"):
        write_router_file(path, kind="k", params={"x": object()}, state={}, arrays=arrays)


# -- which embedder: recorded, checked, allow-listed ------------------------------------------
class SeededEmbedder(Embedder):
    """A custom embedder (not in langroute's allow-list): random vectors per word, by seed."""

    kind = "test-seeded"

    def __init__(self, seed: int = 0, dimension: int = 32) -> None:
        super().__init__()
        self.seed, self._dimension = seed, dimension

    @property
    def dimension(self) -> int:
        return self._dimension

    def get_config(self):
        return {"seed": self.seed, "dimension": self._dimension}

    def _embed_batch(self, texts):
        out = np.zeros((len(texts), self._dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                word_seed = int.from_bytes(word.encode()[:8].ljust(8, b"_"), "little")
                out[row] += np.random.default_rng([self.seed, word_seed]).standard_normal(
                    self._dimension)
        return out


def test_router_with_a_custom_embedder_loads_back_when_given_the_embedder(tmp_path, outcomes):
    router = SWRouter(SeededEmbedder(seed=1)).fit(outcomes)
    path = tmp_path / "custom.safetensors"
    router.save(path)
    with pytest.raises(RouterFileError, match=r"test-seeded.*load\(path, embedder=\.\.\.\)"):
        load_router(path)
    loaded = load_router(path, embedder=SeededEmbedder(seed=1))
    np.testing.assert_array_equal(loaded.win_matrices(QUERIES), router.win_matrices(QUERIES))
    assert loaded.load_seconds_ >= 0


def test_a_mismatched_embedder_is_refused(tmp_path, outcomes):
    router = SWRouter(SeededEmbedder(seed=1)).fit(outcomes)
    path = tmp_path / "custom.safetensors"
    router.save(path)
    with pytest.raises(RouterFileError, match="not the embedder this router was trained with"):
        load_router(path, embedder=SeededEmbedder(seed=2))  # same kind and size, other vectors
    with pytest.raises(RouterFileError, match="32-d embeddings.*gives 16-d"):
        load_router(path, embedder=SeededEmbedder(seed=1, dimension=16))
    with pytest.raises(RouterFileError, match="trained with embedder .*test-seeded.*'hashing'"):
        load_router(path, embedder=HashingEmbedder(32))
    with pytest.raises(RouterConfigError, match="must be a langroute Embedder"):
        load_router(path, embedder="test-seeded")


def test_file_records_the_embedder_and_its_fingerprint(saved):
    _, path = saved
    _, params, state, _ = read_router_file(path)
    record = state["embedder_record"]
    assert record["spec"] == {"kind": "hashing", "dimension": 64} == params["embedder"]
    assert record["fingerprint"]["dimension"] == 64
    assert len(record["fingerprint"]["probe_sha256"]) == 64
    assert record["fingerprint"] == embedder_fingerprint(HashingEmbedder(64))


@pytest.mark.parametrize(
    ("spec", "shown"),
    [
        ({"kind": "sentence-transformers", "model": "evil/exfiltrate-v1", "device": "cpu"},
         "evil/exfiltrate-v1"),
        ({"kind": "sentence-transformers", "model": "all-MiniLM-L6-v2", "device": "cuda"},
         "cuda"),
        ({"kind": "openai", "model": "text-embedding-3-small", "dimensions": None},
         "allow_remote_embedder=True"),
    ],
)
def test_files_naming_embedders_outside_the_allow_list_are_refused(tmp_path, saved, spec, shown):
    router, _ = saved
    path = _write(tmp_path, router, state=lambda s: {
        **s, "embedder_record": {**s["embedder_record"], "spec": spec}})
    with pytest.raises(RouterFileError, match=f"will not rebuild embedder .*{shown}"):
        load_router(path)


def test_a_router_on_the_default_embedder_records_it(tmp_path, outcomes, monkeypatch):
    # The default embedder is recorded (not just "None"), so a file keeps its meaning if the
    # default changes. Stand-in for the default: a hashing embedder (no model to load).
    router = SWRouter()
    router._default_embedder = HashingEmbedder(48)
    router.fit(outcomes)
    path = tmp_path / "default.safetensors"
    router.save(path)
    _, params, state, _ = read_router_file(path)
    assert params["embedder"] is None
    assert state["embedder_record"]["spec"] == {"kind": "hashing", "dimension": 48}
    loaded = load_router(path)
    assert loaded.embedder is None and loaded._resolve_embedder().dimension == 48
    np.testing.assert_array_equal(loaded.win_matrices(QUERIES), router.win_matrices(QUERIES))


def test_the_packaged_minilm_spec_is_allowed_without_loading_it_twice():
    from langroute.embeddings import trusted_embedder

    spec = {"kind": "sentence-transformers", "model": "all-MiniLM-L6-v2", "device": "cpu"}
    rebuilt = trusted_embedder(spec, source="f")
    assert isinstance(rebuilt, SentenceTransformerEmbedder) and rebuilt._model is None


# -- signing -----------------------------------------------------------------------------------
def test_signed_file_loads_with_its_key_and_is_refused_with_another(tmp_path, saved):
    router, _ = saved
    path = tmp_path / "signed.safetensors"
    router.save(path, signing_key="s3cret")
    loaded = load_router(path, signing_key="s3cret")
    np.testing.assert_array_equal(loaded.win_matrices(QUERIES), router.win_matrices(QUERIES))
    assert SWRouter.load(path, signing_key=b"s3cret").models == router.models
    with pytest.raises(RouterFileError, match="signature does not match"):
        load_router(path, signing_key="guess")
    load_router(path)  # no key asked for: the checksum alone is checked


def test_unsigned_file_is_refused_when_a_key_is_required(saved):
    _, path = saved
    with pytest.raises(RouterFileError, match="unsigned router file"):
        load_router(path, signing_key="s3cret")


def test_a_forger_who_recomputes_the_checksum_is_caught_by_the_signature(tmp_path, saved):
    from langroute._persistence import _digest

    router, _ = saved
    path = tmp_path / "signed.safetensors"
    router.save(path, signing_key="s3cret")
    _, _, _, arrays = read_router_file(path)

    def forge(header):
        header["params"]["gamma"] = 50.0
        described = {k: header[k] for k in ("format", "version", "kind", "params", "state")}
        header["sha256"] = _digest(arrays, described)

    rewrite_header(path, forge)
    assert load_router(path).gamma == 50.0  # the checksum alone cannot tell
    with pytest.raises(RouterFileError, match="signature does not match"):
        load_router(path, signing_key="s3cret")


@pytest.mark.parametrize("signature", ["\u00e9" * 64, "\ud800" * 64, "ab"],
                         ids=["non-ascii", "lone-surrogate", "short"])
def test_a_forged_signature_of_any_text_is_refused_not_a_crash(tmp_path, saved, signature):
    """The signature is not covered by the checksum: anyone can write any text there."""
    router, _ = saved
    path = tmp_path / "signed.safetensors"
    router.save(path, signing_key="s3cret")
    rewrite_header(path, lambda h: h.update(hmac_sha256=signature))
    with pytest.raises(RouterFileError, match="signature does not match"):
        load_router(path, signing_key="s3cret")


@pytest.mark.parametrize("key", ["", b"", 42])
def test_bad_signing_keys_are_refused(tmp_path, saved, key):
    router, path = saved
    with pytest.raises(RouterConfigError, match="signing_key"):
        router.save(tmp_path / "x.safetensors", signing_key=key)
    with pytest.raises(RouterConfigError, match="signing_key"):
        load_router(path, signing_key=key)


def test_files_are_written_as_version_2_and_version_1_files_still_load(
        saved, tmp_path, monkeypatch):
    """Files carrying five fingerprint probes and ``learned_feedback`` are version 2, so an
    older langroute says "newer", not "corrupt"; version 1 files load as they did."""
    from langroute import _persistence

    router, path = saved
    header = json.loads(json.loads(path.read_bytes()[8:header_bounds(path.read_bytes())[1]])
                        ["__metadata__"]["langroute"])
    assert header["version"] == FORMAT_VERSION == 2
    monkeypatch.setattr(_persistence, "FORMAT_VERSION", 1)
    router.save(tmp_path / "v1.safetensors")
    monkeypatch.setattr(_persistence, "FORMAT_VERSION", 3)
    router.save(tmp_path / "v3.safetensors")
    monkeypatch.undo()
    old = load_router(tmp_path / "v1.safetensors")
    np.testing.assert_array_equal(old.win_matrices(QUERIES), router.win_matrices(QUERIES))
    with pytest.raises(RouterFileError, match="format version 3.*written by a newer langroute"):
        load_router(tmp_path / "v3.safetensors")
