"""Complete conversions between a stored stream and a full answer, through the real proxy.

* A chat stream merged into a full answer keeps every delta field the way the openai SDK
  accumulates it: ``audio``, OpenRouter's ``reasoning_details``, ``annotations``.
* A stream is always stored with its usage chunk (the proxy asks the upstream for it), so a
  full answer converted from it carries ``usage``; a client that did not ask never sees that
  chunk, neither live nor replayed, and one entry serves both kinds of client.
* A stored Responses JSON answer answers a streaming request with the ``response.*`` events.
"""

from __future__ import annotations

import threading
from typing import Any

import openai
import pytest

from tests.conftest import Proxy, Upstream
from tests.proxy.test_openai_proxy import MESSAGES, TOOL, client_for


def stream_chunks(client: openai.OpenAI, **params: Any) -> tuple[Any, list[Any]]:
    params.setdefault("model", "gpt-4o-mini")
    params.setdefault("messages", MESSAGES)
    raw = client.chat.completions.with_raw_response.create(stream=True, **params)
    return raw, list(raw.parse())


# ---------------------------------------------------------------------- delta fields
EXTRAS: dict[str, dict[str, Any]] = {
    "audio": {"modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "pcm16"}},
    "openrouter reasoning": {"extra_body": {"reasoning": {"effort": "low"}}},
    "annotations": {"web_search_options": {}},
}


@pytest.mark.parametrize("what", list(EXTRAS))
def test_stream_to_full_keeps_every_delta_field(
    proxy: Proxy, upstream: Upstream, what: str
) -> None:
    client = client_for(proxy)
    params = EXTRAS[what]
    raw, chunks = stream_chunks(client, **params)
    assert raw.headers["x-cache-hit"] == "false"
    plain = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES, **params
    )
    assert plain.headers["x-cache-hit"] == "true"  # converted from the stored stream
    got = plain.parse().choices[0].message.model_dump(exclude_none=True)

    # What the SDK's own stream helper accumulates from the same (replayed) stream.
    with client.chat.completions.stream(model="gpt-4o-mini", messages=MESSAGES, **params) as helper:
        sdk = helper.get_final_completion().choices[0].message.model_dump(exclude_none=True)
    sdk.pop("parsed", None)
    # What the upstream answers to the plain request itself.
    direct = openai.OpenAI(base_url=f"{upstream.url}/v1", api_key="sk-test")
    fresh = direct.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, **params)
    want = fresh.choices[0].message.model_dump(exclude_none=True)
    assert upstream.fake.count("/chat/completions") == 2

    if what == "audio":
        deltas = [c.choices[0].delta.to_dict().get("audio") for c in chunks if c.choices]
        pieces = [d for d in deltas if d]
        assert len(pieces) > 3  # really streamed in fragments
        assert got["audio"]["transcript"] == "".join(p.get("transcript", "") for p in pieces)
        assert got["audio"]["data"] == "".join(p.get("data", "") for p in pieces)
        assert got["audio"]["id"] == pieces[0]["id"]
        assert got["audio"]["expires_at"] == pieces[-1]["expires_at"]
        for field in ("transcript", "data"):
            assert got["audio"][field] == want["audio"][field]
        assert got.get("content") is None
        assert got["audio"] == sdk["audio"]
    elif what == "openrouter reasoning":
        assert got["reasoning"] == want["reasoning"]
        assert got["reasoning_details"] == want["reasoning_details"]
        assert [d["type"] for d in got["reasoning_details"]] == [
            "reasoning.text",
            "reasoning.encrypted",
        ]
        # The SDK's helper concatenates the "format" label OpenRouter repeats in every
        # fragment ("unknownunknown…"); the cache keeps it once, as the full answer has it.
        for ours, theirs in zip(got["reasoning_details"], sdk["reasoning_details"], strict=True):
            assert {**ours, "format": None} == {**theirs, "format": None}
    else:
        assert got["annotations"] == want["annotations"] and len(got["annotations"]) == 2
        assert got["annotations"] == sdk["annotations"]
    assert got["content" if what != "audio" else "audio"] == sdk.get(
        "content" if what != "audio" else "audio"
    )


# ---------------------------------------------------------------------- usage
def has_usage_chunk(chunks: list[Any]) -> bool:
    return any(c.usage is not None for c in chunks) or any(not c.choices for c in chunks)


def test_one_stream_entry_serves_usage_to_whoever_asks(proxy: Proxy, upstream: Upstream) -> None:
    client = client_for(proxy)
    # A stream without stream_options: live, the client sees no usage chunk...
    raw, live = stream_chunks(client)
    assert raw.headers["x-cache-status"] == "MISS"
    assert not has_usage_chunk(live)
    # ...though the proxy asked the upstream for one.
    sent = upstream.fake.requests[0].body
    assert sent["stream_options"] == {"include_usage": True}

    plain = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    assert plain.headers["x-cache-status"] == "HIT"
    usage = plain.parse().usage
    assert usage is not None and usage.total_tokens > 0
    direct = openai.OpenAI(base_url=f"{upstream.url}/v1", api_key="sk-test")
    fresh = direct.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert plain.parse().usage == fresh.usage

    asked, with_usage = stream_chunks(client, stream_options={"include_usage": True})
    assert asked.headers["x-cache-status"] == "HIT"
    assert asked.headers["x-cache-key"] == raw.headers["x-cache-key"]
    assert with_usage[-1].choices == [] and with_usage[-1].usage == usage
    again, replayed = stream_chunks(client)
    assert again.headers["x-cache-status"] == "HIT"
    assert not has_usage_chunk(replayed)
    assert [c.model_dump() for c in replayed] == [c.model_dump() for c in with_usage[:-1]]
    assert [c.model_dump() for c in replayed] == [c.model_dump() for c in live]
    off, replayed_off = stream_chunks(client, stream_options={"include_usage": False})
    assert off.headers["x-cache-status"] == "HIT" and not has_usage_chunk(replayed_off)
    assert upstream.fake.count("/chat/completions") == 2  # the stream and the direct call


def test_legacy_completions_stream_carries_usage_when_converted(
    proxy: Proxy, upstream: Upstream
) -> None:
    client = client_for(proxy)
    raw = client.completions.with_raw_response.create(
        model="gpt-3.5-turbo-instruct", prompt="Hi", stream=True
    )
    chunks = list(raw.parse())
    assert all(c.usage is None for c in chunks) and all(c.choices for c in chunks)
    plain = client.completions.with_raw_response.create(model="gpt-3.5-turbo-instruct", prompt="Hi")
    assert plain.headers["x-cache-hit"] == "true"
    usage = plain.parse().usage
    assert usage is not None and usage.total_tokens > 0


def test_other_stream_options_stay_in_the_key(proxy: Proxy, upstream: Upstream) -> None:
    client = client_for(proxy)
    plain, _ = stream_chunks(client)
    other, _ = stream_chunks(
        client, stream_options={"include_usage": True, "include_obfuscation": False}
    )
    assert other.headers["x-cache-status"] == "MISS"
    assert other.headers["x-cache-key"] != plain.headers["x-cache-key"]
    assert upstream.fake.requests[-1].body["stream_options"] == {
        "include_usage": True,
        "include_obfuscation": False,
    }


def test_followers_of_one_live_stream_each_get_what_they_asked(
    proxy: Proxy, upstream: Upstream
) -> None:
    """Two clients share one upstream stream while it is still arriving: the one that asked
    for usage gets the usage chunk, the other does not."""
    client = client_for(proxy)
    slow = {"x-fake-chunk-delay-ms": "60"}
    results: dict[str, tuple[Any, list[Any]]] = {}

    def run(name: str, **params: Any) -> None:
        results[name] = stream_chunks(client, extra_headers=slow, **params)

    leader = threading.Thread(target=run, args=("plain",))
    leader.start()
    while upstream.fake.count("/chat/completions") == 0:
        threading.Event().wait(0.01)
    follower = threading.Thread(
        target=run, args=("usage",), kwargs={"stream_options": {"include_usage": True}}
    )
    follower.start()
    leader.join(20)
    follower.join(20)
    _, plain = results["plain"]
    usage_raw, with_usage = results["usage"]
    assert upstream.fake.count("/chat/completions") == 1
    assert usage_raw.headers["x-cache-status"] == "COALESCED"
    assert not has_usage_chunk(plain)
    assert with_usage[-1].usage is not None and with_usage[-1].choices == []
    assert [c.model_dump() for c in with_usage[:-1]] == [c.model_dump() for c in plain]


def test_an_upstream_that_refuses_stream_options_still_streams(
    proxy: Proxy, upstream: Upstream
) -> None:
    """Mistral-style upstreams answer 422 to ``stream_options``: the proxy asks again with the
    client's own body, and stops adding it for that upstream."""
    client = client_for(proxy, max_retries=0)
    refuse = {"x-fake-reject-stream-options": "1"}
    bad = {"x-fake-status": "400"}
    raw, chunks = stream_chunks(client, extra_headers=refuse)
    assert raw.status_code == 200 and chunks[-1].choices[0].finish_reason == "stop"
    assert [r.body.get("stream_options") for r in upstream.fake.requests] == [
        {"include_usage": True},
        None,
    ]
    _, more = stream_chunks(
        client, messages=[{"role": "user", "content": "another"}], extra_headers=refuse
    )
    assert more and upstream.fake.count("/chat/completions") == 3  # no second refusal
    # Any other 400 to a stream the proxy added stream_options to is the client's answer as is:
    # relayed unchanged, with no second call.
    before = upstream.fake.count("/chat/completions")
    with pytest.raises(openai.BadRequestError) as info:
        stream_chunks(client, messages=[{"role": "user", "content": "bad"}], extra_headers=bad)
    assert info.value.body == {
        "message": "Simulated error 400",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
    assert upstream.fake.count("/chat/completions") == before + 1
    # A client that asks for stream_options itself gets the upstream's refusal.
    with pytest.raises(openai.UnprocessableEntityError):
        stream_chunks(
            client,
            messages=[{"role": "user", "content": "third"}],
            stream_options={"include_usage": True},
            extra_headers=refuse,
        )


# ---------------------------------------------------------------------- responses
def test_stored_responses_json_answers_a_streaming_request(
    proxy: Proxy, upstream: Upstream
) -> None:
    client = client_for(proxy)
    stored = client.responses.create(model="gpt-4o-mini", input="Tell me a story")
    raw = client.responses.with_raw_response.create(
        model="gpt-4o-mini", input="Tell me a story", stream=True
    )
    assert raw.headers["x-cache-hit"] == "true"
    events = list(raw.parse())
    kinds = [e.type for e in events]
    assert kinds[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert kinds[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == stored.output_text
    assert events[-1].response == stored

    # The SDK's stream helper accepts the synthesized events and rebuilds the same response.
    with client.responses.stream(model="gpt-4o-mini", input="Tell me a story") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == stored.output_text
    assert final.output_text == stored.output_text and final.id == stored.id
    assert upstream.fake.count("/responses") == 1


def test_stored_responses_function_call_and_incomplete_answers_stream(
    proxy: Proxy, upstream: Upstream
) -> None:
    client = client_for(proxy)
    tool = {
        "type": "function",
        "name": TOOL["function"]["name"],
        "parameters": TOOL["function"]["parameters"],
        "strict": False,
    }
    stored = client.responses.create(model="gpt-4o-mini", input="Weather?", tools=[tool])
    call = stored.output[0]
    assert call.type == "function_call"
    with client.responses.stream(model="gpt-4o-mini", input="Weather?", tools=[tool]) as stream:
        arguments = "".join(
            e.delta for e in stream if e.type == "response.function_call_arguments.delta"
        )
        final = stream.get_final_response()
    assert arguments == call.arguments
    assert final.output[0].type == "function_call"
    assert final.output[0].arguments == call.arguments

    short = client.responses.create(model="gpt-4o-mini", input="Long one", max_output_tokens=3)
    assert short.status == "incomplete"
    raw = client.responses.with_raw_response.create(
        model="gpt-4o-mini", input="Long one", max_output_tokens=3, stream=True
    )
    events = list(raw.parse())
    assert raw.headers["x-cache-hit"] == "true"
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.incomplete_details == short.incomplete_details
    assert upstream.fake.count("/responses") == 2


def test_stored_responses_stream_still_answers_a_plain_request(
    proxy: Proxy, upstream: Upstream
) -> None:
    client = client_for(proxy)
    raw = client.responses.with_raw_response.create(model="gpt-4o-mini", input="Hi", stream=True)
    events = list(raw.parse())
    plain = client.responses.with_raw_response.create(model="gpt-4o-mini", input="Hi")
    assert plain.headers["x-cache-hit"] == "true"
    assert plain.parse() == events[-1].response
    assert upstream.fake.count("/responses") == 1


def test_the_usage_request_keeps_integers_past_64_bits_exact(
    proxy: Proxy, upstream: Upstream
) -> None:
    client = client_for(proxy)
    raw, chunks = stream_chunks(client, extra_body={"seed": 2**64 + 1})
    assert raw.status_code == 200 and chunks and not has_usage_chunk(chunks)
    sent = upstream.fake.last_request.raw_body
    assert b'"seed":18446744073709551617' in sent.replace(b" ", b"")
    assert b'"include_usage":true' in sent.replace(b" ", b"")
