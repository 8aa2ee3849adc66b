"""Anthropic provider: stream <-> full conversions, checked with the SDK's types and accumulator."""

from __future__ import annotations

import random
from typing import Any

import httpx2
import orjson
import pytest
from anthropic._streaming import SSEDecoder
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message

from llm_cache.providers import anthropic as anthropic_provider
from llm_cache.providers.base import Provider
from llm_cache.providers.sse import SSEEvent, SSEParser, encode_events, parse_sse
from tests.fake_upstream import create_fake_upstream

P = anthropic_provider.PROVIDER
EP = "/messages"


def ev(obj: dict[str, Any]) -> bytes:
    return b"event: " + obj["type"].encode() + b"\ndata: " + orjson.dumps(obj) + b"\n\n"


START_USAGE = {
    "input_tokens": 472,
    "cache_creation_input_tokens": 0,
    "cache_read_input_tokens": 0,
    "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
    "output_tokens": 2,
    "service_tier": "standard",
}
INPUT = {"location": "San Francisco, CA", "unit": "fahrenheit", "days": [1, 2]}
INPUT_JSON = orjson.dumps(INPUT).decode()
SIGNATURE = "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"

# a stream shaped like the real API's: thinking, text, tool_use; pings; partial JSON in pieces
THINK_TEXT_TOOL = b"".join(
    ev(e)
    for e in [
        {
            "type": "message_start",
            "message": {
                "id": "msg_01Aq9w938a90dw8q",
                "type": "message",
                "role": "assistant",
                "model": "claude-sonnet-4-6",
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": START_USAGE,
            },
        },
        {"type": "ping"},
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "thinking", "thinking": "", "signature": ""},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "thinking_delta", "thinking": "I need to find "},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "thinking_delta", "thinking": "the weather."},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "signature_delta", "signature": SIGNATURE},
        },
        {"type": "content_block_stop", "index": 0},
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {"type": "text", "text": ""},
        },
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "text_delta", "text": "Okay, let's check "},
        },
        {"type": "ping"},
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "text_delta", "text": "the weather — ☀️"},
        },
        {"type": "content_block_stop", "index": 1},
        {
            "type": "content_block_start",
            "index": 2,
            "content_block": {
                "type": "tool_use",
                "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
                "name": "get_weather",
                "input": {},
            },
        },
        {
            "type": "content_block_delta",
            "index": 2,
            "delta": {"type": "input_json_delta", "partial_json": ""},
        },
        *[
            {
                "type": "content_block_delta",
                "index": 2,
                "delta": {"type": "input_json_delta", "partial_json": INPUT_JSON[i : i + 9]},
            }
            for i in range(0, len(INPUT_JSON), 9)
        ],
        {"type": "content_block_stop", "index": 2},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use", "stop_sequence": None},
            "usage": {"output_tokens": 89},
        },
        {"type": "message_stop"},
    ]
)

CITATION = {
    "type": "char_location",
    "cited_text": "The grass is green.",
    "document_index": 0,
    "document_title": "Facts",
    "start_char_index": 0,
    "end_char_index": 19,
    "file_id": None,
}

TEXT_CITATIONS_STOPSEQ = b"".join(
    ev(e)
    for e in [
        {
            "type": "message_start",
            "message": {
                "id": "msg_2",
                "type": "message",
                "role": "assistant",
                "model": "claude-haiku-4-5",
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {**START_USAGE, "cache_read_input_tokens": None},
            },
        },
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "text", "text": "", "citations": None},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "citations_delta", "citation": CITATION},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": "the grass is green"},
        },
        {"type": "content_block_stop", "index": 0},
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix"},
        },
        {"type": "content_block_stop", "index": 1},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "stop_sequence", "stop_sequence": "\n\nHuman:"},
            "usage": {
                "output_tokens": 15,
                "input_tokens": 480,
                "cache_read_input_tokens": 7,
                "cache_creation_input_tokens": None,
            },
        },
        {"type": "message_stop"},
    ]
)

STREAMS = {"thinking_text_tool": THINK_TEXT_TOOL, "citations_redacted": TEXT_CITATIONS_STOPSEQ}


def parse_in_pieces(data: bytes, seed: int) -> list[SSEEvent]:
    rng = random.Random(seed)
    parser = SSEParser()
    events: list[SSEEvent] = []
    i = 0
    while i < len(data):
        n = rng.randint(1, 50)
        events.extend(parser.feed(data[i : i + n]))
        i += n
    events.extend(parser.finish())
    return events


def sdk_accumulate(data: bytes) -> dict[str, Any]:
    """The SDK's own reading of these SSE bytes: its decoder, then ``accumulate_event``."""
    snapshot: Any = None
    json_bufs: dict[int, bytes] = {}
    for sse in SSEDecoder().iter_bytes(iter([data])):
        if sse.event in ("ping", None) or not sse.data:
            continue
        assert sse.event == sse.json()["type"]
        snapshot = accumulate_event(
            event=sse.json(), current_snapshot=snapshot, json_bufs=json_bufs
        )
    assert snapshot is not None
    return clean(snapshot.model_dump())


def clean(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: clean(v) for k, v in obj.items() if v is not None and k != "parsed_output"}
    if isinstance(obj, list):
        return [clean(v) for v in obj]
    return obj


def message_dump(obj: dict[str, Any]) -> dict[str, Any]:
    return clean(Message.model_validate(obj).model_dump())


def test_protocol_and_constants() -> None:
    assert isinstance(P, Provider)
    assert P.name == "anthropic"
    assert P.cached_endpoints == {"/messages"}
    assert P.key_headers == ("anthropic-version", "anthropic-beta")
    assert P.excluded_fields == {"stream", "user", "metadata"}
    assert P.is_stream_request({"stream": True}) and not P.is_stream_request({})
    assert orjson.loads(P.error_body(400, "bad", "invalid_request_error")) == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "bad"},
    }
    assert P.usage({"usage": START_USAGE}) == START_USAGE and P.usage({}) is None


@pytest.mark.parametrize("name", list(STREAMS))
def test_stream_to_full_matches_sdk(name: str) -> None:
    wire = STREAMS[name]
    events = parse_in_pieces(wire, seed=len(name))
    assert P.stream_finished(EP, events)
    full = P.events_to_response(EP, events)
    assert full is not None
    assert message_dump(full) == sdk_accumulate(wire)


def test_stream_to_full_exact_values() -> None:
    full = P.events_to_response(EP, parse_sse(THINK_TEXT_TOOL))
    assert full is not None
    assert full["content"] == [
        {"type": "thinking", "thinking": "I need to find the weather.", "signature": SIGNATURE},
        {"type": "text", "text": "Okay, let's check the weather — ☀️"},
        {
            "type": "tool_use",
            "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
            "name": "get_weather",
            "input": INPUT,
        },
    ]
    assert full["stop_reason"] == "tool_use" and full["stop_sequence"] is None
    assert full["usage"] == {**START_USAGE, "output_tokens": 89}
    other = P.events_to_response(EP, parse_sse(TEXT_CITATIONS_STOPSEQ))
    assert other is not None
    assert other["content"][0]["citations"] == [CITATION]
    assert other["content"][1] == {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix"}
    assert other["stop_sequence"] == "\n\nHuman:"
    assert other["usage"]["input_tokens"] == 480
    assert other["usage"]["cache_read_input_tokens"] == 7  # message_delta totals win
    assert other["usage"]["cache_creation_input_tokens"] == 0  # null in the delta: start value


@pytest.mark.parametrize("name", list(STREAMS))
def test_full_to_stream_through_sdk_and_round_trips(name: str) -> None:
    full = P.events_to_response(EP, parse_sse(STREAMS[name]))
    assert full is not None
    events = P.response_to_events(EP, full, {"stream": True, "max_tokens": 100})
    assert events is not None
    assert [e.event for e in events][:2] == ["message_start", "ping"]
    assert [e.event for e in events][-2:] == ["message_delta", "message_stop"]
    assert all(e.event == e.json()["type"] for e in events)
    assert P.stream_finished(EP, events)
    wire = encode_events(events)
    # the SDK accumulates the synthesized stream into the same message
    assert sdk_accumulate(wire) == message_dump(full)
    # stream -> full -> stream: the SDK reads the original and the replay identically
    assert sdk_accumulate(wire) == sdk_accumulate(STREAMS[name])
    # full -> stream -> full is exact
    assert P.events_to_response(EP, parse_sse(wire)) == full


def test_tool_input_serializes_to_the_partial_json() -> None:
    full = P.events_to_response(EP, parse_sse(THINK_TEXT_TOOL))
    assert full is not None
    events = P.response_to_events(EP, full, {})
    assert events is not None
    partial = "".join(
        e.json()["delta"]["partial_json"]
        for e in events
        if e.event == "content_block_delta" and e.json()["index"] == 2
    )
    assert partial == INPUT_JSON
    empty = {**full, "content": [{**full["content"][2], "input": {}}]}
    events = P.response_to_events(EP, empty, {})
    assert events is not None
    assert P.events_to_response(EP, events) == empty


def test_errors_and_unfinished_streams() -> None:
    events = parse_sse(THINK_TEXT_TOOL)
    assert not P.stream_finished(EP, events[:-1])
    assert not P.stream_finished(EP, [])
    error = SSEEvent(event="error", data='{"type": "error", "error": {"type": "overloaded_error"}}')
    assert not P.stream_finished(EP, [*events[:5], error])
    assert P.events_to_response(EP, [*events[:5], error]) is None
    assert P.events_to_response(EP, [SSEEvent(event="ping", data='{"type": "ping"}')]) is None
    assert P.events_to_response("/other", events) is None
    assert P.response_to_events("/other", {"content": []}, {}) is None


MESSAGE = {"id": "msg_1", "type": "message", "role": "assistant", "content": []}
ANSWERS: list[tuple[Any, bool]] = [
    # (body, is an error: never stored)
    (MESSAGE, False),
    ({**MESSAGE, "content": [{"type": "text", "text": "hi"}], "container": None}, False),
    ({"type": "error", "error": {"type": "overloaded_error", "message": "x"}}, True),
    ({"error": {"type": "api_error", "message": "x"}}, True),
    ({**MESSAGE, "error": {"type": "api_error"}}, True),
    ({**MESSAGE, "content": None}, True),
    ({"id": "msg_1", "type": "message"}, True),
    ({**MESSAGE, "type": "message_batch"}, True),
    ([MESSAGE], True),
    ("message", True),
]


@pytest.mark.parametrize(("body", "error"), ANSWERS)
def test_only_messages_are_stored(body: Any, error: bool) -> None:
    assert P.body_is_error(EP, body) is error


CONTAINERS: list[tuple[Any, bool]] = [
    # (container field, never cached)
    ("container_011CQ", True),
    ({"id": "container_011CQ"}, True),
    ({"id": "container_011CQ", "skills": []}, True),
    ({"skills": [{"type": "custom", "skill_id": "skill_1"}]}, True),
    ({"skills": [{"type": "anthropic", "skill_id": "xlsx", "version": "latest"}]}, True),
    ({"skills": [{"type": "custom", "skill_id": "skill_1", "version": "1759178010641129"}]}, False),
    ({"id": None, "skills": None}, False),
    ({}, False),
    (None, False),
]


@pytest.mark.parametrize(("container", "never"), CONTAINERS)
def test_container_reuse_is_never_cached(container: Any, never: bool) -> None:
    body = {"model": "m", "max_tokens": 5, "messages": [], "container": container}
    assert (P.never_cache(EP, body) is not None) is never
    assert P.never_cache(EP, {"model": "m", "max_tokens": 5, "messages": []}) is None


async def fake_call(body: dict[str, Any]) -> bytes:
    fake = create_fake_upstream()
    transport = httpx2.ASGITransport(app=fake.app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://fake") as client:
        r = await client.post(
            "/v1/messages",
            json=body,
            headers={"x-api-key": "k", "anthropic-version": "2023-06-01"},
        )
        assert r.status_code == 200
        return r.content


async def test_fake_upstream_stream_merges_to_its_json_answer() -> None:
    body: dict[str, Any] = {
        "model": "claude-haiku-4-5",
        "max_tokens": 2000,
        "messages": [{"role": "user", "content": "weather?"}],
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
    }
    json_answer = orjson.loads(await fake_call(body))
    wire = await fake_call({**body, "stream": True})
    full = P.events_to_response(EP, parse_in_pieces(wire, 1))
    assert full is not None
    Message.model_validate(full)
    assert {**full, "id": None} == {**json_answer, "id": None}
    assert sdk_accumulate(wire) == message_dump(full)
