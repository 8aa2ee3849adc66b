"""Fixtures for the five round-2 providers: their simulated upstreams and a proxy serving them.

Every simulated upstream runs once per session; ``fakes`` resets their request logs and knobs
for each test. ``start_proxy(**overrides)`` runs a real proxy (uvicorn, SQLite in the test's
temp dir) whose five upstream settings point at them. The proxy has its own AWS credentials
(``AKIDFAKEPROXY0000001``, which the Bedrock simulation accepts) from the standard AWS
environment variables; no profile file and no instance metadata are ever read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from llm_cache.config import Config
from llm_cache.proxy.server import ProxyApp, create_app
from tests.fake_providers.azure import AzureFake
from tests.fake_providers.bedrock import BedrockFake
from tests.fake_providers.cohere import CohereFake
from tests.fake_providers.gemini import GeminiFake
from tests.fake_providers.ollama import OllamaFake
from tests.servers import run_server

PROXY_AKID = "AKIDFAKEPROXY0000001"


@dataclass
class Fakes:
    gemini: GeminiFake
    ollama: OllamaFake
    cohere: CohereFake
    azure: AzureFake
    bedrock: BedrockFake
    urls: dict[str, str]

    def reset(self) -> None:
        for fake in (self.gemini, self.ollama, self.cohere, self.azure, self.bedrock):
            fake.reset()


@dataclass
class Proxy:
    url: str
    app: ProxyApp
    db: Path


ProxyFactory = Callable[..., AbstractContextManager[Proxy]]


@pytest.fixture(scope="session")
def _fake_servers() -> Iterator[Fakes]:
    fakes = {
        "gemini": GeminiFake(),
        "ollama": OllamaFake(),
        "cohere": CohereFake(),
        "azure": AzureFake(),
        "bedrock": BedrockFake(),
    }
    with (
        run_server(fakes["gemini"].app) as gemini,
        run_server(fakes["ollama"].app) as ollama,
        run_server(fakes["cohere"].app) as cohere,
        run_server(fakes["azure"].app) as azure,
        run_server(fakes["bedrock"].app) as bedrock,
    ):
        urls = {"gemini": gemini, "ollama": ollama, "cohere": cohere, "azure": azure}
        urls["bedrock"] = bedrock
        yield Fakes(urls=urls, **fakes)  # type: ignore[arg-type]


@pytest.fixture
def fakes(_fake_servers: Fakes) -> Iterator[Fakes]:
    _fake_servers.reset()
    yield _fake_servers
    _fake_servers.reset()


@pytest.fixture(autouse=True)
def _aws_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in (
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_BEARER_TOKEN_BEDROCK",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", PROXY_AKID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "proxy-secret-key")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))


@pytest.fixture
def start_proxy(fakes: Fakes, tmp_path: Path) -> ProxyFactory:
    @contextmanager
    def factory(**overrides: Any) -> Iterator[Proxy]:
        db = Path(overrides.pop("sqlite_path", tmp_path / "cache.db"))
        settings: dict[str, Any] = {
            "backend": "sqlite",
            "sqlite_path": str(db),
            "gemini_base_url": fakes.urls["gemini"],
            "ollama_base_url": fakes.urls["ollama"],
            "cohere_base_url": fakes.urls["cohere"],
            "azure_openai_base_url": fakes.urls["azure"],
            "bedrock_base_url": fakes.urls["bedrock"],
            "aws_region": "us-east-1",
        }
        settings.update(overrides)
        app = create_app(Config(env={}, dotenv_path=None, **settings))
        with run_server(app) as url:
            yield Proxy(url, app, db)

    return factory


@pytest.fixture
def proxy(start_proxy: ProxyFactory) -> Iterator[Proxy]:
    with start_proxy() as running:
        yield running


def stored_bytes(db: Path) -> bytes:
    """Everything the SQLite cache holds: every cell of every table, entries decompressed."""
    import sqlite3

    from llm_cache.cache.codec import decode_entry_parts, is_entry

    out = bytearray()
    conn = sqlite3.connect(db)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                for cell in row:
                    if isinstance(cell, bytes) and cell and is_entry(cell):
                        meta, request, payload = decode_entry_parts(cell)
                        out += repr(meta).encode() + bytes(request) + bytes(payload)
                    elif isinstance(cell, bytes):
                        out += cell
                    else:
                        out += str(cell).encode()
    finally:
        conn.close()
    return bytes(out)
