"""The ``langroute`` command line, driven through ``main([...])``."""

from __future__ import annotations

import errno
import functools
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

import langroute
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


# -- issue 8: outputs checked first, calibration that matches the router, eval that survives ----
class _TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(scope="module")
def mtbench_router(mtbench, tmp_path_factory):
    path = tmp_path_factory.mktemp("router") / "mtbench.safetensors"
    assert main(["train", mtbench, "--embedder", "hashing", "-o", str(path), "--quiet"]) == 0
    return str(path)


def test_train_checks_the_output_before_reading_or_fitting(tmp_path, capsys):
    # The dataset does not exist either: the output is what gets checked first.
    code = main(["train", str(tmp_path / "no-data"), "--embedder", "hashing",
                 "-o", "/nonexistent/dir/x"])
    assert code == 1
    err = capsys.readouterr().err
    assert "folder /nonexistent/dir does not exist" in err and "no-data" not in err
    assert main(["train", str(tmp_path / "no-data"), "-o", str(tmp_path)]) == 1
    assert "it is a folder" in capsys.readouterr().err


def test_eval_checks_out_before_reading(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert main(["eval", str(tmp_path / "no-data"), "--out", str(blocker / "sub")]) == 1
    err = capsys.readouterr().err
    assert "cannot write reports" in err and "no-data" not in err


def test_calibrate_refuses_a_dataset_of_other_models(mtbench_router, capsys):
    other = str(shared_dataset("zeroeval-math-l5"))
    assert main(["calibrate", mtbench_router, other, "--strong-fraction", "0.3"]) == 1
    err = capsys.readouterr().err
    assert "has no outcomes for ['gpt-4-1106-preview', 'mixtral-8x7b-instruct-v0.1']" in err


def test_calibrate_without_a_dataset_uses_the_kept_scores(mtbench_router, capsys):
    assert main(["calibrate", mtbench_router, "--strong-fraction", "0.25", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["calibrated_on"].startswith("the router's out-of-fold")
    assert result["n_prompts"] == 80
    assert result["strong_fraction"] == pytest.approx(0.25, abs=1 / 80)
    assert main(["calibrate", mtbench_router, "--target-cost", "0.002", "--output-tokens",
                 "100"]) == 1
    assert "give a DATASET" in capsys.readouterr().err


def test_calibrate_uses_models_and_output_tokens(tmp_path, capsys):
    data = str(shared_dataset("zeroeval-math-l5"))
    router = tmp_path / "math.safetensors"
    assert main(["train", data, "--embedder", "hashing", "-o", str(router), "--quiet"]) == 0
    pair = ["gpt-4o-mini-2024-07-18", "gpt-4o-2024-08-06"]
    assert main(["calibrate", str(router), data, "--models", ",".join(pair),
                 "--strong-fraction", "0.4", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["models"] == pair and result["strong_model"] == "gpt-4o-2024-08-06"
    assert result["strong_fraction"] == pytest.approx(0.4, abs=1 / 721)
    costs = []
    for tokens in ("10", "2000"):
        assert main(["calibrate", str(router), data, "--models", ",".join(pair),
                     "--strong-fraction", "0.4", "--output-tokens", tokens, "--json"]) == 0
        result = json.loads(capsys.readouterr().out)
        assert result["costs"].startswith("estimated from models.json")
        costs.append(result["mean_cost"])
    assert costs[1] > costs[0] * 5  # more output tokens, pricier calls


def test_eval_reports_the_routers_that_worked_when_one_fails(mtbench, tmp_path, capsys):
    out = tmp_path / "report"
    # 80 prompts, 5 folds: kNN's default k=100 exceeds the 64 training prompts of a fold.
    code = main(["eval", mtbench, "--router", "sw:gamma=10,knn,knn:k=8", "--embedder", "hashing",
                 "--out", str(out), "--no-plot", "--quiet"])
    assert code == 1
    captured = capsys.readouterr()
    assert "router knn failed" in captured.err and "k=100" in captured.err
    report = json.loads((out / "report.json").read_text())
    assert set(report["routers"]) == {"sw(gamma=10)", "knn(k=8)"}
    assert report["settings"]["routers"]["sw(gamma=10)"]["params"]["gamma"] == 10
    assert report["settings"]["routers"]["knn(k=8)"]["params"]["k"] == 8
    assert report["failed"]["knn"]["error"] == "RouterConfigError"
    markdown = (out / "report.md").read_text()
    assert "| **knn** | failed |" in markdown
    row = next(line for line in markdown.splitlines() if line.startswith("| **sw(gamma=10)** |"))
    cost, quality = row.split(" | ")[1:3]
    assert cost.startswith("$") and quality.startswith("0.")


def test_eval_online_names_the_router_that_failed_not_a_missing_plot(mtbench, tmp_path,
                                                                   capsys):
    # kNN's default k=100 exceeds a fold's 64 training prompts: the only online router fails.
    out = tmp_path / "report"
    code = main(["eval", mtbench, "--router", "knn", "--online", "--embedder", "hashing",
                 "--out", str(out), "--quiet"])
    assert code == 1
    err = capsys.readouterr().err
    assert "router knn failed" in err and "k=100" in err
    assert "online.png not written: no router has online rows" in err
    assert (out / "plot.png").exists() and not (out / "online.png").exists()


def test_router_parameters_are_checked_before_the_data(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "no-data"), "--router", "knn:kk=3"]) == 1
    assert "no parameter 'kk'" in capsys.readouterr().err
    assert main(["train", str(tmp_path / "no-data"), "--router", "knn:k=-1", "-o",
                 str(tmp_path / "r")]) == 1
    assert "k" in capsys.readouterr().err
    assert main(["train", str(tmp_path / "no-data"), "--router", "sw,knn", "-o",
                 str(tmp_path / "r")]) == 1
    assert "exactly one router" in capsys.readouterr().err


def test_out_without_matplotlib_still_writes_the_reports(mtbench, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    out = tmp_path / "report"
    code = main(["eval", mtbench, "--embedder", "hashing", "--out", str(out), "--quiet"])
    assert code == 1
    assert (out / "report.json").exists() and (out / "report.md").exists()
    assert not (out / "plot.png").exists()
    captured = capsys.readouterr()
    assert "warning: plot.png not written" in captured.err and "langroute[plot]" in captured.err
    from langroute.evaluation import DEFAULT_ROUTER  # eval without --router: the default

    assert f"| **{DEFAULT_ROUTER}** |" in captured.out


def test_help_lists_names_without_rest_markup(capsys):
    for argv in (["--help"], ["eval", "--help"], ["train", "--help"], ["calibrate", "--help"]):
        assert main(argv) == 0
        text = capsys.readouterr().out
        assert "`" not in text
        if argv[0] != "calibrate":
            assert all(name in text for name in ("sw", "knn", "cluster", "mf", "minilm",
                                                 "hashing"))
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"langroute {langroute.__version__}"


def test_train_and_calibrate_show_progress_on_a_terminal(mtbench, tmp_path, monkeypatch):
    stderr = _TTY()
    monkeypatch.setattr(sys, "stderr", stderr)
    router = tmp_path / "r.safetensors"
    assert main(["train", mtbench, "--embedder", "hashing", "-o", str(router)]) == 0
    assert "embed (hashing)" in stderr.getvalue() and "80/80" in stderr.getvalue()
    assert main(["calibrate", str(router), mtbench, "--strong-fraction", "0.5"]) == 0
    assert "score" in stderr.getvalue().split("wrote")[-1]
    quiet = _TTY()
    monkeypatch.setattr(sys, "stderr", quiet)
    assert main(["train", mtbench, "--embedder", "hashing", "-o", str(router), "--quiet"]) == 0
    assert "embed (" not in quiet.getvalue()


def test_bradley_terry_non_convergence_is_a_clean_cli_error(mtbench, tmp_path, capsys,
                                                             monkeypatch):
    from langroute.routers import _sw, fit_bradley_terry

    monkeypatch.setattr(_sw, "fit_bradley_terry",
                        functools.partial(fit_bradley_terry, max_iter=1))
    code = main(["train", mtbench, "--embedder", "hashing", "-o", str(tmp_path / "r")])
    assert code == 1
    assert "error: Bradley-Terry did not converge" in capsys.readouterr().err


# -- audit: clean errors and CLI remedies instead of tracebacks and Python-only advice ---------
@pytest.mark.parametrize(
    "argv",
    [["eval", "DATA", "--embedder", "hashing", "--output-tokens", "-5"],
     ["train", "DATA", "--embedder", "hashing", "-o", "OUT", "--output-tokens", "nan"],
     ["calibrate", "ROUTER", "DATA", "--strong-fraction", "0.3", "--output-tokens", "-1"]],
)
def test_bad_output_tokens_is_a_usage_error_not_a_traceback(mtbench, tmp_path, capsys, argv):
    """A negative or NaN token count is refused before any work, as usage errors are."""
    argv = [{"DATA": mtbench, "OUT": str(tmp_path / "r"), "ROUTER": str(tmp_path / "r")}
            .get(a, a) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"langroute {argv[0]}: error: argument --output-tokens" in err
    assert "finite number >= 0" in err


def test_stacked_bases_that_are_not_pairs_are_a_clean_error(tmp_path, capsys):
    """stacked:bases=1 is checked with the other parameters, before the data is read."""
    assert main(["eval", str(tmp_path / "no-data"), "--router", "stacked:bases=1",
                 "--embedder", "hashing"]) == 1
    assert "error: bases must be a list of (kind, params dict) pairs" in capsys.readouterr().err


@pytest.fixture
def mtbench_without_costs(mtbench, tmp_path):
    folder = tmp_path / "no-costs"
    folder.mkdir()
    for name in ("prompts.jsonl", "scores.csv", "models.json"):
        (folder / name).write_bytes((Path(mtbench) / name).read_bytes())
    return str(folder)


def test_a_router_trained_without_costs_gets_the_cli_remedy(mtbench, mtbench_without_costs,
                                                             tmp_path, capsys):
    """train says the router has no costs; calibrate names DATASET and --output-tokens, which
    work, not the Python-only costs= argument."""
    router = str(tmp_path / "r.safetensors")
    assert main(["train", mtbench_without_costs, "--embedder", "hashing", "-o", router,
                 "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "note: " in err and "no costs.csv" in err and "--output-tokens" in err
    assert main(["calibrate", router, "--strong-fraction", "0.3"]) == 1
    err = capsys.readouterr().err
    assert "trained without costs" in err and "give a DATASET" in err
    assert "--output-tokens N" in err and "costs=" not in err
    assert main(["calibrate", router, mtbench_without_costs, "--strong-fraction", "0.3"]) == 1
    assert "trained without costs" in capsys.readouterr().err
    assert main(["calibrate", router, mtbench_without_costs, "--strong-fraction", "0.3",
                 "--output-tokens", "100", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["costs"].startswith("estimated from models.json")
    assert main(["calibrate", router, mtbench, "--strong-fraction", "0.3"]) == 0


def test_a_router_without_kept_scores_is_told_to_give_a_dataset(mtbench, tmp_path, capsys):
    from langroute import SWRouter, load_outcomes
    from langroute.embeddings import HashingEmbedder
    from langroute.routers._calibration_scores import calibration_scores_disabled

    with calibration_scores_disabled():
        router = SWRouter(HashingEmbedder()).fit(load_outcomes(mtbench))
    path = tmp_path / "r.safetensors"
    router.save(path)
    assert main(["calibrate", str(path), "--strong-fraction", "0.3"]) == 1
    err = capsys.readouterr().err
    assert "kept no calibration scores" in err and "give a DATASET argument" in err
    assert "calibrate_threshold" not in err
    assert main(["calibrate", str(path), mtbench, "--strong-fraction", "0.3"]) == 0


def test_output_names_the_os_refuses_are_clean_errors(tmp_path, capsys):
    """A name past the file system's limit fails before any work, naming the OS's reason."""
    long = "x" * 300
    assert main(["eval", str(tmp_path / "no-data"), "--out", str(tmp_path / long)]) == 1
    err = capsys.readouterr().err
    assert "langroute eval: error: cannot write reports to" in err and "too long" in err
    assert main(["train", str(tmp_path / "no-data"), "-o", str(tmp_path / long)]) == 1
    err = capsys.readouterr().err
    assert "langroute train: error: cannot write" in err and "too long" in err


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device", "report.json")


def test_reports_that_cannot_be_saved_still_print_the_results(mtbench, tmp_path, capsys,
                                                              monkeypatch):
    """The evaluation is done: print its table, then say the files were not written."""
    from langroute.evaluation import EvaluationReport

    monkeypatch.setattr(EvaluationReport, "save", _no_space)
    code = main(["eval", mtbench, "--router", "sw", "--embedder", "hashing", "--folds", "2",
                 "--out", str(tmp_path / "report"), "--quiet"])
    assert code == 1
    captured = capsys.readouterr()
    assert "| **sw** |" in captured.out
    assert "error: the evaluation finished, but its results were not written to" in captured.err
    assert "No space left on device" in captured.err


def test_a_router_that_cannot_be_saved_is_a_clean_error(mtbench, tmp_path, capsys):
    """A real failed write (/proc takes no new files, even from root), not a stand-in:
    safetensors raises its own error type there, which once escaped as a traceback."""
    if not Path("/proc").is_dir():
        pytest.skip("needs Linux's /proc: a folder that exists but takes no new file")
    assert main(["train", mtbench, "--embedder", "hashing", "-o", "/proc/langroute-router",
                 "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "error: the router was trained, but not written to" in err
    assert "No such file or directory" in err


def test_online_share_without_online_is_an_error(tmp_path, capsys):
    """Like --tune-max-prompts without --tune: an option that would be silently ignored."""
    assert main(["eval", str(tmp_path / "no-data"), "--online-share", "0.5"]) == 1
    assert "--online-share applies only with --online" in capsys.readouterr().err


def test_no_plot_without_out_is_an_error(tmp_path, capsys):
    """Like --online-share without --online: an option that would be silently ignored."""
    assert main(["eval", str(tmp_path / "no-data"), "--no-plot"]) == 1
    assert "--no-plot applies only with --out" in capsys.readouterr().err


@pytest.mark.parametrize("router", ["sw", "contrastive"])
def test_a_bad_tune_setting_is_checked_before_the_data(router, tmp_path, capsys):
    """Not read, embedded and then reported as the router failing in every fold."""
    assert main(["eval", str(tmp_path / "no-data"), "--router", router, "--tune",
                 "--tune-max-prompts", "5"]) == 1
    err = capsys.readouterr().err
    assert "max_tune_prompts must be None or an int >= 10, got 5" in err
    assert "not a folder of outcomes" not in err


def test_quiet_silences_the_hugging_face_bars_too(mtbench, tmp_path, capsys, monkeypatch):
    """--quiet promises no progress bars: Hugging Face's included (transformers' "Loading
    weights" on every MiniLM load follows the hub's switch); the switch is back afterwards."""
    from huggingface_hub.utils import are_progress_bars_disabled
    from huggingface_hub.utils import tqdm as hub_tqdm

    from langroute import cli
    from langroute.embeddings import HashingEmbedder

    def loading_embedder():  # what loading MiniLM does on stderr
        for _ in hub_tqdm(range(3), desc="Loading weights"):
            pass
        return HashingEmbedder()

    monkeypatch.setitem(cli.EMBEDDERS, "hashing", loading_embedder)
    assert not are_progress_bars_disabled()
    assert main(["train", mtbench, "--router", "sw", "--embedder", "hashing", "-o",
                 str(tmp_path / "r"), "--quiet"]) == 0
    assert "Loading weights" not in capsys.readouterr().err
    assert not are_progress_bars_disabled()


def test_a_reader_that_leaves_early_gets_no_traceback(tmp_path):
    """`langroute spend --json | head`: stdout closes before langroute writes; it stops
    quietly (exit 1), with no BrokenPipeError traceback."""
    from langroute.budgets import Account, open_store

    url = f"sqlite:///{tmp_path / 'spend.db'}"
    store = open_store(url)
    for i in range(300):  # more than a pipe's buffer of JSON
        store.reserve(Account(f"agent-{i}", "day", "2026-12-01"), limit_nano=10**9,
                      amount_nano=10**6, hold_id=f"h{i}", now=0.0, expires_at=4e9)
    store.close()
    process = subprocess.Popen([sys.executable, "-m", "langroute", "spend", "--store", url,
                                "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # long before the interpreter has imported langroute
    err = process.stderr.read().decode()
    assert process.wait(timeout=120) == 1
    assert "Traceback" not in err and "BrokenPipeError" not in err


def test_signed_router_files_from_the_cli(mtbench, tmp_path, capsys, monkeypatch):
    """train signs with the secret an environment variable holds; calibrate verifies it."""
    path = tmp_path / "signed.sw"
    monkeypatch.setenv("LANGROUTE_KEY", "s3cret")
    monkeypatch.setenv("OTHER_KEY", "not-it")
    assert main(["train", mtbench, "--embedder", "hashing", "-o", str(path), "--quiet",
                 "--signing-key-env", "LANGROUTE_KEY"]) == 0
    calibrate = ["calibrate", str(path), "--strong-fraction", "0.5", "--quiet"]
    assert main([*calibrate, "--signing-key-env", "LANGROUTE_KEY"]) == 0
    capsys.readouterr()
    assert main([*calibrate, "--signing-key-env", "OTHER_KEY"]) == 1
    assert "signature does not match the signing_key" in capsys.readouterr().err
    assert main([*calibrate, "--signing-key-env", "UNSET_KEY_XYZ"]) == 1
    assert "environment variable UNSET_KEY_XYZ is not set" in capsys.readouterr().err
    unsigned = tmp_path / "unsigned.sw"
    assert main(["train", mtbench, "--embedder", "hashing", "-o", str(unsigned), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["calibrate", str(unsigned), "--strong-fraction", "0.5", "--quiet",
                 "--signing-key-env", "LANGROUTE_KEY"]) == 1
    assert "unsigned router file" in capsys.readouterr().err


def test_a_broken_pipe_that_is_not_stdout_is_not_hidden(monkeypatch, capsys):
    """Only a closed stdout ends quietly; a pipe or socket breaking elsewhere propagates."""
    from langroute import cli

    def broken(argv):
        raise BrokenPipeError("a subprocess's pipe")

    monkeypatch.setattr(cli, "_run", broken)
    with pytest.raises(BrokenPipeError, match="subprocess"):
        main(["spend", "--store", "memory://"])
