"""The routing seam: a provider is one module plus one registry line, nothing else.

* Statically: no code on the request path (engine, proxy, storage, the httpx transport, CLI)
  outside the five provider modules (and the codecs and signer only they use) knows a route,
  endpoint, framing or marker of theirs — docstrings and comments aside.
  The only other place that names them is ``config.py``'s upstream settings, which each
  descriptor points to by name (``base_url_setting``).
* Dynamically: every route of the five resolves through the proxy's router and the transports'
  ``match_path``, both of which read only the registry; and a provider that exists only as a
  registry entry (made in this test) is routed and cached by a real proxy.
"""

from __future__ import annotations

import ast
import itertools
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import orjson
import pytest

import llm_cache
from llm_cache import providers
from llm_cache.config import Config
from llm_cache.providers import match_path
from llm_cache.providers.base import ProviderSpec, RouteSpec
from llm_cache.proxy.routing import Router
from llm_cache.proxy.server import create_app
from tests.servers import run_server

PACKAGE = Path(llm_cache.__file__).parent
NEW = ("gemini", "ollama", "cohere", "azure", "bedrock")
#: Files allowed to know the five: their modules, the codecs and signer only they use, and the
#: registry (one line each).
OWN = {f"providers/{n}.py" for n in NEW} | {
    "providers/ndjson.py",
    "providers/eventstream.py",
    "providers/aws_sigv4.py",
    "providers/__init__.py",
}
#: Wire-format knowledge of the five: routes, endpoints, frame types, markers, media types.
MARKERS = (
    "generatecontent",
    "streamgeneratecontent",
    "embedcontent",
    "batchembedcontents",
    "alt=sse",
    "/api/chat",
    "/api/generate",
    "/api/embed",
    "/v2/chat",
    "/v2/embed",
    "/v2/rerank",
    "message-end",
    "done_reason",
    "finishreason",
    "/openai/deployments",
    "/openai/v1",
    "api-version",
    "converse",
    "invoke-with-response-stream",
    "/model/",
    "x-ndjson",
    "vnd.amazon.eventstream",
    "messagestop",
    "sigv4",
    "botocore",
    "ndjson",
    "eventstream",
    *NEW,
)


def _code_strings(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """Names, attributes, imports and string constants of the code, docstrings left out."""
    docstrings: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            value = body[0].value
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                docstrings.add(id(value))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) not in docstrings:
                yield node.lineno, node.value
        elif isinstance(node, ast.Name):
            yield node.lineno, node.id
        elif isinstance(node, ast.Attribute):
            yield node.lineno, node.attr
        elif isinstance(node, ast.alias):
            yield node.lineno, node.name
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.lineno, node.module


#: The request path of the cache: routing, keys, exchange, storage, both front ends' adapters.
#: Elsewhere provider names are data, not routing: the function wrapper labels a wrapped call
#: with a provider guessed from its package, the savings table maps provider names to price
#: ids, the pytest plugin records any httpx call whatever its framing.
HTTP_PATH = ("engine/", "proxy/", "cache/", "providers/", "wrapper/transport.py", "cli.py")


def _on_the_http_path(rel: str) -> bool:
    return rel.startswith(HTTP_PATH)


def test_no_code_outside_the_provider_modules_knows_them() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel in OWN or rel == "config.py" or not _on_the_http_path(rel):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for line, text in _code_strings(tree):
            low = text.lower()
            found += [f"{rel}:{line}: {text!r}" for m in MARKERS if m in low]
    assert found == []


def test_config_names_their_upstreams_and_nothing_else_of_them() -> None:
    """``config.py`` holds the SPEC's upstream settings that the descriptors point to."""
    config = Config(env={}, dotenv_path=None, aws_region="us-east-1")
    for name in NEW:
        provider = providers.get_provider(name)
        assert hasattr(config, provider.base_url_setting), name
    tree = ast.parse((PACKAGE / "config.py").read_text(encoding="utf-8"))
    wire = [t for _, t in _code_strings(tree) for m in MARKERS[: -len(NEW)] if m in t.lower()]
    assert wire == []  # only setting names and default URLs, no wire format


def test_the_registry_lists_the_five_once() -> None:
    names = [p.name for p in providers.all_providers()]
    assert len(names) == len(set(names))
    assert set(NEW) <= set(names)
    assert all(n in providers.PROVIDER_MODULES for n in NEW)


ROUTES: list[tuple[str, str, str]] = [
    ("gemini", "/v1beta/models/gemini-2.5-flash:generateContent", "generateContent"),
    ("gemini", "/v1/models/gemini-2.5-flash:streamGenerateContent", "generateContent"),
    ("gemini", "/v1beta/models/text-embedding-004:embedContent", "embedContent"),
    ("gemini", "/v1beta/models/text-embedding-004:batchEmbedContents", "batchEmbedContents"),
    ("ollama", "/api/chat", "/api/chat"),
    ("ollama", "/api/generate", "/api/generate"),
    ("ollama", "/api/embed", "/api/embed"),
    ("ollama", "/api/embeddings", "/api/embeddings"),
    ("cohere", "/v2/chat", "/v2/chat"),
    ("cohere", "/v2/embed", "/v2/embed"),
    ("cohere", "/v2/rerank", "/v2/rerank"),
    ("azure", "/openai/deployments/gpt4o/chat/completions", "/chat/completions"),
    ("azure", "/openai/deployments/gpt4o/completions", "/completions"),
    ("azure", "/openai/deployments/emb/embeddings", "/embeddings"),
    ("azure", "/openai/v1/chat/completions", "/chat/completions"),
    ("bedrock", "/model/amazon.nova-lite-v1%3A0/converse", "converse"),
    ("bedrock", "/model/amazon.nova-lite-v1:0/converse-stream", "converse"),
    ("bedrock", "/model/anthropic.claude-v2/invoke", "invoke"),
    ("bedrock", "/model/anthropic.claude-v2/invoke-with-response-stream", "invoke"),
]


@pytest.mark.parametrize(("name", "path", "endpoint"), ROUTES)
def test_every_route_resolves_from_the_registry(name: str, path: str, endpoint: str) -> None:
    config = Config(
        env={},
        dotenv_path=None,
        azure_openai_base_url="https://res.openai.azure.com",
        aws_region="us-east-1",
    )
    route = Router(config).resolve(path, {})
    assert route is not None and route.match is not None
    assert (route.upstream.name, route.endpoint) == (name, endpoint)
    assert route.url.startswith(getattr(config, route.upstream.provider.base_url_setting))
    m = match_path(path, {})
    assert m is not None and (m.provider.name, m.endpoint) == (name, endpoint)


def test_unconfigured_upstreams_are_not_served() -> None:
    router = Router(Config(env={}, dotenv_path=None))  # no Azure URL, no AWS region
    assert router.resolve("/openai/deployments/d/chat/completions", {}) is None
    assert router.resolve("/model/m/converse", {}) is None
    assert router.resolve("/api/chat", {}) is not None  # Ollama has a default upstream


# ---------------------------------------------------------------------- a sixth provider
class ToyProvider(ProviderSpec):
    """A wire format that exists only in this test: one module, one registry line."""

    name = "toy"
    routes = (RouteSpec("/toy/{model}/answer", "answer"),)
    base_url_setting = "toy_base_url"


@pytest.fixture
def toy_registered(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    module = types.ModuleType("llm_cache.providers.toy")
    module.PROVIDER = ToyProvider()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "llm_cache.providers.toy", module)
    monkeypatch.setattr(providers, "PROVIDER_MODULES", (*providers.PROVIDER_MODULES, "toy"))
    providers.all_providers.cache_clear()
    yield
    providers.all_providers.cache_clear()


def test_a_new_provider_is_one_module_and_one_registry_line(
    toy_registered: None, tmp_path: Path
) -> None:
    serial = itertools.count(1)

    async def upstream(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        message = await receive()
        answer = {"n": next(serial), "echo": orjson.loads(message.get("body") or b"{}")}
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": orjson.dumps(answer)})

    with run_server(upstream) as upstream_url:
        config = Config(env={}, dotenv_path=None, sqlite_path=str(tmp_path / "c.db"))
        config.toy_base_url = upstream_url  # type: ignore[attr-defined]
        with run_server(create_app(config)) as proxy:
            a = httpx2.post(f"{proxy}/toy/m1/answer", json={"q": 1})
            b = httpx2.post(f"{proxy}/toy/m1/answer", json={"q": 1})
            c = httpx2.post(f"{proxy}/toy/m2/answer", json={"q": 1})
    assert a.headers["x-cache-status"] == "MISS" and b.headers["x-cache-status"] == "HIT"
    assert a.json() == b.json() == {"n": 1, "echo": {"q": 1}}
    assert c.json()["n"] == 2  # the model in the path is in the key
