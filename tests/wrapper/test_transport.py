"""The httpx2 caching transport under the real SDKs, and entries shared with the proxy."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import openai
import orjson
import pytest
from anthropic.types import Message
from openai.types import CreateEmbeddingResponse
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from llm_cache.cache.memory_storage import MemoryStorage
from llm_cache.cache.sqlite_storage import SQLiteStorage
from llm_cache.config import Config
from llm_cache.wrapper.transport import (
    AsyncCacheTransport,
    CacheTransport,
    async_httpx_client,
    httpx_client,
    match_endpoint,
)
from tests.conftest import ProxyFactory, Upstream

CLAUDE = "claude-haiku-4-5"
MODEL = "gpt-4o-mini"


def chat(content: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": content}]


@pytest.fixture
def storage() -> MemoryStorage:
    return MemoryStorage(max_size=100)


def openai_client(upstream: Upstream, storage: Any, **kwargs: Any) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{upstream.url}/v1",
        api_key="sk-secret-test",
        max_retries=0,
        http_client=httpx_client(storage, **kwargs),
    )


def anthropic_client(upstream: Upstream, storage: Any) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=upstream.url,
        api_key="sk-ant-secret",
        max_retries=0,
        http_client=httpx_client(storage),
    )


def test_endpoint_matching() -> None:
    assert match_endpoint("POST", "/v1/chat/completions", False)[1] == "/chat/completions"  # type: ignore[index]
    assert match_endpoint("POST", "/v1/completions", False)[1] == "/completions"  # type: ignore[index]
    assert match_endpoint("POST", "/groq/v1/embeddings", False)[1] == "/embeddings"  # type: ignore[index]
    assert match_endpoint("POST", "/v1/responses", False)[1] == "/responses"  # type: ignore[index]
    assert match_endpoint("POST", "/v1/messages", False)[0].name == "anthropic"  # type: ignore[index]
    assert match_endpoint("GET", "/v1/chat/completions", False) is None
    assert match_endpoint("POST", "/v1/models", False) is None
    assert match_endpoint("POST", "/v1/messages/count_tokens", True) is None
    assert match_endpoint("POST", "/v1/threads/t_1/messages", False) is None  # OpenAI threads


def test_openai_miss_then_hit_with_native_objects(
    upstream: Upstream, storage: MemoryStorage
) -> None:
    client = openai_client(upstream, storage)
    raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=chat("hi"))
    first = raw.parse()
    assert raw.headers["x-cache-hit"] == "false"
    key = raw.headers["x-cache-key"]
    assert len(key) == 64
    raw2 = client.chat.completions.with_raw_response.create(model=MODEL, messages=chat("hi"))
    second = raw2.parse()
    assert raw2.headers["x-cache-hit"] == "true" and raw2.headers["x-cache-key"] == key
    assert type(second) is ChatCompletion and second == first and second.id == first.id
    assert upstream.fake.count("/chat/completions") == 1
    other = client.chat.completions.create(model=MODEL, messages=chat("other"))
    assert other.id != first.id
    assert upstream.fake.count("/chat/completions") == 2
    embeddings = [client.embeddings.create(model="e", input="x") for _ in range(2)]
    assert type(embeddings[1]) is CreateEmbeddingResponse and embeddings[0] == embeddings[1]
    assert upstream.fake.count("/embeddings") == 1
    for blob, _ in storage._data.values():
        assert b"sk-secret" not in blob


def test_compressed_answers_are_stored_decoded(upstream: Upstream, storage: MemoryStorage) -> None:
    client = openai_client(upstream, storage)
    raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=chat("gz"))
    assert "gzip" in upstream.fake.last_request.headers.get("accept-encoding", "")
    assert "content-encoding" not in raw.headers
    value = storage.get(raw.headers["x-cache-key"])
    assert value is not None
    assert orjson.loads(value["payload"])["id"] == raw.parse().id
    hit = client.chat.completions.with_raw_response.create(model=MODEL, messages=chat("gz"))
    assert "content-encoding" not in hit.headers and hit.parse().id == raw.parse().id


def test_stream_miss_streams_and_is_replayed(upstream: Upstream, storage: MemoryStorage) -> None:
    client = openai_client(upstream, storage)
    args: dict[str, Any] = {"model": MODEL, "messages": chat("a b c d e f g h"), "stream": True}
    upstream.fake.chunk_delay_ms = 40
    start = time.monotonic()
    stream = client.chat.completions.create(**args)
    first_chunk = next(iter(stream))
    first_at = time.monotonic() - start
    chunks = [first_chunk, *stream]
    total = time.monotonic() - start
    assert first_at < total / 2  # chunk by chunk, not buffered
    assert all(type(c) is ChatCompletionChunk for c in chunks)
    upstream.fake.chunk_delay_ms = 0
    replay = list(client.chat.completions.create(**args))
    assert replay == chunks
    assert upstream.fake.count("/chat/completions") == 1


def test_stream_closed_early_is_not_stored(upstream: Upstream, storage: MemoryStorage) -> None:
    client = openai_client(upstream, storage)
    args: dict[str, Any] = {"model": MODEL, "messages": chat("one two three four"), "stream": True}
    # Slow chunks: the client closes long before the upstream finishes (a stream whose end
    # marker already arrived is complete, and may be stored even if the client closes then).
    slow = {"x-fake-chunk-delay-ms": "100"}
    with client.chat.completions.create(**args, extra_headers=slow) as stream:
        next(iter(stream))
    time.sleep(0.3)
    assert storage.get_size() == 0
    list(client.chat.completions.create(**args))
    list(client.chat.completions.create(**args))
    assert upstream.fake.count("/chat/completions") == 2


def test_aborted_stream_is_not_stored(upstream: Upstream, storage: MemoryStorage) -> None:
    client = openai_client(upstream, storage)
    args: dict[str, Any] = {"model": MODEL, "messages": chat("abort me please"), "stream": True}
    with pytest.raises((openai.APIError, httpx2.HTTPError)):
        list(client.chat.completions.create(**args, extra_headers={"x-fake-abort-after": "2"}))
    assert storage.get_size() == 0


def test_stream_request_served_from_a_full_answer(
    upstream: Upstream, storage: MemoryStorage
) -> None:
    client = openai_client(upstream, storage)
    full = client.chat.completions.create(model=MODEL, messages=chat("convert"))
    chunks = list(
        client.chat.completions.create(model=MODEL, messages=chat("convert"), stream=True)
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full.choices[0].message.content
    assert upstream.fake.count("/chat/completions") == 1


def test_errors_pass_through_and_are_not_stored(upstream: Upstream, storage: MemoryStorage) -> None:
    client = openai_client(upstream, storage)
    for _ in range(2):
        with pytest.raises(openai.RateLimitError) as info:
            client.chat.completions.create(
                model=MODEL, messages=chat("limited"), extra_headers={"x-fake-status": "429"}
            )
        assert info.value.response.headers["retry-after"] == "7"
        assert info.value.response.headers["x-cache-hit"] == "false"
    assert upstream.fake.count("/chat/completions") == 2
    assert storage.get_size() == 0


def test_uncached_paths_pass_through(upstream: Upstream, storage: MemoryStorage) -> None:
    client = openai_client(upstream, storage)
    client.models.list()
    client.models.list()
    assert upstream.fake.count("/models") == 2
    assert storage.get_size() == 0


def test_per_request_controls(upstream: Upstream, storage: MemoryStorage) -> None:
    client = openai_client(upstream, storage)
    first = client.chat.completions.create(model=MODEL, messages=chat("ctl"))
    bypassed = client.chat.completions.create(
        model=MODEL, messages=chat("ctl"), extra_headers={"X-Cache-Bypass": "true"}
    )
    assert bypassed.id != first.id
    assert not any(k.startswith("x-cache-") for k in upstream.fake.last_request.headers)
    assert client.chat.completions.create(model=MODEL, messages=chat("ctl")).id == bypassed.id
    by_body = client.chat.completions.create(
        model=MODEL, messages=chat("ctl"), extra_body={"_cache_bypass": True}
    )
    assert "_cache_bypass" not in upstream.fake.last_request.body
    assert by_body.id != bypassed.id
    assert client.chat.completions.create(model=MODEL, messages=chat("ctl")).id == by_body.id
    assert upstream.fake.count("/chat/completions") == 3

    no_store = {"Cache-Control": "no-store"}
    client.chat.completions.create(model=MODEL, messages=chat("ns"), extra_headers=no_store)
    client.chat.completions.create(model=MODEL, messages=chat("ns"))
    assert upstream.fake.count("/chat/completions") == 5

    ttl = {"X-Cache-TTL": "0.2"}
    client.chat.completions.create(model=MODEL, messages=chat("ttl"), extra_headers=ttl)
    client.chat.completions.create(model=MODEL, messages=chat("ttl"))
    assert upstream.fake.count("/chat/completions") == 6
    time.sleep(0.3)
    client.chat.completions.create(model=MODEL, messages=chat("ttl"))
    assert upstream.fake.count("/chat/completions") == 7

    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model=MODEL, messages=chat("ttl"), extra_headers={"X-Cache-TTL": "soon"}
        )


def test_modes(upstream: Upstream, storage: MemoryStorage) -> None:
    openai_client(upstream, storage).chat.completions.create(model=MODEL, messages=chat("m"))
    offline = openai_client(upstream, storage, mode="offline")
    assert (
        offline.chat.completions.create(model=MODEL, messages=chat("m")).object == "chat.completion"
    )
    with pytest.raises(openai.NotFoundError, match="offline"):
        offline.chat.completions.create(model=MODEL, messages=chat("never recorded"))
    off = openai_client(upstream, storage, mode="off")
    off.chat.completions.create(model=MODEL, messages=chat("m"))
    assert upstream.fake.count("/chat/completions") == 2


def test_anthropic_json_and_stream(upstream: Upstream, storage: MemoryStorage) -> None:
    client = anthropic_client(upstream, storage)
    args: dict[str, Any] = {"model": CLAUDE, "max_tokens": 100, "messages": chat("hello")}
    first = client.messages.create(**args)
    second = client.messages.create(**args)
    assert type(second) is Message and second == first
    events = list(client.messages.create(**args, system="s", stream=True))
    replay = list(client.messages.create(**args, system="s", stream=True))
    assert replay == events
    assert upstream.fake.count("/messages") == 2
    versioned = anthropic.Anthropic(
        base_url=upstream.url,
        api_key="k",
        max_retries=0,
        http_client=httpx_client(storage),
        default_headers={"anthropic-beta": "some-beta"},
    )
    versioned.messages.create(**args)  # an output-affecting header: another entry
    assert upstream.fake.count("/messages") == 3


async def test_async_clients(upstream: Upstream, storage: MemoryStorage) -> None:
    client = openai.AsyncOpenAI(
        base_url=f"{upstream.url}/v1",
        api_key="sk",
        max_retries=0,
        http_client=async_httpx_client(storage),
    )
    first = await client.chat.completions.create(model=MODEL, messages=chat("async"))
    second = await client.chat.completions.create(model=MODEL, messages=chat("async"))
    assert second.id == first.id
    args: dict[str, Any] = {"model": MODEL, "messages": chat("async stream"), "stream": True}
    # Slow chunks: the client leaves before the stream ends, so nothing is stored.
    half = await client.chat.completions.create(
        **args, extra_headers={"x-fake-chunk-delay-ms": "100"}
    )
    await half.__anext__()
    await half.close()
    assert upstream.fake.count("/chat/completions") == 2
    chunks = [c async for c in await client.chat.completions.create(**args)]
    replay = [c async for c in await client.chat.completions.create(**args)]
    assert replay == chunks and all(type(c) is ChatCompletionChunk for c in replay)
    assert upstream.fake.count("/chat/completions") == 3
    await client.close()

    aclient = anthropic.AsyncAnthropic(
        base_url=upstream.url, api_key="k", max_retries=0, http_client=async_httpx_client(storage)
    )
    margs: dict[str, Any] = {
        "model": CLAUDE,
        "max_tokens": 50,
        "messages": chat("x"),
        "stream": True,
    }
    events = [e async for e in await aclient.messages.create(**margs)]
    replay_events = [e async for e in await aclient.messages.create(**margs)]
    assert replay_events == events
    assert upstream.fake.count("/messages") == 1
    await aclient.close()


def test_transport_wraps_an_inner_transport(upstream: Upstream, storage: MemoryStorage) -> None:
    seen: list[str] = []

    class Spy(httpx2.HTTPTransport):
        def handle_request(self, request: httpx2.Request) -> httpx2.Response:
            seen.append(request.url.path)
            return super().handle_request(request)

    transport = CacheTransport(storage, transport=Spy(), config=Config(env={}, dotenv_path=None))
    client = openai.OpenAI(
        base_url=f"{upstream.url}/v1",
        api_key="sk",
        max_retries=0,
        http_client=httpx2.Client(transport=transport),
    )
    client.chat.completions.create(model=MODEL, messages=chat("spy"))
    client.chat.completions.create(model=MODEL, messages=chat("spy"))
    assert seen == ["/v1/chat/completions"]
    assert isinstance(AsyncCacheTransport(storage).transport, httpx2.AsyncHTTPTransport)


# -- shared with the proxy --------------------------------------------------------------------


def _proxy_client(proxy_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{proxy_url}/v1", api_key="sk", max_retries=0)


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_entries_are_shared_with_the_proxy(
    upstream: Upstream, start_proxy: ProxyFactory, tmp_path: Path, backend: str
) -> None:
    path = tmp_path / "shared.db"
    if backend == "memory":
        shared: Any = MemoryStorage()
        proxy_storage, transport_storage = shared, shared
    else:
        proxy_storage = None  # the proxy opens the file from its config
        transport_storage = SQLiteStorage(db_path=str(path))
    with start_proxy(storage=proxy_storage, sqlite_path=str(path)) as proxy:
        direct = openai_client(upstream, transport_storage)
        via_proxy = _proxy_client(proxy.url)

        # written through the transport, a hit through the proxy
        first = direct.chat.completions.create(model=MODEL, messages=chat("transport first"))
        raw = via_proxy.chat.completions.with_raw_response.create(
            model=MODEL, messages=chat("transport first")
        )
        assert raw.headers["x-cache-hit"] == "true"
        assert raw.parse().id == first.id
        assert upstream.fake.count("/chat/completions") == 1

        # written through the proxy, a hit through the transport (streams too)
        second = via_proxy.chat.completions.create(model=MODEL, messages=chat("proxy first"))
        raw2 = direct.chat.completions.with_raw_response.create(
            model=MODEL, messages=chat("proxy first")
        )
        assert raw2.headers["x-cache-hit"] == "true" and raw2.parse().id == second.id
        streamed = list(
            via_proxy.chat.completions.create(model=MODEL, messages=chat("s"), stream=True)
        )
        replayed = list(
            direct.chat.completions.create(model=MODEL, messages=chat("s"), stream=True)
        )
        assert replayed == streamed
        assert upstream.fake.count("/chat/completions") == 3

        # Anthropic: the proxy's upstream URL is its base URL + /v1/messages
        claude_direct = anthropic_client(upstream, transport_storage)
        claude_proxy = anthropic.Anthropic(base_url=proxy.url, api_key="k", max_retries=0)
        args: dict[str, Any] = {"model": CLAUDE, "max_tokens": 64, "messages": chat("shared")}
        message = claude_direct.messages.create(**args)
        assert claude_proxy.messages.create(**args).id == message.id
        assert upstream.fake.count("/messages") == 1
    transport_storage.close()


def test_closing_the_client_closes_only_a_storage_the_transport_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed: list[str] = []

    class Tracked(MemoryStorage):
        def close(self) -> None:
            closed.append("given")

    with httpx_client(Tracked()):
        pass
    assert closed == []  # a storage passed in belongs to the caller (it may be shared)
    monkeypatch.setenv("LLM_CACHE_BACKEND", "sqlite")
    monkeypatch.setenv("LLM_CACHE_SQLITE_PATH", str(tmp_path / "own.db"))
    transport = CacheTransport()
    assert transport.owns_storage and isinstance(transport.storage, SQLiteStorage)
    transport.close()
