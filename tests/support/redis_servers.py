"""Redis servers for tests: the shared local one, private ones we spawn, a 3-master cluster.

Load the fixtures with ``pytest_plugins = ["tests.support.redis_servers"]`` (in the top
conftest, or in a test module). Fixtures:

- ``redis_server_url`` (session): base URL of a standalone Redis the suite may use. The server
  on 127.0.0.1:6379 when it answers PING (database ``SHARED_DB`` = 13, never flushed), else a
  private ``redis-server`` spawned in a temp dir, else the tests skip -- or fail when
  ``CI=true``. ``LLM_CACHE_TEST_REDIS_URL`` forces a URL.
- ``redis_namespace``: a namespace unique to the test.
- ``redis_url``: ``redis_server_url``; at teardown the keys of ``redis_namespace`` are deleted.
- ``make_redis_storage``: factory ``make_redis_storage(**kwargs) -> RedisStorage`` on
  ``redis_url`` with ``namespace=redis_namespace`` by default; closed at teardown.
- ``redis_cluster`` (session): a :class:`ClusterHandle` for a 3-master cluster spawned from the
  ``redis-server`` binary and torn down at the end; ``redis_cluster.url`` for clients.

Helpers: ``spawn_redis_server()`` (context manager yielding a :class:`RedisServer`: unpacks as
``port, process``; ``stop()``, ``kill()``, ``start()``, ``restart()`` keep the same port, for
fail-open tests), ``spawn_redis_cluster()``, ``free_port()``, ``redis_command()``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import pytest

SHARED_HOST = "127.0.0.1"
SHARED_PORT = 6379
SHARED_DB = 13  # the suite's own database on a shared server; cleaned key by key, never flushed
URL_ENV = "LLM_CACHE_TEST_REDIS_URL"

REDIS_SERVER = shutil.which("redis-server") or (
    "/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None
)
REDIS_CLI = shutil.which("redis-cli") or (
    "/usr/bin/redis-cli" if os.path.exists("/usr/bin/redis-cli") else None
)


def unavailable(reason: str) -> NoReturn:
    """Skip, except on CI (``CI=true``) where a missing Redis is a failure."""
    if os.environ.get("CI", "").strip().lower() in ("true", "1", "yes"):
        pytest.fail(f"Redis tests cannot run on CI: {reason}", pytrace=False)
    pytest.skip(reason)


# -- tiny RESP client (no redis-py needed to manage servers) -----------------------------------


def redis_command(port: int, *args: str, host: str = "127.0.0.1", timeout: float = 1.0) -> bytes:
    """Send one command, return the raw reply (enough for PING, INFO, CLUSTER INFO)."""
    payload = f"*{len(args)}\r\n".encode()
    for arg in args:
        raw = arg.encode()
        payload += b"$%d\r\n%s\r\n" % (len(raw), raw)
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(payload)
        reply = sock.recv(65536)
        if reply.startswith(b"$"):  # bulk string: read until the announced length arrived
            head, _, body = reply.partition(b"\r\n")
            need = int(head[1:]) + 2
            while len(body) < need:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                body += chunk
            return body[: need - 2]
        return reply


def ping(port: int, host: str = "127.0.0.1", timeout: float = 0.3) -> bool:
    try:
        return redis_command(port, "PING", host=host, timeout=timeout).startswith(b"+PONG")
    except OSError:
        return False


def free_port(*, cluster_bus: bool = False) -> int:
    """A free loopback port (and port + 10000 free too when ``cluster_bus``)."""
    for _ in range(100):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if not cluster_bus:
            return port
        if port + 10000 > 65535:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port found")


# -- one server ---------------------------------------------------------------------------------


@dataclass
class RedisServer:
    """A private ``redis-server`` on a fixed loopback port; can stop and come back on it."""

    port: int
    directory: Path
    extra_args: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = None
    _log: Any = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def __iter__(self) -> Iterator[Any]:  # ``port, process = server``
        return iter((self.port, self.process))

    def start(self, timeout: float = 5.0) -> None:
        if self.process is not None:
            raise RuntimeError("already running")
        if REDIS_SERVER is None:
            raise RuntimeError("redis-server binary not found")
        self.directory.mkdir(parents=True, exist_ok=True)
        args = [
            REDIS_SERVER,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.directory),
            "--daemonize", "no",
            *self.extra_args,
        ]  # fmt: skip
        self._log = open(self.directory / f"redis-{self.port}.log", "ab")  # noqa: SIM115
        self.process = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while not ping(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                log = (self.directory / f"redis-{self.port}.log").read_text(errors="replace")
                raise RuntimeError(
                    f"redis-server on port {self.port} did not start:\n{log[-2000:]}"
                )
            time.sleep(0.01)

    def stop(self) -> None:
        """Shut down cleanly (SIGTERM); nothing is persisted."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """Die abruptly (SIGKILL), like a crashed server."""
        self._end(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    def _end(self, sig: int) -> None:
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None


@contextmanager
def spawn_redis_server(
    port: int | None = None,
    *,
    directory: str | Path | None = None,
    extra_args: tuple[str, ...] = (),
) -> Iterator[RedisServer]:
    """Start a private ``redis-server``; yields it (``port, process = server`` works too)."""
    with tempfile.TemporaryDirectory(prefix="llm-cache-redis-") as tmp:
        base = Path(directory) if directory is not None else Path(tmp)
        tries = 1 if port is not None else 3
        for attempt in range(tries):
            server = RedisServer(port or free_port(), base, extra_args)
            try:
                server.start()
                break
            except RuntimeError:
                if attempt == tries - 1:
                    raise
        try:
            yield server
        finally:
            server.stop()


# -- a cluster ----------------------------------------------------------------------------------


@dataclass
class ClusterHandle:
    servers: list[RedisServer]

    @property
    def ports(self) -> list[int]:
        return [s.port for s in self.servers]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.servers[0].port}"

    @property
    def node_urls(self) -> list[str]:
        return [f"redis://127.0.0.1:{p}" for p in self.ports]


@contextmanager
def spawn_redis_cluster(masters: int = 3, timeout: float = 20.0) -> Iterator[ClusterHandle]:
    """Start ``masters`` cluster-enabled servers, join them, wait for ``cluster_state:ok``."""
    if REDIS_SERVER is None or REDIS_CLI is None:
        raise RuntimeError("redis-server / redis-cli binaries not found")
    with tempfile.TemporaryDirectory(prefix="llm-cache-cluster-") as tmp:
        servers: list[RedisServer] = []
        try:
            for _ in range(masters):
                port = free_port(cluster_bus=True)
                server = RedisServer(
                    port,
                    Path(tmp) / str(port),
                    (
                        "--cluster-enabled", "yes",
                        "--cluster-config-file", str(Path(tmp) / str(port) / "nodes.conf"),
                        "--cluster-node-timeout", "2000",
                    ),
                )  # fmt: skip
                server.start()
                servers.append(server)
            nodes = [f"127.0.0.1:{s.port}" for s in servers]
            subprocess.run(
                [
                    REDIS_CLI,
                    "--cluster",
                    "create",
                    *nodes,
                    "--cluster-replicas",
                    "0",
                    "--cluster-yes",
                ],
                check=True,
                capture_output=True,
                timeout=timeout,
            )
            deadline = time.monotonic() + timeout
            while not all(
                b"cluster_state:ok" in redis_command(s.port, "CLUSTER", "INFO") for s in servers
            ):
                if time.monotonic() > deadline:
                    raise RuntimeError("cluster did not reach cluster_state:ok")
                time.sleep(0.05)
            yield ClusterHandle(servers)
        finally:
            for server in servers:
                server.kill()  # nothing to save; fastest


# -- fixtures -----------------------------------------------------------------------------------


@contextmanager
def standalone_redis_url(directory: str | Path | None = None) -> Iterator[str]:
    """The URL ``redis_server_url`` provides (see the module docstring); skips/fails if none."""
    forced = os.environ.get(URL_ENV, "").strip()
    if forced:
        yield forced
        return
    if ping(SHARED_PORT, SHARED_HOST):
        yield f"redis://{SHARED_HOST}:{SHARED_PORT}/{SHARED_DB}"
        return
    if REDIS_SERVER is None:
        unavailable(
            f"no Redis answers on {SHARED_HOST}:{SHARED_PORT} and no redis-server binary "
            f"to spawn one (set {URL_ENV} or install redis-server)"
        )
    with spawn_redis_server(directory=directory) as server:
        yield server.url


@pytest.fixture(scope="session")
def redis_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a standalone Redis for the suite (see the module docstring)."""
    with standalone_redis_url(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture
def redis_namespace() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


def delete_namespace_keys(url: str, namespace: str) -> None:
    """Delete every key whose name contains ``namespace`` (SCAN + UNLINK, never a flush)."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=2)
    try:
        batch = list(client.scan_iter(match=f"*{namespace}*", count=1000))
        for i in range(0, len(batch), 500):
            client.unlink(*batch[i : i + 500])
    finally:
        client.close()


@pytest.fixture
def redis_url(redis_server_url: str, redis_namespace: str) -> Iterator[str]:
    """A standalone Redis URL; keys containing ``redis_namespace`` are deleted afterwards."""
    yield redis_server_url
    with contextlib.suppress(Exception):  # a server a test stopped must not fail teardown
        delete_namespace_keys(redis_server_url, redis_namespace)


@pytest.fixture
def make_redis_storage(redis_url: str, redis_namespace: str) -> Iterator[Callable[..., Any]]:
    """Factory for ``RedisStorage`` on ``redis_url`` in the test's namespace, closed after."""
    from llm_cache.cache.redis_storage import RedisStorage

    made: list[RedisStorage] = []

    def make(**kwargs: Any) -> RedisStorage:
        kwargs.setdefault("url", redis_url)
        kwargs.setdefault("namespace", redis_namespace)
        made.append(RedisStorage(**kwargs))
        return made[-1]

    yield make
    for storage in made:
        storage.close()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[ClusterHandle]:
    """A 3-master Redis Cluster on free loopback ports, for the whole session."""
    if REDIS_SERVER is None or REDIS_CLI is None:
        unavailable("redis-server / redis-cli binaries are needed to spawn a Redis Cluster")
    with spawn_redis_cluster() as cluster:
        yield cluster
