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


def _two_model_router(strong_always_wins: bool):
    """A small SW router over the Quickstart's two model names (hashing embedder, offline)."""
    import numpy as np

    from langroute import HashingEmbedder, Outcomes, SWRouter

    prompts = [f"What is {i} * {i + 7}?" for i in range(12)]
    weak = 0.0 if strong_always_wins else 1.0
    outcomes = Outcomes(
        ids=[f"p{i}" for i in range(len(prompts))], prompts=prompts,
        models=("gpt-4-1106-preview", "mixtral-8x7b-instruct-v0.1"),
        scores=np.array([[1.0, weak]] * len(prompts)),
        costs=np.array([[5e-3, 3e-4]] * len(prompts)))
    return SWRouter(HashingEmbedder(dimension=64)).fit(outcomes)


@pytest.mark.parametrize("strong_always_wins", [True, False], ids=["gpt-4 answers",
                                                                  "mixtral answers"])
def test_feedback_snippet_runs_whichever_model_answers(strong_always_wins, tmp_path,
                                                        monkeypatch):
    """The Feedback snippet, with the Quickstart's router names, whichever model answers (its
    preference once named the strong model, a FeedbackError whenever that model answered)."""
    from langchain_core.language_models import GenericFakeChatModel

    from langroute import RoutedChatModel

    code = _snippet("**Feedback.**")
    assert "models=...," in code
    code = code.replace("models=...,", "models=MODELS,")
    models = {name: GenericFakeChatModel(messages=iter(["391"] * 3))
              for name in ("gpt-4-1106-preview", "mixtral-8x7b-instruct-v0.1")}
    namespace = {"RoutedChatModel": RoutedChatModel,  # imported by the Quickstart above it
                 "MODELS": models, "router": _two_model_router(strong_always_wins),
                 "fresh_router": _two_model_router(strong_always_wins)}
    monkeypatch.chdir(tmp_path)  # the snippet writes feedback.db in the working folder
    exec(compile(code, "README.md (Feedback)", "exec"), namespace)
    answered = namespace["answer"].response_metadata["langroute"]["answered_by"]
    assert answered == ("gpt-4-1106-preview" if strong_always_wins
                        else "mixtral-8x7b-instruct-v0.1")
    assert namespace["position"] == 2  # the score and the preference were stored
    assert len(namespace["fresh_router"].learned_feedback_) == 2
