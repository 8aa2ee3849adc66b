"""Fail-open under load: the proxy's Redis stops, comes back, freezes -- and no client request
fails. A private ``redis-server`` is the backend; a few client threads using the official SDK
(no retries, so a failure would show) send a steady mix of repeated and new prompts while the
test stops and restarts the server, then SIGSTOPs it for a while.

Checks: zero failed requests; ``/health`` degraded while Redis is down and healthy once it is
back; hits again after the restart without restarting the proxy; bounded latency while Redis
is frozen (0.5 s command timeout, then the circuit breaker skips it); and no wrong answer ever
(every answer to a prompt has the same text -- the simulated upstream's text depends on the
request, so a mixed-up reply on a reused Redis connection would show).
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx2
import openai
import pytest

from llm_cache.cache.redis_storage import RedisStorage
from tests.conftest import Proxy, ProxyFactory, Upstream
from tests.support.redis_servers import RedisServer, free_port, spawn_redis_server

MODEL = "gpt-4o-mini"
THREADS = 3


@dataclass
class Sample:
    started: float
    latency: float
    ok: bool
    hit: bool = False
    prompt: str = ""
    text: str = ""
    error: str = ""


@dataclass
class Load:
    """Client threads sending requests through the proxy until stopped."""

    proxy: Proxy
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        repeated = [f"repeated question {i} {uuid.uuid4().hex[:6]}" for i in range(4)]
        for n in range(THREADS):
            thread = threading.Thread(target=self._run, args=(n, repeated), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _run(self, n: int, repeated: list[str]) -> None:
        client = openai.OpenAI(
            base_url=self.proxy.openai_base, api_key="sk-test", max_retries=0, timeout=10
        )
        i = 0
        while not self._stop.is_set():
            i += 1
            prompt = repeated[i % len(repeated)] if i % 3 else f"new {n}-{i} {uuid.uuid4().hex}"
            started = time.monotonic()
            try:
                raw = client.chat.completions.with_raw_response.create(
                    model=MODEL, messages=[{"role": "user", "content": prompt}]
                )
                text = raw.parse().choices[0].message.content or ""
                sample = Sample(
                    started,
                    time.monotonic() - started,
                    True,
                    raw.headers["x-cache-hit"] == "true",
                    prompt,
                    text,
                )
            except Exception as exc:
                sample = Sample(started, time.monotonic() - started, False, error=repr(exc))
            self.samples.append(sample)
        client.close()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)

    def between(self, start: float, end: float) -> list[Sample]:
        return [s for s in self.samples if start <= s.started < end]


def health(proxy: Proxy) -> dict[str, Any]:
    body: dict[str, Any] = httpx2.get(f"{proxy.url}/health", timeout=5).json()
    return body


def wait_health(proxy: Proxy, status: str, timeout: float = 5.0) -> float:
    """Poll ``/health`` until it reports ``status``; the seconds it took."""
    started = time.monotonic()
    while health(proxy)["status"] != status:
        assert time.monotonic() - started < timeout, f"/health never became {status}"
        time.sleep(0.05)
    return time.monotonic() - started


def assert_consistent(samples: list[Sample]) -> None:
    texts: dict[str, set[str]] = {}
    for s in samples:
        if s.ok:
            texts.setdefault(s.prompt, set()).add(s.text)
    wrong = {p: t for p, t in texts.items() if len(t) != 1}
    assert not wrong, f"different answers to one prompt: {wrong}"


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with spawn_redis_server() as running:
        yield running


@pytest.fixture
def storage(server: RedisServer) -> Iterator[RedisStorage]:
    backend = RedisStorage(url=server.url, namespace=f"failopen-{uuid.uuid4().hex[:8]}")
    yield backend
    backend.close()


def test_redis_stopped_restarted_and_frozen_under_load(
    start_proxy: ProxyFactory, upstream: Upstream, server: RedisServer, storage: RedisStorage
) -> None:
    with start_proxy(storage=storage) as proxy:
        assert health(proxy)["status"] == "healthy"
        load = Load(proxy)
        load.start()
        try:
            time.sleep(1.0)  # warm: entries stored, hits served
            t_down = time.monotonic()
            server.stop()
            degraded_after = wait_health(proxy, "degraded")
            t_gone = time.monotonic()  # the server has surely exited by now
            degraded = health(proxy)
            time.sleep(1.5)  # under load with Redis gone
            t_restart = time.monotonic()
            server.start()
            healthy_after = wait_health(proxy, "healthy")
            t_back = time.monotonic()
            time.sleep(1.5)  # the proxy finds Redis again by itself
            t_freeze = time.monotonic()
            assert server.process is not None
            os.kill(server.process.pid, signal.SIGSTOP)
            try:
                time.sleep(1.5)
                frozen_health = health(proxy)
            finally:
                os.kill(server.process.pid, signal.SIGCONT)
            t_thaw = time.monotonic()
            time.sleep(2.0)
            t_end = time.monotonic()
        finally:
            load.stop()
        final_health = health(proxy)

    samples = load.samples
    failures = [s for s in samples if not s.ok]
    during_outage = load.between(t_down, t_restart)
    after_restart = load.between(t_back, t_freeze)
    during_freeze = load.between(t_freeze, t_thaw)
    after_thaw = load.between(t_thaw + 1.1, t_end)  # past the breaker's 1 s window
    max_outage = max(s.latency for s in during_outage)
    max_freeze = max(s.latency for s in during_freeze)
    print(
        f"\nfail-open: {len(samples)} requests, {len(failures)} failed; "
        f"outage {t_restart - t_down:.2f} s: {len(during_outage)} requests, "
        f"max latency {max_outage * 1000:.0f} ms; /health degraded after "
        f"{degraded_after * 1000:.0f} ms, healthy {healthy_after * 1000:.0f} ms after restart; "
        f"hits after restart {sum(s.hit for s in after_restart)}/{len(after_restart)}; "
        f"freeze 1.5 s: {len(during_freeze)} requests, max latency {max_freeze * 1000:.0f} ms; "
        f"hits after thaw {sum(s.hit for s in after_thaw)}/{len(after_thaw)}"
    )
    assert failures == []
    assert len(during_outage) >= 20
    assert not any(s.hit for s in load.between(t_gone, t_restart))  # nothing to hit
    assert degraded["status"] == "degraded" and degraded["error"]
    assert max_outage < 1.0  # connection refused is immediate
    assert any(s.hit for s in after_restart)  # reconnected by itself, no proxy restart
    assert len(during_freeze) >= 10
    assert max_freeze < 2.0  # one 0.5 s timeout per in-flight call, then the breaker
    assert frozen_health["status"] == "degraded"
    assert any(s.hit for s in after_thaw)
    assert final_health["status"] == "healthy"
    assert_consistent(samples)


def test_proxy_started_without_redis_serves_and_reports_degraded(
    start_proxy: ProxyFactory, upstream: Upstream
) -> None:
    storage = RedisStorage(url=f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    with start_proxy(storage=storage) as proxy:
        client = openai.OpenAI(base_url=proxy.openai_base, api_key="sk-test", max_retries=0)
        for _ in range(3):
            raw = client.chat.completions.with_raw_response.create(
                model=MODEL, messages=[{"role": "user", "content": "no redis at all"}]
            )
            assert raw.status_code == 200
            assert raw.headers["x-cache-hit"] == "false"
        body = health(proxy)
        assert body["status"] == "degraded"
        assert body["backend"] == "redis"
        assert "redis" in body["error"].lower()
        assert upstream.fake.count("/chat/completions") == 3
        stats = httpx2.get(f"{proxy.url}/cache/stats")
        assert stats.status_code == 503  # management calls report the failure instead
