"""The README's routing-quality figures are the ones in ``benchmarks/results`` (not retyped).

The sweep table and its summary are rendered from ``eval_sweep.json`` by the benchmark's own
functions and must appear verbatim between their markers in README.md and in eval_sweep.md; the
results file must say which commit, command and machine produced it.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
RESULTS = REPO / "benchmarks" / "results"


def _bench():
    # the scripts import their shared benchmarks/_provenance.py as run from benchmarks/
    if str(REPO / "benchmarks") not in sys.path:
        sys.path.insert(0, str(REPO / "benchmarks"))
    spec = importlib.util.spec_from_file_location(
        "bench_eval_sweep", REPO / "benchmarks" / "bench_eval_sweep.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def summary():
    return json.loads((RESULTS / "eval_sweep.json").read_text(encoding="utf-8"))


def _block(text: str, name: str) -> str:
    match = re.search(rf"<!-- {name}:start -->\n(.*?)\n<!-- {name}:end -->", text, re.S)
    assert match, f"README.md has no <!-- {name}:start/end --> block"
    return match.group(1).strip()


def test_results_file_records_commit_command_and_machine(summary):
    assert re.fullmatch(r"[0-9a-f]{40}", summary["commit"])
    assert summary["command"].startswith("python benchmarks/bench_eval_sweep.py")
    machine = summary["machine"]
    assert machine["cpu_count"] >= 1 and machine["python"] and machine["torch"]
    assert summary["embedder"]["kind"] and summary["embedder"].get("model")


def test_readme_table_is_the_rendered_results(summary):
    bench = _bench()
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    table = bench.render_table(summary)
    assert _block(readme, "eval-sweep-table") == table
    assert table in (RESULTS / "eval_sweep.md").read_text(encoding="utf-8")


def test_readme_summary_is_the_rendered_results(summary):
    bench = _bench()
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert _block(readme, "eval-sweep-summary") == bench.render_summary(summary)


def test_readme_default_router_is_the_package_default(summary):
    from langroute.evaluation import DEFAULT_ROUTER

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert f"default router is `{DEFAULT_ROUTER}`" in _block(readme, "eval-sweep-summary")
    assert summary["default_router"] == DEFAULT_ROUTER


def test_readme_contrastive_experiment_is_the_results_file():
    path = RESULTS / "contrastive.json"
    summary = json.loads(path.read_text(encoding="utf-8"))
    assert re.fullmatch(r"[0-9a-f]{40}", summary["commit"]) and summary["machine"]["cpu_count"]
    spec = importlib.util.spec_from_file_location(
        "bench_contrastive", REPO / "benchmarks" / "bench_contrastive.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert _block(readme, "contrastive-summary") == module.render_summary(summary)
