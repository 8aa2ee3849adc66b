"""Scaffolding for the examples: the project's simulated upstream and a proxy, offline.

The simulated upstream (``tests/fake_upstream.py``) speaks the OpenAI and Anthropic wire formats
on a free loopback port; its answers depend on the request, so a wrong hit would show. Run the
examples from a checkout of the repository, with the package installed (``pip install -e .``).
Against the real APIs, drop this scaffolding and point the clients at your proxy instead.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.fake_upstream

from llm_cache.config import Config
from llm_cache.proxy.server import create_app
from tests.fake_upstream import create_fake_upstream
from tests.servers import run_server

FAKE_OPENAI_KEY = "sk-example-not-a-real-key"
FAKE_ANTHROPIC_KEY = "sk-ant-example-not-a-real-key"


@contextmanager
def simulated_upstream() -> Iterator[str]:
    """The simulated OpenAI + Anthropic API; yields its base URL (``http://127.0.0.1:N``)."""
    with run_server(create_fake_upstream().app) as url:
        yield url


@contextmanager
def proxy(upstream_url: str, **settings: Any) -> Iterator[str]:
    """``llm-cache serve`` in a background thread, in front of ``upstream_url``.

    ``settings`` are ``Config`` fields (``backend="redis"``, ``sqlite_path=...``, ``mode=...``),
    the same as the LLM_CACHE_* variables. Yields the proxy's base URL.
    """
    config = Config(
        env={},
        dotenv_path=None,
        openai_base_url=f"{upstream_url}/v1",
        anthropic_base_url=upstream_url,
        **settings,
    )
    with run_server(create_app(config)) as url:
        yield url
