"""ContrastiveRouter: outcome pairs, fine-tuning MiniLM, the encoder folder beside the file."""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest

from langroute import Outcomes
from langroute._exceptions import (
    EmbeddingError,
    MissingDependencyError,
    NotFittedError,
    OutcomesError,
    RouterConfigError,
    RouterFileError,
)
from langroute.embeddings import (
    FineTunedEmbedder,
    SentenceTransformerEmbedder,
    encoder_folder,
    fine_tune_contrastive,
    folder_sha256,
    trusted_embedder,
)
from langroute.evaluation import TunedRouter, evaluate, make_router, tuned_router
from langroute.routers import ContrastiveRouter, KNNRouter, SWRouter, load_router
from langroute.routers import _contrastive as contrastive_module
from langroute.routers._contrastive import outcome_pairs, outcome_patterns
from tests.unit_tests.routers.synthetic import split_battles, split_outcomes

# A budget large enough to move the encoder visibly on 40 short prompts, small enough for
# a few CPU-seconds: 32 pairs in one step.
TINY = {"pairs": 32, "batch_size": 32, "learning_rate": 3e-4, "max_seq_length": 32}


# -- pairs (no model) -------------------------------------------------------------------------
def test_outcome_patterns_group_prompts_on_which_the_same_models_win():
    scores = np.array([[1, 0, 0], [0.9, 0.1, 0.1], [0, 1, 1], [0, 1, 0.5], [1, 0, 0],
                       [np.nan, 1, 0]])
    ids = outcome_patterns(scores)
    assert ids[0] == ids[1] == ids[4]  # model 0 beats both, 1 ties 2
    assert len({ids[0], ids[2], ids[3], ids[5]}) == 4


def test_outcome_pairs_labels_say_whether_the_patterns_agree():
    patterns = np.array([0, 0, 0, 1, 1, 2, 3, 3, 3, 3])
    a, b, labels = outcome_pairs(patterns, 400, 0.25, np.random.default_rng(0))
    assert len(a) == len(b) == len(labels) == 400
    assert labels.sum() == 100
    np.testing.assert_array_equal(labels, (patterns[a] == patterns[b]).astype(np.float32))
    assert np.all(a[labels == 1] != b[labels == 1])  # a positive is two different prompts
    assert 2 not in patterns[a[labels == 1]]  # pattern 2 has one prompt: no positive


def test_outcome_pairs_refuse_what_cannot_be_formed():
    rng = np.random.default_rng(0)
    with pytest.raises(RouterConfigError, match="no positive pairs"):
        outcome_pairs(np.arange(5), 10, 0.5, rng)
    with pytest.raises(RouterConfigError, match="same outcome pattern"):
        outcome_pairs(np.zeros(5, dtype=int), 10, 0.5, rng)
    _, _, labels = outcome_pairs(np.arange(5), 10, 0.0, rng)  # negatives only: fine
    assert labels.sum() == 0


# -- parameters (no model) ----------------------------------------------------------------------
@pytest.mark.parametrize(("params", "message"), [
    ({"pairs": 1}, "pairs must be an int >= 2"),
    ({"pairs": 10.5}, "pairs must be an int"),
    ({"epochs": 0}, "epochs must be an int >= 1"),
    ({"batch_size": 1}, "batch_size must be an int >= 2"),
    ({"positive_fraction": 1.5}, r"positive_fraction must be in \[0, 1\]"),
    ({"learning_rate": 0.0}, "learning_rate must be a finite number > 0"),
    ({"loss": "triplet"}, "unknown loss 'triplet'"),
    ({"random_state": None}, "random_state must be an int"),
    ({"router": "nope"}, "unknown router 'nope'"),
    ({"router": "contrastive"}, "inner router must take an embedder"),
    ({"router": 3}, "router must be a router name or an unfitted BaseRouter"),
    ({"base": "/no/such/folder"}, "base must be 'all-MiniLM-L6-v2'"),
])
def test_bad_parameters_are_clear_errors_before_any_training(params, message):
    with pytest.raises(RouterConfigError, match=message):
        ContrastiveRouter(**params).fit(split_outcomes(5))


def test_init_stores_arguments_and_scoring_before_fit_is_not_fitted(tmp_path):
    inner = SWRouter(gamma=5.0)
    router = ContrastiveRouter(inner, pairs=10, loss="contrastive")
    assert router.get_params()["router"] is inner and router.pairs == 10
    assert {k for k in vars(router) if not k.startswith("_")} == set(router.get_params())
    twin = router.clone()
    assert twin.get_params()["router"] is inner and repr(twin) == repr(router)
    for call in (lambda: router.win_matrices(["hello"]), lambda: router.models,
                 lambda: router.save(tmp_path / "r.lr"), router.warm_up):
        with pytest.raises(NotFittedError, match="not fitted"):
            call()
    assert not encoder_folder(tmp_path / "r.lr").exists()


def test_a_model_never_scored_is_refused_before_any_training():
    data = split_outcomes(5)
    scores = data.scores.copy()
    scores[:, 0] = np.nan
    unscored = Outcomes(ids=data.ids, prompts=data.prompts, models=data.models, scores=scores)
    with pytest.raises(OutcomesError, match=f"model {data.models[0]!r} has no measured score"):
        ContrastiveRouter().fit(unscored)


def test_battles_are_refused():
    with pytest.raises(RouterConfigError, match="pairwise battles give no outcome patterns"):
        ContrastiveRouter().fit(split_battles(5))


def test_registry_and_tuning_build_it_around_a_tuned_inner_router():
    assert isinstance(make_router("contrastive"), ContrastiveRouter)
    built = tuned_router("contrastive", {"pairs": 32, "router": "knn"}, max_tune_prompts=50)
    assert isinstance(built, ContrastiveRouter) and built.pairs == 32
    assert isinstance(built.router, TunedRouter) and built.router.router == "knn"
    # A TunedRouter embeds prompts once with its own embedder: it cannot wrap a router that
    # learns its encoder.
    with pytest.raises(RouterConfigError, match="learns its own encoder"):
        TunedRouter("contrastive").fit(split_outcomes(5))


def test_encoder_folder_must_hold_only_standard_modules(tmp_path):
    (tmp_path / "modules.json").write_text(json.dumps(
        [{"idx": 0, "name": "0", "path": "", "type": "evil.module.Backdoor"}]))
    with pytest.raises(EmbeddingError, match="not one of the standard"):
        FineTunedEmbedder(tmp_path)
    with pytest.raises(EmbeddingError, match="not a sentence-transformers folder"):
        FineTunedEmbedder(tmp_path / "missing")


def test_encoder_folder_may_not_hold_pickled_weights(tmp_path):
    (tmp_path / "modules.json").write_text(json.dumps(
        [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}]))
    FineTunedEmbedder(tmp_path)  # standard modules, no weights yet: accepted
    (tmp_path / "0").mkdir()
    (tmp_path / "0" / "pytorch_model.bin").write_bytes(b"not really a pickle")
    with pytest.raises(EmbeddingError, match=r"pickle-based files \['0/pytorch_model.bin'\]"):
        FineTunedEmbedder(tmp_path)


def test_a_file_cannot_point_the_encoder_folder_elsewhere(tmp_path):
    spec = {"kind": FineTunedEmbedder.kind, "sha256": "0" * 64, "folder": str(tmp_path)}
    with pytest.raises(RouterFileError, match="will not rebuild"):
        trusted_embedder(spec, source="x.router", router_path=tmp_path / "x.router")
    with pytest.raises(RouterFileError, match="only from the folder next to its router file"):
        trusted_embedder({"kind": FineTunedEmbedder.kind, "sha256": "0" * 64}, source="x")


# -- fine-tuning MiniLM -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data() -> Outcomes:
    return split_outcomes(20, seed=1)


@pytest.fixture(scope="module")
def fitted(data):
    return ContrastiveRouter(SWRouter(gamma=30.0), random_state=0, **TINY).fit(data)


def _pair_margin(vectors: np.ndarray, a, b, labels) -> float:
    cos = np.sum(vectors[a] * vectors[b], axis=1)
    return float(cos[labels == 1].mean() - cos[labels == 0].mean())


@pytest.mark.minilm
def test_fine_tuning_changes_the_encoder_and_pulls_positives_together(fitted, data, minilm):
    prompts = list(data.prompts)
    before, after = minilm.embed(prompts), fitted.embedder_.embed(prompts)
    assert isinstance(fitted.embedder_, FineTunedEmbedder)
    assert np.min(np.sum(before * after, axis=1)) < 0.999  # the weights moved
    # The training pairs, drawn again from the same seed.
    a, b, labels = outcome_pairs(outcome_patterns(data.scores), TINY["pairs"], 0.5,
                                 np.random.default_rng(0))
    assert fitted.n_positive_pairs_ == int(labels.sum()) == TINY["pairs"] // 2
    assert _pair_margin(after, a, b, labels) > _pair_margin(before, a, b, labels) + 0.01
    # Scores are the inner router's contract, on the fine-tuned embeddings.
    assert isinstance(fitted.router_, SWRouter) and fitted.router_.embedder is fitted.embedder_
    win = fitted.win_matrices(prompts)
    np.testing.assert_allclose(win, fitted.router_.win_matrices_from_embeddings(after))
    np.testing.assert_allclose(win + win.transpose(0, 2, 1), 1.0, atol=1e-6)
    assert fitted.models == list(data.models)
    calc, poet = data.models.index("calc"), data.models.index("poet")
    assert np.mean(win[0::2, calc, poet]) > 0.5 > np.mean(win[1::2, calc, poet])


@pytest.mark.minilm
def test_save_writes_the_encoder_beside_the_file_and_load_is_offline_and_identical(
        fitted, data, tmp_path, monkeypatch):
    path = tmp_path / "router.lr"
    fitted.save(path)
    folder = encoder_folder(path)
    assert folder == tmp_path / "router.lr.encoder" and (folder / "modules.json").is_file()
    assert folder_sha256(folder) == fitted.embedder_.sha256
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    loaded = load_router(path)
    assert isinstance(loaded, ContrastiveRouter) and isinstance(loaded.router, SWRouter)
    assert loaded.embedder_.folder == folder
    prompts = list(data.prompts)
    np.testing.assert_allclose(loaded.win_matrices(prompts), fitted.win_matrices(prompts),
                               atol=1e-6)
    np.testing.assert_array_equal(loaded.calibration_win_matrices_,
                                  fitted.calibration_win_matrices_)
    # Saving the loaded router elsewhere carries its encoder along.
    again = tmp_path / "copy" / "r.lr"
    again.parent.mkdir()
    loaded.save(again)
    assert folder_sha256(encoder_folder(again)) == fitted.embedder_.sha256


@pytest.mark.minilm
def test_a_changed_or_missing_encoder_folder_is_a_clear_error(fitted, tmp_path):
    path = tmp_path / "r.lr"
    fitted.save(path)
    folder = encoder_folder(path)
    config = folder / "tokenizer_config.json"
    config.write_text(config.read_text() + " ")
    with pytest.raises(RouterFileError, match="has changed since it was recorded"):
        load_router(path)
    shutil.rmtree(folder)
    with pytest.raises(RouterFileError, match=r"r\.lr\.encoder, which is missing"):
        load_router(path)
    # Moving the router file without its folder is the same error.
    fitted.save(path)
    path.rename(tmp_path / "moved.lr")
    with pytest.raises(RouterFileError, match="missing"):
        load_router(tmp_path / "moved.lr")
    # An encoder of the right kind but other weights fails the fingerprint check.
    fitted.save(path)
    stock = tmp_path / "stock"
    SentenceTransformerEmbedder()._load().save(str(stock))
    with pytest.raises(RouterFileError, match="not the embedder this router was trained"):
        load_router(path, embedder=FineTunedEmbedder(stock))


@pytest.mark.minilm
def test_best_params_follow_the_inner_router_through_load_and_refit(
        fitted, data, tmp_path, monkeypatch):
    # The fine-tuning is the fixture's (its encoder again); the rest of fit runs for real.
    monkeypatch.setattr(contrastive_module, "fine_tune_contrastive",
                        lambda *args, **kwargs: fitted.embedder_)
    router = ContrastiveRouter(TunedRouter("knn", param_grid={"k": [3, 5]}, cv=2), **TINY)
    router.fit(data)
    assert router.best_params_ == router.router_.best_params_
    router.save(tmp_path / "r.lr")
    assert load_router(tmp_path / "r.lr").best_params_ == router.best_params_  # was missing
    router.set_params(router=KNNRouter(k=5)).fit(data)
    assert not hasattr(router, "best_params_")  # was the TunedRouter's choice of the first fit


@pytest.mark.minilm
def test_saving_refuses_to_replace_a_folder_that_is_not_an_encoder(fitted, tmp_path):
    path = tmp_path / "r.lr"
    encoder_folder(path).mkdir()
    (encoder_folder(path) / "notes.txt").write_text("mine")
    with pytest.raises(EmbeddingError, match="is not a sentence-transformers folder"):
        fitted.save(path)
    assert (encoder_folder(path) / "notes.txt").read_text() == "mine"
    assert not path.exists()


@pytest.mark.minilm
def test_evaluate_fits_it_on_the_training_half_and_scores_with_its_encoder(data):
    router = ContrastiveRouter(KNNRouter(k=5), **{**TINY, "pairs": 8})
    report = evaluate(data, {"contrastive": router}, split="halves", progress=False)
    entry = report.data["routers"]["contrastive"]
    assert len(entry["metrics"]["aiq"]["folds"]) == 1
    assert 0.0 <= entry["metrics"]["aiq"]["mean"] <= 1.0
    assert not report.data["failed"]
    assert report.data["settings"]["routers"]["contrastive"]["class"] == "ContrastiveRouter"


def test_without_the_finetune_extra_the_error_names_it(monkeypatch):
    # sentence-transformers imports without datasets (it checks whether datasets is
    # installed, which it is here): import it first, as it is without the extra, so the test
    # does not depend on whether an earlier test imported it.
    import sentence_transformers  # noqa: F401

    monkeypatch.setitem(sys.modules, "datasets", None)  # import fails
    with pytest.raises(MissingDependencyError, match=r"langroute\[finetune\]"):
        fine_tune_contrastive(["a"], ["b"], np.array([1.0]))
