"""Offline cascades: answers/reference loading, and the cascade rows of ``evaluate``.

The synthetic outcomes make the cascade's cost and quality computable by hand: the strong
model is always right; the cheap model and the verifier are right on known prompts and, when
wrong, give different wrong answers. So the verifier agrees exactly when the cheap answer is
right, a cascade with accept=1 reaches the strong model's quality, and its cost is
cheap + verifier + (share of wrong cheap answers) x strong on every fold.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from langroute import Outcomes, load_outcomes
from langroute._exceptions import OutcomesError, RouterConfigError
from langroute.cli import main
from langroute.embeddings import HashingEmbedder
from langroute.evaluation import evaluate
from langroute.evaluation._cascade import CascadeSpec, parse_cascade

from ...conftest import shared_dataset

CHEAP, VERIFIER, STRONG, OTHER = "cheap", "verifier", "strong", "other"
# "other" is too dear to pay off as a second verifier: the cheapest way to reach the strong
# model's quality is cheap + verifier
COSTS = {CHEAP: 1.0, VERIFIER: 2.0, OTHER: 50.0, STRONG: 100.0}


def _synthetic(n: int = 60) -> Outcomes:
    prompts, answers, reference, scores = [], [], [], []
    for i in range(n):
        kind = "Compute the sum of" if i % 2 else "Write a poem about"
        prompts.append(f"{kind} item {i} please, number {i * 7}")
        ref = str(i)
        cheap_right = i % 4 != 0          # wrong on a quarter of the prompts
        verifier_right = i % 7 != 0
        other_right = i % 2 == 0
        row = [ref if cheap_right else f"c{i}", ref if verifier_right else f"v{i}",
               ref if other_right else "", ref]
        answers.append(row)
        reference.append(ref)
        scores.append([float(a == ref) for a in row])
    return Outcomes(
        ids=[f"q{i}" for i in range(n)], prompts=prompts,
        models=(CHEAP, VERIFIER, OTHER, STRONG), scores=np.asarray(scores),
        costs=np.tile([COSTS[m] for m in (CHEAP, VERIFIER, OTHER, STRONG)], (n, 1)),
        answers=np.asarray(answers, dtype=object), reference=np.asarray(reference, dtype=object),
    )


def test_a_cascade_counts_every_call_and_its_choices_come_from_training_folds():
    data = _synthetic()
    report = evaluate(data, ["sw"], embedder=HashingEmbedder(dimension=64, cache_dir=False),
                      cascades=["agreement"], progress=False).to_dict()
    assert {"cascade:agreement", "sw+cascade:agreement",
            "sw+pair-cascade:agreement"} <= set(report["routers"])
    assert report["settings"]["cascades"]["agreement"]["verifier_cost_counted"]
    for fold in report["folds"]:
        metrics = fold["routers"]["cascade:agreement"]
        config = metrics["config"]
        assert config["strong"] == STRONG
        assert {config["cheap"], *config["verifiers"]} == {CHEAP, VERIFIER}
        # the cheapest point reaching the strong model's quality (1.0): cheap + verifier +
        # escalations on the prompts where the two disagree (both right = agree)
        test_rows = [i for i in range(len(data)) if data.ids[i] in _test_ids(report, fold, data)]
        both_right = np.mean([(i % 4 != 0) and (i % 7 != 0) for i in test_rows])
        expected = COSTS[CHEAP] + COSTS[VERIFIER] + (1 - both_right) * COSTS[STRONG]
        assert metrics["cost_to_match_best"] == pytest.approx(expected / COSTS[STRONG])
        assert metrics["max_quality"] == 1.0
        assert metrics["cost_at_max_quality"] == pytest.approx(expected)


def _test_ids(report, fold, data):
    from langroute.evaluation import make_splits

    (split,) = [s for s in make_splits(data.prompts, folds=report["settings"]["folds"])
                if s.fold == fold["fold"]]
    return {data.ids[i] for i in split.test}


def test_simulated_cascades_are_labelled_and_need_no_answers():
    data = _synthetic()
    plain = Outcomes(ids=data.ids, prompts=data.prompts, models=data.models, scores=data.scores,
                     costs=data.costs)
    embedder = HashingEmbedder(dimension=64, cache_dir=False)
    with pytest.raises(OutcomesError, match="simulated:0.1"):
        evaluate(plain, ["sw"], embedder=embedder, cascades=["agreement"], progress=False)
    report = evaluate(plain, ["sw"], embedder=embedder, cascades=["simulated:0"],
                      progress=False).to_dict()
    rows = report["routers"]
    assert "cascade:simulated:0" in rows and "sw+cascade:simulated:0" in rows
    assert not report["settings"]["cascades"]["simulated:0"]["verifier_cost_counted"]
    # a perfect judge checks for free: the cascade reaches the strong model's quality for
    # cheap + wrong share x strong
    fold = report["folds"][0]["routers"]["cascade:simulated:0"]
    assert fold["max_quality"] == 1.0 and fold["cost_to_match_best"] < 0.5


@pytest.mark.parametrize("spec, message", [
    ("agreement:2", "unknown cascade"), ("simulated", "error rate"),
    ("simulated:0.9", "error rate"), ("vote", "unknown cascade"), (3, "'agreement'"),
])
def test_bad_cascade_names_are_clear_errors(spec, message):
    with pytest.raises(RouterConfigError, match=message):
        parse_cascade(spec)
    with pytest.raises(RouterConfigError, match="objective"):
        CascadeSpec("agreement", objective="cheapest")


def _write(root: Path, answers: str | None, reference: str | None) -> Path:
    root.mkdir()
    (root / "prompts.jsonl").write_text(
        "\n".join(json.dumps({"id": f"q{i}", "prompt": f"p{i}"}) for i in range(2)) + "\n")
    (root / "scores.csv").write_text("id,a,b\nq0,1,0\nq1,0,1\n")
    if answers is not None:
        (root / "answers.csv").write_text(answers, newline="")
    if reference is not None:
        (root / "reference.csv").write_text(reference)
    return root


def test_answers_and_reference_are_loaded_aligned(tmp_path):
    root = _write(tmp_path / "ok", 'id,b,a\nq1,"x, y",7\nq0,,"line\nbreak"\n',
                  "id,answer\nq0,7\nq1,x\n")
    data = load_outcomes(root)
    assert data.answers.tolist() == [["line\nbreak", ""], ["7", "x, y"]]
    assert data.reference.tolist() == ["7", "x"]
    picked = data.subset([1]).select_models(["b"])
    assert picked.answers.tolist() == [["x, y"]] and picked.reference.tolist() == ["x"]
    assert load_outcomes(_write(tmp_path / "none", None, None)).answers is None


@pytest.mark.parametrize("answers, reference, message", [
    ("id,a,c\nq0,1,2\nq1,1,2\n", None, "answers.csv:1: models"),
    ("id,a,b\nq0,1,2\n", None, "prompts.jsonl:2: id 'q1' has no row in answers.csv"),
    ("id,a,b\nq0,1,2\nq1,1\n", None, "answers.csv:3: 2 cells, header has 3"),
    ("id,a,b\nq0,1,2\nq9,1,2\n", None, "answers.csv:3: id 'q9' is not in prompts.jsonl"),
    ("id,a,b\nq0,1,2\nq0,1,2\n", None, "answers.csv:3: duplicate id"),
    (None, "id,ref\nq0,1\nq1,2\n", "reference.csv:1: header must be 'id,answer'"),
    (None, "id,answer\nq0,1\n", "id 'q1' has no row in reference.csv"),
])
def test_malformed_answers_name_file_and_line(tmp_path, answers, reference, message):
    root = _write(tmp_path / "bad", answers, reference)
    with pytest.raises(OutcomesError, match=message.replace("(", r"\(")):
        load_outcomes(root)


def test_outcomes_check_answer_shapes():
    data = _synthetic(4)
    with pytest.raises(OutcomesError, match="answers has shape"):
        Outcomes(ids=data.ids, prompts=data.prompts, models=data.models, scores=data.scores,
                 answers=data.answers[:, :2])
    with pytest.raises(OutcomesError, match="must hold str"):
        Outcomes(ids=data.ids, prompts=data.prompts, models=data.models, scores=data.scores,
                 reference=np.arange(4))


def _write_dataset(root: Path, data: Outcomes) -> Path:
    root.mkdir()
    (root / "prompts.jsonl").write_text("".join(
        json.dumps({"id": i, "prompt": p}) + "\n" for i, p in zip(data.ids, data.prompts,
                                                                  strict=True)))
    header = "id," + ",".join(data.models) + "\n"
    for name, values in (("scores", data.scores), ("costs", data.costs)):
        (root / f"{name}.csv").write_text(header + "".join(
            f"{i}," + ",".join(f"{v:g}" for v in row) + "\n"
            for i, row in zip(data.ids, values, strict=True)))
    (root / "answers.csv").write_text(header + "".join(
        f"{i}," + ",".join(row) + "\n" for i, row in zip(data.ids, data.answers, strict=True)))
    return root


def test_cli_eval_adds_cascade_rows(tmp_path, capsys):
    root = _write_dataset(tmp_path / "data", _synthetic())
    assert main(["eval", str(root), "--router", "sw", "--embedder", "hashing",
                 "--cascade", "agreement", "--quiet"]) == 0
    table = capsys.readouterr().out
    assert "| **cascade:agreement** |" in table and "| **sw+cascade:agreement** |" in table


def test_cli_eval_writes_a_two_model_report_with_simulated_cascades(tmp_path):
    root = _write_dataset(tmp_path / "data", _synthetic().select_models([CHEAP, STRONG]))
    out = tmp_path / "out"
    assert main(["eval", str(root), "--router", "sw", "--embedder", "hashing",
                 "--cascade", "simulated:0.1", "--quiet", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    rows = report["routers"]
    # the router ranks prompts (APGR); a cascade row does not, and the plot skips its share curve
    assert "apgr" in rows["sw"]["metrics"]
    assert "apgr" not in rows["sw+cascade:simulated:0.1"]["metrics"]
    assert (out / "plot.png").stat().st_size > 0


@pytest.mark.data
def test_zeroeval_answers_reproduce_the_scores():
    data = load_outcomes(shared_dataset("zeroeval-gsm8k"))
    right = (data.answers == data.reference[:, None]) & (data.answers != "")
    assert np.array_equal(right.astype(float), data.scores)
