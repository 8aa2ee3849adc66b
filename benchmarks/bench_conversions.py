"""What answering from a stored entry costs per hit when it is not sent back byte for byte.

    .venv/bin/python benchmarks/bench_conversions.py [--repeat 2000]

In-process (no HTTP), on answers recorded from the simulated upstream (chat streams of a few
sizes, a Responses answer). Prints the median time of one ``render`` call, the engine's hit
path, per case:

* a stored chat stream to a client that asked for usage (frames joined as stored) and to one
  that did not (each frame checked, the usage chunk dropped: ``client_frames``);
* a stored chat stream to a plain request (merged into the full answer);
* a stored Responses JSON answer to a streaming request (the ``response.*`` events spelled out).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from llm_cache.engine.exchange import complete_answer, render  # noqa: E402
from llm_cache.providers import get_provider  # noqa: E402
from tests.fake_upstream import create_fake_upstream  # noqa: E402

OPENAI = get_provider("openai")


async def record(path: str, body: dict[str, Any], size: int | None = None) -> Any:
    """The entry the engine would store for this answer of the simulated upstream."""
    fake = create_fake_upstream()
    headers = {"authorization": "Bearer k"}
    if size is not None:
        headers["x-fake-size"] = str(size)
    transport = httpx2.ASGITransport(app=fake.app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://fake") as client:
        r = await client.post("/v1" + path, json=body, headers=headers)
    match = OPENAI.match(path)
    assert match is not None
    entry, why = complete_answer(
        match, r.status_code, r.headers["content-type"], [r.content], [0.0]
    )
    assert entry is not None, why
    return match, entry


def median_us(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=2000, help="timed calls per case")
    args = parser.parse_args()
    rows: list[tuple[str, float]] = []
    for size in (200, 2_000, 20_000):
        body = {
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "hi"}],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        match, entry = asyncio.run(record("/chat/completions", body, size))
        frames = len(entry.frames)
        asked = {**body}
        plain_stream = {k: v for k, v in body.items() if k != "stream_options"}
        plain = {k: v for k, v in plain_stream.items() if k != "stream"}
        for label, request, want_stream in (
            ("stream → stream, usage asked (as stored)", asked, True),
            ("stream → stream, usage not asked (filtered)", plain_stream, True),
            ("stream → full answer (merged)", plain, False),
        ):
            us = median_us(
                functools.partial(
                    render, entry, want_stream=want_stream, match=match, request_body=request
                ),
                args.repeat,
            )
            rows.append((f"chat, {frames} frames: {label}", us))
    match, entry = asyncio.run(
        record("/responses", {"model": "gpt-4o-mini", "input": "Tell me a story"})
    )
    request = {"model": "gpt-4o-mini", "input": "Tell me a story", "stream": True}
    us = median_us(
        lambda: render(entry, want_stream=True, match=match, request_body=request), args.repeat
    )
    rows.append(("responses: full answer → response.* events", us))
    width = max(len(name) for name, _ in rows)
    print(f"{'render() per hit':<{width}}  median")
    for name, us in rows:
        print(f"{name:<{width}}  {us:8.1f} µs")


if __name__ == "__main__":
    main()
