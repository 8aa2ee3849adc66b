"""Shared fixtures: the simulated upstream and real proxy servers on free loopback ports."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest

from llm_cache.cache.storage import CacheStorage
from llm_cache.config import Config
from llm_cache.proxy.server import ProxyApp, create_app
from tests.fake_upstream import FakeUpstream, create_fake_upstream
from tests.servers import run_server

pytest_plugins = ["tests.support.redis_servers"]


@pytest.fixture(autouse=True)
def _no_user_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's own LLM_CACHE_* variables must not change what the tests see."""
    import os

    for name in list(os.environ):
        if name.startswith("LLM_CACHE_"):
            monkeypatch.delenv(name)


class Upstream:
    """The running simulated upstream: its state object and base URL."""

    def __init__(self, fake: FakeUpstream, url: str) -> None:
        self.fake = fake
        self.url = url


@pytest.fixture(scope="session")
def _upstream_server() -> Iterator[Upstream]:
    fake = create_fake_upstream()
    with run_server(fake.app) as url:
        yield Upstream(fake, url)


@pytest.fixture
def upstream(_upstream_server: Upstream) -> Iterator[Upstream]:
    """The simulated upstream, its request log and knobs reset for this test."""
    _upstream_server.fake.reset()
    yield _upstream_server
    _upstream_server.fake.reset()


class Proxy:
    """A running proxy: its base URL, app (engine, storage) and config."""

    def __init__(self, url: str, app: ProxyApp) -> None:
        self.url = url
        self.app = app
        self.config = app.config

    @property
    def openai_base(self) -> str:
        return f"{self.url}/v1"


ProxyFactory = Callable[..., AbstractContextManager[Proxy]]


@pytest.fixture
def start_proxy(upstream: Upstream, tmp_path: Path) -> ProxyFactory:
    """``with start_proxy(mode="offline", storage=...) as proxy:`` — a real proxy on uvicorn.

    Defaults: SQLite in the test's temp dir, upstreams pointing at the simulated upstream.
    Keyword arguments are ``Config`` overrides; ``storage=`` injects a backend object.
    """

    @contextmanager
    def factory(storage: CacheStorage | None = None, **overrides: Any) -> Iterator[Proxy]:
        settings: dict[str, Any] = {
            "backend": "sqlite",
            "sqlite_path": str(tmp_path / "cache.db"),
            "openai_base_url": f"{upstream.url}/v1",
            "anthropic_base_url": upstream.url,
        }
        settings.update(overrides)
        config = Config(env={}, dotenv_path=None, **settings)
        app = create_app(config, storage=storage)
        with run_server(app) as url:
            yield Proxy(url, app)

    return factory


@pytest.fixture
def proxy(start_proxy: ProxyFactory) -> Iterator[Proxy]:
    """A proxy with the default settings (SQLite, readwrite)."""
    with start_proxy() as running:
        yield running
