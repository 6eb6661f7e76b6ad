"""The README's LlamaIndex example (``examples/llamaindex_query_engine.py``) runs offline and
shows what it says: routed query engines, a router query engine and an agent whose tool loop
stays on one model, with every provider call counted once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import shared_dataset

_REPO = Path(__file__).resolve().parents[3]


@pytest.mark.data
@pytest.mark.minilm
@pytest.mark.slow
def test_the_llamaindex_example_runs_offline():
    data = shared_dataset("routellm-gsm8k")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("OPENAI_API_KEY", None)  # the in-process fake server, not OpenAI
    done = subprocess.run([sys.executable, "examples/llamaindex_query_engine.py", "--data",
                           str(data)], cwd=_REPO, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "[route] ->" in out and "(sticky tool loop)" in out
    assert "tools called: [('multiply', '391'), ('add', '40')]" in out
    assert "Tokens counted by TokenCountingHandler (each provider call once)" in out
