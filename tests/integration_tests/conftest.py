"""Integration tests run against the in-process fake: block the network so none can leak out."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pytest_socket import disable_socket, enable_socket

from tests.fake_openai import FakeOpenAI


@pytest.fixture(autouse=True)
def _no_network() -> Iterator[None]:
    """Any attempt to open an inet socket fails the test (unix sockets stay: asyncio needs them)."""
    disable_socket(allow_unix_socket=True)
    yield
    enable_socket()


@pytest.fixture
def fake() -> FakeOpenAI:
    """A fresh in-process OpenAI-compatible server (no socket)."""
    return FakeOpenAI()
