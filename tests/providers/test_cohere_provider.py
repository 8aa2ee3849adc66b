"""The Cohere v2 descriptor: routes, end of stream, conversions cohere.ClientV2 accepts."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import cohere
import httpx2
import orjson
import pytest

from llm_cache.providers.cohere import PROVIDER
from llm_cache.providers.sse import SSEEvent, encode_events, parse_sse
from tests.fake_providers.cohere import CohereFake, create_cohere_fake
from tests.providers.replay import serve_answer
from tests.servers import run_server

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:cohere")

MODEL = "command-a-03-2025"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "Hello there"}]}
TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    fake: CohereFake = create_cohere_fake()
    with run_server(fake.app) as base:
        yield base


def post(url: str, path: str, body: dict[str, Any]) -> httpx2.Response:
    return httpx2.post(f"{url}{path}", headers={"authorization": "Bearer k"}, json=body)


def client(url: str) -> cohere.ClientV2:
    return cohere.ClientV2(api_key="k", base_url=url, max_retries=0)


def test_routes() -> None:
    m = PROVIDER.match("/v2/chat")
    assert m is not None and PROVIDER.wants_stream(m, {"stream": True})
    assert not PROVIDER.wants_stream(m, {})
    assert PROVIDER.match("/v2/embed").endpoint == "/v2/embed"  # type: ignore[union-attr]
    assert PROVIDER.match("/v2/rerank") is not None
    assert PROVIDER.match("/v2/models") is None and PROVIDER.match("/v1/chat") is None
    assert PROVIDER.model(m, CHAT) == MODEL


@pytest.mark.parametrize("tools", [False, True])
def test_stream_to_full_equals_the_full_answer(url: str, tools: bool) -> None:
    body = {**CHAT, "tools": [TOOL]} if tools else CHAT
    full = post(url, "/v2/chat", body).json()
    events = parse_sse(post(url, "/v2/chat", {**body, "stream": True}).content)
    assert PROVIDER.stream_finished("/v2/chat", events)
    merged = PROVIDER.events_to_response("/v2/chat", events)
    assert merged is not None
    assert {k: v for k, v in merged.items() if k != "id"} == {
        k: v for k, v in full.items() if k != "id"
    }
    assert merged["id"] == orjson.loads(events[0].data)["id"]
    assert PROVIDER.usage_tokens("/v2/chat", merged) == PROVIDER.usage_tokens("/v2/chat", full)
    with serve_answer("application/json", orjson.dumps(merged)) as replay:
        r = client(replay).chat(model=MODEL, messages=CHAT["messages"])  # type: ignore[arg-type]
    assert r.finish_reason == full["finish_reason"]


@pytest.mark.parametrize("tools", [False, True])
def test_full_to_stream_round_trips_and_the_sdk_reads_it(url: str, tools: bool) -> None:
    body = {**CHAT, "tools": [TOOL]} if tools else CHAT
    full = post(url, "/v2/chat", body).json()
    events = PROVIDER.response_to_events("/v2/chat", full, body)
    assert events is not None and PROVIDER.stream_finished("/v2/chat", events)
    assert PROVIDER.events_to_response("/v2/chat", events) == full
    assert all(e.event == orjson.loads(e.data)["type"] for e in events[:-1])
    with serve_answer("text/event-stream", encode_events(events)) as replay:
        got = list(client(replay).chat_stream(model=MODEL, messages=CHAT["messages"]))  # type: ignore[arg-type]
    assert got[0].type == "message-start" and got[-1].type == "message-end"
    if not tools:
        text = "".join(e.delta.message.content.text for e in got if e.type == "content-delta")  # type: ignore[union-attr]
        assert text == full["message"]["content"][0]["text"]


def test_failed_or_cut_streams(url: str) -> None:
    events = parse_sse(post(url, "/v2/chat", {**CHAT, "stream": True}).content)
    assert not PROVIDER.stream_finished("/v2/chat", events[:-2])  # before message-end
    failed = SSEEvent.from_json(
        {"type": "message-end", "delta": {"finish_reason": "ERROR"}}, event="message-end"
    )
    assert not PROVIDER.stream_finished("/v2/chat", [*events[:-2], failed])
    assert PROVIDER.events_to_response("/v2/chat", [*events[:-2], failed]) is None
    assert not PROVIDER.stream_finished("/v2/chat", [SSEEvent(data="{oops")])
    with_logprobs = {**post(url, "/v2/chat", CHAT).json(), "logprobs": []}
    assert PROVIDER.response_to_events("/v2/chat", with_logprobs, CHAT) is None


def test_errors_usage_embed_rerank(url: str) -> None:
    err = orjson.loads(PROVIDER.error_body(404, "not cached", "cache_miss"))
    assert err["message"] == "not cached"
    assert PROVIDER.body_is_error("/v2/chat", err)
    full = post(url, "/v2/chat", CHAT).json()
    assert not PROVIDER.body_is_error("/v2/chat", full)
    emb = post(
        url, "/v2/embed", {"model": "embed-v4.0", "texts": ["a"], "input_type": "search_query"}
    ).json()
    assert not PROVIDER.body_is_error("/v2/embed", emb)
    usage = PROVIDER.usage_tokens("/v2/embed", emb)
    assert usage is not None and usage.input == emb["meta"]["billed_units"]["input_tokens"]
    ranked = post(
        url, "/v2/rerank", {"model": "rerank-v3.5", "query": "q", "documents": ["a"]}
    ).json()
    assert not PROVIDER.body_is_error("/v2/rerank", ranked)
    assert PROVIDER.response_to_events("/v2/embed", emb, {}) is None


def test_log_probabilities_are_never_merged(url: str) -> None:
    events = parse_sse(post(url, "/v2/chat", {**CHAT, "stream": True}).content)
    delta = SSEEvent.from_json(
        {
            "type": "content-delta",
            "index": 0,
            "delta": {"message": {"content": {"text": "x"}}},
            "logprobs": {"token_ids": [1], "logprobs": [-0.1]},
        },
        event="content-delta",
    )
    assert PROVIDER.events_to_response("/v2/chat", [*events[:2], delta, *events[2:]]) is None
