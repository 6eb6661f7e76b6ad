"""Outcome files: every malformed case names its file and line; every real dataset loads."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from langroute import (
    Battles,
    Outcomes,
    OutcomesError,
    load_battles,
    load_outcomes,
    pairwise_counts,
)
from tests.conftest import shared_dataset

PROMPTS = "\n".join(
    json.dumps(row)
    for row in [
        {"id": "p1", "prompt": "What is 2 + 2?", "task": "math"},
        {"id": "p2", "prompt": "Write a haiku about rain.", "task": "poetry"},
        {"id": "p3", "prompt": "Name the capital of France."},
    ]
) + "\n"
SCORES = "id,big,small\np1,1,0\np2,0.5,\np3,1,1\n"
COSTS = "id,small,big\np1,0.001,0.01\np2,0.002,0.02\np3,,0.03\n"
PRICES = {
    "big": {"input_usd_per_mtok": 10.0, "output_usd_per_mtok": 30.0, "price_source": "test"},
    "small": {"input_usd_per_mtok": 0.5, "output_usd_per_mtok": 1.5},
}


def write(folder: Path, *, prompts=PROMPTS, scores=SCORES, costs=None, models=None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in [("prompts.jsonl", prompts), ("scores.csv", scores),
                          ("costs.csv", costs), ("models.json", models)]:
        if content is None:
            continue
        if isinstance(content, dict):
            content = json.dumps(content, indent=1)
        mode = "wb" if isinstance(content, bytes) else "w"
        with open(folder / name, mode, **({} if mode == "wb" else {"encoding": "utf-8"})) as fh:
            fh.write(content)
    return folder


def test_valid_folder_loads_aligned_arrays(tmp_path):
    out = load_outcomes(write(tmp_path, costs=COSTS, models=PRICES))
    assert out.ids == ["p1", "p2", "p3"]
    assert out.models == ("big", "small")
    np.testing.assert_array_equal(out.scores[[0, 2]], [[1, 0], [1, 1]])
    assert out.scores[1, 0] == 0.5 and math.isnan(out.scores[1, 1])
    # costs.csv lists the models in another order: columns are realigned to scores.csv's.
    np.testing.assert_array_equal(out.costs[:2], [[0.01, 0.001], [0.02, 0.002]])
    assert math.isnan(out.costs[2, 1])
    assert out.tasks == ["math", "poetry", None]
    assert out.prices["big"]["input_usd_per_mtok"] == 10.0
    np.testing.assert_allclose(out.mean_scores(), [2.5 / 3, 0.5])
    np.testing.assert_allclose(out.mean_costs(), [0.02, 0.0015])


def test_optional_files_may_be_absent(tmp_path):
    out = load_outcomes(write(tmp_path))
    assert out.costs is None and out.mean_costs() is None and out.prices == {}


def test_bom_crlf_and_blank_lines_are_tolerated(tmp_path):
    prompts = "\ufeff" + PROMPTS.replace("\n", "\r\n") + "\r\n"
    scores = "\ufeff" + SCORES.replace("\n", "\r\n") + "\r\n"
    out = load_outcomes(write(tmp_path, prompts=prompts, scores=scores))
    assert out.ids == ["p1", "p2", "p3"] and out.models == ("big", "small")


def test_prompt_text_with_unicode_line_separators_stays_one_line(tmp_path):
    prompts = json.dumps({"id": "p1", "prompt": "a\u2028b\x85c"}, ensure_ascii=False) + "\n"
    out = load_outcomes(write(tmp_path, prompts=prompts, scores="id,big,small\np1,1,0\n"))
    assert out.prompts == ["a\u2028b\x85c"]


def _bad(tmp_path, **files):
    with pytest.raises(OutcomesError) as info:
        load_outcomes(write(tmp_path, **files))
    return info.value


PROMPT_LINES = PROMPTS.splitlines()


@pytest.mark.parametrize(
    ("files", "file", "line", "fragment"),
    [
        ({"prompts": PROMPT_LINES[0] + '\n{"prompt": "no id"}\n'}, "prompts.jsonl", 2,
         "missing id"),
        ({"prompts": '{"id": "", "prompt": "x"}\n'}, "prompts.jsonl", 1, "missing id"),
        ({"prompts": '{"id": [1], "prompt": "x"}\n'}, "prompts.jsonl", 1, "id must be a string"),
        ({"prompts": PROMPTS + PROMPT_LINES[1] + "\n"}, "prompts.jsonl", 4, "duplicate id 'p2'"),
        ({"prompts": PROMPT_LINES[0] + "\n{not json\n"}, "prompts.jsonl", 2, "invalid JSON"),
        ({"prompts": '{"id": "p1", "prompt": NaN}\n'}, "prompts.jsonl", 1, "NaN is not allowed"),
        ({"prompts": "[" * 100_000 + "]" * 100_000 + "\n"}, "prompts.jsonl", 1,
         "nested too deeply"),
        ({"models": "[" * 100_000 + "]" * 100_000}, "models.json", None, "nested too deeply"),
        ({"prompts": "[1, 2]\n"}, "prompts.jsonl", 1, "expected a JSON object"),
        ({"prompts": '{"id": "p1"}\n'}, "prompts.jsonl", 1, "prompt"),
        ({"prompts": '{"id": "p1", "prompt": ""}\n'}, "prompts.jsonl", 1, "empty"),
        ({"prompts": '{"id": "p1", "prompt": "x", "task": 3}\n'}, "prompts.jsonl", 1, "task"),
        ({"prompts": b'{"id": "p1", "prompt": "ok"}\n{"id": "p2", "prompt": "\xff"}\n'},
         "prompts.jsonl", 2, "not UTF-8"),
        ({"prompts": "\n\n"}, "prompts.jsonl", None, "no prompts"),
        ({"prompts": ""}, "prompts.jsonl", None, "no prompts"),
        ({"scores": ""}, "scores.csv", 1, "empty file"),
        ({"scores": "model,big,small\np1,1,0\n"}, "scores.csv", 1, "header"),
        ({"scores": "id\np1\n"}, "scores.csv", 1, "header"),
        ({"scores": "id,big,big\np1,1,0\n"}, "scores.csv", 1, "duplicate model"),
        ({"scores": "id,big,\np1,1,0\n"}, "scores.csv", 1, "empty model name"),
        ({"scores": "id,big,small\np1,1,0\np2,1\np3,1,1\n"}, "scores.csv", 3, "2 cells"),
        ({"scores": "id,big,small\np1,1,0,1\n"}, "scores.csv", 2, "4 cells"),
        ({"scores": "id,big,small\np1,1,0\np2,1.5,0\np3,1,1\n"}, "scores.csv", 3, "outside [0, 1]"),
        ({"scores": "id,big,small\np1,1,-0.1\n"}, "scores.csv", 2, "outside [0, 1]"),
        ({"scores": "id,big,small\np1,1,nan\n"}, "scores.csv", 2, "not finite"),
        ({"scores": "id,big,small\np1,inf,0\n"}, "scores.csv", 2, "not finite"),
        ({"scores": "id,big,small\np1,1,yes\n"}, "scores.csv", 2, "not a number"),
        ({"scores": "id,big,small\n,1,0\n"}, "scores.csv", 2, "missing id"),
        ({"scores": SCORES + "p9,1,1\n"}, "scores.csv", 5, "'p9' is not in prompts.jsonl"),
        ({"scores": SCORES + "p1,0,0\n"}, "scores.csv", 5, "duplicate id 'p1'"),
        ({"scores": 'id,big,small\np1,1,"0\n'}, "scores.csv", 2, "malformed CSV"),
        ({"scores": "id,big,small\np1,1,\np2,0,\np3,1,\n"}, "scores.csv", 1,
         "'small' has no measured"),
        ({"scores": "id,big,small\np1,1,0\np3,1,1\n"}, "prompts.jsonl", 2,
         "'p2' has no row in scores.csv"),
        ({"costs": "id,big,other\np1,1,1\np2,1,1\np3,1,1\n"}, "costs.csv", 1, "differ"),
        ({"costs": "id,big,small\np1,1,1\np2,1,1\n"}, "prompts.jsonl", 3, "no row in costs.csv"),
        ({"costs": "id,big,small\np1,1,-1\np2,1,1\np3,1,1\n"}, "costs.csv", 2, "negative cost"),
        ({"costs": "id,big,small\np1,1,1\np2,1,1\np3,1,1\np4,1,1\n"}, "costs.csv", 5, "'p4'"),
        ({"models": {"big": {}, "huge": {"input_usd_per_mtok": 1}}}, "models.json", 3, "'huge'"),
        ({"models": '{"big": {"input_usd_per_mtok": 1},\n'}, "models.json", 2, "invalid JSON"),
        ({"models": '{"big": {"input_usd_per_mtok": Infinity}}'}, "models.json", None, "Infinity"),
        ({"models": "[1, 2]"}, "models.json", 1, "expected an object"),
        ({"models": {"big": 3}}, "models.json", 2, "expected an object of prices"),
        ({"models": {"big": {"input_usd_per_mtok": -1}}}, "models.json", 2, ">= 0"),
        ({"models": {"big": {"output_usd_per_mtok": "1"}}}, "models.json", 2, "a number"),
    ],
)
def test_malformed_files_name_file_and_line(tmp_path, files, file, line, fragment):
    error = _bad(tmp_path, **files)
    assert Path(error.path).name == file
    assert error.line == line
    assert fragment in str(error)
    assert (f"{file}:{line}:" if line else f"{file}: ") in str(error)


@pytest.mark.parametrize("missing", ["prompts.jsonl", "scores.csv"])
def test_missing_required_file(tmp_path, missing):
    folder = write(tmp_path)
    (folder / missing).unlink()
    with pytest.raises(OutcomesError, match=f"missing {missing}") as info:
        load_outcomes(folder)
    assert Path(info.value.path).name == missing


def test_not_a_folder(tmp_path):
    with pytest.raises(OutcomesError, match="not a folder"):
        load_outcomes(tmp_path / "nowhere")


def test_outcomes_constructor_validates_values():
    with pytest.raises(OutcomesError, match=r"\[0, 1\]"):
        Outcomes(ids=["a"], prompts=["x"], models=("m", "n"), scores=np.array([[2.0, 0.0]]))
    with pytest.raises(OutcomesError, match="costs must be finite"):
        Outcomes(ids=["a"], prompts=["x"], models=("m", "n"), scores=np.zeros((1, 2)),
                 costs=np.array([[np.inf, 1.0]]))
    with pytest.raises(OutcomesError, match="shape"):
        Outcomes(ids=["a"], prompts=["x"], models=("m",), scores=np.zeros((1, 2)))
    with pytest.raises(OutcomesError, match="duplicate model"):
        Outcomes(ids=["a"], prompts=["x"], models=("m", "m"), scores=np.zeros((1, 2)))
    # A single str was read as its letters: models "xy" became the models "x" and "y".
    with pytest.raises(TypeError, match="models must be a sequence of str, not a single str"):
        Outcomes(ids=["a"], prompts=["x"], models="mn", scores=np.zeros((1, 2)))
    with pytest.raises(TypeError, match="prompts must be a sequence of str"):
        Outcomes(ids=["a", "b"], prompts="xy", models=("m", "n"), scores=np.zeros((2, 2)))


def test_subset_and_select_models_keep_rows_aligned(tmp_path):
    out = load_outcomes(write(tmp_path, costs=COSTS, models=PRICES))
    sub = out.subset([2, 0])
    assert sub.ids == ["p3", "p1"] and sub.tasks == [None, "math"]
    np.testing.assert_array_equal(sub.scores, out.scores[[2, 0]])
    masked = out.subset(np.array([False, True, True]))
    assert masked.ids == ["p2", "p3"]
    swapped = out.select_models(["small", "big"])
    np.testing.assert_array_equal(swapped.costs, out.costs[:, ::-1])
    assert list(swapped.prices) == ["big", "small"] and swapped.models == ("small", "big")
    with pytest.raises(OutcomesError, match="unknown models"):
        out.select_models(["big", "tiny"])


def test_subset_takes_no_rows_and_slices(tmp_path):
    # An empty list of rows (e.g. a filter that matched nothing) and a slice raised numpy's
    # "arrays used as indices must be of integer (or boolean) type".
    out = load_outcomes(write(tmp_path, costs=COSTS, models=PRICES))
    for empty in ([], np.array([], dtype=int), np.zeros(3, dtype=bool)):
        none = out.subset(empty)
        assert len(none) == 0 and none.scores.shape == (0, 2) and none.costs.shape == (0, 2)
    assert out.subset(slice(1, None)).ids == ["p2", "p3"]
    assert out.subset(slice(None, None, -2)).ids == ["p3", "p1"]
    for wrong in ([0.0, 1.0], ["p1"], [[0, 1]]):
        with pytest.raises(TypeError, match="row indices .ints., a boolean mask or a slice"):
            out.subset(wrong)


def test_estimated_costs_follow_the_documented_formula(tmp_path):
    out = load_outcomes(write(tmp_path, models=PRICES))
    est = out.with_estimated_costs(100)
    tokens = np.ceil(np.array([len(p) for p in out.prompts]) / 4)
    np.testing.assert_allclose(est.costs[:, 0], (tokens * 10.0 + 100 * 30.0) / 1e6)
    np.testing.assert_allclose(est.costs[:, 1], (tokens * 0.5 + 100 * 1.5) / 1e6)
    per_prompt = out.with_estimated_costs([0, 10, 20])
    expected = (tokens * 0.5 + np.array([0, 10, 20]) * 1.5) / 1e6
    np.testing.assert_allclose(per_prompt.costs[:, 1], expected)
    with pytest.raises(ValueError, match="output_tokens"):
        out.with_estimated_costs([1, 2])
    with pytest.raises(OutcomesError, match="'small'"):
        load_outcomes(write(tmp_path / "b", models={"big": PRICES["big"]})).with_estimated_costs(1)


def test_bad_output_tokens_are_outcomes_errors(tmp_path):
    """A LangrouteError (still a ValueError), so callers such as the CLI report it cleanly."""
    out = load_outcomes(write(tmp_path, models=PRICES))
    for bad in (-5, math.nan, math.inf, [1, 2]):
        with pytest.raises(OutcomesError, match="output_tokens"):
            out.with_estimated_costs(bad)


def test_pairwise_counts_from_scores(tmp_path):
    out = load_outcomes(write(tmp_path))
    prompts, counts = pairwise_counts(out)
    assert prompts == out.prompts and counts.shape == (3, 2, 2)
    np.testing.assert_array_equal(counts[0], [[0, 1], [0, 0]])  # big won
    np.testing.assert_array_equal(counts[1], [[0, 0], [0, 0]])  # small not measured
    np.testing.assert_array_equal(counts[2], [[0, 0.5], [0.5, 0]])  # tie


# -- battles ---------------------------------------------------------------------------------------
def _battles(tmp_path, rows) -> Path:
    path = tmp_path / "battles.jsonl"
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_battles_with_ties_become_grouped_counts(tmp_path):
    rows = [
        {"prompt": "q1", "model_a": "gpt", "model_b": "mix", "winner": "model_a"},
        {"prompt": "q1", "model_a": "mix", "model_b": "gpt", "winner": "model_a"},
        {"prompt": "q2", "model_a": "gpt", "model_b": "mix", "winner": "tie"},
        {"prompt": "q2", "model_a": "gpt", "model_b": "llama", "winner": "tie (bothbad)"},
        {"prompt": "q2", "model_a": "llama", "model_b": "mix", "winner": "model_b"},
    ]
    battles = load_battles(_battles(tmp_path, rows))
    assert battles.models == ("gpt", "mix", "llama") and len(battles) == 5
    prompts, counts = pairwise_counts(battles)
    assert prompts == ["q1", "q2"]
    np.testing.assert_array_equal(counts[0], [[0, 1, 0], [1, 0, 0], [0, 0, 0]])
    np.testing.assert_array_equal(counts[1], [[0, 0.5, 0.5], [0.5, 0, 1], [0.5, 0, 0]])
    fixed = load_battles(_battles(tmp_path, rows), models=["llama", "mix", "gpt"])
    assert fixed.models == ("llama", "mix", "gpt")


@pytest.mark.parametrize(
    ("row", "fragment"),
    [
        ("{oops", "invalid JSON"),
        ('"just a string"', "expected a JSON object"),
        ({"prompt": "q", "model_a": "gpt", "winner": "model_a"}, "'model_b'"),
        ({"prompt": "", "model_a": "gpt", "model_b": "mix", "winner": "tie"}, "'prompt'"),
        ({"prompt": "q", "model_a": "gpt", "model_b": "gpt", "winner": "tie"}, "both 'gpt'"),
        ({"prompt": "q", "model_a": "gpt", "model_b": "mix", "winner": "draw"}, "'draw'"),
        ({"prompt": "q", "model_a": "gpt", "model_b": "claude", "winner": "tie"},
         "unknown model 'claude'"),
    ],
)
def test_malformed_battles_name_the_line(tmp_path, row, fragment):
    good = {"prompt": "q0", "model_a": "gpt", "model_b": "mix", "winner": "model_b"}
    path = _battles(tmp_path, [good, row])
    with pytest.raises(OutcomesError) as info:
        load_battles(path, models=["gpt", "mix"])
    assert info.value.line == 2 and fragment in str(info.value)
    assert str(info.value).startswith(f"{path}:2:")


def _direct_battles(**changes):
    fields = {"prompts": ["q0", "q1"], "models": ("gpt", "mix"), "prompt_index": [0, 1],
              "model_a": [0, 1], "model_b": [1, 0], "result": [1.0, 0.25]}
    return Battles(**{**fields, **changes})


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"result": [3.0, 0.5]}, "battle 0: result must lie in [0, 1]"),
        ({"result": [1.0, np.nan]}, "battle 1: result must lie in [0, 1]"),
        ({"model_b": [0, 0]}, "battle 0: model_a and model_b are both 'gpt'"),
        ({"model_a": [0, 2]}, "battle 1: model_a must lie in [0, 2)"),
        ({"model_b": [-1, 0]}, "battle 0: model_b must lie in [0, 2)"),
        ({"prompt_index": [0, 2]}, "battle 1: prompt_index must lie in [0, 2)"),
        ({"result": [1.0]}, "result has shape (1,), expected (2,)"),
        ({"model_b": [1]}, "model_b has 1 entries for 2 battles"),
        ({"model_a": [0.0, 1.0]}, "model_a must be a 1-D array of integer indices"),
        ({"models": ("gpt", "gpt")}, "duplicate model names"),
    ],
)
def test_battles_constructor_validates_like_load_battles(changes, fragment):
    """Routers sum battles into win counts unchecked, so a directly built Battles is checked."""
    with pytest.raises(OutcomesError) as info:
        _direct_battles(**changes)
    assert fragment in str(info.value)


def test_battles_constructor_accepts_fractional_shares_and_no_battles():
    """Feedback imputed from scores gives shares between 0 and 1, and may give no battle."""
    battles = _direct_battles()
    assert battles.prompt_index.dtype == np.int64 and battles.result[1] == 0.25
    empty = Battles(prompts=[], models=("gpt", "mix"), prompt_index=np.zeros(0, np.int64),
                    model_a=np.zeros(0, np.int64), model_b=np.zeros(0, np.int64),
                    result=np.zeros(0))
    assert len(empty) == 0


def test_empty_or_missing_battles_file(tmp_path):
    with pytest.raises(OutcomesError, match="no battles"):
        load_battles(_battles(tmp_path, []))
    with pytest.raises(OutcomesError, match="no such battles file"):
        load_battles(tmp_path / "missing.jsonl")


# -- the real datasets -----------------------------------------------------------------------------
REAL = {
    "routellm-gsm8k": (1319, 2), "routellm-mmlu": (14042, 2), "routellm-mtbench": (80, 2),
    "zeroeval-gsm8k": (1319, 17), "zeroeval-math-l5": (721, 18), "zeroeval-crux": (800, 19),
    "alpacaeval2": (805, 8), "routerbench-slice": (3150, 11),
}


@pytest.mark.data
@pytest.mark.parametrize("name", sorted(REAL))
def test_every_real_dataset_loads_complete(name):
    out = load_outcomes(shared_dataset(name))
    assert out.scores.shape == REAL[name]
    header = (shared_dataset(name) / "scores.csv").read_text(encoding="utf-8").split("\n")[0]
    assert list(out.models) == header.split(",")[1:]
    assert not np.isnan(out.scores).any() and not np.isnan(out.costs).any()
    assert out.scores.min() >= 0 and out.scores.max() <= 1 and out.costs.min() >= 0
    assert set(out.prices) == set(out.models) and out.tasks is not None
    assert all(isinstance(p, str) and p for p in out.prompts)


@pytest.mark.data
def test_routellm_pair_names_and_accuracy():
    out = load_outcomes(shared_dataset("routellm-gsm8k"))
    assert out.models == ("gpt-4-1106-preview", "mixtral-8x7b-instruct-v0.1")
    strong, weak = out.mean_scores()
    assert 0.5 < weak < strong <= 1.0


@pytest.mark.data
@pytest.mark.parametrize(
    ("name", "output_tokens"), [("routellm-mmlu", 1), ("routellm-mtbench", 256)]
)
def test_estimated_costs_reproduce_the_datasets_costs(name, output_tokens):
    # Their READMEs state the output length the recorded costs assume.
    out = load_outcomes(shared_dataset(name))
    np.testing.assert_allclose(out.with_estimated_costs(output_tokens).costs, out.costs, rtol=1e-6)
