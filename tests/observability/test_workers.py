"""``llm-cache serve --workers 2`` as a real subprocess: ``/metrics`` and ``/cache/stats``
cover both workers, whichever answers the scrape; JSON log lines from both workers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.conftest import Upstream
from tests.observability.helpers import scrape, value
from tests.support.redis_servers import free_port

ROOT = Path(__file__).resolve().parents[2]
SECRET = "sk-test-secret-123"


class Served:
    """A running ``llm-cache serve`` and everything it wrote to stderr."""

    def __init__(self, url: str, process: subprocess.Popen[str]) -> None:
        self.url = url
        self.process = process
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line.rstrip("\n"))

    def request_lines(self) -> list[dict[str, Any]]:
        objects = [json.loads(line) for line in list(self.lines) if line.strip()]
        return [o for o in objects if o["logger"] == "llm_cache.requests"]


def llm_cache_command() -> list[str]:
    script = Path(sys.executable).parent / "llm-cache"
    return [str(script)] if script.exists() else [sys.executable, "-m", "llm_cache"]


@pytest.fixture
def served(upstream: Upstream, tmp_path: Path) -> Iterator[Served]:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("LLM_CACHE_", "PROMETHEUS"))},
        "LLM_CACHE_BACKEND": "sqlite",
        "LLM_CACHE_SQLITE_PATH": str(tmp_path / "cache.db"),
        "LLM_CACHE_OPENAI_BASE_URL": f"{upstream.url}/v1",
        "LLM_CACHE_ANTHROPIC_BASE_URL": upstream.url,
        "LLM_CACHE_LOG_FORMAT": "json",
        "PYTHONPATH": str(ROOT),
    }
    command = [*llm_cache_command(), "serve", "--workers", "2", "--port", str(port)]
    process = subprocess.Popen(
        command, env=env, cwd=tmp_path, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    )
    served = Served(f"http://127.0.0.1:{port}", process)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx2.get(f"{served.url}/health", timeout=1).status_code == 200:
                    break
            except httpx2.HTTPError:
                pass
            assert process.poll() is None, "\n".join(served.lines)
            assert time.monotonic() < deadline, "serve did not start:\n" + "\n".join(served.lines)
            time.sleep(0.1)
        yield served
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def chat(url: str, text: str) -> str:
    """One request on a new connection (so the kernel may hand it to either worker)."""
    response = httpx2.post(
        f"{url}/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]},
        headers={"authorization": f"Bearer {SECRET}", "connection": "close"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response.headers["x-cache-status"]


def test_two_workers_report_all_requests(served: Served, upstream: Upstream) -> None:
    questions = [f"question {i}" for i in range(4)]
    statuses: Counter[str] = Counter()
    with ThreadPoolExecutor(8) as pool:
        for q in questions:  # the misses first, so the later hits are known to be hits
            statuses[chat(served.url, q)] += 1
        # Until both workers have answered (bounded): concurrent requests on new connections.
        for _ in range(20):
            statuses.update(pool.map(lambda i: chat(served.url, questions[i % 4]), range(16)))
            time.sleep(0.2)  # request lines follow the last byte
            if len({line["pid"] for line in served.request_lines()}) == 2:
                break
    made = sum(statuses.values())
    deadline = time.monotonic() + 5
    while len(served.request_lines()) < made and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = served.request_lines()
    pids = {line["pid"] for line in lines}
    assert len(pids) == 2, f"one worker took every request: {pids}"
    assert len(lines) == made
    assert Counter(line["cache_status"] for line in lines) == statuses
    assert statuses["MISS"] == 4 and statuses["HIT"] == made - 4
    assert upstream.fake.count("/chat/completions") == 4
    # Every stderr line (ours, uvicorn's, both workers') is one JSON object.
    assert all(json.loads(line) for line in served.lines if line.strip())

    # Several scrapes: whichever worker answers, the figures cover both.
    for _ in range(6):
        m = scrape(served.url)
        assert value(m, "llm_cache_requests_total") == made
        assert value(m, "llm_cache_requests_total", status="hit") == statuses["HIT"]
        assert value(m, "llm_cache_requests_total", status="miss") == 4
        assert value(m, "llm_cache_request_duration_seconds_count") == made
        assert value(m, "llm_cache_upstream_duration_seconds_count") == 4
        assert value(m, "llm_cache_entries") == 4
        saved = value(m, "llm_cache_saved_tokens_total")
        assert saved > 0
        stats = httpx2.get(f"{served.url}/cache/stats", headers={"connection": "close"}).json()
        assert sum(stats["tokens_saved"].values()) == saved
        assert stats["by_model"][0]["hits"] == statuses["HIT"]
