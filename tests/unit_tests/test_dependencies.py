"""Package metadata of a library: no exact pins on heavy dependencies, no framework in the core."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _core_dependencies() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    out = {}
    for requirement in project["dependencies"]:
        name = re.match(r"[A-Za-z0-9_.\-]+", requirement).group(0).lower()
        out[name] = requirement[len(name):].strip()
    return out


def test_torch_is_a_lower_bound_not_a_pin():
    deps = _core_dependencies()
    assert "torch" in deps
    assert "==" not in deps["torch"] and deps["torch"].startswith(">=")


def test_frameworks_stay_out_of_the_core_dependencies():
    deps = _core_dependencies()
    assert not [name for name in deps if name.startswith("llama-index")]
    for used in ("openai", "tenacity", "tqdm", "numpy", "safetensors"):
        assert used in deps


def test_setup_commands_install_cpu_torch_before_the_package():
    for text in ((ROOT / "README.md").read_text(), (ROOT / ".ci" / "run").read_text()):
        commands = [line for line in text.splitlines() if "pip install -q -e" in line]
        assert commands
        for line in commands:
            assert line.index("pip install -q torch==") < line.index("pip install -q -e")
