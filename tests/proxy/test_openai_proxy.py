"""The proxy in front of an OpenAI-style upstream, driven by the official openai SDK."""

from __future__ import annotations

import itertools
import time
from typing import Any

import httpx2
import openai
import pytest

from tests.conftest import Proxy, Upstream

MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


def client_for(proxy: Proxy, **kwargs: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.openai_base, api_key="sk-test-secret-123", **kwargs)


def chat_raw(client: openai.OpenAI, **params: Any) -> Any:
    params.setdefault("model", "gpt-4o-mini")
    params.setdefault("messages", MESSAGES)
    return client.chat.completions.with_raw_response.create(**params)


def test_repeat_call_is_a_hit_with_the_same_body(proxy: Proxy, upstream: Upstream) -> None:
    client = client_for(proxy)
    first = chat_raw(client)
    second = chat_raw(client)
    assert first.headers["x-cache-hit"] == "false"
    assert second.headers["x-cache-hit"] == "true"
    assert first.headers["x-cache-key"] == second.headers["x-cache-key"]
    assert len(first.headers["x-cache-key"]) == 64
    assert second.http_response.content == first.http_response.content
    assert second.parse().id == first.parse().id
    assert upstream.fake.count("/chat/completions") == 1


def test_different_questions_do_not_share_an_entry(proxy: Proxy, upstream: Upstream) -> None:
    client = client_for(proxy)
    a = chat_raw(client, messages=[{"role": "user", "content": "question A"}])
    b = chat_raw(client, messages=[{"role": "user", "content": "question B"}])
    assert b.headers["x-cache-hit"] == "false"
    assert a.parse().choices[0].message.content != b.parse().choices[0].message.content
    assert upstream.fake.count("/chat/completions") == 2


TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}

KEY_CHANGES: list[tuple[str, dict[str, Any]]] = [
    ("tools", {"tools": [TOOL]}),
    ("tool_choice", {"tools": [TOOL], "tool_choice": "none"}),
    ("response_format", {"response_format": {"type": "json_object"}}),
    (
        "system message",
        {"messages": [{"role": "system", "content": "Answer in French."}, *MESSAGES]},
    ),
    ("n", {"n": 2}),
    ("seed", {"seed": 7}),
    ("logit_bias", {"logit_bias": {"1234": -100}}),
    ("top_p", {"top_p": 0.5}),
    ("max_tokens", {"max_tokens": 5}),
    ("stop", {"stop": ["\n"]}),
    ("temperature", {"temperature": 0.3}),
    ("unknown field", {"extra_body": {"some_future_knob": True}}),
]


@pytest.mark.parametrize(("what", "change"), KEY_CHANGES, ids=[c[0] for c in KEY_CHANGES])
def test_each_output_affecting_field_changes_the_key(
    proxy: Proxy, upstream: Upstream, what: str, change: dict[str, Any]
) -> None:
    client = client_for(proxy)
    base = chat_raw(client)
    tools_base = chat_raw(client, tools=[TOOL]) if what == "tool_choice" else base
    changed = chat_raw(client, **change)
    assert changed.headers["x-cache-hit"] == "false", what
    assert changed.headers["x-cache-key"] not in {
        base.headers["x-cache-key"],
        tools_base.headers["x-cache-key"],
    }
    again = chat_raw(client, **change)
    assert again.headers["x-cache-hit"] == "true"
    assert again.http_response.content == changed.http_response.content


def test_user_and_metadata_stay_out_of_the_key(proxy: Proxy, upstream: Upstream) -> None:
    client = client_for(proxy)
    first = chat_raw(client, user="alice")
    second = chat_raw(client, user="bob", metadata={"run": "2"})
    assert second.headers["x-cache-hit"] == "true"
    assert second.headers["x-cache-key"] == first.headers["x-cache-key"]


def test_async_client_hits(proxy: Proxy, upstream: Upstream) -> None:
    import asyncio

    async def run() -> tuple[Any, Any]:
        client = openai.AsyncOpenAI(base_url=proxy.openai_base, api_key="sk-test")
        try:
            one = await client.chat.completions.with_raw_response.create(
                model="gpt-4o-mini", messages=MESSAGES
            )
            two = await client.chat.completions.with_raw_response.create(
                model="gpt-4o-mini", messages=MESSAGES
            )
            return one, two
        finally:
            await client.close()

    one, two = asyncio.run(run())
    assert (one.headers["x-cache-hit"], two.headers["x-cache-hit"]) == ("false", "true")
    assert one.parse() == two.parse()
    assert upstream.fake.count("/chat/completions") == 1


def collect_stream(client: openai.OpenAI, **params: Any) -> tuple[str, list[Any], Any]:
    params.setdefault("model", "gpt-4o-mini")
    params.setdefault("messages", MESSAGES)
    raw = client.chat.completions.with_raw_response.create(stream=True, **params)
    chunks = list(raw.parse())
    return raw.headers["x-cache-hit"], chunks, raw


def stream_text(chunks: list[Any]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_streaming_miss_then_hit_replays_every_chunk(proxy: Proxy, upstream: Upstream) -> None:
    client = client_for(proxy)
    hit1, first, _ = collect_stream(client, stream_options={"include_usage": True})
    hit2, second, _ = collect_stream(client, stream_options={"include_usage": True})
    assert (hit1, hit2) == ("false", "true")
    assert [c.model_dump() for c in second] == [c.model_dump() for c in first]
    assert first[-1].usage is not None and first[-1].usage.total_tokens > 0
    assert upstream.fake.count("/chat/completions") == 1


def test_streamed_tool_calls_replay_exactly(proxy: Proxy, upstream: Upstream) -> None:
    client = client_for(proxy)
    _, first, _ = collect_stream(client, tools=[TOOL])
    hit, second, _ = collect_stream(client, tools=[TOOL])
    assert hit == "true"
    deltas = [
        c.choices[0].delta.tool_calls for c in second if c.choices and c.choices[0].delta.tool_calls
    ]
    assert deltas, "the simulated upstream should have streamed tool-call deltas"
    assert [c.model_dump() for c in second] == [c.model_dump() for c in first]


def test_stream_entry_answers_a_plain_request_and_back(proxy: Proxy, upstream: Upstream) -> None:
    client = client_for(proxy)
    _, chunks, _ = collect_stream(client)
    plain = chat_raw(client)
    assert plain.headers["x-cache-hit"] == "true"
    completion = plain.parse()
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == stream_text(chunks)
    assert completion.id == chunks[0].id

    other = [{"role": "user", "content": "plain first"}]
    plain_first = chat_raw(client, messages=other).parse()
    hit, replayed, _ = collect_stream(client, messages=other)
    assert hit == "true"
    assert stream_text(replayed) == plain_first.choices[0].message.content
    assert replayed[-1].choices[0].finish_reason == plain_first.choices[0].finish_reason
    assert upstream.fake.count("/chat/completions") == 2


def test_stream_helper_accumulates_a_replayed_stream(proxy: Proxy, upstream: Upstream) -> None:
    """The SDK's own stream accumulator accepts a stream synthesized from a stored JSON answer."""
    client = client_for(proxy)
    plain = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, tools=[TOOL])
    with client.chat.completions.stream(
        model="gpt-4o-mini", messages=MESSAGES, tools=[TOOL]
    ) as stream:
        final = stream.get_final_completion()
    assert upstream.fake.count("/chat/completions") == 1
    got, want = final.choices[0].message, plain.choices[0].message
    assert got.content == want.content
    assert [t.function.arguments for t in got.tool_calls or []] == [
        t.function.arguments for t in want.tool_calls or []
    ]


def test_embeddings_are_cached(proxy: Proxy, upstream: Upstream) -> None:
    client = client_for(proxy)
    one = client.embeddings.with_raw_response.create(model="text-embedding-3-small", input="hello")
    two = client.embeddings.with_raw_response.create(model="text-embedding-3-small", input="hello")
    other = client.embeddings.create(model="text-embedding-3-small", input="bye")
    assert two.headers["x-cache-hit"] == "true"
    assert one.parse().data[0].embedding == two.parse().data[0].embedding
    assert other.data[0].embedding != one.parse().data[0].embedding
    assert upstream.fake.count("/embeddings") == 2


def test_completions_and_responses_are_cached(proxy: Proxy, upstream: Upstream) -> None:
    client = client_for(proxy)
    c1 = client.completions.with_raw_response.create(model="gpt-3.5-turbo-instruct", prompt="Hi")
    c2 = client.completions.with_raw_response.create(model="gpt-3.5-turbo-instruct", prompt="Hi")
    assert (c1.headers["x-cache-hit"], c2.headers["x-cache-hit"]) == ("false", "true")
    r1 = client.responses.with_raw_response.create(model="gpt-4o-mini", input="Hi there")
    r2 = client.responses.with_raw_response.create(model="gpt-4o-mini", input="Hi there")
    assert (r1.headers["x-cache-hit"], r2.headers["x-cache-hit"]) == ("false", "true")
    assert r1.parse().output_text == r2.parse().output_text
    assert upstream.fake.count("/completions") - upstream.fake.count("/chat/completions") == 1
    assert upstream.fake.count("/responses") == 1


def test_uncached_paths_are_forwarded(proxy: Proxy, upstream: Upstream) -> None:
    client = client_for(proxy)
    models = client.models.list()
    assert [m.id for m in models.data]
    client.models.list()
    assert upstream.fake.count("/models") == 2


def test_named_upstream(start_proxy: Any, upstream: Upstream) -> None:
    with start_proxy(upstreams={"groq": f"{upstream.url}/openai/v1"}) as proxy:
        client = openai.OpenAI(base_url=f"{proxy.url}/groq", api_key="gsk-test")
        one = client.chat.completions.with_raw_response.create(model="llama", messages=MESSAGES)
        two = client.chat.completions.with_raw_response.create(model="llama", messages=MESSAGES)
        direct = client_for(proxy).chat.completions.with_raw_response.create(
            model="llama", messages=MESSAGES
        )
    assert (one.headers["x-cache-hit"], two.headers["x-cache-hit"]) == ("false", "true")
    assert upstream.fake.requests[0].path == "/openai/v1/chat/completions"
    # Another upstream URL is another key, even for the same body.
    assert direct.headers["x-cache-hit"] == "false"
    assert direct.headers["x-cache-key"] != one.headers["x-cache-key"]


def test_unicode_and_large_answers(proxy: Proxy, upstream: Upstream) -> None:
    client = client_for(proxy)
    text = "Grüße aus Köln 🌍 — 東京 😀"
    a = chat_raw(client, messages=[{"role": "user", "content": text}])
    b = chat_raw(client, messages=[{"role": "user", "content": text}])
    assert b.headers["x-cache-hit"] == "true"
    assert a.http_response.content == b.http_response.content

    big = {"extra_headers": {"x-fake-size": str(2 * 1024 * 1024)}}
    first = chat_raw(client, messages=[{"role": "user", "content": "big"}], **big)
    second = chat_raw(client, messages=[{"role": "user", "content": "big"}], **big)
    assert second.headers["x-cache-hit"] == "true"
    assert len(first.parse().choices[0].message.content) == 2 * 1024 * 1024
    assert second.http_response.content == first.http_response.content


def test_identity_only_client_gets_a_plain_body(proxy: Proxy, upstream: Upstream) -> None:
    body = {"model": "gpt-4o-mini", "messages": MESSAGES}
    headers = {"authorization": "Bearer sk-test", "accept-encoding": "identity"}
    for expected_hit in ("false", "true"):
        r = httpx2.post(f"{proxy.openai_base}/chat/completions", json=body, headers=headers)
        assert r.status_code == 200
        assert r.headers["x-cache-hit"] == expected_hit
        assert "content-encoding" not in r.headers
        assert r.json()["object"] == "chat.completion"
    # The upstream was asked for gzip (and really compressed); the client still got plain JSON.
    assert "gzip" in upstream.fake.requests[0].headers.get("accept-encoding", "")


def test_gzip_accepting_client_gets_bytes_matching_its_headers(proxy: Proxy) -> None:
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}
    headers = {"authorization": "Bearer sk-test", "accept-encoding": "gzip"}
    for _ in range(2):
        with httpx2.stream(
            "POST", f"{proxy.openai_base}/chat/completions", json=body, headers=headers
        ) as r:
            text = r.read().decode()  # httpx2 decodes per the Content-Encoding it was told
        assert "data: [DONE]" in text


def test_openai_beta_header_enters_the_key(proxy: Proxy, upstream: Upstream) -> None:
    client = client_for(proxy)
    plain = chat_raw(client)
    beta = chat_raw(client, extra_headers={"OpenAI-Beta": "assistants=v2"})
    assert beta.headers["x-cache-hit"] == "false"
    assert beta.headers["x-cache-key"] != plain.headers["x-cache-key"]


def test_a_streamed_miss_is_relayed_event_by_event(proxy: Proxy, upstream: Upstream) -> None:
    """With 150 ms between upstream events, the first chunk reaches the client long before the
    upstream has finished: the proxy does not buffer the stream."""
    client = client_for(proxy)
    started = time.monotonic()
    arrivals = []
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "stream slowly"}],
        stream=True,
        extra_headers={"x-fake-chunk-delay-ms": "150"},
    )
    for _chunk in stream:
        arrivals.append(time.monotonic() - started)
    assert len(arrivals) >= 4
    total = arrivals[-1]
    assert total >= 0.15 * (len(arrivals) - 1) * 0.9
    assert arrivals[0] < total - 0.3  # the first chunk came while the rest was still on its way
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert max(gaps) < 0.5  # and the chunks kept arriving at the upstream's pace
