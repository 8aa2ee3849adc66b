"""``uvicorn llm_cache.proxy.server:app`` (the original project's way to run the proxy)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx2

from tests.conftest import Upstream
from tests.support.redis_servers import free_port


def test_module_level_app_is_lazy_and_serves(upstream: Upstream, tmp_path: Path) -> None:
    db = tmp_path / "lazy.db"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LLM_CACHE_")},
        "LLM_CACHE_SQLITE_PATH": str(db),
        "LLM_CACHE_OPENAI_BASE_URL": f"{upstream.url}/v1",
    }
    # Importing the module opens nothing.
    subprocess.run(
        [sys.executable, "-c", "import llm_cache.proxy.server as s; assert s.app"],
        env=env,
        cwd=tmp_path,
        check=True,
    )
    assert not db.exists()
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "llm_cache.proxy.server:app", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                health = httpx2.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except httpx2.TransportError:
                assert time.monotonic() < deadline, "uvicorn did not start"
                time.sleep(0.1)
        assert health.json()["status"] == "healthy"
        body = {"model": "m", "messages": [{"role": "user", "content": "lazy"}]}
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        auth = {"authorization": "Bearer sk"}
        first = httpx2.post(url, json=body, headers=auth, timeout=10)
        second = httpx2.post(url, json=body, headers=auth, timeout=10)
        assert (first.headers["x-cache-status"], second.headers["x-cache-status"]) == (
            "MISS",
            "HIT",
        )
        assert db.exists()
    finally:
        proc.terminate()
        proc.wait(10)
