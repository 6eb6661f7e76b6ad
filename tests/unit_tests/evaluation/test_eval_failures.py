"""evaluate() and ``langroute eval`` when a router fails only in a later step (the cascade
rows' out-of-fold prior): the failure is recorded like any other, the other rows still run."""

from __future__ import annotations

import pytest

from langroute import Outcomes, OutcomesError, RouterConfigError
from langroute.embeddings import HashingEmbedder
from langroute.evaluation import evaluate
from langroute.routers import ClusterRouter, KNNRouter, MFRouter, SWRouter
from tests.unit_tests.cascade.test_offline import _synthetic


def test_a_router_whose_cascade_prior_fails_is_recorded_not_a_crash():
    # 60 prompts, 5 folds: 48 training prompts per fold, ~38 in each inner fit of the prior.
    # n_clusters=45 fits the fold but not the prior's inner fits: before, that error ended the
    # whole evaluation even with on_error="record".
    report = evaluate(
        _synthetic(60),
        {"sw": SWRouter(), "cl45": ClusterRouter(n_clusters=45, random_state=0)},
        embedder=HashingEmbedder(dimension=64, cache_dir=False), cascades=["agreement"],
        progress=False, on_error="record",
    ).to_dict()
    assert report["failed"]["cl45"]["error"] == "RouterConfigError"
    assert "n_clusters=45" in report["failed"]["cl45"]["message"]
    assert {"sw", "sw+cascade:agreement", "cascade:agreement"} <= set(report["routers"])
    assert not any(label.startswith("cl45") for label in report["routers"])
    assert all("cl45" not in fold["routers"] for fold in report["folds"])


def test_knn_k_above_the_priors_inner_fits_is_lowered_as_for_calibration_scores():
    # k=45 fits every fold's 48 training prompts; the prior's inner fits (~38 prompts) lower
    # it, as the router's own out-of-fold calibration scores do, instead of failing.
    report = evaluate(
        _synthetic(60), {"knn45": KNNRouter(k=45)},
        embedder=HashingEmbedder(dimension=64, cache_dir=False), cascades=["agreement"],
        progress=False,
    ).to_dict()
    assert report["failed"] == {}
    assert {"knn45", "knn45+cascade:agreement", "knn45+pair-cascade:agreement"} <= set(
        report["routers"])


class _CountingEmbedder(HashingEmbedder):
    """Hashing embedder that counts the prompts it was asked to embed."""

    def __init__(self) -> None:
        super().__init__(dimension=64, cache_dir=False)
        self.embedded = 0

    def embed(self, texts):
        self.embedded += len(texts)
        return super().embed(texts)


@pytest.mark.parametrize("kwargs", [
    {"routers": {"mf": MFRouter(epochs=1)}, "online": True},  # no partial_fit
    {"routers": {"sw": SWRouter()}, "cascades": ["agreement"]},  # no answers.csv
], ids=["online-without-partial-fit", "agreement-without-answers"])
def test_impossible_requests_fail_before_any_prompt_is_embedded(kwargs):
    data = _synthetic(60)
    data = Outcomes(ids=data.ids, prompts=data.prompts, models=data.models, scores=data.scores,
                    costs=data.costs)  # without answers
    embedder = _CountingEmbedder()
    with pytest.raises((RouterConfigError, OutcomesError)):
        evaluate(data, kwargs.pop("routers"), embedder=embedder, progress=False, **kwargs)
    assert embedder.embedded == 0  # was: every prompt embedded (minutes with MiniLM) first
