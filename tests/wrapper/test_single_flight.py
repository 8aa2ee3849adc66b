"""Single-flight in the in-process front ends: concurrent identical misses make one call.

Real threads (released together by a barrier) and ``asyncio.gather``; the upstream calls are
made slow (``x-fake-latency-ms``, a sleeping function) so that they overlap.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import httpx2
import openai
import pytest

from llm_cache import LLMCacheWrapper
from llm_cache.cache.memory_storage import MemoryStorage
from llm_cache.wrapper.transport import async_httpx_client, httpx_client
from tests.conftest import Upstream

MODEL = "gpt-4o-mini"
N = 6
SLOW = {"x-fake-latency-ms": "200"}

T = TypeVar("T")


def chat(content: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": content}]


def together(n: int, work: Callable[[], T]) -> list[T | BaseException]:
    """Run ``work`` in ``n`` threads released at once; results (or exceptions) in order."""
    barrier = threading.Barrier(n)

    def run() -> T | BaseException:
        barrier.wait()
        try:
            return work()
        except BaseException as exc:
            return exc

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(lambda _: run(), range(n)))


@pytest.fixture
def storage() -> MemoryStorage:
    return MemoryStorage(max_size=100)


def sync_client(upstream: Upstream, storage: MemoryStorage) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{upstream.url}/v1",
        api_key="sk-test",
        max_retries=0,
        http_client=httpx_client(storage),
    )


def async_client(upstream: Upstream, storage: MemoryStorage) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=f"{upstream.url}/v1",
        api_key="sk-test",
        max_retries=0,
        http_client=async_httpx_client(storage),
    )


# -- sync transport ---------------------------------------------------------------------------


def test_sync_transport_threads_make_one_call(upstream: Upstream, storage: MemoryStorage) -> None:
    client = sync_client(upstream, storage)

    def ask() -> Any:
        return client.chat.completions.with_raw_response.create(
            model=MODEL, messages=chat("shared"), extra_headers=SLOW
        )

    raws = together(N, ask)
    assert upstream.fake.count("/chat/completions") == 1
    answers = [raw.parse() for raw in raws]  # type: ignore[union-attr]
    assert all(a == answers[0] for a in answers)
    assert len({id(a) for a in answers}) == N
    # The leader and its followers were not served from storage; the next request is.
    assert {raw.headers["x-cache-hit"] for raw in raws} == {"false"}  # type: ignore[union-attr]
    later = client.chat.completions.with_raw_response.create(model=MODEL, messages=chat("shared"))
    assert later.headers["x-cache-hit"] == "true" and later.parse() == answers[0]
    assert upstream.fake.count("/chat/completions") == 1


def test_sync_transport_errors_are_shared(upstream: Upstream, storage: MemoryStorage) -> None:
    """When the upstream says 500 (or slow down), waiting requests get that answer instead
    of each calling again."""
    client = sync_client(upstream, storage)
    results = together(
        N,
        lambda: client.chat.completions.create(
            model=MODEL,
            messages=chat("failing"),
            extra_headers={**SLOW, "x-fake-status": "500"},
        ),
    )
    assert all(isinstance(r, openai.InternalServerError) for r in results)
    assert upstream.fake.count("/chat/completions") == 1
    assert storage.get_size() == 0


def test_sync_transport_controls_and_streams_stay_apart(
    upstream: Upstream, storage: MemoryStorage
) -> None:
    client = sync_client(upstream, storage)

    def ask(content: str, headers: dict[str, str]) -> Callable[[], Any]:
        return lambda: client.chat.completions.create(
            model=MODEL, messages=chat(content), extra_headers={**SLOW, **headers}
        )

    # Bypass: every request its own call.
    together(N, ask("bypass", {"X-Cache-Bypass": "true"}))
    assert upstream.fake.count("/chat/completions") == N
    upstream.fake.reset()
    # Streams are shared too: every thread tails the one call, chunk by chunk.
    streams = together(
        3,
        lambda: list(
            client.chat.completions.create(
                model=MODEL, messages=chat("streamed"), stream=True, extra_headers=SLOW
            )
        ),
    )
    assert upstream.fake.count("/chat/completions") == 1
    assert len({s[0].id for s in streams}) == 1  # type: ignore[index,union-attr]


def test_sync_transport_no_store_and_storing_calls_do_not_share(
    upstream: Upstream, storage: MemoryStorage
) -> None:
    client = sync_client(upstream, storage)
    barrier = threading.Barrier(4)

    def ask(headers: dict[str, str]) -> Any:
        barrier.wait()
        return client.chat.completions.create(
            model=MODEL, messages=chat("ns"), extra_headers={**SLOW, **headers}
        )

    plan = [{"Cache-Control": "no-store"}] * 2 + [{}] * 2
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(ask, plan))
    assert upstream.fake.count("/chat/completions") == 2
    assert answers[0] == answers[1] and answers[2] == answers[3]
    assert answers[0].id != answers[2].id


# -- async transport --------------------------------------------------------------------------


async def test_async_transport_gather_makes_one_call(
    upstream: Upstream, storage: MemoryStorage
) -> None:
    client = async_client(upstream, storage)
    raws = await asyncio.gather(
        *(
            client.chat.completions.with_raw_response.create(
                model=MODEL, messages=chat("gathered"), extra_headers=SLOW
            )
            for _ in range(N)
        )
    )
    assert upstream.fake.count("/chat/completions") == 1
    answers = [raw.parse() for raw in raws]
    assert all(a == answers[0] for a in answers)
    assert {raw.headers["x-cache-hit"] for raw in raws} == {"false"}
    hit = await client.chat.completions.with_raw_response.create(
        model=MODEL, messages=chat("gathered")
    )
    assert hit.headers["x-cache-hit"] == "true" and hit.parse() == answers[0]
    assert upstream.fake.count("/chat/completions") == 1
    await client.close()


async def test_async_transport_streams_are_tailed_and_converted(
    upstream: Upstream, storage: MemoryStorage
) -> None:
    client = async_client(upstream, storage)
    args: dict[str, Any] = {"model": MODEL, "messages": chat("a b c d e"), "stream": True}

    async def read_stream() -> list[Any]:
        return [c async for c in await client.chat.completions.create(**args, extra_headers=SLOW)]

    async def full() -> Any:
        return await client.chat.completions.create(
            model=MODEL, messages=chat("a b c d e"), extra_headers=SLOW
        )

    upstream.fake.chunk_delay_ms = 20
    *streams, merged = await asyncio.gather(*(read_stream() for _ in range(N)), full())
    assert upstream.fake.count("/chat/completions") == 1
    assert all(s == streams[0] for s in streams) and len(streams[0]) > 3
    text = "".join(c.choices[0].delta.content or "" for c in streams[0] if c.choices)
    assert merged.choices[0].message.content == text
    upstream.fake.chunk_delay_ms = 0
    replay = [c async for c in await client.chat.completions.create(**args)]
    assert replay == streams[0]
    assert upstream.fake.count("/chat/completions") == 1
    await client.close()


async def test_async_transport_a_reader_leaving_early_does_not_cut_the_others(
    upstream: Upstream, storage: MemoryStorage
) -> None:
    client = async_client(upstream, storage)
    args: dict[str, Any] = {
        "model": MODEL,
        "messages": chat("one two three four five six"),
        "stream": True,
        "extra_headers": SLOW,
    }
    upstream.fake.chunk_delay_ms = 20

    async def half() -> None:
        stream = await client.chat.completions.create(**args)
        await stream.__anext__()
        await stream.close()

    async def whole() -> list[Any]:
        return [c async for c in await client.chat.completions.create(**args)]

    _, chunks = await asyncio.gather(half(), whole())
    assert upstream.fake.count("/chat/completions") == 1
    upstream.fake.chunk_delay_ms = 0
    assert [c async for c in await client.chat.completions.create(**args)] == chunks
    assert upstream.fake.count("/chat/completions") == 1
    await client.close()


async def test_async_transport_failures_are_shared(
    upstream: Upstream, storage: MemoryStorage
) -> None:
    client = async_client(upstream, storage)
    results = await asyncio.gather(
        *(
            client.chat.completions.create(
                model=MODEL,
                messages=chat("limited"),
                extra_headers={**SLOW, "x-fake-status": "429"},
            )
            for _ in range(N)
        ),
        return_exceptions=True,
    )
    assert all(isinstance(r, openai.RateLimitError) for r in results)
    # One call: the upstream said slow down, and every waiter gets that answer.
    assert upstream.fake.count("/chat/completions") == 1
    assert all(r.response.headers.get("retry-after") == "7" for r in results)  # type: ignore[union-attr]

    upstream.fake.reset()
    aborted = await asyncio.gather(
        *(
            client.chat.completions.create(
                model=MODEL,
                messages=chat("abort"),
                stream=True,
                extra_headers={**SLOW, "x-fake-abort-after": "2"},
            )
            for _ in range(3)
        )
    )
    for stream in aborted:
        with pytest.raises((openai.APIError, httpx2.HTTPError)):
            async for _ in stream:
                pass
    assert upstream.fake.count("/chat/completions") == 1  # all three tailed the one call
    assert storage.get_size() == 0

    upstream.fake.reset()
    bypassed = await asyncio.gather(
        *(
            client.chat.completions.create(
                model=MODEL, messages=chat("bp"), extra_headers={**SLOW, "X-Cache-Bypass": "1"}
            )
            for _ in range(3)
        )
    )
    assert upstream.fake.count("/chat/completions") == 3
    assert len({b.id for b in bypassed}) == 3
    await client.close()


# -- wrapper ----------------------------------------------------------------------------------


class Calls:
    """A call log a wrapped closure can capture (a plain list would enter the cache key)."""

    def __init__(self) -> None:
        self.log: list[str] = []

    def __call__(self, question: str) -> None:
        self.log.append(question)

    def __len__(self) -> int:
        return len(self.log)


class Slow:
    """A slow function that counts its calls; ``fail_first`` makes the first call raise."""

    def __init__(self, fail_first: bool = False) -> None:
        self.calls = 0
        self.fail_first = fail_first
        self._lock = threading.Lock()

    def __call__(self, question: str) -> dict[str, Any]:
        with self._lock:
            self.calls += 1
            number = self.calls
        time.sleep(0.15)
        if self.fail_first and number == 1:
            raise RuntimeError("leader failed")
        return {"answer": question.upper(), "tokens": [1, 2, 3]}


def test_wrapper_threads_run_the_function_once(storage: MemoryStorage) -> None:
    slow = Slow()
    wrapper = LLMCacheWrapper(storage=storage)
    ask = wrapper.wrap(lambda question: slow(question))
    results = together(N, lambda: ask("same"))
    assert slow.calls == 1
    assert all(r == {"answer": "SAME", "tokens": [1, 2, 3]} for r in results)
    assert len({id(r) for r in results}) == N  # fresh copies, not one shared object
    assert wrapper.hits == 0 and wrapper.misses == N
    assert ask("same") == results[0] and wrapper.hits == 1
    together(2, lambda: ask("other"))
    assert slow.calls == 2


def test_wrapper_leader_raising_lets_followers_call(storage: MemoryStorage) -> None:
    slow = Slow(fail_first=True)
    ask = LLMCacheWrapper(storage=storage).wrap(lambda question: slow(question))
    results = together(N, lambda: ask("q"))
    assert slow.calls == N
    assert sum(isinstance(r, RuntimeError) for r in results) == 1
    assert [r for r in results if not isinstance(r, RuntimeError)] == [
        {"answer": "Q", "tokens": [1, 2, 3]}
    ] * (N - 1)


@pytest.mark.filterwarnings("ignore::llm_cache.wrapper.sdk.CacheWarning")
def test_wrapper_streams_and_unstorable_values_are_not_shared(storage: MemoryStorage) -> None:
    wrapper = LLMCacheWrapper(storage=storage)
    calls = Calls()

    @wrapper.wrap
    def stream(question: str) -> Iterator[str]:
        calls(question)
        time.sleep(0.15)
        return iter(question.split())

    @wrapper.wrap
    def unstorable(question: str) -> object:
        calls(question)
        time.sleep(0.15)
        return object()

    streams = together(4, lambda: list(stream("a b c")))
    assert streams == [["a", "b", "c"]] * 4 and len(calls) == 4
    together(4, lambda: unstorable("x"))
    assert len(calls) == 8
    together(3, lambda: stream("a b c", _cache_bypass=True))
    assert len(calls) == 11


async def test_wrapper_async_gather_runs_once(storage: MemoryStorage) -> None:
    calls = Calls()
    wrapper = LLMCacheWrapper(storage=storage)

    @wrapper.wrap
    async def ask(question: str) -> dict[str, Any]:
        calls(question)
        await asyncio.sleep(0.15)
        if question == "fail" and len(calls) == 1:
            raise RuntimeError("leader failed")
        return {"answer": question}

    results = await asyncio.gather(*(ask("same") for _ in range(N)))
    assert calls.log == ["same"]
    assert results == [{"answer": "same"}] * N and len({id(r) for r in results}) == N

    calls.log.clear()
    failed = await asyncio.gather(*(ask("fail") for _ in range(4)), return_exceptions=True)
    assert len(calls) == 4
    assert sum(isinstance(r, RuntimeError) for r in failed) == 1

    # A follower cancelled while waiting leaves the leader and the other followers alone.
    calls.log.clear()
    tasks = [asyncio.ensure_future(ask("cancel")) for _ in range(3)]
    await asyncio.sleep(0.05)
    tasks[1].cancel()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    assert calls.log == ["cancel"]
    assert done[0] == done[2] == {"answer": "cancel"}
    assert isinstance(done[1], asyncio.CancelledError)

    @wrapper.wrap
    async def astream(question: str) -> AsyncIterator[str]:
        calls(question)
        await asyncio.sleep(0.15)

        async def gen() -> AsyncIterator[str]:
            for word in question.split():
                yield word

        return gen()

    calls.log.clear()
    streams = await asyncio.gather(*(astream("x y") for _ in range(3)))
    for s in streams:
        assert [w async for w in s] == ["x", "y"]
    assert len(calls) == 3
