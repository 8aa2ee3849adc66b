"""The Ollama descriptor: routes, stream default, end of stream, conversions the SDK accepts."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx2
import ollama
import orjson
import pytest

from llm_cache.providers.ndjson import NDJSON, NDJSONRecord, parse_ndjson
from llm_cache.providers.ollama import PROVIDER
from tests.fake_providers.ollama import OllamaFake, create_ollama_fake
from tests.providers.replay import serve_answer
from tests.servers import run_server

MODEL = "llama3.2"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "Why is the sky blue?"}]}
GENERATE = {"model": MODEL, "prompt": "Why is the sky blue?"}


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    fake: OllamaFake = create_ollama_fake()
    with run_server(fake.app) as base:
        yield base


def post(url: str, path: str, body: dict[str, Any]) -> httpx2.Response:
    return httpx2.post(f"{url}{path}", json=body)


def test_routes_and_stream_default() -> None:
    m = PROVIDER.match("/api/chat")
    assert m is not None and m.endpoint == "/api/chat"
    assert PROVIDER.wants_stream(m, {"model": MODEL}) is True  # absent means stream
    assert PROVIDER.wants_stream(m, {"model": MODEL, "stream": False}) is False
    assert PROVIDER.wants_stream(m, {"model": MODEL, "stream": True}) is True
    embed = PROVIDER.match("/api/embed")
    assert embed is not None and PROVIDER.wants_stream(embed, {"stream": True}) is False
    assert PROVIDER.match("/api/tags") is None and PROVIDER.match("/api/pull") is None
    assert PROVIDER.framing is NDJSON
    assert {"stream", "keep_alive"} <= PROVIDER.excluded_fields_for("/api/chat")
    assert "options" not in PROVIDER.excluded_fields_for("/api/chat")
    assert PROVIDER.model(m, CHAT) == MODEL


@pytest.mark.parametrize(
    ("path", "body", "extra"),
    [
        ("/api/chat", CHAT, {}),
        ("/api/chat", CHAT, {"think": True}),
        ("/api/chat", CHAT, {"format": "json"}),
        ("/api/generate", GENERATE, {}),
    ],
)
def test_stream_to_full_equals_the_full_answer(
    url: str, path: str, body: dict[str, Any], extra: dict[str, Any]
) -> None:
    full = post(url, path, {**body, **extra, "stream": False}).json()
    records = parse_ndjson(post(url, path, {**body, **extra}).content)
    assert PROVIDER.stream_finished(path, records)
    merged = PROVIDER.events_to_response(path, records)
    assert merged is not None
    volatile = {
        "created_at",
        "total_duration",
        "load_duration",
        "prompt_eval_duration",
        "eval_duration",
    }
    assert {k: v for k, v in merged.items() if k not in volatile} == {
        k: v for k, v in full.items() if k not in volatile
    }
    assert PROVIDER.usage_tokens(path, merged) == PROVIDER.usage_tokens(path, full)


def test_tool_calls_merge(url: str) -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "f",
            "parameters": {"type": "object", "properties": {"a": {"type": "string"}}},
        },
    }
    full = post(url, "/api/chat", {**CHAT, "tools": [tool], "stream": False}).json()
    merged = PROVIDER.events_to_response(
        "/api/chat", parse_ndjson(post(url, "/api/chat", {**CHAT, "tools": [tool]}).content)
    )
    assert merged is not None and merged["message"]["tool_calls"] == full["message"]["tool_calls"]


def test_conversions_are_read_by_the_sdk(url: str) -> None:
    full = post(url, "/api/chat", {**CHAT, "stream": False}).json()
    records = PROVIDER.response_to_events("/api/chat", full, CHAT)
    assert records is not None and PROVIDER.stream_finished("/api/chat", records)
    assert PROVIDER.events_to_response("/api/chat", records) == full  # round trip
    with serve_answer("application/x-ndjson", NDJSON.encode(records)) as replay:
        parts = list(
            ollama.Client(host=replay).chat(model=MODEL, messages=CHAT["messages"], stream=True)
        )
    assert "".join(p.message.content or "" for p in parts) == full["message"]["content"]
    assert parts[-1].done and parts[-1].eval_count == full["eval_count"]
    merged = PROVIDER.events_to_response(
        "/api/chat", parse_ndjson(post(url, "/api/chat", CHAT).content)
    )
    with serve_answer("application/json", orjson.dumps(merged)) as replay:
        r = ollama.Client(host=replay).chat(model=MODEL, messages=CHAT["messages"], stream=False)
    assert r.message.content == full["message"]["content"]
    gen = post(url, "/api/generate", {**GENERATE, "stream": False}).json()
    records = PROVIDER.response_to_events("/api/generate", gen, GENERATE)
    assert records is not None
    assert PROVIDER.events_to_response("/api/generate", records) == gen
    with serve_answer("application/x-ndjson", NDJSON.encode(records)) as replay:
        parts = list(ollama.Client(host=replay).generate(model=MODEL, prompt="x", stream=True))
    assert "".join(p.response or "" for p in parts) == gen["response"]
    assert parts[-1].context == gen["context"]


def test_unfinished_and_failed_streams(url: str) -> None:
    records = parse_ndjson(post(url, "/api/chat", CHAT).content)
    assert not PROVIDER.stream_finished("/api/chat", records[:-1])
    assert PROVIDER.events_to_response("/api/chat", records[:-1]) is None
    error = NDJSONRecord.from_json({"error": "model runner crashed"})
    assert not PROVIDER.stream_finished("/api/chat", [*records, error])
    assert not PROVIDER.stream_finished("/api/chat", [NDJSONRecord(b"{broken\n")])
    assert not PROVIDER.stream_finished("/api/chat", [])
    incomplete = {**post(url, "/api/chat", {**CHAT, "stream": False}).json(), "done": False}
    assert PROVIDER.response_to_events("/api/chat", incomplete, CHAT) is None


def test_errors_and_embeddings(url: str) -> None:
    assert orjson.loads(PROVIDER.error_body(404, "not cached", "cache_miss")) == {
        "error": "not cached"
    }
    assert PROVIDER.body_is_error("/api/chat", {"error": "x"})
    e = post(url, "/api/embed", {"model": "m", "input": ["a"]}).json()
    assert not PROVIDER.body_is_error("/api/embed", e)
    assert PROVIDER.usage_tokens("/api/embed", e) is not None
    assert PROVIDER.response_to_events("/api/embed", e, {}) is None
    assert PROVIDER.events_to_response("/api/embed", []) is None


def test_log_probabilities_are_never_merged_or_re_cut(url: str) -> None:
    records = parse_ndjson(post(url, "/api/chat", CHAT).content)
    with_logprobs = [
        NDJSONRecord.from_json({**r.json(), "logprobs": [{"token": "x", "logprob": -0.1}]})
        for r in records
    ]
    assert PROVIDER.stream_finished("/api/chat", with_logprobs)  # stored and replayed as is
    assert PROVIDER.events_to_response("/api/chat", with_logprobs) is None
    full = {**post(url, "/api/chat", {**CHAT, "stream": False}).json(), "logprobs": []}
    assert PROVIDER.response_to_events("/api/chat", full, CHAT) is None
