"""Ollama through the real proxy, the ollama SDK as the client (SPEC: More providers).

The ollama SDK is built on classic ``httpx``, which the ``httpx2`` transport cannot plug into;
the transport test speaks Ollama's wire format with an ``httpx2`` client instead.
"""

from __future__ import annotations

import httpx2
import ollama
import pytest

from llm_cache.cache.memory_storage import MemoryStorage
from llm_cache.providers.ndjson import parse_ndjson
from llm_cache.wrapper.transport import httpx_client
from tests.proxy.more_providers.conftest import Fakes, Proxy, ProxyFactory, stored_bytes

MODEL = "llama3.2"
CHAT = [{"role": "user", "content": "Why is the sky blue?"}]


def test_miss_then_hit(proxy: Proxy, fakes: Fakes) -> None:
    c = ollama.Client(host=proxy.url)
    first = c.chat(model=MODEL, messages=CHAT, stream=False)
    second = c.chat(model=MODEL, messages=CHAT, stream=False)
    assert fakes.ollama.request_count == 1
    assert second.total_duration == first.total_duration  # unique per upstream call
    assert second.message.content == first.message.content


def test_streamed_miss_then_streamed_hit(proxy: Proxy, fakes: Fakes) -> None:
    c = ollama.Client(host=proxy.url)
    one = list(c.chat(model=MODEL, messages=CHAT, stream=True))
    two = list(c.chat(model=MODEL, messages=CHAT, stream=True))
    assert fakes.ollama.request_count == 1
    assert [p.model_dump() for p in one] == [p.model_dump() for p in two]
    assert len(one) > 2 and one[-1].done


def test_stream_absent_means_stream_and_the_hit_is_byte_exact(proxy: Proxy, fakes: Fakes) -> None:
    body = {"model": MODEL, "messages": CHAT}
    a = httpx2.post(f"{proxy.url}/api/chat", json=body)
    b = httpx2.post(f"{proxy.url}/api/chat", json=body)
    assert a.headers["content-type"].startswith("application/x-ndjson")
    assert b.headers["x-cache-status"] == "HIT" and b.content == a.content
    assert len(parse_ndjson(a.content)) > 2
    assert fakes.ollama.request_count == 1


def test_conversions_both_ways(proxy: Proxy, fakes: Fakes) -> None:
    c = ollama.Client(host=proxy.url)
    full = c.chat(model=MODEL, messages=CHAT, stream=False)
    parts = list(c.chat(model=MODEL, messages=CHAT, stream=True))
    assert fakes.ollama.request_count == 1
    assert "".join(p.message.content or "" for p in parts) == full.message.content
    assert parts[-1].done and parts[-1].eval_count == full.eval_count
    prompt = "Tell me about the sea"
    streamed = list(c.generate(model=MODEL, prompt=prompt, stream=True))
    merged = c.generate(model=MODEL, prompt=prompt, stream=False)
    assert fakes.ollama.request_count == 2
    assert merged.response == "".join(p.response or "" for p in streamed)
    assert merged.context == streamed[-1].context


def test_model_or_parameter_change_is_a_miss(proxy: Proxy, fakes: Fakes) -> None:
    c = ollama.Client(host=proxy.url)
    a = c.chat(model=MODEL, messages=CHAT, stream=False)
    b = c.chat(model="qwen3", messages=CHAT, stream=False)
    d = c.chat(model=MODEL, messages=CHAT, stream=False, options={"temperature": 0.1})
    e = c.chat(model=MODEL, messages=CHAT, stream=False, keep_alive="10m")  # not in the key
    assert fakes.ollama.request_count == 3
    assert len({a.message.content, b.message.content, d.message.content}) == 3
    assert e.total_duration == a.total_duration


def test_credentials_absent_from_storage(proxy: Proxy, fakes: Fakes) -> None:
    c = ollama.Client(host=proxy.url, headers={"Authorization": "Bearer ollama-secret-token-7"})
    c.chat(model=MODEL, messages=CHAT, stream=False)
    c.chat(model=MODEL, messages=CHAT, stream=False)
    assert fakes.ollama.last_request.headers["authorization"] == "Bearer ollama-secret-token-7"
    data = stored_bytes(proxy.db)
    assert b"Why is the sky blue?" in data and b"ollama-secret-token-7" not in data


def test_offline_miss_in_ollama_error_shape(start_proxy: ProxyFactory, fakes: Fakes) -> None:
    with start_proxy(mode="offline") as proxy:
        c = ollama.Client(host=proxy.url)
        with pytest.raises(ollama.ResponseError) as info:
            c.chat(model=MODEL, messages=CHAT, stream=False)
        with pytest.raises(ollama.ResponseError):
            list(c.chat(model=MODEL, messages=CHAT, stream=True))
    assert info.value.status_code == 404 and "offline" in info.value.error
    assert fakes.ollama.request_count == 0


def test_stream_cut_midway_is_not_stored(proxy: Proxy, fakes: Fakes) -> None:
    c = ollama.Client(host=proxy.url)
    fakes.ollama.abort_after = 2
    with pytest.raises(Exception):  # noqa: B017 - httpx's read error, unwrapped by the SDK
        list(c.chat(model=MODEL, messages=CHAT, stream=True))
    fakes.ollama.abort_after = None
    list(c.chat(model=MODEL, messages=CHAT, stream=True))
    assert fakes.ollama.request_count == 2


def test_stream_with_an_error_record_is_not_stored(proxy: Proxy, fakes: Fakes) -> None:
    c = ollama.Client(host=proxy.url)
    fakes.ollama.error_after = 2
    with pytest.raises(ollama.ResponseError):
        list(c.chat(model=MODEL, messages=CHAT, stream=True))
    fakes.ollama.error_after = None
    list(c.chat(model=MODEL, messages=CHAT, stream=True))
    assert fakes.ollama.request_count == 2


def test_errors_pass_through_and_embeddings_cache(proxy: Proxy, fakes: Fakes) -> None:
    c = ollama.Client(host=proxy.url)
    with pytest.raises(ollama.ResponseError) as info:
        c.chat(model="missing-model", messages=CHAT, stream=False)
    assert info.value.status_code == 404 and "not found" in info.value.error
    e1 = c.embed(model="nomic-embed-text", input=["a", "b"])
    e2 = c.embed(model="nomic-embed-text", input=["a", "b"])
    l1 = c.embeddings(model="nomic-embed-text", prompt="a")
    l2 = c.embeddings(model="nomic-embed-text", prompt="a")
    assert e1.embeddings == e2.embeddings and l1.embedding == l2.embedding
    assert fakes.ollama.count("/api/embed") == 2  # /api/embed and /api/embeddings, once each
    assert c.list() is not None  # uncached paths pass through


def test_through_the_httpx_transport(fakes: Fakes) -> None:
    storage = MemoryStorage(max_size=100)
    with httpx_client(storage, base_url=fakes.urls["ollama"]) as http:
        body = {"model": MODEL, "messages": CHAT}
        a = http.post("/api/chat", json=body)
        b = http.post("/api/chat", json=body)
        full = http.post("/api/chat", json={**body, "stream": False})
    assert b.headers["x-cache-status"] == "HIT" and b.content == a.content
    assert full.headers["x-cache-status"] == "HIT"
    records = [r.json() for r in parse_ndjson(a.content)]
    assert full.json()["message"]["content"] == "".join(r["message"]["content"] for r in records)
    assert fakes.ollama.request_count == 1
