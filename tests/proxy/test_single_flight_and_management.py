"""Single-flight under concurrency, and the management API."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx2
import openai
import pytest

from tests.conftest import Proxy, ProxyFactory, Upstream
from tests.proxy.test_openai_proxy import MESSAGES, chat_raw, client_for


def test_twenty_concurrent_cold_requests_make_one_upstream_call(
    proxy: Proxy, upstream: Upstream
) -> None:
    async def run() -> list[Any]:
        client = openai.AsyncOpenAI(base_url=proxy.openai_base, api_key="sk-test")
        try:
            return await asyncio.gather(
                *[
                    client.chat.completions.create(
                        model="gpt-4o-mini",
                        messages=MESSAGES,
                        extra_headers={"x-fake-latency-ms": "300"},
                    )
                    for _ in range(20)
                ]
            )
        finally:
            await client.close()

    answers = asyncio.run(run())
    assert upstream.fake.count("/chat/completions") == 1
    assert len({a.id for a in answers}) == 1
    assert len({a.choices[0].message.content for a in answers}) == 1


def test_streaming_followers_share_the_leaders_call(proxy: Proxy, upstream: Upstream) -> None:
    async def one(client: openai.AsyncOpenAI, stream: bool) -> str:
        extra = {"x-fake-latency-ms": "200", "x-fake-chunk-delay-ms": "20"}
        if stream:
            chunks = await client.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, stream=True, extra_headers=extra
            )
            return "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])
        done = await client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, extra_headers=extra
        )
        return done.choices[0].message.content or ""

    async def run() -> list[str]:
        client = openai.AsyncOpenAI(base_url=proxy.openai_base, api_key="sk-test")
        try:
            first = asyncio.create_task(one(client, True))
            await asyncio.sleep(0.05)  # the leader streams; then followers of both kinds join
            rest = [asyncio.create_task(one(client, i % 2 == 0)) for i in range(6)]
            return await asyncio.gather(first, *rest)
        finally:
            await client.close()

    texts = asyncio.run(run())
    assert upstream.fake.count("/chat/completions") == 1
    assert len(set(texts)) == 1 and texts[0]


def test_health_and_stats(proxy: Proxy, upstream: Upstream) -> None:
    client = client_for(proxy)
    chat_raw(client)
    chat_raw(client)
    chat_raw(client)
    health = httpx2.get(f"{proxy.url}/health").json()
    assert health == {
        "status": "healthy",
        "backend": "sqlite",
        "cache_size": 1,
        "cache_max_size": 1000,
        "mode": "readwrite",
    }
    stats = httpx2.get(f"{proxy.url}/cache/stats").json()
    assert stats["size"] == 1
    assert stats["max_size"] == 1000
    assert (stats["hits"], stats["misses"]) == (2, 1)
    assert stats["hit_rate"] == 66.67


def test_delete_entry_and_clear(proxy: Proxy, upstream: Upstream) -> None:
    client = client_for(proxy)
    key = chat_raw(client).headers["x-cache-key"]
    chat_raw(client, messages=[{"role": "user", "content": "two"}])
    r = httpx2.delete(f"{proxy.url}/cache/entry", params={"key": key})
    assert r.json() == {"status": "success", "message": "Entry deleted"}
    assert httpx2.delete(f"{proxy.url}/cache/entry", params={"key": key}).status_code == 404
    assert chat_raw(client).headers["x-cache-hit"] == "false"
    r = httpx2.post(f"{proxy.url}/cache/clear")
    assert r.json() == {"status": "success", "message": "Cache cleared"}
    assert httpx2.get(f"{proxy.url}/cache/stats").json()["size"] == 0
    assert chat_raw(client).headers["x-cache-hit"] == "false"


def test_admin_token_protects_management_but_not_health(
    start_proxy: ProxyFactory, upstream: Upstream
) -> None:
    with start_proxy(admin_token="s3cret") as proxy:
        assert httpx2.get(f"{proxy.url}/cache/stats").status_code == 401
        wrong = {"authorization": "Bearer nope"}
        assert httpx2.post(f"{proxy.url}/cache/clear", headers=wrong).status_code == 401
        right = {"authorization": "Bearer s3cret"}
        assert httpx2.get(f"{proxy.url}/cache/stats", headers=right).status_code == 200
        assert httpx2.post(f"{proxy.url}/cache/clear", headers=right).status_code == 200
        assert httpx2.get(f"{proxy.url}/health").status_code == 200


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/cache/nothing"), ("GET", "/cache/clear"), ("GET", "/elsewhere")]
)
def test_unknown_routes_are_json_404s(proxy: Proxy, method: str, path: str) -> None:
    r = httpx2.request(method, f"{proxy.url}{path}")
    assert r.status_code == 404
    assert r.json()["error"]["message"]


def test_two_proxies_on_one_sqlite_file_make_one_upstream_call(
    start_proxy: ProxyFactory, upstream: Upstream, tmp_path: Any
) -> None:
    """Two proxies (as two workers would be) with their own connections to one SQLite file:
    concurrent identical cold requests spread over both make one upstream call."""
    from llm_cache.cache.sqlite_storage import SQLiteStorage

    db = str(tmp_path / "shared.db")
    with (
        start_proxy(storage=SQLiteStorage(db_path=db)) as a,
        start_proxy(storage=SQLiteStorage(db_path=db)) as b,
    ):

        async def run() -> list[Any]:
            clients = [
                openai.AsyncOpenAI(base_url=p.openai_base, api_key="sk", max_retries=0)
                for p in (a, b)
            ]
            try:
                return await asyncio.gather(
                    *[
                        clients[i % 2].chat.completions.with_raw_response.create(
                            model="gpt-4o-mini",
                            messages=MESSAGES,
                            extra_headers={"x-fake-latency-ms": "300"},
                        )
                        for i in range(8)
                    ]
                )
            finally:
                for c in clients:
                    await c.close()

        answers = asyncio.run(run())
    assert upstream.fake.count("/chat/completions") == 1
    assert len({r.parse().id for r in answers}) == 1
    # The proxy that did not make the call answered from the other one's stored entry.
    assert {r.headers["x-cache-hit"] for r in answers} == {"true", "false"}
