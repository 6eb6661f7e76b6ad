"""``langroute train`` / ``calibrate`` on a user's own small outcomes folder (hashing embedder)."""

from __future__ import annotations

import json
from pathlib import Path

from langroute.cli import main

MODELS = ("a", "b", "c")


def _write_outcomes(folder: Path, *, prices: dict[str, dict[str, float]] | None = None) -> str:
    folder.mkdir()
    n = 40
    with (folder / "prompts.jsonl").open("w") as f:
        for i in range(n):
            topic = ("maths", "poetry", "code")[i % 3]
            f.write(json.dumps({"id": f"p{i}", "prompt": f"question {i} about {topic}"}) + "\n")
    rows = [f"p{i},{int(i % 4 != 0)},{i % 2},{(i // 3) % 2}" for i in range(n)]
    (folder / "scores.csv").write_text("id," + ",".join(MODELS) + "\n" + "\n".join(rows) + "\n")
    costs = [f"p{i},0.01,0.001,0.005" for i in range(n)]
    (folder / "costs.csv").write_text("id," + ",".join(MODELS) + "\n" + "\n".join(costs) + "\n")
    if prices is not None:
        (folder / "models.json").write_text(json.dumps(prices))
    return str(folder)


def test_calibrate_prices_only_the_models_picked_with_models(tmp_path, capsys):
    # models.json prices a and b only: c is in the dataset but not a candidate.
    data = _write_outcomes(tmp_path / "data", prices={
        "a": {"input_usd_per_mtok": 1.0, "output_usd_per_mtok": 2.0},
        "b": {"input_usd_per_mtok": 0.1, "output_usd_per_mtok": 0.2},
    })
    router = tmp_path / "r.router"
    assert main(["train", data, "--router", "sw", "--embedder", "hashing", "-o", str(router),
                 "--quiet"]) == 0
    capsys.readouterr()
    code = main(["calibrate", str(router), data, "--models", "a,b", "--output-tokens", "10",
                 "--strong-fraction", "0.3", "--json", "--quiet"])
    captured = capsys.readouterr()
    assert code == 0, captured.err  # was: "models ['c'] have no input_usd_per_mtok ..."
    result = json.loads(captured.out)
    assert result["models"] == ["b", "a"]
    assert result["costs"] == "estimated from models.json mean costs"
    # every model still needs prices when none is picked
    assert main(["calibrate", str(router), data, "--output-tokens", "10",
                 "--strong-fraction", "0.3", "--quiet"]) == 1
    assert "models ['c'] have no input_usd_per_mtok" in capsys.readouterr().err


def test_tune_with_online_is_refused_before_the_data_is_read(tmp_path, capsys):
    # A tuned router has no partial_fit: before, the error came after reading (and embedding)
    # the whole dataset and named routers "sw (tuned)" the user never asked for.
    assert main(["eval", str(tmp_path / "no-data"), "--router", "sw", "--tune", "--online",
                 "--embedder", "hashing", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "--online" in err and "--tune" in err and "not a folder" not in err


def test_eval_reports_record_the_command_that_made_them(tmp_path, capsys):
    import langroute

    data = _write_outcomes(tmp_path / "data", prices={
        name: {"input_usd_per_mtok": 1.0, "output_usd_per_mtok": float(k + 1)}
        for k, name in enumerate(MODELS)})
    out = tmp_path / "out"
    argv = ["eval", data, "--router", "sw:gamma=10", "--embedder", "hashing", "--folds", "2",
            "--output-tokens", "10", "--out", str(out), "--no-plot", "--quiet"]
    assert main(argv) == 0
    capsys.readouterr()
    # estimated costs (--output-tokens) leave no other trace in the report
    run = json.loads((out / "report.json").read_text())["run"]
    assert run["command"].startswith("langroute eval ")
    assert "--output-tokens 10" in run["command"] and "sw:gamma=10" in run["command"]
    assert run["langroute_version"] == langroute.__version__
    assert run["command"] in (out / "report.md").read_text()
