"""The proxy on a real 3-master Redis Cluster (the session's ``redis_cluster`` fixture): miss then
hit, shared entries between two proxies, single-flight through the cluster lock, stats, the
memory tier in front -- and the configuration path (``LLM_CACHE_REDIS_CLUSTER=true``)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx2
import openai
import pytest

from llm_cache.cache.redis_storage import RedisStorage
from llm_cache.cache.tiered_storage import TieredStorage
from tests.conftest import Proxy, ProxyFactory, Upstream
from tests.support.redis_servers import ClusterHandle

MODEL = "gpt-4o-mini"


@pytest.fixture
def make_cluster_storage(redis_cluster: ClusterHandle) -> Iterator[Callable[[], RedisStorage]]:
    namespace = f"proxy-{uuid.uuid4().hex[:12]}"
    made: list[RedisStorage] = []

    def make() -> RedisStorage:
        made.append(RedisStorage(url=redis_cluster.url, cluster=True, namespace=namespace))
        return made[-1]

    yield make
    made[0].clear()
    for storage in made:
        storage.close()


def messages(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"{text} {uuid.uuid4().hex}"}]


def chat_raw(proxy: Proxy, msgs: list[dict[str, str]], stream: bool = False) -> Any:
    client = openai.OpenAI(base_url=proxy.openai_base, api_key="sk-test", max_retries=0)
    return client.chat.completions.with_raw_response.create(
        model=MODEL, messages=msgs, stream=stream
    )


def test_miss_then_hit_and_stats(
    start_proxy: ProxyFactory, upstream: Upstream, make_cluster_storage: Any
) -> None:
    msgs = messages("cluster")
    with start_proxy(storage=make_cluster_storage()) as proxy:
        first = chat_raw(proxy, msgs)
        second = chat_raw(proxy, msgs)
        assert (first.headers["x-cache-hit"], second.headers["x-cache-hit"]) == ("false", "true")
        assert second.http_response.content == first.http_response.content
        streamed = chat_raw(proxy, msgs, stream=True)  # a stream rendered from the JSON entry
        assert streamed.headers["x-cache-hit"] == "true"
        text = "".join(c.choices[0].delta.content or "" for c in streamed.parse() if c.choices)
        assert text == first.parse().choices[0].message.content
        chat_raw(proxy, messages("another"))
        stats = httpx2.get(f"{proxy.url}/cache/stats").json()
        assert (stats["size"], stats["hits"], stats["misses"]) == (2, 2, 2)
        assert stats["hit_rate"] == 50.0
        assert httpx2.get(f"{proxy.url}/health").json() == {
            "status": "healthy",
            "backend": "redis",
            "cache_size": 2,
            "cache_max_size": 1000,
            "mode": "readwrite",
        }
        key = first.headers["x-cache-key"]
        assert httpx2.delete(f"{proxy.url}/cache/entry", params={"key": key}).status_code == 200
        assert chat_raw(proxy, msgs).headers["x-cache-hit"] == "false"
        assert httpx2.post(f"{proxy.url}/cache/clear").status_code == 200
        assert httpx2.get(f"{proxy.url}/cache/stats").json()["size"] == 0
    assert upstream.fake.count("/chat/completions") == 3


def test_two_proxies_share_entries_and_single_flight_through_the_cluster(
    start_proxy: ProxyFactory, upstream: Upstream, make_cluster_storage: Any
) -> None:
    msgs = messages("cluster flight")
    with (
        start_proxy(storage=make_cluster_storage()) as a,
        start_proxy(storage=make_cluster_storage()) as b,
    ):

        async def ask(proxy: Proxy) -> tuple[str, str | None]:
            client = openai.AsyncOpenAI(base_url=proxy.openai_base, api_key="sk", max_retries=0)
            try:
                done = await client.chat.completions.create(
                    model=MODEL, messages=msgs, extra_headers={"x-fake-latency-ms": "400"}
                )
                return done.id, done.choices[0].message.content
            finally:
                await client.close()

        async def run() -> list[tuple[str, str | None]]:
            return await asyncio.gather(*[ask(a if i % 2 else b) for i in range(10)])

        answers = asyncio.run(run())
        assert upstream.fake.count("/chat/completions") == 1  # one call for both proxies
        assert len(set(answers)) == 1
        assert chat_raw(a, msgs).headers["x-cache-hit"] == "true"
        assert chat_raw(b, msgs).headers["x-cache-hit"] == "true"


def test_memory_tier_over_the_cluster(
    start_proxy: ProxyFactory, upstream: Upstream, make_cluster_storage: Any
) -> None:
    storage = TieredStorage(make_cluster_storage(), size=16, ttl=5)
    msgs = messages("tiered cluster")
    with start_proxy(storage=storage) as proxy:
        assert chat_raw(proxy, msgs).headers["x-cache-hit"] == "false"
        for _ in range(3):
            assert chat_raw(proxy, msgs).headers["x-cache-hit"] == "true"
        stats = httpx2.get(f"{proxy.url}/cache/stats").json()
        assert (stats["hits"], stats["misses"]) == (3, 1)
        assert stats["memory_tier"]["hits"] == 2  # the first hit loaded memory from Redis
    assert upstream.fake.count("/chat/completions") == 1


def test_cluster_from_settings(
    start_proxy: ProxyFactory, upstream: Upstream, redis_cluster: ClusterHandle
) -> None:
    """``LLM_CACHE_REDIS_CLUSTER=true`` with the URL of one node (default namespace; the cluster
    is the suite's own)."""
    msgs = messages("cluster settings")
    with start_proxy(backend="redis", redis_url=redis_cluster.url, redis_cluster=True) as proxy:
        assert isinstance(proxy.app.storage, RedisStorage) and proxy.app.storage.cluster
        assert chat_raw(proxy, msgs).headers["x-cache-hit"] == "false"
        hit = chat_raw(proxy, msgs)
        assert hit.headers["x-cache-hit"] == "true"
        assert proxy.app.storage.delete(hit.headers["x-cache-key"])
