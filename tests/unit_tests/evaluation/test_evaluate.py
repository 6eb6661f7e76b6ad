"""evaluate() end to end on real outcome data, with the instant hashing embedder."""

from __future__ import annotations

import json

import numpy as np
import pytest

from langroute import OutcomesError, RouterConfigError, SWRouter, load_outcomes
from langroute.embeddings import HashingEmbedder
from langroute.evaluation import EvaluationReport, evaluate, make_router, router_names
from langroute.routers import BaseRouter
from tests.conftest import shared_dataset
from tests.unit_tests.routers.synthetic import split_outcomes


@pytest.fixture(scope="module")
def mtbench_report():
    return evaluate(shared_dataset("routellm-mtbench"), ["sw"], embedder=HashingEmbedder(64),
                    folds=4, seeds=2, progress=False)


def test_two_model_report_has_routellm_metrics_and_baselines(mtbench_report):
    d = mtbench_report.to_dict()
    assert d["settings"]["n_evaluations"] == 8
    assert sum(f["n_test"] for f in d["folds"]) == 2 * 80
    m = d["routers"]["sw"]["metrics"]
    for name in ("apgr", "cpt50", "cpt80", "aiq", "max_quality"):
        assert len(m[name]["folds"]) == 8
    assert 0.0 <= m["apgr"]["mean"] <= 1.0
    assert m["cpt50"]["mean"] <= m["cpt80"]["mean"]
    b = d["baselines"]
    assert b["random"]["apgr"]["mean"] == pytest.approx(0.5)
    assert b["best_single"]["model"] == "gpt-4-1106-preview"
    assert b["oracle"]["quality"]["mean"] >= b["best_single"]["quality"]["mean"]
    # a router's curve ends at "always strong": its best is at least the strong model's
    assert m["max_quality"]["mean"] >= b["best_single"]["quality"]["mean"] - 1e-12
    json.loads(mtbench_report.to_json())  # strict JSON (no NaN)


def test_report_is_deterministic(mtbench_report):
    again = evaluate(shared_dataset("routellm-mtbench"), ["sw"], embedder=HashingEmbedder(64),
                     folds=4, seeds=2, progress=False)
    first = mtbench_report.data["routers"]["sw"]["metrics"]["apgr"]["folds"]
    assert again.data["routers"]["sw"]["metrics"]["apgr"]["folds"] == first


def test_markdown_table_lists_routers_and_baselines(mtbench_report):
    table = mtbench_report.to_markdown()
    for text in ("**sw**", "oracle", "single-model hull", "APGR", "mixtral-8x7b-instruct-v0.1"):
        assert text in table
    assert EvaluationReport.from_json(mtbench_report.to_json()).to_markdown() == table


def test_n_model_report_on_zeroeval_subset():
    data = load_outcomes(shared_dataset("zeroeval-math-l5"))
    data = data.subset(np.arange(200))
    report = evaluate(data, {"sw-local": SWRouter(gamma=50.0)}, embedder=HashingEmbedder(64),
                      folds=3, progress=False)
    d = report.data
    assert d["dataset"]["strong_model"] is None
    m = d["routers"]["sw-local"]["metrics"]
    assert "apgr" not in m and 0.0 < m["aiq"]["mean"] <= 1.0
    assert d["settings"]["routers"]["sw-local"]["params"]["gamma"] == 50.0
    assert d["settings"]["routers"]["sw-local"]["params"]["embedder"]["kind"] == "hashing"
    assert len(d["routers"]["sw-local"]["curve"]["cost"]) == 101
    hull = d["baselines"]["single_model_hull"]["aiq"]["folds"]
    gaps = d["routers"]["sw-local"]["comparisons"]["aiq_minus_hull"]["folds"]
    assert gaps == pytest.approx(np.array(m["aiq"]["folds"]) - np.array(hull))


def test_missing_costs_and_scores_are_clear_errors(tmp_path):
    data = load_outcomes(shared_dataset("routellm-mtbench"))
    no_costs = type(data)(ids=data.ids, prompts=data.prompts, models=data.models,
                          scores=data.scores)
    with pytest.raises(OutcomesError, match="with_estimated_costs"):
        evaluate(no_costs, ["sw"], embedder=HashingEmbedder(16), progress=False)
    holes = data.scores.copy()
    holes[3, 1] = np.nan
    with pytest.raises(OutcomesError, match="1 of 80 prompts lack a score"):
        evaluate(type(data)(ids=data.ids, prompts=data.prompts, models=data.models,
                            scores=holes, costs=data.costs),
                 ["sw"], embedder=HashingEmbedder(16), progress=False)


def test_missing_costs_hint_filters_on_costs():
    """The remedy must select the rows that have every cost, not those with every score."""
    data = load_outcomes(shared_dataset("routellm-mtbench"))
    holes = data.costs.copy()
    holes[5, 0] = np.nan
    with pytest.raises(OutcomesError, match="1 of 80 prompts lack a cost") as info:
        evaluate(type(data)(ids=data.ids, prompts=data.prompts, models=data.models,
                            scores=data.scores, costs=holes),
                 ["sw"], embedder=HashingEmbedder(16), progress=False)
    message = str(info.value)
    assert "outcomes.costs" in message and "outcomes.scores" not in message
    assert "costs.csv" in message and repr(data.ids[5]) in message


def test_bad_stacked_bases_are_recorded_not_raised():
    from langroute.routers import StackedRouter

    data = load_outcomes(shared_dataset("routellm-mtbench"))
    embedder = HashingEmbedder(16)
    report = evaluate(data, {"sw": SWRouter(embedder),
                             "bad": StackedRouter(embedder, bases=[["sw", {"nosuch": 1}]])},
                      folds=2, on_error="record", progress=False)
    assert set(report.data["routers"]) == {"sw"}
    assert report.data["failed"]["bad"]["error"] == "RouterConfigError"
    assert "nosuch" in report.data["failed"]["bad"]["message"]
    assert report.metric("sw", "aiq") == report.data["routers"]["sw"]["metrics"]["aiq"]["mean"]
    with pytest.raises(KeyError, match=r"router 'bad' failed in seed 0, fold 0 .*nosuch"):
        report.metric("bad", "aiq")
    with pytest.raises(KeyError, match=r"no router 'knn'; it has \['sw'\]"):
        report.metric("knn", "aiq")
    with pytest.raises(KeyError, match=r"router 'sw' has no metric 'AIQ'; it has \[.*'aiq'"):
        report.metric("sw", "AIQ")


def test_a_failing_online_replay_is_recorded_and_drops_only_its_rows(monkeypatch):
    """on_error="record" covers --online too: the static rows and other routers stay."""
    from langroute.evaluation import _evaluate

    def fail(template, *args, **kwargs):
        if isinstance(template, SWRouter) and template.gamma == 10.0:
            raise RouterConfigError("replay failed")
        return online_fold(template, *args, **kwargs)

    online_fold = _evaluate.online_fold
    monkeypatch.setattr(_evaluate, "online_fold", fail)
    data = load_outcomes(shared_dataset("routellm-mtbench"))
    routers = {"steep": SWRouter(HashingEmbedder(16), gamma=10.0),
               "flat": SWRouter(HashingEmbedder(16), gamma=2.0)}
    report = evaluate(data, routers, folds=2, online=True, on_error="record", progress=False)
    assert set(report.data["routers"]) == {"steep", "flat", "flat static@25%",
                                           "flat online@25%"}
    assert report.data["failed"]["steep online@25%"]["message"] == "replay failed"
    assert all("steep static@25%" not in fold["routers"] for fold in report.data["folds"])
    with pytest.raises(RouterConfigError, match="replay failed"):
        evaluate(data, routers, folds=2, online=True, progress=False)


def test_unknown_router_name_lists_valid_ones():
    with pytest.raises(RouterConfigError, match=r"valid names: \['sw'"):
        make_router("nope")
    assert router_names()[:4] == ["sw", "knn", "cluster", "mf"]


class CountingEmbedder(HashingEmbedder):
    """Counts the texts that reach the backend (cache misses)."""

    def __init__(self, dimension: int = 32) -> None:
        super().__init__(dimension, cache_dir=False)
        self.computed = 0

    def _embed_batch(self, texts):
        self.computed += len(texts)
        return super()._embed_batch(texts)


def test_each_prompt_is_embedded_once_for_all_routers_and_folds():
    data = load_outcomes(shared_dataset("routellm-mtbench"))
    embedder = CountingEmbedder()
    report = evaluate(data, ["sw", SWRouter(gamma=3.0)], embedder=embedder, folds=3, seeds=2,
                      progress=False)
    assert set(report.data["routers"]) == {"sw", "SWRouter"}
    assert embedder.computed == len(set(data.prompts))


def test_one_failing_router_is_recorded_or_raised():
    from langroute import KNNRouter

    data = shared_dataset("routellm-mtbench")  # 80 prompts: 64 per training fold
    routers = {"sw": SWRouter(), "knn": KNNRouter(k=70)}
    with pytest.raises(RouterConfigError, match="k=70"):
        evaluate(data, routers, embedder=HashingEmbedder(64), progress=False)
    report = evaluate(data, routers, embedder=HashingEmbedder(64), progress=False,
                      on_error="record")
    d = report.to_dict()
    assert list(d["routers"]) == ["sw"]
    assert d["failed"]["knn"]["error"] == "RouterConfigError"
    assert all(set(fold["routers"]) == {"sw"} for fold in d["folds"])
    assert "| **knn** | failed |" in report.to_markdown()
    json.loads(report.to_json())
    with pytest.raises(RouterConfigError, match="on_error"):
        evaluate(data, routers, embedder=HashingEmbedder(64), on_error="ignore")


class MalformedRouter(BaseRouter):
    """A user's router with a scoring bug: win matrices of the wrong shape or not probabilities."""

    def __init__(self, bug: str = "shape") -> None:
        self.bug = bug

    def fit(self, outcomes):
        self._set_common_fitted(outcomes)
        return self

    def win_matrices(self, prompts):
        m = len(self.models_)
        win = np.full((len(prompts), m, m), 0.5)
        if self.bug == "shape":
            return win[:, :2, :2]
        win[:, 0, 1] = np.nan if self.bug == "nan" else 1.5
        return win

    def _win_matrices(self, embeddings):
        raise NotImplementedError("scores prompts, not embeddings")

    def _get_state(self):
        return {}, {}

    def _set_state(self, state, arrays):
        return None


@pytest.mark.parametrize(("bug", "message"), [
    # an IndexError deep in the ladder
    ("shape", r"MalformedRouter returned win matrices of shape \(20, 2, 2\) for 20 prompts and "
              r"3 models; expected \(20, 3, 3\)"),
    # "levels must be finite below the top rung", naming no router
    ("nan", r"MalformedRouter returned win probabilities that are NaN or outside \[0, 1\]"),
    # scored as if it were a probability
    ("above_one", r"MalformedRouter returned win probabilities that are NaN or outside"),
])
def test_a_routers_malformed_win_matrices_are_named(bug, message):
    with pytest.raises(ValueError, match=message):
        evaluate(split_outcomes(20), {"mine": MalformedRouter(bug)}, folds=2, progress=False)


def test_router_rows_show_cost_and_quality(mtbench_report):
    m = mtbench_report.data["routers"]["sw"]["metrics"]
    assert m["cost_at_max_quality"]["mean"] > 0
    row = next(line for line in mtbench_report.to_markdown().splitlines()
               if line.startswith("| **sw** |"))
    cost, quality = row.split(" | ")[1:3]
    assert cost.startswith("$") and quality.startswith(f"{m['max_quality']['mean']:.3f}")


@pytest.mark.parametrize("name", ["cluster", "mf", "irt", "avengers"])
def test_randomly_initialised_routers_are_reproducible_by_name(name):
    """An evaluation must reproduce from its command: names seed their routers (random_state=0)."""
    from langroute.routers._calibration_scores import calibration_scores_disabled
    from tests.unit_tests.routers.synthetic import split_outcomes

    data = split_outcomes(30, seed=2)
    embedder = HashingEmbedder(dimension=64, cache_dir=False)
    with calibration_scores_disabled():
        first, second = (make_router(name, embedder).fit(data) for _ in range(2))
    assert first.random_state == 0
    np.testing.assert_array_equal(first.win_matrices(data.prompts[:8]),
                                  second.win_matrices(data.prompts[:8]))
