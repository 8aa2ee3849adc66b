"""The Docker image and the compose file, built and run for real.

The image is built from the project's ``Dockerfile`` and started on the host network (so it
reaches the simulated upstream on 127.0.0.1); an OpenAI SDK request through it is a miss, the
same request again a hit, and a new container on the same ``/data`` volume still has the entry.
The compose pair (proxy + Redis) is brought up and ``/health`` must say ``redis``.

On a host that reaches no image registry the base images are local stand-ins built from
Debian's packages by ``../shared/docker/make-local-base.sh`` (idempotent; about two minutes the
first time); elsewhere the public ``python:3.12-slim`` / ``redis:7`` are used (``BASE_IMAGE`` /
``REDIS_IMAGE`` override both). Without a Docker engine the tests are skipped with the reason,
except when ``REQUIRE_DOCKER=1`` (``.ci/run`` sets it after starting ``dockerd``): then they fail.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest

from tests.conftest import Upstream

ROOT = Path(__file__).resolve().parent.parent


def _shared_docker() -> Path:
    """The stand-in base-image scripts: beside this checkout (``../shared/docker``), or where
    ``LLM_CACHE_SHARED_DOCKER`` says, or the workplace's copy (for a clone made elsewhere)."""
    candidates = [ROOT.parent / "shared" / "docker", Path("/work/shared/docker")]
    if os.environ.get("LLM_CACHE_SHARED_DOCKER"):
        candidates.insert(0, Path(os.environ["LLM_CACHE_SHARED_DOCKER"]))
    return next((c for c in candidates if (c / "build-image.sh").exists()), candidates[0])


SHARED_DOCKER = _shared_docker()
TAG = "llm-cache:pytest"
REQUIRED = os.environ.get("REQUIRE_DOCKER") == "1"

pytestmark = [pytest.mark.timeout(1200)]


def _docker_problem() -> str | None:
    """Why Docker cannot be used here, or ``None`` when an engine answers."""
    if shutil.which("docker") is None:
        return "no docker command on PATH"
    try:
        info = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except subprocess.TimeoutExpired:
        return "docker info timed out"
    if info.returncode != 0:
        return f"no Docker engine answers: {info.stderr.strip()[:200]}"
    return None


@pytest.fixture(scope="module")
def docker() -> None:
    problem = _docker_problem()
    if problem is None:
        return
    if REQUIRED:
        pytest.fail(f"REQUIRE_DOCKER=1 but {problem}")
    pytest.skip(f"Docker tests need a Docker engine: {problem}")


def _suite() -> str:
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("VERSION_CODENAME="):
            return line.split("=", 1)[1].strip('"')
    return "bookworm"


def _uses_local_bases() -> bool:
    return "BASE_IMAGE" not in os.environ and (SHARED_DOCKER / "build-image.sh").exists()


def _sh(args: list[str], timeout: float, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        args, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT
    )
    if result.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} exited {result.returncode}:\n{result.stdout[-3000:]}"
            f"\n{result.stderr[-3000:]}"
        )
    return result.stdout


@pytest.fixture(scope="module")
def image(docker: None) -> Iterator[str]:
    """The project's image, built once for this module (layers cached by Docker)."""
    started = time.monotonic()
    if _uses_local_bases():
        _sh(["sh", str(SHARED_DOCKER / "make-local-base.sh")], timeout=900)
        _sh(["sh", str(SHARED_DOCKER / "build-image.sh"), str(ROOT), TAG], timeout=900)
    else:
        base = os.environ.get("BASE_IMAGE", "python:3.12-slim")
        _sh(
            ["docker", "build", "--build-arg", f"BASE_IMAGE={base}", "-t", TAG, str(ROOT)],
            timeout=900,
        )
    print(f"docker image {TAG} built in {time.monotonic() - started:.1f} s")
    yield TAG


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_health(url: str, timeout: float = 60, **expect: Any) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            body = dict(httpx2.get(f"{url}/health", timeout=2).json())
            if all(body.get(k) == v for k, v in expect.items()):
                return body
            last = body
        except httpx2.HTTPError as exc:
            last = exc
        time.sleep(0.25)
    raise AssertionError(f"{url}/health never showed {expect}; last: {last!r}")


def _inspect(fmt: str, name: str) -> str:
    return _sh(["docker", "inspect", "-f", fmt, name], timeout=30).strip()


def test_image_settings(image: str) -> None:
    env = _inspect("{{json .Config.Env}}", image)
    assert '"LLM_CACHE_PROXY_HOST=0.0.0.0"' in env
    assert '"LLM_CACHE_SQLITE_PATH=/data/llm_cache.db"' in env
    assert _inspect("{{.Config.User}}", image) == "llmcache"
    assert "/data" in _inspect("{{json .Config.Volumes}}", image)
    assert "/health" in _inspect("{{json .Config.Healthcheck.Test}}", image)


def _run_container(image: str, volume: str, port: int, upstream: Upstream) -> str:
    name = f"llm-cache-test-{uuid.uuid4().hex[:10]}"
    _sh(
        [
            "docker", "run", "-d", "--rm", "--name", name,
            "--network", "host",  # reaches the simulated upstream on 127.0.0.1
            "-v", f"{volume}:/data",
            # the image's 0.0.0.0 would bind every interface of the host
            "-e", "LLM_CACHE_PROXY_HOST=127.0.0.1",
            "-e", f"LLM_CACHE_PROXY_PORT={port}",
            "-e", f"LLM_CACHE_OPENAI_BASE_URL={upstream.url}/v1",
            "-e", f"LLM_CACHE_ANTHROPIC_BASE_URL={upstream.url}",
            "--health-interval", "1s",  # the image checks every 15 s; the test has no patience
            image,
        ],
        timeout=60,
    )  # fmt: skip
    return name


def _remove(*args: str) -> None:
    subprocess.run(["docker", *args], capture_output=True, timeout=60)


def test_container_serves_hits_and_keeps_them_on_its_volume(image: str, upstream: Upstream) -> None:
    volume = f"llm-cache-test-{uuid.uuid4().hex[:10]}"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    names: list[str] = []
    try:
        names.append(_run_container(image, volume, port, upstream))
        health = _wait_health(url, status="healthy")
        assert health["backend"] == "sqlite"

        client = openai.OpenAI(base_url=f"{url}/v1", api_key="sk-test", max_retries=0)
        messages: Any = [{"role": "user", "content": "hello from a container"}]
        first = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=messages
        )
        second = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=messages
        )
        assert first.headers["x-cache-hit"] == "false"
        assert second.headers["x-cache-hit"] == "true"
        assert second.parse().id == first.parse().id
        assert upstream.fake.request_count == 1

        # The process runs as the image's user, writes only under /data, and Docker's own
        # health check (the image's HEALTHCHECK command) passes.
        uid = _sh(["docker", "exec", names[0], "id", "-u"], timeout=30).strip()
        assert uid != "0"
        _sh(["docker", "exec", names[0], "test", "-s", "/data/llm_cache.db"], timeout=30)
        deadline = time.monotonic() + 30
        while _inspect("{{.State.Health.Status}}", names[0]) != "healthy":
            assert time.monotonic() < deadline, "Docker never saw the container healthy"
            time.sleep(0.5)

        # A new container on the same volume answers from the entry the first one stored.
        _remove("rm", "-f", names.pop())
        names.append(_run_container(image, volume, port, upstream))
        _wait_health(url, status="healthy")
        third = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=messages
        )
        assert third.headers["x-cache-hit"] == "true"
        assert third.parse().id == first.parse().id
        assert upstream.fake.request_count == 1
    finally:
        for name in names:
            _remove("rm", "-f", name)
        _remove("volume", "rm", "-f", volume)


def _compose_command() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
    if probe.returncode == 0:
        return ["docker", "compose"]
    if REQUIRED:
        pytest.fail("REQUIRE_DOCKER=1 but neither docker-compose nor docker compose is installed")
    pytest.skip("neither docker-compose nor 'docker compose' is installed")


def test_compose_brings_up_the_proxy_with_redis(image: str) -> None:
    compose = _compose_command()
    project = f"llmcachetest{uuid.uuid4().hex[:8]}"
    port = _free_port()
    redis_image = os.environ.get("REDIS_IMAGE") or (
        f"local/redis:{_suite()}" if _uses_local_bases() else "redis:7"
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LLM_CACHE_")},
        "LLM_CACHE_IMAGE": image,
        "REDIS_IMAGE": redis_image,
        "LLM_CACHE_PORT": str(port),
    }
    base = [*compose, "-p", project, "-f", str(ROOT / "docker-compose.yml")]
    try:
        _sh([*base, "up", "-d", "--no-build"], timeout=300, env=env)
        url = f"http://127.0.0.1:{port}"
        health = _wait_health(url, status="healthy")
        assert health["backend"] == "redis"
        stats = httpx2.get(f"{url}/cache/stats", timeout=5).json()
        assert stats["size"] == 0 and stats["max_size"] == 100000
        published = _sh([*base, "port", "proxy", "8000"], timeout=60, env=env).strip()
        assert published == f"127.0.0.1:{port}"  # loopback only by default
    finally:
        subprocess.run(
            [*base, "down", "-v", "--remove-orphans"],
            capture_output=True,
            timeout=300,
            env=env,
            cwd=ROOT,
        )
