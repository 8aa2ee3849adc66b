"""The fake upstream speaks the real wire formats: the official SDKs accept its answers."""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import time
import zlib
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx2
import openai
import pytest

from tests.fake_upstream import FakeUpstream, create_fake_upstream, request_hash, run_server

CHAT = [{"role": "user", "content": "What is the capital of France?"}]
WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city", "days"],
        },
    },
}
CLAUDE = "claude-haiku-4-5"


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[FakeUpstream, str]]:
    fake = create_fake_upstream()
    with run_server(fake.app) as url:
        yield fake, url


@pytest.fixture
def fake(server: tuple[FakeUpstream, str]) -> FakeUpstream:
    server[0].reset()
    return server[0]


@pytest.fixture
def url(server: tuple[FakeUpstream, str], fake: FakeUpstream) -> str:
    return server[1]


@pytest.fixture
def oai(url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{url}/v1", api_key="sk-test", max_retries=0) as client:
        yield client


@pytest.fixture
def ant(url: str) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=url, api_key="sk-ant-test", max_retries=0) as client:
        yield client


# ---------------------------------------------------------------------- OpenAI chat
def test_chat_json(oai: openai.OpenAI, fake: FakeUpstream) -> None:
    r = oai.chat.completions.create(model="gpt-4o-mini", messages=CHAT)  # type: ignore[arg-type]
    assert r.object == "chat.completion"
    assert r.choices[0].finish_reason == "stop"
    text = r.choices[0].message.content or ""
    assert "capital of France" in text
    h = request_hash("chat", fake.last_request.body, fake.last_request.headers)
    assert f"[h={h}]" in text
    assert r.usage is not None and r.usage.total_tokens == (
        r.usage.prompt_tokens + r.usage.completion_tokens
    )
    assert fake.request_count == 1
    rec = fake.last_request
    assert rec.method == "POST" and rec.path == "/v1/chat/completions"
    assert rec.headers["authorization"] == "Bearer sk-test"
    assert rec.body["messages"] == CHAT


def test_answer_depends_on_whole_request_not_on_stream_or_user(oai: openai.OpenAI) -> None:
    def ask(**kw: Any) -> str:
        r = oai.chat.completions.create(model="gpt-4o-mini", messages=CHAT, **kw)
        return r.choices[0].message.content or ""

    base = ask()
    assert ask(temperature=0.5) != base
    assert ask(seed=1) != base
    assert ask(extra_body={"some_unknown_field": 1}) != base
    assert ask(user="someone") == base
    streamed = oai.chat.completions.create(model="gpt-4o-mini", messages=CHAT, stream=True)  # type: ignore[arg-type]
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == base


def test_ids_unique_per_call(oai: openai.OpenAI) -> None:
    a = oai.chat.completions.create(model="gpt-4o-mini", messages=CHAT)  # type: ignore[arg-type]
    b = oai.chat.completions.create(model="gpt-4o-mini", messages=CHAT)  # type: ignore[arg-type]
    assert a.id != b.id
    assert a.choices[0].message.content == b.choices[0].message.content


@pytest.mark.parametrize("include_usage", [False, True])
def test_chat_stream(oai: openai.OpenAI, include_usage: bool) -> None:
    chunks = list(
        oai.chat.completions.create(
            model="gpt-4o-mini",
            messages=CHAT,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": include_usage},
        )
    )
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "capital of France" in text
    if include_usage:
        assert chunks[-1].choices == [] and chunks[-1].usage is not None
        assert all(c.usage is None for c in chunks[:-1])
        assert chunks[-2].choices[0].finish_reason == "stop"
    else:
        assert chunks[-1].choices[0].finish_reason == "stop"
        assert all(c.usage is None for c in chunks)


def test_chat_stream_helper_tools_n2(oai: openai.OpenAI) -> None:
    with oai.chat.completions.stream(
        model="gpt-4o-mini",
        messages=CHAT,
        tools=[WEATHER_TOOL],
        n=2,  # type: ignore[arg-type]
    ) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    assert len(final.choices) == 2
    for choice in final.choices:
        assert choice.finish_reason == "tool_calls"
        calls = choice.message.tool_calls or []
        assert len(calls) == 1 and calls[0].type == "function"
        assert calls[0].function.name == "get_weather"
        args = json.loads(calls[0].function.arguments)
        assert isinstance(args, dict) and set(args) == {"city", "days"}
    plain = oai.chat.completions.create(
        model="gpt-4o-mini",
        messages=CHAT,
        tools=[WEATHER_TOOL],
        n=2,  # type: ignore[arg-type]
    )
    assert [c.message.tool_calls[0].function.arguments for c in plain.choices] == [  # type: ignore[index]
        c.message.tool_calls[0].function.arguments  # type: ignore[index]
        for c in final.choices
    ]


def test_chat_logprobs_and_max_tokens(oai: openai.OpenAI) -> None:
    r = oai.chat.completions.create(model="gpt-4o-mini", messages=CHAT, logprobs=True)  # type: ignore[arg-type]
    assert r.choices[0].logprobs is not None and r.choices[0].logprobs.content
    short = oai.chat.completions.create(model="gpt-4o-mini", messages=CHAT, max_tokens=2)  # type: ignore[arg-type]
    assert short.choices[0].finish_reason == "length"
    assert len(short.choices[0].message.content or "") <= 8


async def test_async_clients(url: str, fake: FakeUpstream) -> None:
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="sk-test") as client:
        r = await client.chat.completions.create(model="gpt-4o-mini", messages=CHAT)  # type: ignore[arg-type]
        stream = await client.chat.completions.create(
            model="gpt-4o-mini",
            messages=CHAT,  # type: ignore[arg-type]
            stream=True,
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert text == r.choices[0].message.content
    async with anthropic.AsyncAnthropic(base_url=url, api_key="sk-ant-test") as aclient:
        m = await aclient.messages.create(
            model=CLAUDE, max_tokens=200, messages=[{"role": "user", "content": "hi"}]
        )
        async with aclient.messages.stream(
            model=CLAUDE, max_tokens=200, messages=[{"role": "user", "content": "hi"}]
        ) as s:
            final = await s.get_final_message()
        assert final.model_dump(exclude={"id"}) == m.model_dump(exclude={"id"})
    assert fake.request_count == 4


# ---------------------------------------------------------------------- legacy, embeddings
def test_legacy_completions(oai: openai.OpenAI) -> None:
    r = oai.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say hi", max_tokens=50)
    assert r.object == "text_completion" and "Say hi" in r.choices[0].text
    chunks = list(
        oai.completions.create(
            model="gpt-3.5-turbo-instruct",
            prompt="Say hi",
            max_tokens=50,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == r.choices[0].text
    assert chunks[-1].usage is not None and chunks[-1].choices == []


def test_embeddings_float_and_base64(oai: openai.OpenAI, url: str) -> None:
    r = oai.embeddings.create(model="text-embedding-3-small", input=["alpha", "beta"])
    assert [d.index for d in r.data] == [0, 1]
    assert len(r.data[0].embedding) == 16 and r.data[0].embedding != r.data[1].embedding
    sent_format = oai.embeddings.create(
        model="text-embedding-3-small", input="alpha", encoding_format="float"
    )
    assert sent_format.data[0].embedding == r.data[0].embedding
    raw = httpx2.post(
        f"{url}/v1/embeddings",
        json={"model": "text-embedding-3-small", "input": "alpha", "encoding_format": "base64"},
        headers={"authorization": "Bearer k"},
    ).json()
    packed = base64.b64decode(raw["data"][0]["embedding"])
    assert list(struct.unpack("<16f", packed)) == r.data[0].embedding
    dims = oai.embeddings.create(model="text-embedding-3-small", input="alpha", dimensions=4)
    assert len(dims.data[0].embedding) == 4


# ---------------------------------------------------------------------- responses
def test_responses_json_and_stream(oai: openai.OpenAI) -> None:
    r = oai.responses.create(model="gpt-4o-mini", input="Tell me a joke", instructions="Be brief")
    assert r.status == "completed" and "Tell me a joke" in r.output_text
    with oai.responses.stream(
        model="gpt-4o-mini", input="Tell me a joke", instructions="Be brief"
    ) as stream:
        types = [event.type for event in stream]
        final = stream.get_final_response()
    assert final.output_text == r.output_text
    assert types[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert "response.output_text.delta" in types and types[-1] == "response.completed"
    raw = list(oai.responses.create(model="gpt-4o-mini", input="Tell me a joke", stream=True))
    assert [e.sequence_number for e in raw] == list(range(len(raw)))


def test_responses_function_call(oai: openai.OpenAI) -> None:
    tool: Any = {
        "type": "function",
        "name": "lookup",
        "parameters": WEATHER_TOOL["function"]["parameters"],
    }
    r = oai.responses.create(model="gpt-4o-mini", input="weather?", tools=[tool])
    call = r.output[0]
    assert call.type == "function_call" and call.name == "lookup"
    with oai.responses.stream(model="gpt-4o-mini", input="weather?", tools=[tool]) as stream:
        for _ in stream:
            pass
        final = stream.get_final_response()
    assert final.output[0].type == "function_call"
    assert final.output[0].arguments == call.arguments


def test_models_uncached_path(oai: openai.OpenAI, fake: FakeUpstream) -> None:
    ids = [m.id for m in oai.models.list()]
    assert "gpt-4o-mini" in ids
    assert fake.count("/models", method="GET") == 1


# ---------------------------------------------------------------------- anthropic
def test_messages_json_and_stream(ant: anthropic.Anthropic, fake: FakeUpstream) -> None:
    kw: Any = {"model": CLAUDE, "max_tokens": 300, "messages": [{"role": "user", "content": "hi"}]}
    m = ant.messages.create(**kw)
    assert m.stop_reason == "end_turn" and m.content[0].type == "text"
    headers = fake.last_request.headers
    # anthropic 2.x sends the key as a bearer token; older SDKs used x-api-key
    assert "sk-ant-test" in (headers.get("x-api-key"), headers.get("authorization", "")[7:])
    assert "anthropic-version" in fake.last_request.headers
    with ant.messages.stream(**kw) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == m.content[0].text
    assert final.usage.output_tokens == m.usage.output_tokens
    assert final.usage.input_tokens == m.usage.input_tokens


def test_messages_tools_and_thinking(ant: anthropic.Anthropic) -> None:
    kw: Any = {
        "model": CLAUDE,
        "max_tokens": 2000,
        "messages": [{"role": "user", "content": "weather in Paris?"}],
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "tools": [{"name": "get_weather", "input_schema": WEATHER_TOOL["function"]["parameters"]}],
    }
    m = ant.messages.create(**kw)
    assert [b.type for b in m.content] == ["thinking", "text", "tool_use"]
    assert m.stop_reason == "tool_use"
    with ant.messages.stream(**kw) as stream:
        final = stream.get_final_message()
    assert final.model_dump(exclude={"id"}) == m.model_dump(exclude={"id"})
    tool_use = m.content[2]
    assert tool_use.type == "tool_use" and set(tool_use.input) == {"city", "days"}  # type: ignore[arg-type]


def test_anthropic_headers_change_answer(ant: anthropic.Anthropic) -> None:
    kw: Any = {"model": CLAUDE, "max_tokens": 300, "messages": [{"role": "user", "content": "hi"}]}
    plain = ant.messages.create(**kw).content[0]
    beta = ant.messages.create(**kw, extra_headers={"anthropic-beta": "x-2025"}).content[0]
    assert plain.type == beta.type == "text"
    assert plain.text != beta.text  # type: ignore[union-attr]


# ---------------------------------------------------------------------- knobs
def test_auth_required(url: str) -> None:
    r = httpx2.post(f"{url}/v1/chat/completions", json={"model": "m", "messages": CHAT})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    r = httpx2.post(
        f"{url}/v1/messages",
        json={"model": CLAUDE, "max_tokens": 5, "messages": CHAT},
        headers={"anthropic-version": "2023-06-01"},
    )
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"


def test_forced_errors(oai: openai.OpenAI, ant: anthropic.Anthropic, fake: FakeUpstream) -> None:
    with pytest.raises(openai.RateLimitError) as exc:
        oai.chat.completions.create(
            model="m",
            messages=CHAT,  # type: ignore[arg-type]
            extra_headers={"x-fake-status": "429"},
        )
    assert exc.value.response.headers["retry-after"] == "7"
    assert exc.value.body == {
        "message": "Simulated error 429",
        "type": "rate_limit_exceeded",
        "param": None,
        "code": "rate_limit_exceeded",
    }
    with pytest.raises(anthropic.InternalServerError) as aexc:
        ant.messages.create(
            model=CLAUDE,
            max_tokens=5,
            messages=[{"role": "user", "content": "x"}],
            extra_headers={"x-fake-status": "500"},
        )
    assert aexc.value.body["error"]["type"] == "api_error"  # type: ignore[index]
    fake.status = 400
    with pytest.raises(openai.BadRequestError):
        oai.chat.completions.create(model="m", messages=CHAT)  # type: ignore[arg-type]
    assert fake.request_count == 3


def test_abort_mid_stream(oai: openai.OpenAI, ant: anthropic.Anthropic) -> None:
    got: list[Any] = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in oai.chat.completions.create(
            model="m",
            messages=CHAT,  # type: ignore[arg-type]
            stream=True,
            extra_headers={"x-fake-abort-after": "3"},
        ):
            got.append(chunk)
    assert len(got) == 3
    # the anthropic SDK lets the transport error through while iterating a stream
    with (
        pytest.raises((anthropic.APIConnectionError, httpx2.TransportError)),
        ant.messages.stream(
            model=CLAUDE,
            max_tokens=100,
            messages=[{"role": "user", "content": "x"}],
            extra_headers={"x-fake-abort-after": "4"},
        ) as s,
    ):
        s.get_final_message()


def test_latency_and_chunk_delay(url: str, fake: FakeUpstream) -> None:
    body = {"model": "m", "messages": CHAT, "stream": True}
    headers = {"authorization": "Bearer k", "x-fake-latency-ms": "150"}
    start = time.perf_counter()
    with httpx2.stream("POST", f"{url}/v1/chat/completions", json=body, headers=headers) as r:
        first = time.perf_counter()
        r.read()
    assert first - start >= 0.14
    fake.chunk_delay_ms = 20
    start = time.perf_counter()
    with httpx2.stream(
        "POST", f"{url}/v1/chat/completions", json=body, headers={"authorization": "Bearer k"}
    ) as r:
        arrivals = [time.perf_counter() - start for _ in r.iter_raw()]
    assert len(arrivals) >= 5  # events arrive separately, not buffered
    assert arrivals[-1] - arrivals[0] >= 0.02 * (len(arrivals) - 3)


def test_size_knob(oai: openai.OpenAI) -> None:
    size = 2 * 1024 * 1024
    r = oai.chat.completions.create(
        model="m",
        messages=CHAT,  # type: ignore[arg-type]
        extra_headers={"x-fake-size": str(size)},
    )
    assert len((r.choices[0].message.content or "").encode()) == size
    stream = oai.chat.completions.create(
        model="m",
        messages=CHAT,  # type: ignore[arg-type]
        stream=True,
        extra_headers={"x-fake-size": str(size)},
    )
    assert sum(len(c.choices[0].delta.content or "") for c in stream if c.choices) == size


def test_gzip_json_sse_and_errors(url: str) -> None:
    headers = {"authorization": "Bearer k", "accept-encoding": "gzip"}
    body: dict[str, Any] = {"model": "m", "messages": CHAT}
    with httpx2.Client() as client:
        r = client.post(f"{url}/v1/chat/completions", json=body, headers=headers)
        assert r.headers["content-encoding"] == "gzip"
        assert r.json()["object"] == "chat.completion"  # httpx decodes
        err = client.post(
            f"{url}/v1/chat/completions", json=body, headers={**headers, "x-fake-status": "500"}
        )
        assert err.headers["content-encoding"] == "gzip" and "error" in err.json()
        with client.stream(
            "POST", f"{url}/v1/chat/completions", json={**body, "stream": True}, headers=headers
        ) as s:
            assert s.headers["content-encoding"] == "gzip"
            raw = list(s.iter_raw())
        # every raw piece decompresses on its own prefix: incremental, flushed per event
        d = zlib.decompressobj(31)
        texts = [d.decompress(piece) for piece in raw]
        events = [t for t in texts if t]
        assert len(events) >= 5 and all(t.endswith(b"\n\n") for t in events)
        assert events[-1] == b"data: [DONE]\n\n"
        plain = client.post(
            f"{url}/v1/chat/completions",
            json=body,
            headers={"authorization": "Bearer k", "accept-encoding": "identity"},
        )
        assert "content-encoding" not in plain.headers


def test_sdks_with_gzip(url: str) -> None:
    # the SDKs send accept-encoding: gzip by default; prove it decodes SSE + JSON
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="k")
    chunks = list(client.chat.completions.create(model="m", messages=CHAT, stream=True))  # type: ignore[arg-type]
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_concurrent_requests(url: str, fake: FakeUpstream) -> None:
    async def main() -> list[str]:
        async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="k") as client:
            results = await asyncio.gather(
                *[
                    client.chat.completions.create(
                        model="m",
                        messages=[{"role": "user", "content": f"q{i}"}],
                        extra_headers={"x-fake-latency-ms": "50"},
                    )
                    for i in range(10)
                ]
            )
        return [r.choices[0].message.content or "" for r in results]

    start = time.perf_counter()
    texts = asyncio.run(main())
    assert time.perf_counter() - start < 2
    assert len(set(texts)) == 10 and fake.request_count == 10
