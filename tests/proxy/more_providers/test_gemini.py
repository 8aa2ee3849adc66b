"""Gemini through the real proxy, google-genai as the client (SPEC: More providers)."""

from __future__ import annotations

import httpx2
import pytest
from google import genai
from google.genai import errors, types

from llm_cache.wrapper.transport import httpx_client
from tests.proxy.more_providers.conftest import Fakes, Proxy, ProxyFactory, stored_bytes

MODEL = "gemini-2.5-flash"
KEY = "AIza-gemini-secret-0001"
PROMPT = "Why is the sky blue?"


def client(base_url: str, **options: object) -> genai.Client:
    return genai.Client(
        api_key=KEY,
        http_options=types.HttpOptions(
            base_url=base_url, retry_options=types.HttpRetryOptions(attempts=1), **options
        ),
    )


def stream_text(c: genai.Client, **kwargs: object) -> tuple[str, list[str | None]]:
    chunks = list(c.models.generate_content_stream(model=MODEL, contents=PROMPT, **kwargs))  # type: ignore[arg-type]
    return "".join(ch.text or "" for ch in chunks), [ch.response_id for ch in chunks]


def test_miss_then_hit(proxy: Proxy, fakes: Fakes) -> None:
    c = client(proxy.url)
    first = c.models.generate_content(model=MODEL, contents=PROMPT)
    second = c.models.generate_content(model=MODEL, contents=PROMPT)
    assert fakes.gemini.request_count == 1
    assert second.response_id == first.response_id and second.text == first.text
    assert first.text and "[h=" in first.text


def test_streamed_miss_then_streamed_hit(proxy: Proxy, fakes: Fakes) -> None:
    c = client(proxy.url)
    text1, ids1 = stream_text(c)
    text2, ids2 = stream_text(c)
    assert fakes.gemini.request_count == 1
    assert text1 == text2 and ids1 == ids2 and len(ids1) > 1
    assert fakes.gemini.last_request.query == {"alt": "sse"}


def test_conversions_both_ways(proxy: Proxy, fakes: Fakes) -> None:
    c = client(proxy.url)
    full = c.models.generate_content(model=MODEL, contents=PROMPT)
    text, ids = stream_text(c)  # a stream answered from the JSON entry
    assert fakes.gemini.request_count == 1
    assert text == full.text and ids == [full.response_id]
    other = "Tell me about the sea"
    chunks = list(c.models.generate_content_stream(model=MODEL, contents=other))
    merged = c.models.generate_content(model=MODEL, contents=other)  # JSON from the stream entry
    assert fakes.gemini.request_count == 2
    assert merged.text == "".join(ch.text or "" for ch in chunks)
    assert merged.response_id == chunks[0].response_id


def test_model_or_parameter_change_is_a_miss(proxy: Proxy, fakes: Fakes) -> None:
    c = client(proxy.url)
    a = c.models.generate_content(model=MODEL, contents=PROMPT)
    b = c.models.generate_content(model="gemini-2.5-pro", contents=PROMPT)
    cfg = types.GenerateContentConfig(temperature=0.3)
    d = c.models.generate_content(model=MODEL, contents=PROMPT, config=cfg)
    assert fakes.gemini.request_count == 3
    assert len({a.text, b.text, d.text}) == 3


def test_key_in_the_query_or_header_never_stored_and_never_keyed(
    proxy: Proxy, fakes: Fakes
) -> None:
    c = client(proxy.url)
    c.models.generate_content(model=MODEL, contents=PROMPT)
    body = {"contents": [{"parts": [{"text": PROMPT}], "role": "user"}]}
    url = f"{proxy.url}/v1beta/models/{MODEL}:generateContent"
    with_query_key = httpx2.post(f"{url}?key=AIza-other-query-key-2", json=body)
    assert with_query_key.status_code == 200
    assert fakes.gemini.last_request.query == {"key": "AIza-other-query-key-2"}  # forwarded
    again = httpx2.post(url, headers={"x-goog-api-key": "AIza-third"}, json=body)
    assert again.headers["x-cache-status"] == "HIT"
    assert again.headers["x-cache-key"] == with_query_key.headers["x-cache-key"]
    data = stored_bytes(proxy.db)
    assert data  # entries are there ...
    for secret in (KEY, "AIza-other-query-key-2", "AIza-third"):
        assert secret.encode() not in data  # ... without a credential


def test_offline_miss_in_gemini_error_shape(start_proxy: ProxyFactory, fakes: Fakes) -> None:
    with start_proxy(mode="offline") as proxy:
        c = client(proxy.url)
        with pytest.raises(errors.ClientError) as info:
            c.models.generate_content(model=MODEL, contents=PROMPT)
    assert info.value.code == 404 and info.value.status == "NOT_FOUND"
    assert "offline" in (info.value.message or "")
    assert fakes.gemini.request_count == 0


def test_stream_cut_midway_is_not_stored(proxy: Proxy, fakes: Fakes) -> None:
    c = client(proxy.url)
    fakes.gemini.abort_after = 1
    with pytest.raises(Exception):  # noqa: B017 - the SDK surfaces httpx's read error
        stream_text(c)
    fakes.gemini.abort_after = None
    stream_text(c)
    assert fakes.gemini.request_count == 2  # the cut stream left nothing behind


def test_stream_with_an_error_chunk_is_not_stored(proxy: Proxy, fakes: Fakes) -> None:
    c = client(proxy.url)
    fakes.gemini.error_after = 1
    with pytest.raises(errors.APIError):
        stream_text(c)
    fakes.gemini.error_after = None
    stream_text(c)
    assert fakes.gemini.request_count == 2


def test_upstream_errors_pass_through(proxy: Proxy, fakes: Fakes) -> None:
    c = client(proxy.url)
    fakes.gemini.status = 429
    with pytest.raises(errors.ClientError) as info:
        c.models.generate_content(model=MODEL, contents=PROMPT)
    assert info.value.code == 429 and info.value.status == "RESOURCE_EXHAUSTED"
    fakes.gemini.status = None
    c.models.generate_content(model=MODEL, contents=PROMPT)
    assert fakes.gemini.request_count == 2  # the error was not stored


def test_json_array_stream_is_relayed_never_cached(proxy: Proxy, fakes: Fakes) -> None:
    url = f"{proxy.url}/v1beta/models/{MODEL}:streamGenerateContent?key=k"
    body = {"contents": [{"parts": [{"text": PROMPT}], "role": "user"}]}
    for _ in range(2):
        r = httpx2.post(url, json=body)
        assert r.status_code == 200 and isinstance(r.json(), list)
        assert r.headers.get("x-cache-status") != "HIT"
    # a JSON answer of the same request must not answer the array request either
    httpx2.post(url.replace("streamGenerateContent", "generateContent"), json=body)
    r = httpx2.post(url, json=body)
    assert isinstance(r.json(), list)
    assert fakes.gemini.request_count == 4


def test_embeddings(proxy: Proxy, fakes: Fakes) -> None:
    c = client(proxy.url)
    a = c.models.embed_content(model="gemini-embedding-001", contents=["a", "b"])
    b = c.models.embed_content(model="gemini-embedding-001", contents=["a", "b"])
    assert fakes.gemini.request_count == 1
    assert a.embeddings == b.embeddings


def test_through_the_httpx_transport(fakes: Fakes) -> None:
    from llm_cache.cache.memory_storage import MemoryStorage

    storage = MemoryStorage(max_size=100)
    c = client(fakes.urls["gemini"], httpx_client=httpx_client(storage))
    first = c.models.generate_content(model=MODEL, contents=PROMPT)
    second = c.models.generate_content(model=MODEL, contents=PROMPT)
    text, ids = stream_text(c)
    assert fakes.gemini.request_count == 1
    assert second.response_id == first.response_id and text == first.text
    assert ids == [first.response_id]
