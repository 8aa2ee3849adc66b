"""The simulated Ollama server speaks the real wire format: the ollama SDK reads it directly."""

from __future__ import annotations

from collections.abc import Iterator

import httpx2
import ollama
import pytest

from llm_cache.providers.ndjson import parse_ndjson
from tests.fake_providers.ollama import OllamaFake, create_ollama_fake
from tests.servers import run_server

MODEL = "llama3.2"
CHAT = [{"role": "user", "content": "Why is the sky blue?"}]


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[OllamaFake, str]]:
    fake = create_ollama_fake()
    with run_server(fake.app) as url:
        yield fake, url


@pytest.fixture
def fake(server: tuple[OllamaFake, str]) -> OllamaFake:
    server[0].reset()
    return server[0]


@pytest.fixture
def url(server: tuple[OllamaFake, str], fake: OllamaFake) -> str:
    return server[1]


@pytest.fixture
def client(url: str) -> ollama.Client:
    return ollama.Client(host=url)


def test_chat_and_stream_agree(client: ollama.Client, fake: OllamaFake) -> None:
    full = client.chat(model=MODEL, messages=CHAT, stream=False)
    assert full.done and full.done_reason == "stop"
    assert full.message.content and "[h=" in full.message.content
    assert full.eval_count and full.prompt_eval_count
    assert fake.last_request.body["stream"] is False
    parts = list(client.chat(model=MODEL, messages=CHAT, stream=True))
    assert len(parts) > 2
    assert not any(p.done for p in parts[:-1]) and parts[-1].done
    assert "".join(p.message.content or "" for p in parts) == full.message.content
    assert parts[-1].total_duration != full.total_duration  # unique per upstream call
    other = client.chat(model=MODEL, messages=CHAT, stream=False, options={"temperature": 0.1})
    assert other.message.content != full.message.content


def test_stream_absent_means_ndjson_stream(url: str) -> None:
    r = httpx2.post(f"{url}/api/chat", json={"model": MODEL, "messages": CHAT})
    assert r.headers["content-type"] == "application/x-ndjson"
    records = [line.json() for line in parse_ndjson(r.content)]
    assert len(records) > 2 and records[-1]["done"] is True
    assert all(rec["done"] is False for rec in records[:-1])
    explicit = httpx2.post(
        f"{url}/api/chat", json={"model": MODEL, "messages": CHAT, "stream": False}
    )
    assert explicit.headers["content-type"] == "application/json"
    text = "".join(rec["message"]["content"] for rec in records)
    assert text == explicit.json()["message"]["content"]


def test_generate(client: ollama.Client) -> None:
    full = client.generate(model=MODEL, prompt="Why is the sky blue?", stream=False)
    assert full.response and "[h=" in full.response and full.context
    parts = list(client.generate(model=MODEL, prompt="Why is the sky blue?", stream=True))
    assert "".join(p.response or "" for p in parts) == full.response
    assert parts[-1].done and parts[-1].context == full.context
    cut = client.generate(model=MODEL, prompt="Why?", stream=False, options={"num_predict": 2})
    assert cut.done_reason == "length"


async def test_async_client(url: str) -> None:
    client = ollama.AsyncClient(host=url)
    text = ""
    async for part in await client.chat(model=MODEL, messages=CHAT, stream=True):
        text += part.message.content or ""
    assert "[h=" in text


def test_format_think_and_tools(client: ollama.Client) -> None:
    r = client.chat(model=MODEL, messages=CHAT, format="json", stream=False)
    assert r.message.content and r.message.content.startswith('{"answer"')
    r = client.chat(model=MODEL, messages=CHAT, think=True, stream=False)
    assert r.message.thinking and "[h=" in r.message.thinking
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
    r = client.chat(model=MODEL, messages=CHAT, tools=[tool], stream=False)
    assert r.message.tool_calls and r.message.tool_calls[0].function.name == "get_weather"
    streamed = list(client.chat(model=MODEL, messages=CHAT, tools=[tool], stream=True))
    assert any(p.message.tool_calls for p in streamed)


def test_embeddings(client: ollama.Client) -> None:
    r = client.embed(model="nomic-embed-text", input=["a", "b"])
    assert len(r.embeddings) == 2 and r.embeddings[0] != r.embeddings[1]
    single = client.embed(model="nomic-embed-text", input="a")
    assert single.embeddings[0] == r.embeddings[0]
    legacy = client.embeddings(model="nomic-embed-text", prompt="a")
    assert len(legacy.embedding) == 8


def test_errors(client: ollama.Client, fake: OllamaFake) -> None:
    with pytest.raises(ollama.ResponseError) as info:
        client.chat(model="missing-model", messages=CHAT, stream=False)
    assert info.value.status_code == 404 and "not found" in info.value.error
    fake.status = 500
    with pytest.raises(ollama.ResponseError) as info:
        client.chat(model=MODEL, messages=CHAT, stream=False)
    assert info.value.status_code == 500
    fake.status = None
    fake.error_after = 2
    with pytest.raises(ollama.ResponseError, match="error was encountered"):
        list(client.chat(model=MODEL, messages=CHAT, stream=True))
    fake.error_after = None
    fake.abort_after = 2
    with pytest.raises(Exception):  # noqa: B017 - httpx's read error, unwrapped by the SDK
        list(client.chat(model=MODEL, messages=CHAT, stream=True))
