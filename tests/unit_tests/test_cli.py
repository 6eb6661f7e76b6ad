"""The ``langroute`` command line, driven through ``main([...])``."""

from __future__ import annotations

import json

import pytest

from langroute.cli import main
from tests.conftest import shared_dataset


@pytest.fixture(scope="module")
def mtbench():
    return str(shared_dataset("routellm-mtbench"))


def test_eval_writes_report_files(mtbench, tmp_path, capsys):
    out = tmp_path / "report"
    code = main(["eval", mtbench, "--router", "sw", "--embedder", "hashing", "--folds", "3",
                 "--out", str(out), "--quiet"])
    assert code == 0
    assert "| **sw** |" in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["folds"] == 3
    assert set(report["routers"]) == {"sw"}
    assert (out / "report.md").read_text().startswith("## routellm-mtbench")
    assert (out / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_json_to_stdout(mtbench, capsys):
    assert main(["eval", mtbench, "--embedder", "hashing", "--split", "halves", "--seeds", "2",
                 "--json", "--quiet"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["settings"]["split"] == "halves"
    assert report["settings"]["seeds"] == [0, 1]


def test_bad_dataset_path_is_a_clear_error(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "missing"), "--embedder", "hashing"]) == 1
    err = capsys.readouterr().err
    assert "not a folder of outcomes" in err and "missing" in err


def test_unknown_router_lists_valid_names(mtbench, capsys):
    assert main(["eval", mtbench, "--router", "sw,bogus", "--embedder", "hashing"]) == 1
    err = capsys.readouterr().err
    assert "unknown router 'bogus'" in err and "'sw'" in err and "'mf'" in err


def test_usage_error_exits_2(capsys):
    assert main(["calibrate", "router.bin", "data"]) == 2  # needs a target
    assert "--strong-fraction" in capsys.readouterr().err


def test_train_then_calibrate(mtbench, tmp_path, capsys):
    router_file = tmp_path / "router.safetensors"
    assert main(["train", mtbench, "--embedder", "hashing", "-o", str(router_file)]) == 0
    assert router_file.exists()
    assert main(["calibrate", str(router_file), mtbench, "--strong-fraction", "0.25",
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["strong_model"] == "gpt-4-1106-preview"
    assert result["strong_fraction"] == pytest.approx(0.25, abs=0.03)
    assert main(["calibrate", str(router_file), mtbench, "--target-cost", "0.002"]) == 0
    assert "mean cost $" in capsys.readouterr().out
    assert main(["calibrate", str(tmp_path / "none.safetensors"), mtbench,
                 "--strong-fraction", "0.5"]) == 1
