"""Bad input, upstream errors, broken streams, unreachable upstreams and failing storage."""

from __future__ import annotations

import socket
import time

import anthropic
import httpx2
import openai
import pytest

from tests.conftest import Proxy, ProxyFactory, Upstream
from tests.proxy.test_openai_proxy import MESSAGES, chat_raw, client_for


@pytest.mark.parametrize("payload", [b"{not json", b"[1, 2]", b""])
def test_malformed_openai_body_is_a_400_in_openai_shape(
    proxy: Proxy, upstream: Upstream, payload: bytes
) -> None:
    r = httpx2.post(
        f"{proxy.openai_base}/chat/completions",
        content=payload,
        headers={"authorization": "Bearer sk", "content-type": "application/json"},
    )
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"]
    assert upstream.fake.request_count == 0
    assert chat_raw(client_for(proxy)).headers["x-cache-hit"] == "false"  # still serving


def test_malformed_anthropic_body_is_a_400_in_anthropic_shape(
    proxy: Proxy, upstream: Upstream
) -> None:
    r = httpx2.post(
        f"{proxy.url}/v1/messages",
        content=b'{"model": ',
        headers={"x-api-key": "k", "anthropic-version": "2023-06-01"},
    )
    assert r.status_code == 400
    body = r.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert upstream.fake.request_count == 0


@pytest.mark.parametrize("status", [400, 429, 500])
def test_upstream_errors_pass_through_and_are_never_stored(
    proxy: Proxy, upstream: Upstream, status: int
) -> None:
    client = client_for(proxy, max_retries=0)
    for _ in range(2):
        with pytest.raises(openai.APIStatusError) as info:
            chat_raw(client, extra_headers={"x-fake-status": str(status)})
        assert info.value.status_code == status
        assert info.value.response.headers["x-cache-hit"] == "false"
        if status == 429:
            assert info.value.response.headers["retry-after"] == "7"
    assert upstream.fake.count("/chat/completions") == 2
    assert proxy.app.storage.get_size() == 0


def test_anthropic_error_body_is_unchanged(proxy: Proxy, upstream: Upstream) -> None:
    client = anthropic.Anthropic(base_url=proxy.url, api_key="k", max_retries=0)
    with pytest.raises(anthropic.RateLimitError) as info:
        client.messages.create(
            model="claude-haiku-4-5",
            max_tokens=10,
            messages=MESSAGES,
            extra_headers={"x-fake-status": "429"},
        )
    assert info.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    assert info.value.response.headers["retry-after"] == "7"


def test_aborted_upstream_stream_is_not_stored(proxy: Proxy, upstream: Upstream) -> None:
    client = client_for(proxy, max_retries=0)
    with pytest.raises(openai.APIError):  # the SDK notices the broken stream
        stream = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            stream=True,
            extra_headers={"x-fake-abort-after": "2"},
        )
        chunks = list(stream)
        # Some SDK versions end quietly on a truncated stream; then it must be incomplete.
        assert chunks and chunks[-1].choices[0].finish_reason is None
        raise openai.APIError("stream ended early", request=None, body=None)  # type: ignore[arg-type]
    assert proxy.app.storage.get_size() == 0
    full = chat_raw(client)
    assert full.headers["x-cache-hit"] == "false"


def test_client_disconnect_mid_stream_stores_nothing_and_closes_upstream(
    proxy: Proxy, upstream: Upstream
) -> None:
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}
    headers = {"authorization": "Bearer sk", "x-fake-chunk-delay-ms": "100"}
    with httpx2.stream(
        "POST", f"{proxy.openai_base}/chat/completions", json=body, headers=headers
    ) as r:
        for _ in r.iter_raw():
            break  # first chunk only, then hang up
    time.sleep(0.5)
    assert proxy.app.storage.get_size() == 0
    assert len(proxy.app.flights) == 0  # the upstream call was cancelled, not left running


def test_unreachable_upstream_is_a_502_json(start_proxy: ProxyFactory) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]  # nothing listens once the socket closes
    with start_proxy(openai_base_url=f"http://127.0.0.1:{dead}/v1") as proxy:
        r = httpx2.post(
            f"{proxy.openai_base}/chat/completions",
            json={"model": "m", "messages": MESSAGES},
            headers={"authorization": "Bearer sk"},
        )
        assert r.status_code == 502
        assert "could not reach" in r.json()["error"]["message"]
        assert r.headers["x-cache-hit"] == "false"
        assert httpx2.get(f"{proxy.url}/health").status_code == 200


def test_failing_storage_fails_open(start_proxy: ProxyFactory, upstream: Upstream) -> None:
    """A Redis backend with no server behind it: requests still succeed, health is degraded."""
    pytest.importorskip("redis")
    from llm_cache.cache.redis_storage import RedisStorage

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    storage = RedisStorage(host="127.0.0.1", port=dead, max_size=10)
    with start_proxy(storage=storage) as proxy:
        client = client_for(proxy, max_retries=0)
        answers = [chat_raw(client) for _ in range(3)]
        health = httpx2.get(f"{proxy.url}/health")
    assert all(a.headers["x-cache-hit"] == "false" for a in answers)
    assert all(a.parse().choices[0].message.content for a in answers)
    assert health.status_code == 200
    assert health.json()["status"] == "degraded"
    assert health.json()["error"]
    assert upstream.fake.count("/chat/completions") == 3
