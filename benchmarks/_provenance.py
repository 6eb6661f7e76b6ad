"""What every results file records about how it was made: the commit and the machine.

Shared by the benchmark scripts (each adds the facts its own figures depend on). Run a
script as ``python benchmarks/bench_x.py``; its folder is then on ``sys.path``.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

__all__ = ["cpu_model", "dirty_files", "git", "head_commit", "run_facts", "write_report",
           "write_results"]

REPO = Path(__file__).resolve().parents[1]


def git(*args: str) -> str:
    """``git args...`` in the repository, its output ("" when git is missing)."""
    out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
    return out.stdout


def head_commit() -> str:
    return git("rev-parse", "HEAD").strip()


def dirty_files() -> list[str]:
    """Files with uncommitted changes (the results were not made by HEAD alone if any).
    Porcelain lines are ``XY path``: the status columns may start with a space."""
    return [line[3:] for line in git("status", "--porcelain").splitlines() if line.strip()]


def cpu_model(default: str = "") -> str:
    """The processor's model name from /proc/cpuinfo, or ``default``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return default


def run_facts() -> dict:
    """How a run was made: commit (and whether files were uncommitted), command, machine."""
    import numpy as np

    dirty = bool(dirty_files())
    return {
        "commit": head_commit() + (" (+ uncommitted changes)" if dirty else ""),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
    }


def write_report(folder: Path, stem: str, text: str) -> None:
    """``stem.md`` (the report) in ``folder``, created if needed; prints the report."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}.md").write_text(text, encoding="utf-8")
    print(text)


def write_results(folder: Path, stem: str, text: str, summary: dict) -> None:
    """``stem.md`` (the report) and ``stem.json`` (its figures) in ``folder``; prints the report."""
    write_report(folder, stem, text)
    (folder / f"{stem}.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
