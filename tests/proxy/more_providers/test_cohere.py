"""Cohere v2 through the real proxy, cohere.ClientV2 as the client (SPEC: More providers).

The cohere SDK is built on classic ``httpx``, which the ``httpx2`` transport cannot plug into;
the transport test speaks Cohere's wire format with an ``httpx2`` client instead.
"""

from __future__ import annotations

import cohere
import pytest

from llm_cache.cache.memory_storage import MemoryStorage
from llm_cache.providers.sse import parse_sse
from llm_cache.wrapper.transport import httpx_client
from tests.proxy.more_providers.conftest import Fakes, Proxy, ProxyFactory, stored_bytes

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:cohere")

MODEL = "command-a-03-2025"
CHAT = [{"role": "user", "content": "Hello there"}]
KEY = "co-secret-api-key-0042"


def client(url: str) -> cohere.ClientV2:
    return cohere.ClientV2(api_key=KEY, base_url=url, max_retries=0)


def text_of(events: list[object]) -> str:
    return "".join(
        e.delta.message.content.text  # type: ignore[attr-defined]
        for e in events
        if getattr(e, "type", None) == "content-delta"
    )


def test_miss_then_hit(proxy: Proxy, fakes: Fakes) -> None:
    c = client(proxy.url)
    first = c.chat(model=MODEL, messages=CHAT)  # type: ignore[arg-type]
    second = c.chat(model=MODEL, messages=CHAT)  # type: ignore[arg-type]
    assert fakes.cohere.request_count == 1
    assert second.id == first.id and second.message == first.message


def test_streamed_miss_then_streamed_hit(proxy: Proxy, fakes: Fakes) -> None:
    c = client(proxy.url)
    one = list(c.chat_stream(model=MODEL, messages=CHAT))  # type: ignore[arg-type]
    two = list(c.chat_stream(model=MODEL, messages=CHAT))  # type: ignore[arg-type]
    assert fakes.cohere.request_count == 1
    assert [e.model_dump() for e in one] == [e.model_dump() for e in two]
    assert one[0].type == "message-start" and one[-1].type == "message-end"


def test_conversions_both_ways(proxy: Proxy, fakes: Fakes) -> None:
    c = client(proxy.url)
    full = c.chat(model=MODEL, messages=CHAT)  # type: ignore[arg-type]
    events = list(c.chat_stream(model=MODEL, messages=CHAT))  # type: ignore[arg-type]
    assert fakes.cohere.request_count == 1
    assert text_of(events) == full.message.content[0].text  # type: ignore[index,union-attr]
    assert events[0].id == full.id  # type: ignore[union-attr]
    other = [{"role": "user", "content": "Tell me about the sea"}]
    streamed = list(c.chat_stream(model=MODEL, messages=other))  # type: ignore[arg-type]
    merged = c.chat(model=MODEL, messages=other)  # type: ignore[arg-type]
    assert fakes.cohere.request_count == 2
    assert merged.message.content[0].text == text_of(streamed)  # type: ignore[index,union-attr]
    assert merged.finish_reason == "COMPLETE" and merged.usage is not None


def test_model_or_parameter_change_is_a_miss(proxy: Proxy, fakes: Fakes) -> None:
    c = client(proxy.url)
    a = c.chat(model=MODEL, messages=CHAT)  # type: ignore[arg-type]
    b = c.chat(model="command-r-plus", messages=CHAT)  # type: ignore[arg-type]
    d = c.chat(model=MODEL, messages=CHAT, temperature=0.2)  # type: ignore[arg-type]
    assert fakes.cohere.request_count == 3
    texts = {x.message.content[0].text for x in (a, b, d)}  # type: ignore[index,union-attr]
    assert len(texts) == 3


def test_credentials_absent_from_storage(proxy: Proxy, fakes: Fakes) -> None:
    c = client(proxy.url)
    c.chat(model=MODEL, messages=CHAT)  # type: ignore[arg-type]
    c.chat(model=MODEL, messages=CHAT)  # type: ignore[arg-type]
    assert fakes.cohere.request_count == 1
    data = stored_bytes(proxy.db)
    assert b"Hello there" in data and KEY.encode() not in data


def test_offline_miss_in_cohere_error_shape(start_proxy: ProxyFactory, fakes: Fakes) -> None:
    with start_proxy(mode="offline") as proxy:
        c = client(proxy.url)
        with pytest.raises(cohere.errors.NotFoundError) as info:
            c.chat(model=MODEL, messages=CHAT)  # type: ignore[arg-type]
    assert "offline" in info.value.body["message"]
    assert fakes.cohere.request_count == 0


def test_stream_cut_midway_is_not_stored(proxy: Proxy, fakes: Fakes) -> None:
    c = client(proxy.url)
    fakes.cohere.abort_after = 3
    with pytest.raises(Exception):  # noqa: B017 - httpx's read error, unwrapped by the SDK
        list(c.chat_stream(model=MODEL, messages=CHAT))  # type: ignore[arg-type]
    fakes.cohere.abort_after = None
    list(c.chat_stream(model=MODEL, messages=CHAT))  # type: ignore[arg-type]
    assert fakes.cohere.request_count == 2


def test_stream_ending_in_error_is_not_stored(proxy: Proxy, fakes: Fakes) -> None:
    c = client(proxy.url)
    fakes.cohere.error_after = 3
    events = list(c.chat_stream(model=MODEL, messages=CHAT))  # type: ignore[arg-type]
    assert events[-1].delta.finish_reason == "ERROR"  # type: ignore[union-attr]
    fakes.cohere.error_after = None
    events = list(c.chat_stream(model=MODEL, messages=CHAT))  # type: ignore[arg-type]
    assert events[-1].delta.finish_reason == "COMPLETE"  # type: ignore[union-attr]
    assert fakes.cohere.request_count == 2


def test_errors_pass_through_embed_and_rerank_cache(proxy: Proxy, fakes: Fakes) -> None:
    c = client(proxy.url)
    fakes.cohere.status = 429
    with pytest.raises(cohere.errors.TooManyRequestsError):
        c.chat(model=MODEL, messages=CHAT)  # type: ignore[arg-type]
    fakes.cohere.status = None
    kw = {"model": "embed-v4.0", "texts": ["a"], "input_type": "search_document"}
    e1, e2 = c.embed(**kw), c.embed(**kw)  # type: ignore[arg-type]
    assert e1.id == e2.id
    r1 = c.rerank(model="rerank-v3.5", query="q", documents=["x", "y"])
    r2 = c.rerank(model="rerank-v3.5", query="q", documents=["x", "y"])
    assert r1.id == r2.id
    assert fakes.cohere.request_count == 3  # the 429, one embed, one rerank


def test_through_the_httpx_transport(fakes: Fakes) -> None:
    storage = MemoryStorage(max_size=100)
    headers = {"authorization": f"Bearer {KEY}"}
    body = {"model": MODEL, "messages": CHAT, "stream": True}
    with httpx_client(storage, base_url=fakes.urls["cohere"], headers=headers) as http:
        a = http.post("/v2/chat", json=body)
        b = http.post("/v2/chat", json=body)
        full = http.post("/v2/chat", json={**body, "stream": False})
    assert b.headers["x-cache-status"] == "HIT" and b.content == a.content
    assert full.headers["x-cache-status"] == "HIT"
    deltas = [e.json() for e in parse_sse(a.content) if e.event == "content-delta"]
    text = "".join(d["delta"]["message"]["content"]["text"] for d in deltas)
    assert full.json()["message"]["content"][0]["text"] == text
    assert fakes.cohere.request_count == 1
