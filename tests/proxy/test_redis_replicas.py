"""Several proxy replicas on one Redis: shared entries, single-flight across processes, and a
replica that dies holding the flight lock.

The replicas are real ``python -m llm_cache.proxy.server`` processes (``LLM_CACHE_BACKEND=redis``)
on a private ``redis-server`` this module spawns, so they use the default namespace without
touching anyone's data; the simulated upstream runs in the test process and counts the calls.
Prompts are unique per test, so the module's replicas and server can be shared by its tests.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
import redis

from llm_cache.cache.redis_storage import RedisStorage
from tests.conftest import ProxyFactory, Upstream
from tests.support.redis_servers import RedisServer, free_port, spawn_redis_server

ROOT = Path(__file__).resolve().parents[2]
MODEL = "gpt-4o-mini"


class Replica:
    """One proxy process on a port of its own."""

    def __init__(self, port: int, process: subprocess.Popen[bytes]) -> None:
        self.port = port
        self.process = process
        self.url = f"http://127.0.0.1:{port}"

    @property
    def openai_base(self) -> str:
        return f"{self.url}/v1"

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"replica on port {self.port} exited ({self.process.returncode})"
                )
            try:
                if httpx2.get(f"{self.url}/health", timeout=0.5).status_code == 200:
                    return
            except httpx2.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"replica on port {self.port} did not start")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def replica_env(redis_url: str, upstream_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_CACHE_")}
    env.update(
        LLM_CACHE_BACKEND="redis",
        LLM_CACHE_REDIS_URL=redis_url,
        LLM_CACHE_OPENAI_BASE_URL=f"{upstream_url}/v1",
        LLM_CACHE_ANTHROPIC_BASE_URL=upstream_url,
        LLM_CACHE_LOG_LEVEL="warning",
        PYTHONPATH=str(ROOT),
    )
    return env


def start_replica(env: dict[str, str], cwd: Path) -> Replica:
    port = free_port()
    args = [sys.executable, "-m", "llm_cache.proxy.server", "--port", str(port)]
    return Replica(port, subprocess.Popen(args, env=env, cwd=cwd))


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with spawn_redis_server() as server:
        yield server


@pytest.fixture(scope="module")
def replicas(
    redis_server: RedisServer, _upstream_server: Upstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[Replica]]:
    """Three proxy processes on the private Redis (started together, ready in ~1 s)."""
    env = replica_env(redis_server.url, _upstream_server.url)
    cwd = tmp_path_factory.mktemp("replicas")  # no stray .env
    started = [start_replica(env, cwd) for _ in range(3)]
    try:
        for replica in started:
            replica.wait_ready()
        yield started
    finally:
        for replica in started:
            replica.stop()


def messages(text: str = "") -> list[dict[str, str]]:
    return [{"role": "user", "content": f"{text} {uuid.uuid4().hex}"}]


def client(replica: Replica) -> openai.OpenAI:
    return openai.OpenAI(base_url=replica.openai_base, api_key="sk-test", max_retries=0)


def chat_raw(replica: Replica, msgs: list[dict[str, str]], **extra: Any) -> Any:
    return client(replica).chat.completions.with_raw_response.create(
        model=MODEL, messages=msgs, **extra
    )


# -- shared entries ---------------------------------------------------------------------------


def test_two_in_process_proxies_share_entries_and_counters(
    start_proxy: ProxyFactory, make_redis_storage: Any, upstream: Upstream
) -> None:
    msgs = messages("shared")
    with (
        start_proxy(storage=make_redis_storage()) as a,
        start_proxy(storage=make_redis_storage()) as b,
    ):
        oa = openai.OpenAI(base_url=a.openai_base, api_key="sk-test", max_retries=0)
        ob = openai.OpenAI(base_url=b.openai_base, api_key="sk-test", max_retries=0)
        first = oa.chat.completions.with_raw_response.create(model=MODEL, messages=msgs)
        second = ob.chat.completions.with_raw_response.create(model=MODEL, messages=msgs)
        assert (first.headers["x-cache-hit"], second.headers["x-cache-hit"]) == ("false", "true")
        assert second.http_response.content == first.http_response.content
        assert upstream.fake.count("/chat/completions") == 1
        stats_a = httpx2.get(f"{a.url}/cache/stats").json()
        stats_b = httpx2.get(f"{b.url}/cache/stats").json()
        for stats in (stats_a, stats_b):  # one figure for every replica
            assert (stats["size"], stats["hits"], stats["misses"]) == (1, 1, 1)
        assert httpx2.get(f"{b.url}/health").json()["backend"] == "redis"


def test_replica_processes_share_entries(replicas: list[Replica], upstream: Upstream) -> None:
    msgs = messages("processes")
    first = chat_raw(replicas[0], msgs)
    assert first.headers["x-cache-hit"] == "false"
    for replica in replicas[1:]:
        again = chat_raw(replica, msgs)
        assert again.headers["x-cache-hit"] == "true"
        assert again.headers["x-cache-key"] == first.headers["x-cache-key"]
        assert again.http_response.content == first.http_response.content
    # a delete through one replica is seen by every other one
    key = first.headers["x-cache-key"]
    r = httpx2.delete(f"{replicas[2].url}/cache/entry", params={"key": key})
    assert r.status_code == 200
    assert chat_raw(replicas[1], msgs).headers["x-cache-hit"] == "false"
    assert upstream.fake.count("/chat/completions") == 2


# -- single-flight across processes ------------------------------------------------------------


async def _ask(replica: Replica, msgs: list[dict[str, str]], stream: bool, **headers: str) -> Any:
    ac = openai.AsyncOpenAI(base_url=replica.openai_base, api_key="sk-test", max_retries=0)
    try:
        if stream:
            chunks = await ac.chat.completions.create(
                model=MODEL, messages=msgs, stream=True, extra_headers=headers
            )
            parts = [c async for c in chunks]
            text = "".join(c.choices[0].delta.content or "" for c in parts if c.choices)
            return parts[0].id, text
        done = await ac.chat.completions.create(model=MODEL, messages=msgs, extra_headers=headers)
        return done.id, done.choices[0].message.content
    finally:
        await ac.close()


def test_cold_key_over_three_replicas_makes_one_upstream_call(
    replicas: list[Replica], upstream: Upstream
) -> None:
    msgs = messages("single-flight")

    async def run() -> list[Any]:
        return await asyncio.gather(
            *[_ask(replicas[i % 3], msgs, False, **{"x-fake-latency-ms": "500"}) for i in range(12)]
        )

    answers = asyncio.run(run())
    assert upstream.fake.count("/chat/completions") == 1
    assert len(set(answers)) == 1  # same id and text everywhere: one upstream answer


def test_streaming_followers_across_processes(replicas: list[Replica], upstream: Upstream) -> None:
    """A streaming leader on one replica; streaming followers on the others wait for it (the
    cross-process lock) and replay the stored stream."""
    msgs = messages("stream-flight")
    knobs = {"x-fake-latency-ms": "200", "x-fake-chunk-delay-ms": "30"}

    async def run() -> list[Any]:
        leader = asyncio.create_task(_ask(replicas[0], msgs, True, **knobs))
        await asyncio.sleep(0.1)  # the leader holds the lock now
        rest = [_ask(replicas[1 + i % 2], msgs, True, **knobs) for i in range(4)]
        return await asyncio.gather(leader, *rest)

    answers = asyncio.run(run())
    assert upstream.fake.count("/chat/completions") == 1
    assert len(set(answers)) == 1 and answers[0][1]


def test_plain_followers_of_a_streaming_leader_in_another_process(
    replicas: list[Replica], upstream: Upstream
) -> None:
    """Followers on other replicas that ask for the other kind (plain JSON while the leader
    streams, and the reverse) get a valid answer of their own kind, from one upstream call."""
    msgs = messages("mixed-flight")
    knobs = {"x-fake-latency-ms": "200", "x-fake-chunk-delay-ms": "30"}

    async def run() -> list[Any]:
        leader = asyncio.create_task(_ask(replicas[0], msgs, True, **knobs))
        await asyncio.sleep(0.1)
        rest = [_ask(replicas[1 + i % 2], msgs, i % 2 == 0, **knobs) for i in range(4)]
        return await asyncio.gather(leader, *rest)

    answers = asyncio.run(run())
    assert upstream.fake.count("/chat/completions") == 1
    assert len({text for _, text in answers}) == 1


# -- a lock holder that dies -------------------------------------------------------------------


def test_a_dead_lock_holder_blocks_the_key_only_until_the_lock_expires(
    replicas: list[Replica], redis_server: RedisServer, upstream: Upstream
) -> None:
    """A flight lock left behind by a replica that died (taken here directly, 1 s lifetime):
    a replica that needs the key waits for the expiry, then calls the upstream itself."""
    msgs = messages("dead-holder")
    key = chat_raw(replicas[0], msgs, extra_headers={"cache-control": "no-store"}).headers[
        "x-cache-key"
    ]
    storage = RedisStorage(url=redis_server.url)  # the replicas' (default) namespace
    try:
        assert storage.try_lock(key, ttl=1.0) is not None
        started = time.monotonic()
        answer = chat_raw(replicas[1], msgs)
        waited = time.monotonic() - started
    finally:
        storage.close()
    assert answer.status_code == 200
    assert answer.headers["x-cache-hit"] == "false"
    assert 0.7 < waited < 2.5, waited
    assert chat_raw(replicas[2], msgs).headers["x-cache-hit"] == "true"
    assert upstream.fake.count("/chat/completions") == 2


def test_a_replica_killed_mid_call_frees_the_key_at_lock_expiry(
    replicas: list[Replica],
    redis_server: RedisServer,
    upstream: Upstream,
    tmp_path: Path,
) -> None:
    """A replica (flight lock lifetime 1.5 s) is SIGKILLed while its upstream call is running;
    another replica asking for the same key answers within the lock's lifetime."""
    env = {**replica_env(redis_server.url, upstream.url), "LLM_CACHE_FLIGHT_LOCK_TTL": "1.5"}
    doomed = start_replica(env, tmp_path)
    raw = redis.Redis.from_url(redis_server.url)
    msgs = messages("killed")
    try:
        doomed.wait_ready()

        async def run() -> tuple[float, Any]:
            victim = asyncio.create_task(
                _ask(doomed, msgs, False, **{"x-fake-latency-ms": "10000"})
            )
            deadline = time.monotonic() + 5
            while upstream.fake.count("/chat/completions") < 1:  # the call is under way
                assert time.monotonic() < deadline, "the doomed replica never called upstream"
                await asyncio.sleep(0.01)
            assert list(raw.scan_iter(match="{llm_cache}:lock:*")), "no flight lock was taken"
            locked_at = time.monotonic()  # (a little after it was taken: a fair bound)
            os.kill(doomed.process.pid, signal.SIGKILL)
            doomed.process.wait(5)
            with pytest.raises(openai.APIConnectionError):
                await victim  # that replica's own client loses its answer, as it would
            answer = await _ask(replicas[0], msgs, False)
            return time.monotonic() - locked_at, answer

        waited, answer = asyncio.run(run())
    finally:
        doomed.stop()
        raw.close()
    assert answer[1]
    assert waited < 1.5 + 1.0, waited  # the lock's lifetime, plus a margin for a slow machine
    assert upstream.fake.count("/chat/completions") == 2  # the dead one's, and the survivor's


def test_waiters_on_a_dead_holder_still_make_one_call(
    start_proxy: ProxyFactory, make_redis_storage: Any, upstream: Upstream
) -> None:
    """A lock left by a dead replica (taken directly, 1 s lifetime): requests waiting on two
    other replicas claim the call again when it expires, so only one of them calls upstream."""
    msgs = messages("dead-holder-waiters")
    body = {"model": MODEL, "messages": msgs}
    with (
        start_proxy(storage=make_redis_storage()) as a,
        start_proxy(storage=make_redis_storage()) as b,
    ):
        probe = httpx2.post(
            f"{a.openai_base}/chat/completions",
            json=body,
            headers={"authorization": "Bearer sk", "cache-control": "no-store"},
        )
        key = probe.headers["x-cache-key"]
        upstream.fake.reset()
        holder = make_redis_storage()
        assert holder.try_lock(key, 1.0)

        async def run() -> list[Any]:
            clients = [
                openai.AsyncOpenAI(base_url=p.openai_base, api_key="sk", max_retries=0)
                for p in (a, b)
            ]
            try:
                return await asyncio.gather(
                    *[
                        clients[i % 2].chat.completions.create(
                            model=MODEL,
                            messages=msgs,
                            extra_headers={"x-fake-latency-ms": "300"},
                        )
                        for i in range(6)
                    ]
                )
            finally:
                for c in clients:
                    await c.close()

        answers = asyncio.run(run())
    assert len({x.choices[0].message.content for x in answers}) == 1
    assert upstream.fake.count("/chat/completions") == 1
