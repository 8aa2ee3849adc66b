"""The semantic cache for Gemini generateContent, google-genai as the client."""

from __future__ import annotations

import time

from google import genai
from google.genai import types

from tests.proxy.more_providers.conftest import (  # noqa: F401 - fixtures used by name
    Fakes,
    Proxy,
    ProxyFactory,
    _aws_environment,
    _fake_servers,
    fakes,
    start_proxy,
)

MODEL = "gemini-2.5-flash"


def client(base_url: str) -> genai.Client:
    return genai.Client(
        api_key="AIza-gemini-secret-0001",
        http_options=types.HttpOptions(
            base_url=base_url, retry_options=types.HttpRetryOptions(attempts=1)
        ),
    )


def wait_stored(proxy: Proxy, count: int) -> None:
    semantic = proxy.app.semantic
    assert semantic is not None
    deadline = time.monotonic() + 5
    while semantic.counters["stored"] < count:
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_gemini_paraphrase_hits_and_entity_change_misses(
    start_proxy: ProxyFactory,  # noqa: F811 - the fixture imported above
    fakes: Fakes,  # noqa: F811
) -> None:
    with start_proxy(semantic=True) as proxy:
        c = client(proxy.url)
        first = c.models.generate_content(model=MODEL, contents="Why is the sky blue?")
        wait_stored(proxy, 1)
        second = c.models.generate_content(model=MODEL, contents="What makes the sky blue?")
        assert second.text == first.text
        assert fakes.gemini.request_count == 1
        headers = second.sdk_http_response.headers if second.sdk_http_response else {}
        assert headers.get("x-cache-status") == "SEMANTIC-HIT"
        streamed = "".join(
            ch.text or ""
            for ch in c.models.generate_content_stream(model=MODEL, contents="Why's the sky blue?")
        )
        assert streamed == first.text
        assert fakes.gemini.request_count == 1
        other = c.models.generate_content(model=MODEL, contents="Why is the sky blue on Mars?")
        assert other.text != first.text
        assert fakes.gemini.request_count == 2
        other_model = c.models.generate_content(
            model="gemini-2.5-pro", contents="What makes the sky blue?"
        )
        assert other_model.text != first.text
        assert fakes.gemini.request_count == 3
