"""The simulated Cohere v2 API speaks the real wire format: cohere.ClientV2 reads it directly."""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterator

import cohere
import httpx2
import pytest

from llm_cache.providers.sse import parse_sse
from tests.fake_providers.cohere import CohereFake, create_cohere_fake
from tests.servers import run_server

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:cohere")

MODEL = "command-a-03-2025"
CHAT = [{"role": "user", "content": "Hello there"}]


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[CohereFake, str]]:
    fake = create_cohere_fake()
    with run_server(fake.app) as url:
        yield fake, url


@pytest.fixture
def fake(server: tuple[CohereFake, str]) -> CohereFake:
    server[0].reset()
    return server[0]


@pytest.fixture
def url(server: tuple[CohereFake, str], fake: CohereFake) -> str:
    return server[1]


@pytest.fixture
def client(url: str) -> cohere.ClientV2:
    return cohere.ClientV2(api_key="co-test-key", base_url=url, max_retries=0)


def test_chat_and_stream_agree(client: cohere.ClientV2, fake: CohereFake) -> None:
    r = client.chat(model=MODEL, messages=CHAT)  # type: ignore[arg-type]
    assert r.finish_reason == "COMPLETE"
    assert r.message.content and "[h=" in r.message.content[0].text  # type: ignore[union-attr]
    assert r.usage and r.usage.billed_units and r.usage.billed_units.output_tokens
    assert fake.last_request.path == "/v2/chat"
    assert fake.last_request.headers["authorization"] == "Bearer co-test-key"
    events = list(client.chat_stream(model=MODEL, messages=CHAT))  # type: ignore[arg-type]
    types = [e.type for e in events]
    assert types[0] == "message-start" and types[1] == "content-start"
    assert types[-2:] == ["content-end", "message-end"]
    text = "".join(e.delta.message.content.text for e in events if e.type == "content-delta")  # type: ignore[union-attr]
    assert text == r.message.content[0].text  # type: ignore[union-attr]
    assert events[0].id != r.id  # unique per upstream call
    end = events[-1]
    assert end.delta.finish_reason == "COMPLETE" and end.delta.usage  # type: ignore[union-attr]
    other = client.chat(model=MODEL, messages=CHAT, temperature=0.1)  # type: ignore[arg-type]
    assert other.message.content[0].text != r.message.content[0].text  # type: ignore[index,union-attr]


def test_raw_stream_frames(url: str) -> None:
    r = httpx2.post(
        f"{url}/v2/chat",
        headers={"authorization": "Bearer k"},
        json={"model": MODEL, "messages": CHAT, "stream": True},
    )
    assert r.headers["content-type"] == "text/event-stream"
    events = parse_sse(r.content)
    assert events[-1].data == "[DONE]"
    assert events[-2].event == "message-end" and events[-2].json()["type"] == "message-end"
    assert all(e.event == e.json()["type"] for e in events[:-1])


def test_tools_and_max_tokens(client: cohere.ClientV2) -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
    r = client.chat(model=MODEL, messages=CHAT, tools=[tool])  # type: ignore[arg-type,list-item]
    assert r.finish_reason == "TOOL_CALL"
    assert r.message.tool_calls and r.message.tool_calls[0].function.name == "get_weather"  # type: ignore[union-attr]
    events = list(client.chat_stream(model=MODEL, messages=CHAT, tools=[tool]))  # type: ignore[arg-type,list-item]
    args = "".join(
        e.delta.message.tool_calls.function.arguments  # type: ignore[union-attr]
        for e in events
        if e.type == "tool-call-delta"
    )
    assert args == r.message.tool_calls[0].function.arguments  # type: ignore[index,union-attr]
    cut = client.chat(model=MODEL, messages=CHAT, max_tokens=2)  # type: ignore[arg-type]
    assert cut.finish_reason == "MAX_TOKENS"


def test_embed_and_rerank(client: cohere.ClientV2) -> None:
    r = client.embed(
        model="embed-v4.0",
        texts=["a", "b"],
        input_type="search_document",
        embedding_types=["float", "int8", "base64"],
    )
    floats = r.embeddings.float_
    assert floats and len(floats) == 2 and floats[0] != floats[1]
    assert r.embeddings.int8 and len(r.embeddings.int8[0]) == len(floats[0])
    assert r.embeddings.base64
    decoded = struct.unpack(f"<{len(floats[0])}f", base64.b64decode(r.embeddings.base64[0]))
    assert list(decoded) == floats[0]
    assert r.texts == ["a", "b"]
    ranked = client.rerank(model="rerank-v3.5", query="q", documents=["x", "y", "z"], top_n=2)
    assert len(ranked.results) == 2
    assert ranked.results[0].relevance_score >= ranked.results[1].relevance_score


def test_errors(client: cohere.ClientV2, url: str, fake: CohereFake) -> None:
    fake.status = 429
    with pytest.raises(cohere.errors.TooManyRequestsError) as info:
        client.chat(model=MODEL, messages=CHAT)  # type: ignore[arg-type]
    assert info.value.body["message"] == "Simulated error 429"
    fake.status = None
    r = httpx2.post(f"{url}/v2/chat", json={"model": MODEL, "messages": CHAT})
    assert r.status_code == 401 and "message" in r.json()
    fake.error_after = 3
    events = list(client.chat_stream(model=MODEL, messages=CHAT))  # type: ignore[arg-type]
    assert events[-1].type == "message-end" and events[-1].delta.finish_reason == "ERROR"  # type: ignore[union-attr]
    fake.error_after = None
    fake.abort_after = 3
    with pytest.raises(Exception):  # noqa: B017 - httpx's read error, unwrapped by the SDK
        list(client.chat_stream(model=MODEL, messages=CHAT))  # type: ignore[arg-type]
