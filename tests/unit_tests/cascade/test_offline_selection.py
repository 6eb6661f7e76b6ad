"""How the offline cascade rows choose their configuration: only from training rows, only
from the a-priori candidate grids, and how the pooled and deployed readings are computed.

The data are synthetic, with correlated errors: three cheap models "a", "b", "c" and a strong
model that is always right. Prompts come in four groups (``i % 4``): everyone right; "a" and
"b" give the same wrong answer; "a" and "c" do; "b" and "c" do. Whichever cheap model answers,
one verifier can share its wrong answer (agreement lets the error through), but of two
verifiers one always disagrees when it is wrong: only a two-verifier cascade reaches the strong
model's quality for less than always asking the strong model.
"""

from __future__ import annotations

import numpy as np
import pytest

from langroute import Outcomes
from langroute._exceptions import OutcomesError
from langroute._policy import EscalationLadder
from langroute.embeddings import HashingEmbedder
from langroute.evaluation import _cascade, evaluate
from langroute.evaluation._cascade import (
    BANDS,
    MAX_VERIFIERS,
    STRONG_CANDIDATES,
    VARIANTS,
    CascadeSpec,
    cascade_fold_rows,
    pooled_metrics,
)

MODELS = ("a", "b", "c", "strong")
COSTS = (1.0, 1.0, 1.0, 100.0)
WRONG = {0: (), 1: ("a", "b"), 2: ("a", "c"), 3: ("b", "c")}


def _data(n: int = 80) -> Outcomes:
    answers, scores = [], []
    for i in range(n):
        ref = str(i)
        row = [f"w{i}" if m in WRONG[i % 4] else ref for m in MODELS]
        answers.append(row)
        scores.append([float(a == ref) for a in row])
    return Outcomes(ids=[f"q{i}" for i in range(n)],
                    prompts=[f"question {i}: compute {i * 3} plus {i}" for i in range(n)],
                    models=MODELS, scores=np.asarray(scores),
                    costs=np.tile(COSTS, (n, 1)), answers=np.asarray(answers, dtype=object))


def _ladder() -> EscalationLadder:
    return EscalationLadder.build(MODELS, COSTS, quality=[0.5, 0.5, 0.5, 1.0],
                                  candidates=["a", "strong"])


def _priors(n_train: int, n_test: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    win = rng.random((n_train + n_test, len(MODELS), len(MODELS)))
    win = win / (win + np.swapaxes(win, 1, 2))  # P(j beats k) + P(k beats j) = 1
    return win[:n_train], win[n_train:]


def _rows(train: Outcomes, test: Outcomes, specs, *, seed: int = 0):
    prior_train, prior_test = _priors(len(train), len(test))
    assert test.costs is not None
    return cascade_fold_rows(
        specs, train, test, cost_range=(1.0, 100.0), best_cost=100.0, best_quality=1.0,
        priors={"sw": (prior_train, prior_test, _ladder())}, seed=seed)


def _configs(rows) -> dict:
    return {label: metrics["config"] for label, (metrics, _) in rows.items()}


SPECS = [CascadeSpec("agreement"), CascadeSpec("agreement", objective="budget", share=0.5)]


def test_correlated_verifier_errors_need_two_verifiers():
    data = _data()
    rows = _rows(data.subset(np.arange(40)), data.subset(np.arange(40, 80)), SPECS[:1])
    metrics, _ = rows["cascade:agreement"]
    config = metrics["config"]
    assert config["strong"] == "strong"
    assert sorted([config["cheap"], *config["verifiers"]]) == ["a", "b", "c"]
    assert metrics["max_quality"] == 1.0
    # three cheap calls on every prompt; the strong model wherever a verifier disagrees: the
    # two groups where the cheap answer is wrong and the one where both verifiers are
    assert metrics["cost_to_match_best"] == pytest.approx((3 + 0.75 * 100) / 100)


def test_one_verifier_grid_is_honoured(monkeypatch):
    monkeypatch.setattr(_cascade, "MAX_VERIFIERS", 1)
    monkeypatch.setattr(_cascade, "STRONG_CANDIDATES", 1)
    data = _data()
    rows = _rows(data.subset(np.arange(40)), data.subset(np.arange(40, 80)), SPECS)
    for label, config in _configs(rows).items():
        assert len(config["verifiers"]) == 1, label
        if "strong" in config:
            assert config["strong"] == "strong"
    # with one verifier only always asking the strong model reaches its quality
    assert rows["cascade:agreement"][0]["cost_to_match_best"] == pytest.approx(1.0)


def test_choices_come_from_the_candidate_grids():
    data = _data()
    train, test = data.subset(np.arange(40)), data.subset(np.arange(40, 80))
    rows = _rows(train, test, SPECS)
    quality = train.scores.mean(axis=0)
    top = [MODELS[j] for j in np.argsort(-quality, kind="stable")[:STRONG_CANDIDATES]]
    for label, config in _configs(rows).items():
        assert 1 <= len(config["verifiers"]) <= MAX_VERIFIERS, label
        if "strong" in config:
            assert config["strong"] in top
            assert config["cheap"] not in config["verifiers"]
            assert config["strong"] not in config["verifiers"]
        if "band" in config:
            assert config["band"] in BANDS
        if "+chosen-cascade:" in label:
            assert config["variant"] in VARIANTS
            assert set(config["inner_cv"]) == set(VARIANTS)


@pytest.mark.parametrize("perturb", ["answers", "scores", "costs"])
def test_test_rows_never_influence_a_choice(perturb):
    data = _data()
    train, test = data.subset(np.arange(48)), data.subset(np.arange(48, 80))
    specs = [*SPECS, CascadeSpec("agreement", objective="match", share=0.98),
             CascadeSpec("simulated", 0.1)]
    before = _configs(_rows(train, test, specs))
    rng = np.random.default_rng(1)
    assert test.answers is not None and test.costs is not None
    if perturb == "answers":
        changed = Outcomes(ids=test.ids, prompts=test.prompts, models=test.models,
                           scores=test.scores, costs=test.costs,
                           answers=rng.permutation(test.answers.ravel()).reshape(
                               test.answers.shape))
    elif perturb == "scores":
        changed = Outcomes(ids=test.ids, prompts=test.prompts, models=test.models,
                           scores=rng.random(test.scores.shape), costs=test.costs,
                           answers=test.answers)
    else:
        changed = Outcomes(ids=test.ids, prompts=test.prompts, models=test.models,
                           scores=test.scores, costs=test.costs[:, ::-1].copy(),
                           answers=test.answers)
    after_rows = _rows(train, changed, specs)
    assert _configs(after_rows) == before
    # ... while the figures read on the test rows do change
    label = "sw+cascade:agreement"
    old_pool = _rows(train, test, specs)[label][0]["pool"]
    new_pool = after_rows[label][0]["pool"]
    assert (old_pool["cost"], old_pool["quality"]) != (new_pool["cost"], new_pool["quality"])


def test_training_rows_do_drive_the_choice():
    data = _data()
    test = data.subset(np.arange(40, 80))
    before = _configs(_rows(data.subset(np.arange(40)), test, SPECS[:1]))["cascade:agreement"]
    # trained only on the groups where "a" and "b" share errors, "a" and "c" check each other
    only = [i for i in range(40) if i % 4 in (0, 1)]
    after = _configs(_rows(data.subset(only), test, SPECS[:1]))["cascade:agreement"]
    assert len(before["verifiers"]) == 2
    assert len(after["verifiers"]) == 1
    assert {after["cheap"], *after["verifiers"]} == {"a", "c"}


def test_the_deployed_point_lies_on_or_under_the_test_curve():
    data = _data()
    rows = _rows(data.subset(np.arange(40)), data.subset(np.arange(40, 80)), SPECS)
    test = data.subset(np.arange(40, 80))
    target_cost = test.costs[:, MODELS.index("strong")].mean()
    for label in ("sw+cascade:agreement", "sw+pair-cascade:agreement"):
        metrics, curve = rows[label]
        cost = metrics["deployed"]["cost_share"] * target_cost
        quality = metrics["deployed"]["quality_gap"] + 1.0  # the strong model is always right
        assert np.any((curve.costs <= cost + 1e-9) & (curve.qualities >= quality - 1e-9)), label


def test_pooled_metrics_sum_the_folds_weighted_by_size():
    fold_a = {"grid": "thresholds", "n": 1, "cost": [1.0, 10.0], "quality": [0.0, 1.0],
              "target_cost": 10.0, "target_quality": 1.0}
    fold_b = {"grid": "thresholds", "n": 3, "cost": [1.0, 2.0], "quality": [0.5, 1.0],
              "target_cost": 10.0, "target_quality": 1.0}
    pooled = pooled_metrics([fold_a, fold_b])
    assert pooled is not None
    # point 0: quality (0 + 1.5) / 4; point 1: cost (10 + 6) / 4 = 4 reaches quality 1.0
    assert pooled["cost_to_match_train_best"] == pytest.approx(0.4)
    assert pooled["quality_at_25pct_cost"] == pytest.approx(0.375)
    assert pooled_metrics([fold_a, {**fold_b, "grid": "pair"}]) is None
    assert pooled_metrics([fold_a, None]) is None


def test_operating_point_follows_the_objective():
    costs = np.array([1.0, 2.0, 3.0, 4.0])
    qualities = np.array([0.5, 0.9, 0.95, 0.9])
    match = CascadeSpec("agreement")
    assert _cascade._operating_point(match, costs, qualities, 0.9, 4.0) == 1
    assert _cascade._operating_point(match, costs, qualities, 0.99, 4.0) == 2  # best quality
    budget = CascadeSpec("agreement", objective="budget", share=0.5)
    assert _cascade._operating_point(budget, costs, qualities, 0.9, 4.0) == 1
    assert _cascade._operating_point(budget, costs, qualities, 0.9, 1.0) == 0  # the cheapest


def test_too_few_training_rows_for_inner_folds_is_a_clear_error():
    data = _data(8)
    train = data.subset(np.arange(3))
    prior, _ = _priors(3, 0)
    ladder = _ladder()
    with pytest.raises(OutcomesError, match="training prompts to choose the cascade variant"):
        _cascade._choose_variant([CascadeSpec("agreement")], train, prior, ladder.levels(prior),
                                 np.asarray(ladder.columns[ladder.rungs]), None, 0)


def test_evaluate_reports_the_chosen_variant_row_over_seeds():
    report = evaluate(_data(), ["sw"], embedder=HashingEmbedder(dimension=64, cache_dir=False),
                      folds=3, seeds=2, cascades=["agreement"], progress=False).to_dict()
    row = report["routers"]["sw+chosen-cascade:agreement"]
    assert len(row["metrics"]["cost_to_match_train_best"]["folds"]) == 6
    for fold in report["folds"]:
        chosen = fold["routers"]["sw+chosen-cascade:agreement"]
        source = ("sw+cascade:agreement" if chosen["config"]["variant"] == "ladder"
                  else "sw+pair-cascade:agreement")
        assert chosen["cost_to_match_best"] == fold["routers"][source]["cost_to_match_best"]
    settings = report["settings"]["cascades"]["agreement"]
    assert settings["max_verifiers"] == MAX_VERIFIERS and settings["grids_fixed"]
