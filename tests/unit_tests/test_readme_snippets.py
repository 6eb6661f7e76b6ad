"""The README's Python snippets run as written, offline (no API key, no download)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import shared_dataset

ROOT = Path(__file__).resolve().parents[2]


def _snippet(heading: str) -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index(heading):]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, f"no python snippet under {heading!r}"
    return match.group(1)


@pytest.mark.data
def test_quickstart_snippet_runs_offline_and_routes():
    data = shared_dataset("routellm-gsm8k")
    code = _snippet("## Quickstart").replace("../shared/data/routellm-gsm8k", str(data))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OPENAI_API_KEY": ""}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=600, cwd=ROOT, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith("-> ") and "routed" in lines[0]
    assert lines[-1].split()[0] in {"gpt-4-1106-preview", "mixtral-8x7b-instruct-v0.1"}
    assert lines[-1].endswith("391")
