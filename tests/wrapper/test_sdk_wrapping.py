"""The wrapper around real openai / anthropic SDK calls, against the simulated upstream."""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import pytest
from anthropic.types import Message, RawMessageStartEvent
from openai.types import CreateEmbeddingResponse
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from llm_cache import LLMCacheWrapper
from llm_cache.cache.memory_storage import MemoryStorage
from tests.conftest import Upstream

CLAUDE = "claude-haiku-4-5"


def chat(content: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": content}]


@pytest.fixture
def storage() -> MemoryStorage:
    return MemoryStorage(max_size=100)


@pytest.fixture
def wrapper(storage: MemoryStorage) -> LLMCacheWrapper:
    return LLMCacheWrapper(storage=storage)


def openai_client(upstream: Upstream, key: str = "sk-test-1") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{upstream.url}/v1", api_key=key, max_retries=0)


def test_ask_question_function(upstream: Upstream, wrapper: LLMCacheWrapper) -> None:
    client = openai_client(upstream)

    @wrapper.wrap
    def ask(question: str) -> str:
        response = client.chat.completions.create(model="gpt-4o-mini", messages=chat(question))
        return response.choices[0].message.content or ""

    paris = ask("What is the capital of France?")
    math = ask("What is 2+2?")
    assert paris != math
    assert "capital of France" in paris and "2+2" in math
    assert ask("What is the capital of France?") == paris
    assert ask("What is 2+2?") == math
    assert upstream.fake.count("/chat/completions") == 2
    assert wrapper.get_stats()["hits"] == 2
    assert ask.cache_provider == "openai"  # type: ignore[attr-defined]


def test_wrapped_sdk_method_returns_the_same_class(
    upstream: Upstream, wrapper: LLMCacheWrapper
) -> None:
    create = wrapper.wrap(openai_client(upstream).chat.completions.create)
    first = create(model="gpt-4o-mini", messages=chat("hello"))
    second = create(model="gpt-4o-mini", messages=chat("hello"))
    assert type(first) is ChatCompletion and type(second) is ChatCompletion
    assert second == first
    assert second.id == first.id  # a replay, not a second upstream call
    assert second.to_json() == first.to_json()
    assert type(second.choices[0].message) is type(first.choices[0].message)
    third = create(model="gpt-4o-mini", messages=chat("other"))
    assert third.id != first.id
    assert upstream.fake.count("/chat/completions") == 2


def test_sdk_key_is_base_url_and_arguments_not_client_or_api_key(
    upstream: Upstream, wrapper: LLMCacheWrapper, storage: MemoryStorage
) -> None:
    one = wrapper.wrap(openai_client(upstream, "sk-secret-one").chat.completions.create)
    two = wrapper.wrap(openai_client(upstream, "sk-secret-two").chat.completions.create)
    elsewhere_client = openai.OpenAI(
        base_url=f"{upstream.url}/gateway/v1", api_key="sk-secret-one", max_retries=0
    )
    elsewhere = wrapper.wrap(elsewhere_client.chat.completions.create)
    args: dict[str, Any] = {"model": "gpt-4o-mini", "messages": chat("shared")}
    assert one.__cache_key__(**args) == two.__cache_key__(**args)
    assert one.__cache_key__(**args) != elsewhere.__cache_key__(**args)
    assert one(**args).id == two(**args).id
    elsewhere(**args)
    assert upstream.fake.count("/chat/completions") == 2
    # timeouts never change an answer; the API key never reaches storage
    assert one.__cache_key__(**args, timeout=5) == one.__cache_key__(**args)
    assert one.__cache_key__(**args, temperature=0.5) != one.__cache_key__(**args)
    for key in list(storage._data):
        assert b"sk-secret" not in storage._data[key][0]


def test_anthropic_message_and_embeddings_types(
    upstream: Upstream, wrapper: LLMCacheWrapper
) -> None:
    client = anthropic.Anthropic(base_url=upstream.url, api_key="sk-ant-test", max_retries=0)
    create = wrapper.wrap(client.messages.create)
    assert create.cache_provider == "anthropic"  # type: ignore[attr-defined]
    first = create(model=CLAUDE, max_tokens=100, messages=chat("hi"))
    second = create(model=CLAUDE, max_tokens=100, messages=chat("hi"))
    assert type(second) is Message and second == first and second.id == first.id
    assert upstream.fake.count("/messages") == 1

    embed = wrapper.wrap(openai_client(upstream).embeddings.create)
    e1 = embed(model="text-embedding-3-small", input=["a", "b"])
    e2 = embed(model="text-embedding-3-small", input=["a", "b"])
    assert type(e2) is CreateEmbeddingResponse
    assert e2 == e1
    assert e2.data[1].embedding == e1.data[1].embedding
    assert upstream.fake.count("/embeddings") == 1


def test_sync_stream(upstream: Upstream, wrapper: LLMCacheWrapper) -> None:
    create = wrapper.wrap(openai_client(upstream).chat.completions.create)
    args: dict[str, Any] = {"model": "gpt-4o-mini", "messages": chat("stream me"), "stream": True}
    stream = create(**args)
    assert not isinstance(stream, list)
    first = list(stream)
    assert len(first) > 2 and all(type(c) is ChatCompletionChunk for c in first)
    replay = create(**args)
    second = list(replay)
    assert second == first
    assert all(type(c) is ChatCompletionChunk for c in second)
    assert upstream.fake.count("/chat/completions") == 1
    # the non-streamed call is a different entry (it returns a different type)
    assert type(create(model="gpt-4o-mini", messages=chat("stream me"))) is ChatCompletion
    assert upstream.fake.count("/chat/completions") == 2


def test_stream_consumed_halfway_is_not_stored(
    upstream: Upstream, wrapper: LLMCacheWrapper
) -> None:
    create = wrapper.wrap(openai_client(upstream).chat.completions.create)
    args: dict[str, Any] = {"model": "gpt-4o-mini", "messages": chat("one two three four five")}
    with create(**args, stream=True) as stream:
        next(stream)
        next(stream)
    assert wrapper.get_stats()["size"] == 0
    full = list(create(**args, stream=True))
    assert list(create(**args, stream=True)) == full
    assert upstream.fake.count("/chat/completions") == 2


def test_stream_sdk_attributes_pass_through(upstream: Upstream, wrapper: LLMCacheWrapper) -> None:
    create = wrapper.wrap(openai_client(upstream).chat.completions.create)
    stream = create(model="gpt-4o-mini", messages=chat("attrs"), stream=True)
    assert stream.response.status_code == 200  # the SDK Stream's own attribute
    stream.close()


async def test_async_openai_and_stream(upstream: Upstream, wrapper: LLMCacheWrapper) -> None:
    client = openai.AsyncOpenAI(base_url=f"{upstream.url}/v1", api_key="sk-test", max_retries=0)
    create = wrapper.wrap(client.chat.completions.create)
    first = await create(model="gpt-4o-mini", messages=chat("async"))
    second = await create(model="gpt-4o-mini", messages=chat("async"))
    assert type(second) is ChatCompletion and second.id == first.id
    chunks = [c async for c in await create(model="gpt-4o-mini", messages=chat("s"), stream=True)]
    replay = [c async for c in await create(model="gpt-4o-mini", messages=chat("s"), stream=True)]
    assert replay == chunks and all(type(c) is ChatCompletionChunk for c in replay)
    half = await create(model="gpt-4o-mini", messages=chat("half way"), stream=True)
    await half.__anext__()
    await half.close()
    again = await create(model="gpt-4o-mini", messages=chat("half way"), stream=True)
    assert len([c async for c in again]) > 1
    assert upstream.fake.count("/chat/completions") == 4
    await client.close()


async def test_async_anthropic_stream(upstream: Upstream, wrapper: LLMCacheWrapper) -> None:
    client = anthropic.AsyncAnthropic(base_url=upstream.url, api_key="sk-ant", max_retries=0)
    create = wrapper.wrap(client.messages.create)
    args: dict[str, Any] = {
        "model": CLAUDE,
        "max_tokens": 200,
        "messages": chat("stream"),
        "stream": True,
    }
    events = [e async for e in await create(**args)]
    replay = [e async for e in await create(**args)]
    assert replay == events
    assert type(replay[0]) is RawMessageStartEvent
    assert [type(e) for e in replay] == [type(e) for e in events]
    assert upstream.fake.count("/messages") == 1
    await client.close()


def test_bypass_and_none_with_sdk(upstream: Upstream, wrapper: LLMCacheWrapper) -> None:
    create = wrapper.wrap(openai_client(upstream).chat.completions.create)
    first = create(model="gpt-4o-mini", messages=chat("bypass"))
    fresh = create(model="gpt-4o-mini", messages=chat("bypass"), _cache_bypass=True)
    assert fresh.id != first.id
    assert create(model="gpt-4o-mini", messages=chat("bypass")).id == fresh.id
    assert upstream.fake.count("/chat/completions") == 2
    assert "_cache_bypass" not in upstream.fake.last_request.body
