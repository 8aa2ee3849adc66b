"""Flight faults (issue 8), each driven for real through the proxy and the httpx transport.

An upstream that cuts a body or a stream, hangs, goes silent, or answers 429 to a crowd; clients
that all hang up; an app driven from several event loops; a SQLite write lock held by another
process. Every answer is either right or a visible failure, and no key stays stuck.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest

from llm_cache.cache.memory_storage import MemoryStorage
from llm_cache.cache.sqlite_storage import SQLiteStorage
from llm_cache.config import Config
from llm_cache.proxy.server import create_app
from llm_cache.wrapper.transport import async_httpx_client, httpx_client
from tests.conftest import Proxy, ProxyFactory, Upstream

MODEL = "gpt-4o-mini"


def chat(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def proxy_client(proxy: Proxy, **kwargs: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.openai_base, api_key="sk-test", max_retries=0, **kwargs)


def transport_client(upstream: Upstream, storage: MemoryStorage, **kwargs: Any) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{upstream.url}/v1",
        api_key="sk-test",
        max_retries=0,
        http_client=httpx_client(storage),
        **kwargs,
    )


def body(text: str, stream: bool = False) -> dict[str, Any]:
    return {"model": MODEL, "messages": chat(text), "stream": stream}


# -- a cut upstream is a failure, never a clean answer -----------------------------------------


def test_cut_json_body_is_a_502_through_the_proxy(proxy: Proxy, upstream: Upstream) -> None:
    client = proxy_client(proxy)
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(
            model=MODEL, messages=chat("cut"), extra_headers={"x-fake-abort-after": "1"}
        )
    assert info.value.status_code == 502
    assert "could not reach" in info.value.message
    assert proxy.app.storage.get_size() == 0
    # The key is free: the next identical call goes upstream and is stored.
    ok = client.chat.completions.with_raw_response.create(model=MODEL, messages=chat("cut"))
    assert ok.headers["x-cache-status"] == "MISS" and ok.parse().choices[0].message.content


def test_cut_stream_fails_the_client_through_the_proxy(proxy: Proxy, upstream: Upstream) -> None:
    client = proxy_client(proxy)
    stream = client.chat.completions.create(
        model=MODEL,
        messages=chat("cut stream"),
        stream=True,
        extra_headers={"x-fake-abort-after": "2"},
    )
    with pytest.raises((openai.APIError, httpx2.HTTPError)):
        for _ in stream:
            pass
    # The SDK's stream helper must not hand out a "final" completion of a cut stream.
    with (
        pytest.raises((openai.APIError, httpx2.HTTPError)),
        client.chat.completions.stream(
            model=MODEL, messages=chat("cut stream"), extra_headers={"x-fake-abort-after": "2"}
        ) as helper,
    ):
        helper.get_final_completion()
    assert proxy.app.storage.get_size() == 0


def test_cut_json_and_stream_fail_through_the_transport(upstream: Upstream) -> None:
    storage = MemoryStorage()
    client = transport_client(upstream, storage)
    with pytest.raises((openai.APIError, httpx2.HTTPError)):
        client.chat.completions.create(
            model=MODEL, messages=chat("cut"), extra_headers={"x-fake-abort-after": "1"}
        )
    stream = client.chat.completions.create(
        model=MODEL, messages=chat("cut"), stream=True, extra_headers={"x-fake-abort-after": "2"}
    )
    with pytest.raises((openai.APIError, httpx2.HTTPError)):
        for _ in stream:
            pass
    assert storage.get_size() == 0


# -- abandoned flights are cancelled and free their key ----------------------------------------


def test_hung_upstream_abandoned_by_its_clients_frees_the_key(
    proxy: Proxy, upstream: Upstream
) -> None:
    url = f"{proxy.openai_base}/chat/completions"
    headers = {"authorization": "Bearer sk", "x-fake-latency-ms": "30000"}
    for _ in range(5):  # five clients give up on a hung upstream
        with pytest.raises(httpx2.ReadTimeout):
            httpx2.post(url, json=body("hung"), headers=headers, timeout=0.3)
    deadline = time.monotonic() + 5
    while len(proxy.app.cache.flights) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(proxy.app.cache.flights) == 0  # every abandoned flight was cancelled
    # A later identical request (and a bypass one) does not wait behind the hung call.
    started = time.monotonic()
    r = httpx2.post(url, json=body("hung"), headers={"authorization": "Bearer sk"}, timeout=10)
    bypass = httpx2.post(
        url,
        json=body("hung"),
        headers={"authorization": "Bearer sk", "x-cache-bypass": "true"},
        timeout=10,
    )
    assert time.monotonic() - started < 3
    assert r.status_code == 200 and bypass.status_code == 200
    assert r.headers["x-cache-status"] == "MISS" and bypass.headers["x-cache-status"] == "BYPASS"


def test_many_abandoned_flights_do_not_exhaust_the_upstream_pool(
    proxy: Proxy, upstream: Upstream
) -> None:
    url = f"{proxy.openai_base}/chat/completions"

    async def run() -> httpx2.Response:
        async with httpx2.AsyncClient(timeout=0.5) as client:
            attempts = [
                client.post(
                    url,
                    json=body(f"abandoned {i}"),
                    headers={"authorization": "Bearer sk", "x-fake-latency-ms": "30000"},
                )
                for i in range(200)
            ]
            results = await asyncio.gather(*attempts, return_exceptions=True)
            assert all(isinstance(r, httpx2.TimeoutException) for r in results)
        async with httpx2.AsyncClient(timeout=10) as client:
            return await client.post(
                url, json=body("after"), headers={"authorization": "Bearer sk"}
            )

    r = asyncio.run(run())
    assert r.status_code == 200


def test_silent_upstream_is_bounded_by_the_read_timeout(
    start_proxy: ProxyFactory, upstream: Upstream
) -> None:
    with start_proxy(upstream_read_timeout=0.5) as proxy:
        started = time.monotonic()
        with pytest.raises(openai.APIStatusError) as info:
            proxy_client(proxy).chat.completions.create(
                model=MODEL, messages=chat("silent"), extra_headers={"x-fake-latency-ms": "5000"}
            )
        assert info.value.status_code == 504
        assert time.monotonic() - started < 3
        # Mid-stream silence: the client sees a failure, not a clean end.
        stream = proxy_client(proxy).chat.completions.create(
            model=MODEL,
            messages=chat("silent stream"),
            stream=True,
            extra_headers={"x-fake-chunk-delay-ms": "3000"},
        )
        with pytest.raises((openai.APIError, httpx2.HTTPError)):
            for _ in stream:
                pass


# -- followers never hang; errors are shared ---------------------------------------------------


def test_followers_of_a_broken_stream_fail_instead_of_hanging(
    proxy: Proxy, upstream: Upstream
) -> None:
    async def run() -> list[Any]:
        client = openai.AsyncOpenAI(base_url=proxy.openai_base, api_key="sk", max_retries=0)

        async def one() -> Any:
            try:
                stream = await client.chat.completions.create(
                    model=MODEL,
                    messages=chat("broken for all"),
                    stream=True,
                    extra_headers={"x-fake-abort-after": "3", "x-fake-chunk-delay-ms": "50"},
                )
                async for _ in stream:
                    pass
            except Exception as exc:
                return exc
            return None

        try:
            return await asyncio.wait_for(asyncio.gather(*(one() for _ in range(4))), 20)
        finally:
            await client.close()

    results = asyncio.run(run())
    assert all(isinstance(r, (openai.APIError, httpx2.HTTPError)) for r in results)
    assert upstream.fake.count("/chat/completions") == 1
    assert proxy.app.storage.get_size() == 0


def test_a_crowd_shares_one_429(proxy: Proxy, upstream: Upstream) -> None:
    async def run() -> list[Any]:
        client = openai.AsyncOpenAI(base_url=proxy.openai_base, api_key="sk", max_retries=0)
        try:
            return await asyncio.gather(
                *(
                    client.chat.completions.create(
                        model=MODEL,
                        messages=chat("slow down"),
                        extra_headers={"x-fake-status": "429", "x-fake-latency-ms": "300"},
                    )
                    for _ in range(8)
                ),
                return_exceptions=True,
            )
        finally:
            await client.close()

    results = asyncio.run(run())
    assert all(isinstance(r, openai.RateLimitError) for r in results)
    assert {r.response.headers.get("retry-after") for r in results} == {"7"}  # type: ignore[union-attr]
    assert upstream.fake.count("/chat/completions") == 1
    assert proxy.app.storage.get_size() == 0


# -- several event loops -----------------------------------------------------------------------


def test_app_driven_from_several_event_loops(upstream: Upstream, tmp_path: Path) -> None:
    """Like Starlette's TestClient without ``with``: each request on a new event loop."""
    config = Config(
        env={},
        dotenv_path=None,
        backend="sqlite",
        sqlite_path=str(tmp_path / "loops.db"),
        openai_base_url=f"{upstream.url}/v1",
    )
    app = create_app(config)

    async def one(text: str) -> httpx2.Response:
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://proxy") as client:
            return await client.post(
                "/v1/chat/completions", json=body(text), headers={"authorization": "Bearer sk"}
            )

    answers = [asyncio.run(one(f"loop {i % 2}")) for i in range(6)]
    assert [r.status_code for r in answers] == [200] * 6
    assert [r.headers["x-cache-status"] for r in answers] == ["MISS", "MISS"] + ["HIT"] * 4
    app.storage.close()


def test_async_transport_from_several_event_loops(upstream: Upstream) -> None:
    storage = MemoryStorage()
    http_client = async_httpx_client(storage)

    async def one() -> str:
        client = openai.AsyncOpenAI(
            base_url=f"{upstream.url}/v1", api_key="sk", max_retries=0, http_client=http_client
        )
        reply = await client.chat.completions.create(model=MODEL, messages=chat("loops"))
        return reply.id

    ids = {asyncio.run(one()) for _ in range(3)}
    assert len(ids) == 1 and upstream.fake.count("/chat/completions") == 1


# -- storage never blocks the event loop -------------------------------------------------------


def test_a_write_lock_held_by_another_process_does_not_stall_hits(
    start_proxy: ProxyFactory, upstream: Upstream, tmp_path: Path
) -> None:
    db = tmp_path / "locked.db"
    with start_proxy(storage=SQLiteStorage(db_path=str(db))) as proxy:
        client = proxy_client(proxy)
        client.chat.completions.create(model=MODEL, messages=chat("warm"))
        holding = threading.Event()
        release = threading.Event()

        def hold_lock() -> None:  # another writer (say `llm-cache clear`) holds the file
            conn = sqlite3.connect(db, isolation_level=None)
            conn.execute("BEGIN IMMEDIATE")
            holding.set()
            release.wait(10)
            conn.execute("ROLLBACK")
            conn.close()

        holder = threading.Thread(target=hold_lock)
        holder.start()
        holding.wait(5)
        try:
            miss = threading.Thread(  # a miss must store: it waits for the lock, alone
                target=lambda: client.chat.completions.create(
                    model=MODEL, messages=chat("must write")
                )
            )
            miss.start()
            time.sleep(0.2)
            timings = []
            for _ in range(20):
                started = time.monotonic()
                hit = client.chat.completions.with_raw_response.create(
                    model=MODEL, messages=chat("warm")
                )
                timings.append(time.monotonic() - started)
                assert hit.headers["x-cache-status"] == "HIT"
            started = time.monotonic()
            health = httpx2.get(f"{proxy.url}/health", timeout=5)
            health_time = time.monotonic() - started
        finally:
            release.set()
            holder.join()
        miss.join(10)
        assert max(timings) < 0.5, timings
        assert health.status_code == 200 and health_time < 1.0
