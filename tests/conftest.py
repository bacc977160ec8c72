"""Shared fixtures: a real Redis for integration tests, and the cloud state store on every back-end;
hypothesis' CI profile.

Redis: 127.0.0.1:6379 is reused when it answers PING; otherwise a throw-away `redis-server` is
started on a free port for the session. EDGESYNC_SKIP_REDIS=1 skips every test that needs Redis.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from hypothesis import settings

from cloud_trainer.state import MemoryStore, RedisStore, StateStore

# Property and fuzz tests explore new inputs on every local run; CI (CI=true) replays a fixed
# sequence, so a submission's result does not depend on the draw (hypothesis' documented profiles).
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
START_HINT = (
    'start one with `redis-server --daemonize yes --port 6379 --save ""`, '
    "or set EDGESYNC_SKIP_REDIS=1 to skip the tests that need it"
)


def _answers_ping(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def _free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_redis(binary: str, workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    log = (workdir / "redis.log").open("wb")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=workdir,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if _answers_ping(url):
            return proc, url
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    output = (workdir / "redis.log").read_text(errors="replace")[-2000:]
    pytest.fail(f"started {binary} on port {port} but it never answered PING; its log:\n{output}")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a Redis for this test session (see the module docstring for where it comes from)."""
    if os.environ.get("EDGESYNC_SKIP_REDIS") == "1":
        pytest.skip("EDGESYNC_SKIP_REDIS=1: skipping tests that need Redis")
    if _answers_ping(DEFAULT_REDIS_URL):
        yield DEFAULT_REDIS_URL
        return
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail(f"these tests need Redis: nothing answers at 127.0.0.1:6379 and no redis-server; {START_HINT}")
    proc, url = _start_redis(binary, tmp_path_factory.mktemp("redis"))
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def disposable_redis(tmp_path: Path) -> Iterator[tuple[str, Callable[[], None]]]:
    """A private redis-server for this test: (url, stop), for tests that take Redis away."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("needs the redis-server binary to start a private Redis")
    proc, url = _start_redis(binary, tmp_path)

    def stop() -> None:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=10)

    try:
        yield url, stop
    finally:
        stop()


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix no other test uses; every key under it is deleted after the test."""
    prefix = f"edgesync-test-{uuid.uuid4().hex}"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=500))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])
    finally:
        client.close()


@pytest.fixture(params=["memory", "redis"])
def make_store(request: pytest.FixtureRequest) -> Iterator[Callable[..., StateStore]]:
    """Factory of state stores on one back-end (each test runs once per back-end).

    On Redis every store made in one test shares one prefix, so two of them behave like two
    processes sharing a Redis; in memory each store is independent.
    """
    made: list[StateStore] = []
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        prefix = request.getfixturevalue("redis_prefix")

        def make(**kwargs: int) -> StateStore:
            made.append(RedisStore(url, prefix, **kwargs))
            return made[-1]
    else:

        def make(**kwargs: int) -> StateStore:
            made.append(MemoryStore(**kwargs))
            return made[-1]

    yield make
    for store in made:
        store.close()


@pytest.fixture
def store(make_store: Callable[..., StateStore]) -> StateStore:
    """A fresh, empty state store with default limits, on each back-end in turn."""
    return make_store()
