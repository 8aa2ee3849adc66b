"""Per-request controls (bypass, no-store, TTL) and LLM_CACHE_MODE, through the real proxy."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest

from tests.conftest import Proxy, ProxyFactory, Upstream
from tests.proxy.test_openai_proxy import MESSAGES, chat_raw, client_for


def test_bypass_header_calls_upstream_and_refreshes_the_entry(
    proxy: Proxy, upstream: Upstream
) -> None:
    client = client_for(proxy)
    first = chat_raw(client)
    fresh = chat_raw(client, extra_headers={"X-Cache-Bypass": "true"})
    after = chat_raw(client)
    assert fresh.headers["x-cache-hit"] == "false"
    assert fresh.parse().id != first.parse().id
    assert after.headers["x-cache-hit"] == "true"
    assert after.parse().id == fresh.parse().id  # the bypass stored its fresh answer
    assert upstream.fake.count("/chat/completions") == 2
    assert "x-cache-bypass" not in upstream.fake.last_request.headers


def test_bypass_body_field_is_removed_before_forwarding(proxy: Proxy, upstream: Upstream) -> None:
    client = client_for(proxy)
    first = chat_raw(client)
    fresh = chat_raw(client, extra_body={"_cache_bypass": True, "_cache_note": "x"})
    assert fresh.headers["x-cache-hit"] == "false"
    assert fresh.headers["x-cache-key"] == first.headers["x-cache-key"]
    forwarded = upstream.fake.last_request.body
    assert not [k for k in forwarded if k.startswith("_cache_")]
    assert upstream.fake.count("/chat/completions") == 2


def test_no_store_answers_but_keeps_nothing(proxy: Proxy, upstream: Upstream) -> None:
    client = client_for(proxy)
    a = chat_raw(client, extra_headers={"Cache-Control": "no-store"})
    b = chat_raw(client)
    assert (a.headers["x-cache-hit"], b.headers["x-cache-hit"]) == ("false", "false")
    assert chat_raw(client).headers["x-cache-hit"] == "true"
    assert upstream.fake.count("/chat/completions") == 2


def test_ttl_header_expires_the_entry(proxy: Proxy, upstream: Upstream) -> None:
    client = client_for(proxy)
    chat_raw(client, extra_headers={"X-Cache-TTL": "0.5"})
    assert chat_raw(client).headers["x-cache-hit"] == "true"
    time.sleep(0.7)
    assert chat_raw(client).headers["x-cache-hit"] == "false"
    assert upstream.fake.count("/chat/completions") == 2


@pytest.mark.parametrize("bad", ["soon", "-1", "0"])
def test_invalid_ttl_header_is_a_400(proxy: Proxy, upstream: Upstream, bad: str) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        chat_raw(client_for(proxy), extra_headers={"X-Cache-TTL": bad})
    assert "X-Cache-TTL" in info.value.message
    assert upstream.fake.request_count == 0


def test_readonly_serves_hits_and_stores_nothing(
    start_proxy: ProxyFactory, upstream: Upstream, tmp_path: Path
) -> None:
    db = str(tmp_path / "shared.db")
    with start_proxy(sqlite_path=db) as rw:
        chat_raw(client_for(rw), messages=[{"role": "user", "content": "recorded"}])
    with start_proxy(sqlite_path=db, mode="readonly") as ro:
        client = client_for(ro)
        hit = chat_raw(client, messages=[{"role": "user", "content": "recorded"}])
        miss1 = chat_raw(client, messages=[{"role": "user", "content": "new"}])
        miss2 = chat_raw(client, messages=[{"role": "user", "content": "new"}])
    assert hit.headers["x-cache-hit"] == "true"
    assert (miss1.headers["x-cache-hit"], miss2.headers["x-cache-hit"]) == ("false", "false")
    assert upstream.fake.count("/chat/completions") == 3


def test_offline_miss_is_an_unretried_error_naming_the_key(
    start_proxy: ProxyFactory, upstream: Upstream, tmp_path: Path
) -> None:
    db = str(tmp_path / "shared.db")
    with start_proxy(sqlite_path=db) as rw:
        chat_raw(client_for(rw))
    upstream.fake.reset()
    with start_proxy(sqlite_path=db, mode="offline") as off:
        client = client_for(off, max_retries=3)
        assert chat_raw(client).headers["x-cache-hit"] == "true"
        with pytest.raises(openai.APIStatusError) as info:
            chat_raw(client, messages=[{"role": "user", "content": "never recorded"}])
    key = info.value.response.headers["x-cache-key"]
    assert key in info.value.message
    assert "offline" in info.value.message
    assert upstream.fake.request_count == 0  # neither the hit nor the miss reached upstream
    # The SDK did not retry (one request reached the proxy): max_retries=3 was not used.
    assert info.value.response.headers["x-should-retry"] == "false"


def test_offline_miss_is_not_retried_by_the_anthropic_sdk(
    start_proxy: ProxyFactory, upstream: Upstream
) -> None:
    import anthropic

    with start_proxy(mode="offline") as off:
        client = anthropic.Anthropic(base_url=off.url, api_key="sk-ant", max_retries=3)
        started = time.monotonic()
        with pytest.raises(anthropic.APIStatusError) as info:
            client.messages.create(model="claude-haiku-4-5", max_tokens=10, messages=MESSAGES)
        elapsed = time.monotonic() - started
    assert info.value.body["error"]["type"] == "cache_miss"  # type: ignore[index]
    assert elapsed < 0.5  # retries would back off for about a second
    assert upstream.fake.request_count == 0


def test_record_mode_always_calls_upstream_and_overwrites(
    start_proxy: ProxyFactory, upstream: Upstream, tmp_path: Path
) -> None:
    db = str(tmp_path / "shared.db")
    with start_proxy(sqlite_path=db, mode="record") as rec:
        client = client_for(rec)
        ids = [chat_raw(client).parse().id for _ in range(2)]
    assert ids[0] != ids[1]
    with start_proxy(sqlite_path=db) as rw:
        again = chat_raw(client_for(rw))
    assert again.headers["x-cache-hit"] == "true"
    assert again.parse().id == ids[1]
    assert upstream.fake.count("/chat/completions") == 2


def test_off_mode_is_a_pure_pass_through(start_proxy: ProxyFactory, upstream: Upstream) -> None:
    with start_proxy(mode="off") as off:
        client = client_for(off)
        hits = [chat_raw(client).headers["x-cache-hit"] for _ in range(2)]
        size = httpx2.get(f"{off.url}/cache/stats").json()["size"]
    assert hits == ["false", "false"]
    assert size == 0
    assert upstream.fake.count("/chat/completions") == 2


def test_api_key_never_reaches_storage(proxy: Proxy, upstream: Upstream) -> None:
    client = client_for(proxy)
    chat_raw(client)
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    proxy.app.storage.close()  # flush deferred writes so every byte is in the file
    data = b""
    for suffix in ("", "-wal", "-shm"):
        path = Path(proxy.config.sqlite_path + suffix)
        if path.exists():
            data += path.read_bytes()
    assert b"sk-test-secret-123" not in data
    assert b"chat.completion" in data or len(data) > 0


def test_entries_survive_a_restart(start_proxy: ProxyFactory, upstream: Upstream) -> None:
    with start_proxy() as first:
        chat_raw(client_for(first))
    with start_proxy() as second:
        again = chat_raw(client_for(second))
        stats: dict[str, Any] = httpx2.get(f"{second.url}/cache/stats").json()
    assert again.headers["x-cache-hit"] == "true"
    assert stats["hits"] == 1 and stats["misses"] == 1
    assert upstream.fake.count("/chat/completions") == 1
