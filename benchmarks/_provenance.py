"""What every results file records about how it was made: the commit and the machine.

Shared by the benchmark scripts (each adds the facts its own figures depend on). Run a
script as ``python benchmarks/bench_x.py``; its folder is then on ``sys.path``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

__all__ = ["cpu_model", "dirty_files", "git", "head_commit"]

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
