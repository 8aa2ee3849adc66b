"""The proxy in front of an Anthropic upstream, driven by the official anthropic SDK."""

from __future__ import annotations

import asyncio
from typing import Any

import anthropic
import httpx2
import pytest
from anthropic.types import Message

from tests.conftest import Proxy, Upstream

MESSAGES = [{"role": "user", "content": "Name three primes."}]
TOOL = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def as_message(message: Any) -> Message:
    """A stream's ``ParsedMessage`` as a plain ``Message``, to compare with a non-stream answer."""
    return Message.model_validate(message.model_dump())


def client_for(proxy: Proxy, **kwargs: Any) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=proxy.url, api_key="sk-ant-secret-456", **kwargs)


def create_raw(client: anthropic.Anthropic, **params: Any) -> Any:
    params.setdefault("model", "claude-sonnet-4-6")
    params.setdefault("max_tokens", 256)
    params.setdefault("messages", MESSAGES)
    return client.messages.with_raw_response.create(**params)


def test_repeat_message_is_a_hit(proxy: Proxy, upstream: Upstream) -> None:
    client = client_for(proxy)
    first = create_raw(client)
    second = create_raw(client)
    assert (first.headers["x-cache-hit"], second.headers["x-cache-hit"]) == ("false", "true")
    assert second.http_response.content == first.http_response.content
    assert second.parse().id == first.parse().id
    assert upstream.fake.count("/v1/messages") == 1


KEY_CHANGES: list[tuple[str, dict[str, Any]]] = [
    ("system", {"system": "You are terse."}),
    ("tools", {"tools": [TOOL]}),
    ("tool_choice", {"tools": [TOOL], "tool_choice": {"type": "any"}}),
    ("max_tokens", {"max_tokens": 17}),
    ("top_p", {"extra_body": {"top_p": 0.3}}),
    ("temperature", {"extra_body": {"temperature": 0.2}}),
    ("stop_sequences", {"stop_sequences": ["END"]}),
    ("anthropic-beta header", {"extra_headers": {"anthropic-beta": "some-beta-2025-01-01"}}),
    ("anthropic-version header", {"extra_headers": {"anthropic-version": "2024-01-01"}}),
    ("unknown field", {"extra_body": {"future_option": 1}}),
]


@pytest.mark.parametrize(("what", "change"), KEY_CHANGES, ids=[c[0] for c in KEY_CHANGES])
def test_each_output_affecting_input_changes_the_key(
    proxy: Proxy, upstream: Upstream, what: str, change: dict[str, Any]
) -> None:
    client = client_for(proxy)
    base = create_raw(client)
    tools_base = create_raw(client, tools=[TOOL]) if what == "tool_choice" else base
    changed = create_raw(client, **change)
    assert changed.headers["x-cache-hit"] == "false", what
    assert changed.headers["x-cache-key"] not in {
        base.headers["x-cache-key"],
        tools_base.headers["x-cache-key"],
    }
    assert create_raw(client, **change).headers["x-cache-hit"] == "true"


def test_metadata_stays_out_of_the_key(proxy: Proxy, upstream: Upstream) -> None:
    client = client_for(proxy)
    create_raw(client, metadata={"user_id": "u1"})
    assert create_raw(client, metadata={"user_id": "u2"}).headers["x-cache-hit"] == "true"


def test_stream_replay_and_cross_kind_answers(proxy: Proxy, upstream: Upstream) -> None:
    client = client_for(proxy)
    params: dict[str, Any] = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 300,
        "messages": MESSAGES,
        "tools": [TOOL],
    }
    with client.messages.stream(**params) as stream:
        events_first = [e.model_dump() for e in stream]
        final_first = stream.get_final_message()
    with client.messages.stream(**params) as stream:
        events_second = [e.model_dump() for e in stream]
        final_second = stream.get_final_message()
    assert events_second == events_first
    assert final_second == final_first
    assert upstream.fake.count("/v1/messages") == 1

    # The stream-first entry answers a plain request with the merged message...
    plain = client.messages.with_raw_response.create(**params)
    assert plain.headers["x-cache-hit"] == "true"
    assert plain.parse().model_dump() == as_message(final_first).model_dump()
    # ... and a plain-first entry answers a streaming request with a valid stream.
    other = {**params, "messages": [{"role": "user", "content": "plain first"}]}
    message = client.messages.create(**other)
    with client.messages.stream(**other) as stream:
        replayed = stream.get_final_message()
    assert as_message(replayed).model_dump() == message.model_dump()
    assert upstream.fake.count("/v1/messages") == 2


def test_thinking_blocks_survive_replay(proxy: Proxy, upstream: Upstream) -> None:
    client = client_for(proxy)
    params: dict[str, Any] = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 2048,
        "messages": MESSAGES,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
    }
    with client.messages.stream(**params) as stream:
        first = stream.get_final_message()
    assert any(block.type == "thinking" for block in first.content)
    plain = client.messages.create(**params)
    assert plain.model_dump() == as_message(first).model_dump()
    with client.messages.stream(**params) as stream:
        assert as_message(stream.get_final_message()) == as_message(first)
    assert upstream.fake.count("/v1/messages") == 1


def test_async_streaming_client(proxy: Proxy, upstream: Upstream) -> None:
    async def run() -> list[str]:
        client = anthropic.AsyncAnthropic(base_url=proxy.url, api_key="sk-ant-test")
        texts = []
        try:
            for _ in range(2):
                async with client.messages.stream(
                    model="claude-haiku-4-5", max_tokens=100, messages=MESSAGES
                ) as stream:
                    texts.append(await stream.get_final_text())
        finally:
            await client.close()
        return texts

    texts = asyncio.run(run())
    assert texts[0] == texts[1] and texts[0]
    assert upstream.fake.count("/v1/messages") == 1


def test_other_paths_are_forwarded_uncached(proxy: Proxy, upstream: Upstream) -> None:
    """``/v1/messages/count_tokens`` is not a cached route: every call reaches the upstream
    (which answers 404 here; the status and error body come back unchanged)."""
    client = client_for(proxy)
    for _ in range(2):
        with pytest.raises(anthropic.NotFoundError) as info:
            client.messages.count_tokens(model="claude-sonnet-4-6", messages=MESSAGES)
        assert "x-cache-hit" not in info.value.response.headers
        assert info.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    assert upstream.fake.count("/v1/messages/count_tokens") == 2


def test_every_value_of_a_repeated_beta_header_enters_the_key(
    proxy: Proxy, upstream: Upstream
) -> None:
    body = {"model": "claude-haiku-4-5", "max_tokens": 10, "messages": MESSAGES}
    keys = []
    for first_beta in ("beta-a", "beta-b"):
        headers = [
            (b"x-api-key", b"k"),
            (b"anthropic-version", b"2023-06-01"),
            (b"anthropic-beta", first_beta.encode()),
            (b"anthropic-beta", b"shared-beta"),
        ]
        r = httpx2.post(f"{proxy.url}/v1/messages", json=body, headers=headers)
        assert r.status_code == 200
        assert r.headers["x-cache-hit"] == "false"
        keys.append(r.headers["x-cache-key"])
    assert keys[0] != keys[1]
    assert upstream.fake.count("/v1/messages") == 2
