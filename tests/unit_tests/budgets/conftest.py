"""Fixtures of the budget tests: a real ``redis-server`` (Debian's package) on a free loopback
port, and the three stores every shared store test runs against."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from langroute.budgets import open_store


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One ``redis-server`` process, started and stopped by the tests (no fakes)."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not Path(binary).exists():
            message = "redis-server is not installed (apt-get install -y redis-server)"
            if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
                pytest.fail(message + " (CI=true: .ci/run installs it)")
            pytest.skip(message)
        self.binary = binary
        self.workdir = workdir
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None

    def flush(self) -> None:
        import redis

        client = redis.Redis.from_url(self.url)
        client.flushdb()
        client.close()


class ExternalRedis:
    """The server ``.ci/run`` started (``LANGROUTE_TEST_REDIS_URL``); never stopped here."""

    def __init__(self, url: str) -> None:
        self.url = url

    def flush(self) -> None:
        RedisServer.flush(self)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer | ExternalRedis]:
    """A real redis-server: the one ``.ci/run`` started, else one started here."""
    external = os.environ.get("LANGROUTE_TEST_REDIS_URL")
    if external:
        yield ExternalRedis(external)
        return
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a fresh store of each kind (the shared suite runs against all three)."""
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'spend.db'}"
    server = request.getfixturevalue("redis_server")
    server.flush()
    return server.url


@pytest.fixture(params=["sqlite", "redis"])
def shared_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store several processes can share: SQLite and Redis."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'spend.db'}"
    server = request.getfixturevalue("redis_server")
    server.flush()
    return server.url


@pytest.fixture
def store(store_url: str):
    opened = open_store(store_url)
    yield opened
    opened.close()
