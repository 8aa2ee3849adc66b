"""OpenAI provider: SSE parsing/encoding and stream <-> full conversions, checked with the SDK."""

from __future__ import annotations

import copy
import itertools
import random
from collections.abc import Iterator
from typing import Any

import httpx2
import openai
import orjson
import pydantic
import pytest
from openai._streaming import SSEDecoder
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types import Completion
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response

from llm_cache.providers import openai as openai_provider
from llm_cache.providers.base import Provider
from llm_cache.providers.sse import DONE, SSEEvent, SSEParser, encode_events, parse_sse
from tests.fake_upstream import create_fake_upstream

P = openai_provider.PROVIDER
CHAT = "/chat/completions"


# ---------------------------------------------------------------------- realistic streams
def chunk(choices: list[dict[str, Any]], usage: Any = None, **over: Any) -> dict[str, Any]:
    """A chunk as the real API sends it with stream_options.include_usage (usage: null)."""
    return {
        "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
        "object": "chat.completion.chunk",
        "created": 1741569952,
        "model": "gpt-4.1-2025-04-14",
        "service_tier": "default",
        "system_fingerprint": "fp_c7ca0ebaca",
        "choices": choices,
        "usage": usage,
        "obfuscation": "x7Yk",
        **over,
    }


def ch(index: int, delta: dict[str, Any], finish: str | None = None, lp: Any = None) -> Any:
    return {"index": index, "delta": delta, "logprobs": lp, "finish_reason": finish}


def lp_tokens(*tokens: str) -> dict[str, Any]:
    return {
        "content": [
            {"token": t, "logprob": -0.5, "bytes": list(t.encode()), "top_logprobs": []}
            for t in tokens
        ],
        "refusal": None,
    }


USAGE = {
    "prompt_tokens": 19,
    "completion_tokens": 10,
    "total_tokens": 29,
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 0,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
}

# n=2, interleaved choices, logprobs per token, final usage chunk
TEXT_STREAM = [
    chunk([ch(0, {"role": "assistant", "content": "", "refusal": None}, lp=lp_tokens())]),
    chunk([ch(1, {"role": "assistant", "content": "", "refusal": None}, lp=lp_tokens())]),
    chunk([ch(0, {"content": "Hello"}, lp=lp_tokens("Hello"))]),
    chunk([ch(1, {"content": "Hi"}, lp=lp_tokens("Hi"))]),
    chunk([ch(0, {"content": " world"}, lp=lp_tokens(" world"))]),
    chunk([ch(1, {"content": " there ✓"}, lp=lp_tokens(" there ✓"))]),
    chunk([ch(0, {}, "stop")]),
    chunk([ch(1, {}, "length")]),
    chunk([], USAGE),
]

# parallel tool calls: two calls, arguments in pieces
TOOL_STREAM = [
    chunk([ch(0, {"role": "assistant", "content": None, "refusal": None})]),
    chunk(
        [
            ch(
                0,
                {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_abc",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": ""},
                        }
                    ]
                },
            )
        ]
    ),
    chunk([ch(0, {"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]})]),
    chunk([ch(0, {"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]})]),
    chunk(
        [
            ch(
                0,
                {
                    "tool_calls": [
                        {
                            "index": 1,
                            "id": "call_def",
                            "type": "function",
                            "function": {"name": "get_time", "arguments": ""},
                        }
                    ]
                },
            )
        ]
    ),
    chunk([ch(0, {"tool_calls": [{"index": 1, "function": {"arguments": '{"tz": "CET"}'}}]})]),
    chunk([ch(0, {}, "tool_calls")]),
    chunk([], USAGE),
]

REFUSAL_STREAM = [
    chunk([ch(0, {"role": "assistant", "content": None, "refusal": ""})]),
    chunk([ch(0, {"refusal": "I'm sorry, "})]),
    chunk([ch(0, {"refusal": "I can't help with that."})]),
    chunk([ch(0, {}, "stop")]),
    chunk([], USAGE),
]

# an OpenAI-compatible upstream (DeepSeek style) with an extra delta field, no usage chunk
REASONING_STREAM = [
    {k: v for k, v in chunk([ch(0, {"role": "assistant", "content": ""})]).items() if k != "usage"},
    *[
        {k: v for k, v in c.items() if k != "usage"}
        for c in (
            chunk([ch(0, {"reasoning_content": "Think", "content": None})]),
            chunk([ch(0, {"reasoning_content": "ing..."})]),
            chunk([ch(0, {"content": "Answer"})]),
            chunk([ch(0, {}, "stop")]),
        )
    ],
]

# gpt-4o-audio-preview: audio in fragments (id + transcript, more transcript, data), then an
# expires_at-only delta
AUDIO_STREAM = [
    chunk([ch(0, {"role": "assistant", "content": None, "refusal": None})]),
    chunk([ch(0, {"audio": {"id": "audio_abc", "transcript": "Hello"}})]),
    chunk([ch(0, {"audio": {"transcript": " there"}})]),
    chunk([ch(0, {"audio": {"data": "UklGRi"}})]),
    chunk([ch(0, {"audio": {"data": "QAAABXQVZF"}})]),
    chunk([ch(0, {"audio": {"expires_at": 1741573552}})]),
    chunk([ch(0, {}, "stop")]),
    chunk([], USAGE),
]

# OpenRouter: reasoning text in fragments of an indexed list entry, an encrypted entry at index 1,
# then url-citation annotations in one delta
OPENROUTER_STREAM = [
    chunk([ch(0, {"role": "assistant", "content": ""})]),
    chunk(
        [
            ch(
                0,
                {
                    "reasoning": "Let me ",
                    "reasoning_details": [
                        {"type": "reasoning.text", "text": "Let me ", "format": "x", "index": 0}
                    ],
                },
            )
        ]
    ),
    chunk(
        [
            ch(
                0,
                {
                    "reasoning": "think.",
                    "reasoning_details": [{"type": "reasoning.text", "text": "think.", "index": 0}],
                },
            )
        ]
    ),
    chunk(
        [
            ch(
                0,
                {
                    "reasoning_details": [
                        {"type": "reasoning.encrypted", "data": "gAAA", "index": 1}
                    ]
                },
            )
        ]
    ),
    chunk([ch(0, {"content": "Paris."})]),
    chunk(
        [
            ch(
                0,
                {
                    "annotations": [
                        {
                            "type": "url_citation",
                            "url_citation": {
                                "url": "https://example.com",
                                "title": "Example",
                                "start_index": 0,
                                "end_index": 6,
                            },
                        }
                    ]
                },
            )
        ]
    ),
    chunk([ch(0, {}, "stop")]),
    chunk([], USAGE),
]

STREAMS = {
    "text_n2_logprobs": TEXT_STREAM,
    "parallel_tools": TOOL_STREAM,
    "refusal": REFUSAL_STREAM,
    "extra_delta_field": REASONING_STREAM,
    "audio": AUDIO_STREAM,
    "openrouter_details_annotations": OPENROUTER_STREAM,
}


def sse_bytes(chunks: list[dict[str, Any]], crlf: bool = False) -> bytes:
    raw = b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"
    return raw.replace(b"\n", b"\r\n") if crlf else raw


def random_split(data: bytes, rng: random.Random) -> Iterator[bytes]:
    i = 0
    while i < len(data):
        n = rng.randint(1, 40)
        yield data[i : i + n]
        i += n


def parse_in_pieces(data: bytes, seed: int = 0) -> list[SSEEvent]:
    parser = SSEParser()
    events: list[SSEEvent] = []
    for piece in random_split(data, random.Random(seed)):
        events.extend(parser.feed(piece))
    events.extend(parser.finish())
    return events


def sdk_accumulate(data: bytes, tools: Any = None) -> dict[str, Any]:
    """What the openai SDK's own stream accumulator makes of these SSE bytes."""
    state: Any = (
        ChatCompletionStreamState(input_tools=tools) if tools else ChatCompletionStreamState()
    )
    for sse in SSEDecoder().iter_bytes(iter([data])):
        if sse.data.startswith("[DONE]"):
            break
        state.handle_chunk(ChatCompletionChunk.model_validate(sse.json()))
    return clean(state.current_completion_snapshot.model_dump())


def clean(obj: Any) -> Any:
    """Drop None values and the SDK's parse-helper fields so dumps compare on content."""
    if isinstance(obj, dict):
        return {
            k: clean(v)
            for k, v in obj.items()
            if v is not None and k not in ("parsed", "parsed_arguments")
        }
    if isinstance(obj, list):
        return [clean(v) for v in obj]
    return obj


def strip_tool_index(obj: dict[str, Any]) -> dict[str, Any]:
    for choice in obj.get("choices", []):
        for call in choice["message"].get("tool_calls") or []:
            call.pop("index", None)
    return obj


def model_dump(obj: dict[str, Any]) -> dict[str, Any]:
    return clean(ChatCompletion.model_validate(obj).model_dump())


# ---------------------------------------------------------------------- SSE parser/encoder
def test_protocol_and_constants() -> None:
    assert isinstance(P, Provider)
    assert P.name == "openai"
    assert P.cached_endpoints == {"/chat/completions", "/completions", "/embeddings", "/responses"}
    assert P.key_headers == ("openai-beta",)
    assert P.excluded_fields == {"stream", "user", "metadata"}
    assert P.is_stream_request({"stream": True})
    assert not P.is_stream_request({"stream": False}) and not P.is_stream_request({})
    assert orjson.loads(P.error_body(429, "slow down", "rate_limit_error")) == {
        "error": {"message": "slow down", "type": "rate_limit_error", "param": None, "code": None}
    }
    assert P.usage({"usage": USAGE}) == USAGE and P.usage({}) is None


def test_sse_parser_boundaries_line_endings_comments() -> None:
    raw = (
        b": keep-alive comment\r\n"
        b'event: message_start\r\ndata: {"a":1}\r\n\r\n'
        b"data: line1\ndata: line2\n\n"
        b"id: 7\nretry: 1500\ndata:no-space\n\n"
        b"event: ping\n\n"
        b"data: x\r\rdata: [DONE]\n\n"
    )
    expected = [
        SSEEvent(event="message_start", data='{"a":1}'),
        SSEEvent(data="line1\nline2"),
        SSEEvent(data="no-space", id="7", retry=1500),
        SSEEvent(event="ping", data=""),
        SSEEvent(data="x"),
        DONE,
    ]
    assert parse_sse(raw) == expected
    for size in (1, 2, 3, 7):  # every split point, incl. between \r and \n
        parser = SSEParser()
        got: list[SSEEvent] = []
        for i in range(0, len(raw), size):
            got.extend(parser.feed(raw[i : i + size]))
        assert got == expected, size
    for seed in range(20):
        assert parse_in_pieces(raw, seed) == expected


def test_sse_unterminated_tail_and_finish() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\n\ndata: b") == [SSEEvent(data="a")]
    assert parser.pending
    assert parser.finish() == [SSEEvent(data="b")]
    assert not parser.pending and parser.finish() == []


def test_sse_encode_roundtrip_through_sdk_decoder() -> None:
    events = [
        SSEEvent(data='{"x": 1}'),
        SSEEvent(event="content_block_delta", data='{"y": "a\\nb"}'),
        SSEEvent(data="multi\nline\n\ndata"),
        SSEEvent(event="ping"),
        SSEEvent(data="v", id="42", retry=10),
        DONE,
    ]
    wire = encode_events(events)
    assert events[0].encode() == b'data: {"x": 1}\n\n'
    assert events[1].encode() == b'event: content_block_delta\ndata: {"y": "a\\nb"}\n\n'
    assert parse_sse(wire) == events
    decoded = list(SSEDecoder().iter_bytes(iter([wire])))
    assert [(e.event, e.data) for e in decoded] == [(e.event, e.data) for e in events]
    # re-encoding the parse of a real stream gives the same events to the SDK decoder
    real = sse_bytes(TEXT_STREAM, crlf=True)
    replay = encode_events(parse_in_pieces(real, 3))
    a = [(e.event, e.data) for e in SSEDecoder().iter_bytes(iter([real]))]
    b = [(e.event, e.data) for e in SSEDecoder().iter_bytes(iter([replay]))]
    assert a == b and len(a) == len(TEXT_STREAM) + 1


def test_sse_parser_is_fast_on_big_streams() -> None:
    import time

    one = b"data: " + orjson.dumps({"choices": [{"delta": {"content": "x" * 40}}]}) + b"\n\n"
    wire = one * 20000  # ~1.5 MB
    parser = SSEParser()
    start = time.perf_counter()
    count = 0
    for i in range(0, len(wire), 1000):
        count += len(parser.feed(wire[i : i + 1000]))
    assert count == 20000
    assert time.perf_counter() - start < 1.0
    big = b"data: " + b"y" * 3_000_000 + b"\n\n"
    start = time.perf_counter()
    events: list[SSEEvent] = []
    for i in range(0, len(big), 4096):
        events.extend(parser.feed(big[i : i + 4096]))
    assert len(events) == 1 and len(events[0].data) == 3_000_000
    assert time.perf_counter() - start < 1.0


# ---------------------------------------------------------------------- chat: stream -> full
@pytest.mark.parametrize("name", list(STREAMS))
def test_chat_stream_to_full_matches_sdk_accumulator(name: str) -> None:
    chunks = STREAMS[name]
    wire = sse_bytes(chunks, crlf=name == "refusal")
    events = parse_in_pieces(wire, seed=len(name))
    assert P.stream_finished(CHAT, events)
    full = P.events_to_response(CHAT, events)
    assert full is not None
    assert full["object"] == "chat.completion"
    validated = ChatCompletion.model_validate(full)
    assert clean(validated.model_dump()) == strip_tool_index(sdk_accumulate(wire))
    # the top-level fields the chunks carry are kept
    for key in ("id", "created", "model", "service_tier", "system_fingerprint"):
        assert full[key] == chunks[0][key]
    assert "obfuscation" not in full


def test_chat_stream_to_full_exact_values() -> None:
    full = P.events_to_response(CHAT, parse_sse(sse_bytes(TEXT_STREAM)))
    assert full is not None
    assert [c["message"]["content"] for c in full["choices"]] == ["Hello world", "Hi there ✓"]
    assert [c["finish_reason"] for c in full["choices"]] == ["stop", "length"]
    assert [t["token"] for t in full["choices"][0]["logprobs"]["content"]] == ["Hello", " world"]
    assert full["usage"] == USAGE
    tools = P.events_to_response(CHAT, parse_sse(sse_bytes(TOOL_STREAM)))
    assert tools is not None
    message = tools["choices"][0]["message"]
    assert message["content"] is None
    assert message["tool_calls"] == [
        {
            "id": "call_abc",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        },
        {
            "id": "call_def",
            "type": "function",
            "function": {"name": "get_time", "arguments": '{"tz": "CET"}'},
        },
    ]
    refusal = P.events_to_response(CHAT, parse_sse(sse_bytes(REFUSAL_STREAM)))
    assert refusal is not None
    assert refusal["choices"][0]["message"]["refusal"] == "I'm sorry, I can't help with that."
    reasoning = P.events_to_response(CHAT, parse_sse(sse_bytes(REASONING_STREAM)))
    assert reasoning is not None and "usage" not in reasoning
    assert reasoning["choices"][0]["message"]["reasoning_content"] == "Thinking..."


# ---------------------------------------------------------------------- chat: full -> stream
def full_response(name: str) -> dict[str, Any]:
    full = P.events_to_response(CHAT, parse_sse(sse_bytes(STREAMS[name])))
    assert full is not None
    return full


@pytest.mark.parametrize("name", list(STREAMS))
@pytest.mark.parametrize("include_usage", [False, True])
def test_chat_full_to_stream_through_sdk(name: str, include_usage: bool) -> None:
    full = full_response(name)
    request = {"model": "m", "messages": [], "stream": True}
    if include_usage:
        request["stream_options"] = {"include_usage": True}
    events = P.response_to_events(CHAT, full, request)
    assert events is not None and events[-1] == DONE
    assert P.stream_finished(CHAT, events)
    wire = encode_events(events)
    chunks = [e.json() for e in events[:-1]]
    for c in chunks:
        ChatCompletionChunk.model_validate(c)
        assert c["object"] == "chat.completion.chunk"
        assert ("usage" in c) is (include_usage and "usage" in full)
    has_usage_chunk = chunks[-1]["choices"] == []
    assert has_usage_chunk is (include_usage and "usage" in full)
    if has_usage_chunk:
        assert chunks[-1]["usage"] == full["usage"]
        assert all(c["usage"] is None for c in chunks[:-1])
    expected = model_dump(full)
    if not include_usage:
        expected.pop("usage", None)
    assert strip_tool_index(sdk_accumulate(wire)) == expected


@pytest.mark.parametrize("name", list(STREAMS))
def test_chat_round_trips(name: str) -> None:
    full = full_response(name)
    request = {"stream": True, "stream_options": {"include_usage": True}}
    events = P.response_to_events(CHAT, full, request)
    assert events is not None
    again = P.events_to_response(CHAT, parse_sse(encode_events(events)))
    assert again == full  # full -> stream -> full is exact
    # stream -> full -> stream: the SDK sees the same completion as from the original stream
    original = strip_tool_index(sdk_accumulate(sse_bytes(STREAMS[name])))
    replayed = strip_tool_index(sdk_accumulate(encode_events(events)))
    assert replayed == original


def test_chat_full_response_from_real_shape() -> None:
    full = {
        "id": "chatcmpl-123",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Sure",
                    "refusal": None,
                    "annotations": [],
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "f", "arguments": "{}"},
                        }
                    ],
                },
                "logprobs": None,
                "finish_reason": "tool_calls",
            }
        ],
        "usage": USAGE,
        "service_tier": "default",
        "system_fingerprint": "fp_1",
    }
    events = P.response_to_events(CHAT, copy.deepcopy(full), {"stream": True})
    assert events is not None
    again = P.events_to_response(CHAT, events)
    assert again is not None
    full_no_usage = {k: v for k, v in full.items() if k != "usage"}
    assert again == full_no_usage


def test_dict_and_list_delta_fields_merge_completely() -> None:
    audio = full_response("audio")["choices"][0]["message"]
    assert audio["audio"] == {
        "id": "audio_abc",
        "transcript": "Hello there",
        "data": "UklGRiQAAABXQVZF",
        "expires_at": 1741573552,
    }
    routed = full_response("openrouter_details_annotations")["choices"][0]["message"]
    assert routed["reasoning"] == "Let me think."
    assert routed["reasoning_details"] == [
        {"type": "reasoning.text", "text": "Let me think.", "format": "x", "index": 0},
        {"type": "reasoning.encrypted", "data": "gAAA", "index": 1},
    ]
    assert [a["url_citation"]["title"] for a in routed["annotations"]] == ["Example"]
    assert routed["content"] == "Paris."


def test_accumulate_edge_cases() -> None:
    from llm_cache.providers.openai_chat import accumulate

    acc: dict[str, Any] = {}
    for delta in (
        {"annotations": [{"type": "url_citation", "n": 1}], "flag": True, "count": 1},
        {"annotations": [{"type": "url_citation", "n": 2}], "flag": True, "count": 2},
        {"details": [{"index": 0, "text": "a", "format": "f"}], "kind": "x"},
        {"details": [{"index": 0, "text": "b", "format": "f"}, {"index": 1, "text": "c"}]},
        {"kind": {"not": "a string"}, "tags": ["a"], "id": "x"},
        {"tags": ["b"], "id": "x", "missing": None},
    ):
        accumulate(acc, delta)
    # lists of dicts without an index are appended (the SDK would raise), bools are not added
    assert [a["n"] for a in acc["annotations"]] == [1, 2]
    assert acc["flag"] is True and acc["count"] == 3
    assert acc["details"] == [{"index": 0, "text": "ab", "format": "f"}, {"index": 1, "text": "c"}]
    assert acc["kind"] == "x"  # a change of type keeps the first value, as the SDK does
    assert acc["tags"] == ["a", "b"] and acc["id"] == "x" and acc["missing"] is None


def test_chat_errors_and_unfinished_streams() -> None:
    events = parse_sse(sse_bytes(TEXT_STREAM))
    assert not P.stream_finished(CHAT, events[:-1])  # no [DONE]
    assert not P.stream_finished(CHAT, [])
    err = SSEEvent(data='{"error": {"message": "overloaded", "type": "server_error"}}')
    assert not P.stream_finished(CHAT, [events[0], err, DONE])
    assert P.events_to_response(CHAT, [events[0], err, DONE]) is None
    assert P.events_to_response(CHAT, [DONE]) is None
    # OpenRouter's mid-stream error: a choice that finishes with "error"
    choice_error = SSEEvent.from_json(chunk([ch(0, {"content": ""}, "error")]))
    assert not P.stream_finished(CHAT, [events[0], choice_error, DONE])


RESPONSE_OK = {"id": "resp_1", "object": "response", "status": "completed", "error": None}
BODY_RULES: list[tuple[str, Any, bool]] = [
    # (endpoint, body, is an error: never stored)
    (CHAT, {"error": {"message": "overloaded"}}, True),
    (CHAT, {"object": "error", "message": "bad", "type": "BadRequestError", "code": 400}, True),
    (CHAT, [], True),
    (CHAT, "ok", True),
    (CHAT, None, True),
    (CHAT, {"id": "x", "choices": []}, True),
    (CHAT, {"id": "x", "object": "chat.completion"}, True),
    (CHAT, {"id": "x", "choices": [{"index": 0, "finish_reason": "error", "message": {}}]}, True),
    (CHAT, {"id": "x", "choices": [{"index": 0, "error": {"code": 502}}]}, True),
    (CHAT, {"id": "x", "choices": [{"index": 0, "finish_reason": "stop"}], "error": None}, False),
    ("/completions", {"id": "x", "choices": [{"text": "hi", "index": 0}]}, False),
    ("/embeddings", {"object": "list", "data": [{"embedding": [0.1]}], "model": "m"}, False),
    ("/embeddings", {"object": "list", "data": []}, True),
    ("/embeddings", {"error": {"message": "x"}, "data": [1]}, True),
    ("/responses", {**RESPONSE_OK, "output": []}, False),
    ("/responses", {**RESPONSE_OK, "status": "incomplete", "output": []}, False),
    ("/responses", {**RESPONSE_OK, "status": "failed", "error": {"code": "x"}, "output": []}, True),
    ("/responses", {**RESPONSE_OK, "status": "queued", "output": []}, True),
    ("/responses", {**RESPONSE_OK, "status": "in_progress", "output": []}, True),
    ("/responses", {**RESPONSE_OK, "status": "cancelled", "output": []}, True),
    ("/responses", RESPONSE_OK, True),
]


@pytest.mark.parametrize(("endpoint", "body", "error"), BODY_RULES)
def test_only_answers_of_the_endpoints_shape_are_stored(
    endpoint: str, body: Any, error: bool
) -> None:
    assert P.body_is_error(endpoint, body) is error


NEVER_CACHED: list[tuple[dict[str, Any], bool]] = [
    ({"conversation": "conv_1"}, True),
    ({"conversation": {"id": "conv_1"}}, True),
    ({"conversation": None}, False),
    ({"prompt": {"id": "pmpt_1"}}, True),
    ({"prompt": {"id": "pmpt_1", "version": None}}, True),
    ({"prompt": {"id": "pmpt_1", "version": ""}}, True),
    ({"prompt": {"id": "pmpt_1", "version": "latest"}}, True),
    ({"prompt": {"id": "pmpt_1", "version": "2"}}, False),
    ({"prompt": None}, False),
    ({"previous_response_id": "resp_1"}, False),  # a finished response never changes
    ({}, False),
]


@pytest.mark.parametrize(("body", "never"), NEVER_CACHED)
def test_responses_never_cache_rules(body: dict[str, Any], never: bool) -> None:
    reason = P.never_cache("/responses", {"model": "m", "input": "hi", **body})
    assert (reason is not None) is never
    assert P.never_cache(CHAT, {"model": "m", "messages": [], **body}) is None


def test_keys_and_upstream_bodies_for_usage() -> None:
    body = {"model": "m", "messages": [], "stream": True}
    asked = {**body, "stream_options": {"include_usage": True}}
    other = {**body, "stream_options": {"include_usage": True, "include_obfuscation": False}}
    assert P.key_body(CHAT, asked) == body
    assert P.key_body(CHAT, {**body, "stream_options": {"include_usage": False}}) == body
    assert P.key_body(CHAT, other)["stream_options"] == {"include_obfuscation": False}
    assert P.key_body("/responses", asked) == asked
    assert P.upstream_body(CHAT, body, True) == asked
    assert P.upstream_body("/completions", other, True) is None  # already asks
    assert P.upstream_body(CHAT, {**body, "stream_options": "x"}, True) is None
    assert P.upstream_body(CHAT, {**body, "stream": False}, False) is None
    assert P.upstream_body("/responses", body, True) is None
    no_obf = {**body, "stream_options": {"include_obfuscation": False}}
    assert P.upstream_body(CHAT, no_obf, True) == {
        **body,
        "stream_options": {"include_obfuscation": False, "include_usage": True},
    }
    assert P.excluded_fields_for("/responses") == {"stream"}
    assert {"user", "metadata"} <= P.excluded_fields_for(CHAT)


def test_client_frames_drop_only_the_usage_chunk_for_clients_that_did_not_ask() -> None:
    from llm_cache.engine.exchange import split_frames

    azure_first = chunk([], prompt_filter_results=[{"prompt_index": 0}])
    frames = split_frames(P, sse_bytes([azure_first, *TEXT_STREAM]))
    plain = P.client_frames(CHAT, frames, {"stream": True})
    assert len(plain) == len(frames) - 1
    assert b'"usage":{' not in b"".join(plain) and b"prompt_filter_results" in plain[0]
    asked = {"stream": True, "stream_options": {"include_usage": True}}
    assert P.client_frames(CHAT, frames, asked) == frames
    assert P.client_frames("/responses", frames, {}) == frames


# ---------------------------------------------------------------------- legacy completions
LEGACY = [
    {
        "id": "cmpl-1",
        "object": "text_completion",
        "created": 1,
        "model": "gpt-3.5-turbo-instruct",
        "system_fingerprint": None,
        "choices": [{"text": t, "index": 0, "logprobs": None, "finish_reason": f}],
    }
    for t, f in (("Hello", None), (" there", None), ("", "stop"))
]


def test_legacy_completions_both_ways() -> None:
    wire = b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in LEGACY) + b"data: [DONE]\n\n"
    full = P.events_to_response("/completions", parse_sse(wire))
    assert full is not None
    completion = Completion.model_validate(full)
    assert completion.choices[0].text == "Hello there"
    assert completion.choices[0].finish_reason == "stop"
    events = P.response_to_events("/completions", full, {"stream": True})
    assert events is not None and events[-1] == DONE
    assert P.events_to_response("/completions", events) == full
    with_usage = {**full, "usage": {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}}
    events = P.response_to_events(
        "/completions", with_usage, {"stream": True, "stream_options": {"include_usage": True}}
    )
    assert events is not None
    assert events[-2].json()["usage"] == with_usage["usage"]
    assert P.events_to_response("/completions", events) == with_usage


# ---------------------------------------------------------------------- responses, embeddings
def test_embeddings_unsupported_both_ways() -> None:
    assert P.events_to_response("/embeddings", [DONE]) is None
    assert P.response_to_events("/embeddings", {"object": "list", "data": []}, {}) is None


async def fake_stream(body: dict[str, Any]) -> bytes:
    fake = create_fake_upstream()
    transport = httpx2.ASGITransport(app=fake.app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://fake") as client:
        r = await client.post(
            "/v1" + ("/responses" if "input" in body else CHAT),
            json=body,
            headers={"authorization": "Bearer k"},
        )
        assert r.status_code == 200
        return r.content


async def test_responses_stream_to_full_and_back() -> None:
    body = {"model": "gpt-4o-mini", "input": "hello", "stream": True}
    wire = await fake_stream(body)
    events = parse_in_pieces(wire, 5)
    assert P.stream_finished("/responses", events)
    full = P.events_to_response("/responses", events)
    assert full is not None
    response = Response.model_validate(full)
    assert response.status == "completed" and "hello" in response.output_text
    # full -> stream: the event sequence the upstream itself sent, ending in the same response
    synthesized = P.response_to_events("/responses", full, body)
    assert synthesized is not None
    # (the text arrives in one delta instead of several)
    real_kinds = [kind for kind, _ in itertools.groupby(e.event for e in events)]
    assert [e.event for e in synthesized] == real_kinds
    assert [e.json()["sequence_number"] for e in synthesized] == list(range(len(synthesized)))
    assert P.stream_finished("/responses", synthesized)
    assert P.events_to_response("/responses", synthesized) == full
    # aborted or failed streams are not finished
    assert not P.stream_finished("/responses", events[:-1])
    assert P.events_to_response("/responses", events[:-1]) is None
    failed = SSEEvent(event="response.failed", data='{"type": "response.failed"}')
    assert not P.stream_finished("/responses", [*events, failed])


async def test_fake_upstream_chat_stream_merges_to_its_json_answer() -> None:
    body: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "hi"}],
        "n": 2,
        "logprobs": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    full = P.events_to_response(CHAT, parse_sse(await fake_stream(body)))
    assert full is not None
    ChatCompletion.model_validate(full)
    texts = [c["message"]["content"] for c in full["choices"]]
    assert len(texts) == 2 and all("[h=" in t for t in texts)
    assert full["usage"]["total_tokens"] > 0


def test_registry() -> None:
    from llm_cache.providers import anthropic as anthropic_provider
    from llm_cache.providers import get_provider

    assert get_provider("OpenAI") is P
    assert get_provider("anthropic") is anthropic_provider.PROVIDER
    with pytest.raises(ValueError, match="unknown provider"):
        get_provider("nope")


RICH_RESPONSE: dict[str, Any] = {
    "id": "resp_rich",
    "object": "response",
    "created_at": 1741569952,
    "status": "completed",
    "background": False,
    "error": None,
    "incomplete_details": None,
    "instructions": None,
    "max_output_tokens": None,
    "model": "gpt-5",
    "parallel_tool_calls": True,
    "previous_response_id": None,
    "reasoning": {"effort": "low", "summary": "auto"},
    "store": True,
    "temperature": 1.0,
    "text": {"format": {"type": "text"}},
    "tool_choice": "auto",
    "tools": [],
    "top_p": 1.0,
    "truncation": "disabled",
    "user": "alice",
    "metadata": {"run": "7"},
    "usage": {
        "input_tokens": 20,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": 40,
        "output_tokens_details": {"reasoning_tokens": 12},
        "total_tokens": 60,
    },
    "output": [
        {
            "id": "rs_1",
            "type": "reasoning",
            "summary": [
                {"type": "summary_text", "text": "**Plan** look it up."},
                {"type": "summary_text", "text": "Then answer."},
            ],
            "encrypted_content": "gAAAA",
        },
        {
            "id": "ws_1",
            "type": "web_search_call",
            "status": "completed",
            "action": {"type": "search", "query": "capital of France"},
        },
        {
            "id": "msg_1",
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": [
                {
                    "type": "output_text",
                    "text": "Paris is the capital.",
                    "annotations": [
                        {
                            "type": "url_citation",
                            "start_index": 0,
                            "end_index": 5,
                            "title": "Paris",
                            "url": "https://example.com/paris",
                        }
                    ],
                    "logprobs": [],
                },
                {"type": "refusal", "refusal": "I won't say more."},
            ],
        },
        {
            "id": "fc_1",
            "type": "function_call",
            "status": "completed",
            "call_id": "call_1",
            "name": "get_weather",
            "arguments": '{"city": "Paris"}',
        },
        {
            "id": "ctc_1",
            "type": "custom_tool_call",
            "status": "completed",
            "call_id": "call_2",
            "name": "run_sql",
            "input": "SELECT 1",
        },
    ],
}


@pytest.mark.parametrize("status", ["completed", "incomplete"])
def test_responses_full_to_stream_through_the_sdk_state_machine(status: str) -> None:
    from openai.lib.streaming.responses import ResponseStreamState
    from openai.types.responses import ResponseStreamEvent

    full = copy.deepcopy(RICH_RESPONSE)
    full["status"] = status
    if status == "incomplete":
        full["incomplete_details"] = {"reason": "max_output_tokens"}
    events = P.response_to_events("/responses", full, {"stream": True})
    assert events is not None
    assert P.stream_finished("/responses", events)
    assert P.events_to_response("/responses", events) == full
    adapter: Any = pydantic.TypeAdapter(ResponseStreamEvent)
    state: Any = ResponseStreamState(input_tools=[], text_format=openai.omit)
    deltas: dict[str, str] = {}
    for event in SSEDecoder().iter_bytes(iter([encode_events(events)])):
        parsed = adapter.validate_python(event.json())  # every event is a known SDK event
        assert parsed.type == event.event
        for out in state.handle_event(parsed):
            if out.type.endswith(".delta"):
                deltas[out.type] = deltas.get(out.type, "") + out.delta
    assert deltas == {
        "response.reasoning_summary_text.delta": "**Plan** look it up.Then answer.",
        "response.output_text.delta": "Paris is the capital.",
        "response.refusal.delta": "I won't say more.",
        "response.function_call_arguments.delta": '{"city": "Paris"}',
        "response.custom_tool_call_input.delta": "SELECT 1",
    }
    kinds = [e.event for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == f"response.{status}"
    assert kinds.count("response.output_item.added") == len(full["output"])
    assert kinds.count("response.output_text.annotation.added") == 1
    created = events[0].json()["response"]
    assert created["status"] == "in_progress" and created["output"] == []
    assert created["usage"] is None and created["metadata"] == {"run": "7"}
    if status == "completed":
        final = state._completed_response
        assert final is not None
        assert final.model_dump(exclude_none=True) == Response.model_validate(full).model_dump(
            exclude_none=True
        )


def test_responses_that_are_not_finished_are_not_spelled_out() -> None:
    for status in ("failed", "queued", "in_progress"):
        assert P.response_to_events("/responses", {**RICH_RESPONSE, "status": status}, {}) is None
    assert P.response_to_events("/responses", {"status": "completed", "output": []}, {}) is None
    assert P.response_to_events("/responses", {**RICH_RESPONSE, "output": ["x"]}, {}) is None
