"""The Gemini descriptor: routes, key rules, end of stream, and conversions google-genai accepts.

Answers come from the simulated Gemini API (checked against google-genai in
``tests/fake_providers``); converted answers are served back to google-genai, which must read
them as the real thing.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx2
import orjson
import pytest
from google import genai
from google.genai import types

from llm_cache.providers.gemini import PROVIDER
from llm_cache.providers.sse import SSEEvent, encode_events, parse_sse
from tests.fake_providers.gemini import GeminiFake, create_gemini_fake
from tests.providers.replay import serve_answer
from tests.servers import run_server

MODEL = "gemini-2.5-flash"
BODY = {"contents": [{"role": "user", "parts": [{"text": "Tell me a story"}]}]}


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[GeminiFake, str]]:
    fake = create_gemini_fake()
    with run_server(fake.app) as url:
        yield fake, url


def fetch(url: str, method: str, body: object = BODY, query: str = "") -> httpx2.Response:
    return httpx2.post(
        f"{url}/v1beta/models/{MODEL}:{method}{query}",
        headers={"x-goog-api-key": "k"},
        json=body,
    )


def sdk(url: str) -> genai.Client:
    return genai.Client(api_key="k", http_options=types.HttpOptions(base_url=url))


def test_routes_stream_by_path_and_model_in_path() -> None:
    m = PROVIDER.match(f"/v1beta/models/{MODEL}:streamGenerateContent")
    assert m is not None and m.endpoint == "generateContent"
    assert PROVIDER.wants_stream(m, {"stream": False}) is True  # the path decides
    assert PROVIDER.model(m, {}) == MODEL and m.params["version"] == "v1beta"
    m = PROVIDER.match(f"/v1/models/{MODEL}:generateContent")
    assert m is not None and PROVIDER.wants_stream(m, {}) is False
    assert PROVIDER.match("/v1beta/models/x:embedContent").endpoint == "embedContent"  # type: ignore[union-attr]
    e = PROVIDER.match("/v1beta/models/x:batchEmbedContents")
    assert e is not None and e.endpoint == "batchEmbedContents"
    assert PROVIDER.match("/v1beta/models/x:countTokens") is None  # uncached
    assert PROVIDER.match("/v1beta/models") is None


def test_key_rules() -> None:
    query = [("key", "AIza-secret"), ("alt", "sse"), ("foo", "1")]
    assert PROVIDER.key_query("generateContent", query) == [("foo", "1")]
    # the JSON-array stream is another answer shape: it keys apart from the SSE one
    assert PROVIDER.key_query("generateContent", [("alt", "json")]) == [("alt", "json")]
    assert PROVIDER.excluded_fields_for("generateContent") == frozenset()


def test_stream_to_full_is_read_by_the_sdk(upstream: tuple[GeminiFake, str]) -> None:
    _, url = upstream
    full = fetch(url, "generateContent").json()
    stream = fetch(url, "streamGenerateContent", query="?alt=sse")
    events = parse_sse(stream.content)
    assert len(events) > 1
    assert PROVIDER.stream_finished("generateContent", events)
    merged = PROVIDER.events_to_response("generateContent", events)
    assert merged is not None
    assert merged["candidates"][0]["content"] == full["candidates"][0]["content"]
    assert merged["candidates"][0]["finishReason"] == "STOP"
    assert merged["usageMetadata"] == full["usageMetadata"]
    with serve_answer("application/json", orjson.dumps(merged)) as replay:
        client = sdk(replay)
        r = client.models.generate_content(model=MODEL, contents="Tell me a story")
    assert r.text == full["candidates"][0]["content"]["parts"][0]["text"]
    assert PROVIDER.usage_tokens("generateContent", merged) == PROVIDER.usage_tokens(
        "generateContent", full
    )


def test_full_to_stream_is_read_by_the_sdk(upstream: tuple[GeminiFake, str]) -> None:
    _, url = upstream
    full = fetch(url, "generateContent").json()
    events = PROVIDER.response_to_events("generateContent", full, BODY)
    assert events is not None and PROVIDER.stream_finished("generateContent", events)
    with serve_answer("text/event-stream", encode_events(events)) as replay:
        client = sdk(replay)
        chunks = list(client.models.generate_content_stream(model=MODEL, contents="x"))
    assert (
        "".join(c.text or "" for c in chunks)
        == full["candidates"][0]["content"]["parts"][0]["text"]
    )
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP  # type: ignore[index]
    # and back: the round trip is the response itself
    assert PROVIDER.events_to_response("generateContent", events) == full


def test_two_candidates_and_function_calls(upstream: tuple[GeminiFake, str]) -> None:
    _, url = upstream
    body = {**BODY, "generationConfig": {"candidateCount": 2}}
    full = fetch(url, "generateContent", body).json()
    events = parse_sse(fetch(url, "streamGenerateContent", body, "?alt=sse").content)
    merged = PROVIDER.events_to_response("generateContent", events)
    assert merged is not None
    assert [c["content"] for c in merged["candidates"]] == [
        c["content"] for c in full["candidates"]
    ]
    tools = {
        **BODY,
        "tools": [
            {
                "functionDeclarations": [
                    {
                        "name": "f",
                        "parameters": {"type": "OBJECT", "properties": {"a": {"type": "STRING"}}},
                    }
                ]
            }
        ],
    }
    full = fetch(url, "generateContent", tools).json()
    events = parse_sse(fetch(url, "streamGenerateContent", tools, "?alt=sse").content)
    merged = PROVIDER.events_to_response("generateContent", events)
    assert (
        merged is not None
        and merged["candidates"][0]["content"] == full["candidates"][0]["content"]
    )


def test_unfinished_or_failed_streams_are_not_complete(upstream: tuple[GeminiFake, str]) -> None:
    _, url = upstream
    events = parse_sse(fetch(url, "streamGenerateContent", query="?alt=sse").content)
    assert not PROVIDER.stream_finished("generateContent", events[:-1])  # no finishReason yet
    assert not PROVIDER.stream_finished("generateContent", [])
    error = SSEEvent(data='{"error": {"code": 500, "message": "x", "status": "INTERNAL"}}')
    assert not PROVIDER.stream_finished("generateContent", [*events[:1], error])
    assert PROVIDER.events_to_response("generateContent", [*events, error]) is None
    two = {**BODY, "generationConfig": {"candidateCount": 2}}
    both = parse_sse(fetch(url, "streamGenerateContent", two, "?alt=sse").content)
    first_done = [e for e in both if orjson.loads(e.data)["candidates"][0]["index"] == 0]
    assert PROVIDER.stream_finished("generateContent", first_done)  # only candidate 0 started
    assert not PROVIDER.stream_finished("generateContent", both[: len(first_done) + 1])
    blocked = SSEEvent(data='{"promptFeedback": {"blockReason": "SAFETY"}}')
    assert PROVIDER.stream_finished("generateContent", [blocked])


def test_errors_usage_and_embeddings(upstream: tuple[GeminiFake, str]) -> None:
    _, url = upstream
    body = orjson.loads(PROVIDER.error_body(404, "no such entry", "cache_miss"))
    assert body == {"error": {"code": 404, "message": "no such entry", "status": "NOT_FOUND"}}
    assert PROVIDER.body_is_error("generateContent", body)
    assert not PROVIDER.body_is_error("generateContent", {"candidates": []})
    e = httpx2.post(
        f"{url}/v1beta/models/emb:embedContent?key=k", json={"content": {"parts": [{"text": "a"}]}}
    ).json()
    assert PROVIDER.usage_tokens("embedContent", e) is None
    assert PROVIDER.response_to_events("embedContent", e, {}) is None
    assert PROVIDER.events_to_response("embedContent", []) is None


def test_log_probabilities_are_never_merged(upstream: tuple[GeminiFake, str]) -> None:
    _, url = upstream
    events = parse_sse(fetch(url, "streamGenerateContent", query="?alt=sse").content)
    chunks = [orjson.loads(e.data) for e in events]

    def with_field(field: str, value: object, where: list[int]) -> list[SSEEvent]:
        out = []
        for i, c in enumerate(chunks):
            cand = {**c["candidates"][0], **({field: value} if i in where else {})}
            out.append(SSEEvent(data=orjson.dumps({**c, "candidates": [cand]}).decode()))
        return out

    last = len(chunks) - 1
    one_avg = with_field("avgLogprobs", -0.2, [last])
    assert PROVIDER.events_to_response("generateContent", one_avg) is not None
    two_avg = with_field("avgLogprobs", -0.2, [0, last])
    assert PROVIDER.events_to_response("generateContent", two_avg) is None
    tokens = with_field("logprobsResult", {"topCandidates": []}, [0])
    assert PROVIDER.events_to_response("generateContent", tokens) is None
