"""Online evaluation: the stream feeds back only the chosen model's score, and it helps."""

from __future__ import annotations

import json

import numpy as np
import pytest

from langroute import KNNRouter, Outcomes, SWRouter, evaluate
from langroute._exceptions import RouterConfigError
from langroute.cli import main
from langroute.evaluation._online import online_fold, plot_online
from langroute.routers._calibration_scores import calibration_scores_disabled

from ..routers.synthetic import math_prompt, poem_prompt

MODELS = ("cheap", "calc", "poet")


def drifting_outcomes(n: int = 160) -> Outcomes:
    """Maths first, then poems too: the first quarter teaches nothing about poems, where cheap
    and calc fail and poet succeeds -- what online feedback must learn. On maths cheap is
    right half the time, calc three times in four, poet always (so all three are on the
    ladder: pricier is better on average)."""
    prompts, scores = [], []
    for i in range(n):
        if i < n // 4 or i % 2 == 0:
            prompts.append(math_prompt(i))
            scores.append([float(i % 2 == 0), float(i % 4 != 1), 1.0])
        else:
            prompts.append(poem_prompt(i))
            scores.append([0.0, 0.0, 1.0])
    return Outcomes(ids=[f"p{i}" for i in range(n)], prompts=prompts, models=MODELS,
                    scores=np.asarray(scores), costs=np.tile([0.001, 0.01, 0.02], (n, 1)))


def test_the_online_router_learns_what_the_initial_share_lacked(hashing_embedder):
    train = drifting_outcomes()
    with calibration_scores_disabled():
        static, online, timeline = online_fold(SWRouter(hashing_embedder), train,
                                               initial_share=0.25, steps=10, seed=0)
    assert static.n_exemplars_ == 40
    # One exemplar per stream prompt, each fed back only its chosen model's score.
    assert online.n_exemplars_ == 40 and online.n_feedback_ == 120
    assert timeline["seen"][-1] == 120
    poems = [poem_prompt(1001), poem_prompt(1003)]
    assert np.all(online.win_matrices(poems)[:, 2, 0] > static.win_matrices(poems)[:, 2, 0] + 0.1)
    # Over time the online router's choices get better than the static one's.
    late = slice(5, 10)
    assert timeline["online_quality"][late].mean() > timeline["static_quality"][late].mean()


def test_evaluate_online_adds_static_and_online_rows(hashing_embedder, tmp_path):
    report = evaluate(drifting_outcomes(200), ["sw"], embedder=hashing_embedder, online=True,
                      folds=2, progress=False)
    routers = report.data["routers"]
    assert set(routers) == {"sw", "sw static@25%", "sw online@25%"}
    timeline = routers["sw online@25%"]["online"]
    assert len(timeline["online_quality"]) == 20 and timeline["stream_share"][-1] == 1.0
    assert report.data["settings"]["online"]["initial_share"] == 0.25
    online_aiq = routers["sw online@25%"]["metrics"]["aiq"]["mean"]
    static_aiq = routers["sw static@25%"]["metrics"]["aiq"]["mean"]
    assert online_aiq > static_aiq
    assert plot_online(report, tmp_path / "online.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(RouterConfigError, match="partial_fit"):
        evaluate(drifting_outcomes(), ["cluster"], embedder=hashing_embedder, online=True,
                 folds=2, progress=False)
    with pytest.raises(RouterConfigError, match="initial share"):
        evaluate(drifting_outcomes(), ["sw"], embedder=hashing_embedder, online=True,
                 online_share=1.0, progress=False)


def test_cli_eval_online(tmp_path, capsys):
    data = drifting_outcomes(120)
    folder = tmp_path / "drift"
    folder.mkdir()
    (folder / "prompts.jsonl").write_text("".join(
        json.dumps({"id": i, "prompt": p}) + "\n" for i, p in zip(data.ids, data.prompts,
                                                                  strict=True)))
    for name, values in (("scores.csv", data.scores), ("costs.csv", data.costs)):
        rows = [",".join(["id", *MODELS])] + [
            ",".join([i, *map(str, row)]) for i, row in zip(data.ids, values, strict=True)]
        (folder / name).write_text("\n".join(rows) + "\n")
    out = tmp_path / "report"
    assert main(["eval", str(folder), "--router", "sw", "--embedder", "hashing", "--folds", "2",
                 "--online", "--out", str(out), "--quiet"]) == 0
    assert "online@25%" in capsys.readouterr().out
    assert (out / "online.png").exists()
    assert "sw online@25%" in json.loads((out / "report.json").read_text())["routers"]


def test_knn_learns_online_too(hashing_embedder):
    train = drifting_outcomes()
    with calibration_scores_disabled():
        static, online, timeline = online_fold(KNNRouter(hashing_embedder, k=10), train,
                                               initial_share=0.25, steps=10, seed=0)
    assert static.embeddings_.shape[0] == 40 and online.embeddings_.shape[0] == 160
    poems = [poem_prompt(1001), poem_prompt(1003)]
    assert np.all(online.win_matrices(poems)[:, 2, 0] > static.win_matrices(poems)[:, 2, 0] + 0.1)
    report = evaluate(drifting_outcomes(200), {"knn": KNNRouter(k=10)},
                      embedder=hashing_embedder, online=True, folds=2, progress=False)
    routers = report.data["routers"]
    assert (routers["knn online@25%"]["metrics"]["aiq"]["mean"]
            > routers["knn static@25%"]["metrics"]["aiq"]["mean"])
