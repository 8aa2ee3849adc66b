"""Bad input and dead upstreams answer in each provider's own error shape, never a 5xx crash."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import httpx2
import pytest

from tests.proxy.more_providers.conftest import Fakes, Proxy, ProxyFactory

Shape = Callable[[Any], bool]
CASES: list[tuple[str, str, dict[str, str], Shape]] = [
    (
        "gemini",
        "/v1beta/models/gemini-2.5-flash:generateContent",
        {"x-goog-api-key": "k"},
        lambda b: isinstance(b["error"]["code"], int) and isinstance(b["error"]["status"], str),
    ),
    ("ollama", "/api/chat", {}, lambda b: set(b) == {"error"} and isinstance(b["error"], str)),
    (
        "cohere",
        "/v2/chat",
        {"authorization": "Bearer k"},
        lambda b: isinstance(b["message"], str) and "error" not in b,
    ),
    (
        "azure",
        "/openai/deployments/d/chat/completions?api-version=2024-10-21",
        {"api-key": "k"},
        lambda b: set(b["error"]) == {"code", "message"},
    ),
    (
        "bedrock",
        "/model/amazon.nova-lite-v1:0/converse",
        {"authorization": "Bearer bedrock-api-key-test"},
        lambda b: isinstance(b["message"], str) and isinstance(b["__type"], str),
    ),
]
IDS = [c[0] for c in CASES]


@pytest.mark.parametrize(("name", "path", "headers", "shape"), CASES, ids=IDS)
def test_malformed_json_is_a_400_in_the_provider_shape(
    proxy: Proxy, fakes: Fakes, name: str, path: str, headers: dict[str, str], shape: Shape
) -> None:
    r = httpx2.post(f"{proxy.url}{path}", headers=headers, content=b'{"model": ')
    assert r.status_code == 400
    assert shape(r.json()), r.text
    assert getattr(fakes, name).request_count == 0


@pytest.mark.parametrize(("name", "path", "headers", "shape"), CASES, ids=IDS)
def test_an_oversized_body_is_a_413_in_the_provider_shape(
    start_proxy: ProxyFactory, name: str, path: str, headers: dict[str, str], shape: Shape
) -> None:
    with start_proxy(max_body_bytes=1000) as proxy:
        r = httpx2.post(f"{proxy.url}{path}", headers=headers, json={"x": "y" * 5000})
    assert r.status_code == 413 and shape(r.json()), r.text


@pytest.mark.parametrize(("name", "path", "headers", "shape"), CASES, ids=IDS)
def test_an_unreachable_upstream_is_a_502_in_the_provider_shape(
    start_proxy: ProxyFactory, name: str, path: str, headers: dict[str, str], shape: Shape
) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    setting = {"azure": "azure_openai"}.get(name, name) + "_base_url"
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    with start_proxy(**{setting: dead}) as proxy:
        r = httpx2.post(f"{proxy.url}{path}", headers=headers, json=body)
    assert r.status_code == 502 and shape(r.json()), r.text
