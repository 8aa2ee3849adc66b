"""CPU cost of one cache hit through the proxy's ASGI app, in process (no sockets).

    .venv/bin/python benchmarks/bench_hit_path.py [--hits 20000] [--backend sqlite|memory]

Measures process CPU time (not wall time), so the figure holds on a busy machine where the
socket benchmarks (bench_proxy.py) cannot: it is the proxy's own work per hit — routing, key,
lookup, answer — without the HTTP server and the network. Run it on two checkouts to compare
(``cd other-checkout && python /path/to/bench_hit_path.py``: it imports ``llm_cache`` from the
working directory).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from typing import Any

import orjson

sys.path.insert(0, os.getcwd())

from llm_cache.config import Config
from llm_cache.proxy.server import create_app

BODY = orjson.dumps(
    {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "What is the capital of France? " * 20},
        ],
        "temperature": 0,
    }
)
ANSWER = orjson.dumps(
    {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Paris. " * 40},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 120, "completion_tokens": 80, "total_tokens": 200},
    }
)


async def fake_upstream(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A minimal upstream answering every POST with ``ANSWER``."""
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": ANSWER})


async def one_request(app: Any) -> int:
    sent: list[dict[str, Any]] = []
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": BODY, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "headers": [
            (b"host", b"proxy"),
            (b"authorization", b"Bearer sk-test"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(BODY)).encode()),
        ],
    }
    await app(scope, receive, send)
    return int(sent[0]["status"])


async def main_async(hits: int, backend: str, upstream_url: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        config = Config(
            env={},
            dotenv_path=None,
            backend=backend,
            sqlite_path=os.path.join(tmp, "bench.db"),
            openai_base_url=upstream_url + "/v1",
        )
        app = create_app(config)
        assert await one_request(app) == 200  # the miss that stores the entry
        for _ in range(500):  # warm up
            await one_request(app)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for _ in range(hits):
            await one_request(app)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        print(f"checkout: {os.getcwd()}")
        print(f"backend: {backend}; hits: {hits}")
        print(f"CPU per hit : {cpu / hits * 1e6:8.1f} us")
        print(f"wall per hit: {wall / hits * 1e6:8.1f} us (noisy on a busy machine)")
        await app.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hits", type=int, default=20000)
    parser.add_argument("--backend", default="sqlite", choices=["sqlite", "memory"])
    args = parser.parse_args()

    import threading

    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(fake_upstream, host="127.0.0.1", port=0, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        asyncio.run(main_async(args.hits, args.backend, f"http://127.0.0.1:{port}"))
    finally:
        server.should_exit = True
        thread.join(5)


if __name__ == "__main__":
    main()
