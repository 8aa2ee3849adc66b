"""Fixtures for the operator tools: caches filled through the real proxy, and the CLI.

``Backend`` names a storage the way a user does (LLM_CACHE_* settings), so the same settings
drive the proxy that fills it, the ``llm-cache`` command that works on it, and a proxy started
afterwards to prove the result answers real SDK requests.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from click.testing import CliRunner, Result

from llm_cache.cache.storage import CacheStorage
from llm_cache.cli import cli
from llm_cache.config import Config
from tests.conftest import Proxy, ProxyFactory
from tests.support.redis_servers import delete_namespace_keys


@dataclass
class Backend:
    """A storage named by settings (``env``), with its ``Config`` overrides for the proxy."""

    name: str
    env: dict[str, str]
    overrides: dict[str, Any]
    _opened: list[CacheStorage] = field(default_factory=list)

    def storage(self) -> CacheStorage:
        storage = Config(env=self.env, dotenv_path=None).get_storage()
        self._opened.append(storage)
        return storage

    def close(self) -> None:
        for storage in self._opened:
            storage.close()


MakeBackend = Callable[[str], Backend]


@pytest.fixture
def make_backend(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[MakeBackend]:
    """``make_backend("sqlite")`` / ``make_backend("redis")``: a fresh, empty storage each call."""
    made: list[Backend] = []
    namespaces: list[tuple[str, str]] = []

    def make(kind: str) -> Backend:
        n = len(made)
        if kind == "sqlite":
            path = str(tmp_path / f"cache-{n}.db")
            env = {"LLM_CACHE_BACKEND": "sqlite", "LLM_CACHE_SQLITE_PATH": path}
            overrides: dict[str, Any] = {"backend": "sqlite", "sqlite_path": path}
        elif kind == "redis":
            url = request.getfixturevalue("redis_server_url")
            namespace = f"test-ops-{uuid.uuid4().hex[:10]}"
            namespaces.append((url, namespace))
            env = {
                "LLM_CACHE_BACKEND": "redis",
                "LLM_CACHE_REDIS_URL": url,
                "LLM_CACHE_REDIS_NAMESPACE": namespace,
            }
            overrides = {"backend": "redis", "redis_url": url, "redis_namespace": namespace}
        else:  # pragma: no cover - test typo
            raise ValueError(kind)
        made.append(Backend(kind, env, overrides))
        return made[-1]

    yield make
    for backend in made:
        backend.close()
    for url, namespace in namespaces:
        delete_namespace_keys(url, namespace)


@dataclass
class Cli:
    """``llm-cache`` run in-process through Click's runner, on one backend's settings."""

    runner: CliRunner

    def __call__(self, backend: Backend | None, *args: str, input: bytes | None = None) -> Result:
        env = dict(backend.env) if backend else {}
        return self.runner.invoke(cli, list(args), env=env, input=input, catch_exceptions=False)


@pytest.fixture
def run_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    monkeypatch.chdir(tmp_path)  # no stray .env; relative paths land in the test's directory
    return Cli(CliRunner())


# -- a cache filled through the real proxy ------------------------------------------------------

OPENAI_CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Name a prime."}]}
OPENAI_STREAM = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": "Count to three."}],
}
OPENAI_EMBED = {"model": "text-embedding-3-small", "input": "a sentence to embed"}
ANTHROPIC_MSG = {
    "model": "claude-sonnet-4-6",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "Name a colour."}],
}
ANTHROPIC_STREAM = {
    "model": "claude-sonnet-4-6",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "Name a fruit."}],
}


def openai_client(proxy: Proxy) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.openai_base, api_key="sk-test-123", max_retries=0)


def anthropic_client(proxy: Proxy) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=proxy.url, api_key="sk-ant-test-456", max_retries=0)


def make_requests(proxy: Proxy) -> dict[str, Any]:
    """The five kinds of entry (JSON, stream; OpenAI, Anthropic; embeddings), each sent once.

    Returns what each answered: ``(x-cache-hit, comparable content)`` by name.
    """
    oa, an = openai_client(proxy), anthropic_client(proxy)
    out: dict[str, Any] = {}
    raw = oa.chat.completions.with_raw_response.create(**OPENAI_CHAT)  # type: ignore[arg-type]
    out["openai_chat"] = (raw.headers["x-cache-hit"], raw.parse().model_dump())
    with oa.chat.completions.with_streaming_response.create(  # type: ignore[call-overload]
        **OPENAI_STREAM, stream=True
    ) as resp:
        chunks = [c.model_dump() for c in resp.parse()]
        out["openai_stream"] = (resp.headers["x-cache-hit"], chunks)
    raw = oa.embeddings.with_raw_response.create(**OPENAI_EMBED)  # type: ignore[arg-type]
    out["openai_embed"] = (raw.headers["x-cache-hit"], raw.parse().model_dump())
    raw = an.messages.with_raw_response.create(**ANTHROPIC_MSG)  # type: ignore[arg-type]
    out["anthropic_msg"] = (raw.headers["x-cache-hit"], raw.parse().model_dump())
    with an.messages.with_streaming_response.create(  # type: ignore[call-overload]
        **ANTHROPIC_STREAM, stream=True
    ) as resp:
        events = [e.model_dump() for e in resp.parse()]
        out["anthropic_stream"] = (resp.headers["x-cache-hit"], events)
    return out


def fill(start_proxy: ProxyFactory, backend: Backend) -> dict[str, Any]:
    """Store the five entries in ``backend`` through a real proxy; return the answers."""
    proxy_cm: AbstractContextManager[Proxy] = start_proxy(**backend.overrides)
    with proxy_cm as proxy:
        answers = make_requests(proxy)
    assert {hit for hit, _ in answers.values()} == {"false"}
    return answers


def replay_offline(start_proxy: ProxyFactory, backend: Backend) -> dict[str, Any]:
    """The same five requests through an offline proxy on ``backend`` (a miss would fail)."""
    with start_proxy(mode="offline", **backend.overrides) as proxy:
        return make_requests(proxy)
