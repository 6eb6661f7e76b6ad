"""Every figure in the README comes from ``benchmarks/results`` (copied, not retyped).

* Every markdown table row in README.md that holds a digit (separator rows aside) appears,
  stripped, as a line of one of ``benchmarks/results/*.md``.
* Every line with a digit inside a ```` ```text ```` block of README.md (verbatim excerpts of
  the fixed-width benchmark output) appears, stripped, as a line of one of those files.
* Every ``benchmarks/results/*.json`` says which commit and command produced it and on which
  machine.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
RESULTS = REPO / "benchmarks" / "results"

_SEPARATOR = re.compile(r"^\|(\s*:?-+:?\s*\|)+$")
_COMMIT = re.compile(r"^[0-9a-f]{40}(?![0-9a-f])")
_MACHINE_KEYS = ("machine", "platform", "cpu", "cpus", "cpu_count", "python")


def _results_lines() -> set[str]:
    lines: set[str] = set()
    for path in sorted(RESULTS.glob("*.md")):
        lines.update(line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return lines


def _readme_figure_lines() -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """(table rows, ```text lines) of README.md that hold a digit, with line numbers."""
    rows: list[tuple[int, str]] = []
    text_lines: list[tuple[int, str]] = []
    fence: str | None = None
    for number, line in enumerate(README.read_text(encoding="utf-8").splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("```"):
            fence = stripped[3:].strip() if fence is None else None
            continue
        if not any(ch.isdigit() for ch in stripped):
            continue
        if fence is None:
            if stripped.startswith("|") and not _SEPARATOR.match(stripped):
                rows.append((number, stripped))
        elif fence == "text":
            text_lines.append((number, stripped))
    return rows, text_lines


def test_readme_has_figure_tables():
    rows, _ = _readme_figure_lines()
    assert len(rows) > 20


def test_readme_table_rows_are_copied_from_results_files():
    known = _results_lines()
    rows, _ = _readme_figure_lines()
    missing = [f"README.md:{number}: {row}" for number, row in rows if row not in known]
    assert not missing, (
        "README table rows not found verbatim in benchmarks/results/*.md:\n"
        + "\n".join(missing))


def test_readme_text_blocks_are_copied_from_results_files():
    known = _results_lines()
    _, text_lines = _readme_figure_lines()
    missing = [f"README.md:{number}: {line}" for number, line in text_lines
               if line not in known]
    assert not missing, (
        "README ```text lines not found verbatim in benchmarks/results/*.md:\n"
        + "\n".join(missing))


def _provenance(data: dict, key: str):
    """``data[key]``, or the same key one level down (e.g. under "meta" or "machine")."""
    if key in data:
        return data[key]
    for value in data.values():
        if isinstance(value, dict) and key in value:
            return value[key]
    return None


def _machine_facts(data: dict) -> dict:
    machine = _provenance(data, "machine")
    if isinstance(machine, dict):
        return machine
    return {key: value for key, value in data.items() if key in _MACHINE_KEYS}


@pytest.mark.parametrize("path", sorted(RESULTS.glob("*.json")), ids=lambda p: p.name)
def test_results_json_records_commit_command_and_machine(path: Path):
    data = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{path.name}: top level is not an object"
    commit = _provenance(data, "commit")
    assert isinstance(commit, str) and _COMMIT.match(commit), (
        f"{path.name}: no 'commit' of 40 hex digits (got {commit!r})")
    command = _provenance(data, "command")
    assert isinstance(command, str) and "benchmarks/" in command, (
        f"{path.name}: no 'command' naming the benchmark script (got {command!r})")
    machine = _machine_facts(data)
    assert any(machine.get(key) for key in _MACHINE_KEYS if key != "machine"), (
        f"{path.name}: no machine facts (platform, cpu, cpus, python)")
