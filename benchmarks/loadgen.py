"""A minimal HTTP/1.1 keep-alive load generator on raw asyncio streams (uvloop when present).

The benchmarks measure the proxy, not an HTTP client, so the client must cost little per request:
one pre-built request, keep-alive connections, and just enough parsing to find the body's end.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit


def build_request(url: str, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    parts = urlsplit(url)
    lines = [
        f"POST {parts.path or '/'} HTTP/1.1",
        f"Host: {parts.netloc}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Authorization: Bearer sk-bench",
        "anthropic-version: 2023-06-01",
        "x-api-key: sk-bench",
    ]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def read_response(reader: asyncio.StreamReader, first_byte: list[float] | None = None) -> int:
    """Read one response; return its status. Handles Content-Length and chunked bodies."""
    head = await reader.readuntil(b"\r\n\r\n")
    if first_byte is not None:
        first_byte.append(time.perf_counter())
    status = int(head[9:12])
    lower = head.lower()
    marker = lower.find(b"content-length:")
    if marker >= 0:
        end = lower.index(b"\r\n", marker)
        await reader.readexactly(int(lower[marker + 15 : end]))
        return status
    while True:  # chunked
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.strip().split(b";")[0], 16)
        await reader.readexactly(size + 2)
        if size == 0:
            return status


@dataclass
class LoadResult:
    latencies: list[float] = field(default_factory=list)
    ttfb: list[float] = field(default_factory=list)
    errors: int = 0
    elapsed: float = 0.0

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed else 0.0

    def pct(self, q: float, which: str = "latencies") -> float:
        data = sorted(getattr(self, which))
        if not data:
            return float("nan")
        return data[min(len(data) - 1, int(q / 100 * len(data)))]

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies) if self.latencies else float("nan")


async def _worker(
    host: str,
    port: int,
    requests: list[bytes],
    deadline: float,
    limit: int,
    result: LoadResult,
    counter: list[int],
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < deadline and counter[0] < limit:
            index = counter[0]
            counter[0] += 1
            started = time.perf_counter()
            writer.write(requests[index % len(requests)])
            marks: list[float] = []
            status = await read_response(reader, marks)
            done = time.perf_counter()
            if status >= 400:
                result.errors += 1
            result.latencies.append(done - started)
            result.ttfb.append(marks[0] - started)
    finally:
        writer.close()


async def run_load(
    url: str,
    requests: list[bytes],
    *,
    concurrency: int,
    seconds: float,
    limit: int = 10**9,
) -> LoadResult:
    """Send ``requests`` (cycled) from ``concurrency`` connections for ``seconds`` or ``limit``."""
    parts = urlsplit(url)
    result = LoadResult()
    counter = [0]
    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(
        *[
            _worker(
                parts.hostname or "127.0.0.1",
                parts.port or 80,
                requests,
                deadline,
                limit,
                result,
                counter,
            )
            for _ in range(concurrency)
        ]
    )
    result.elapsed = time.perf_counter() - started
    return result


def run_load_sync(url: str, requests: list[bytes], **kwargs: float | int) -> LoadResult:
    """``run_load`` on a fresh event loop (uvloop when installed); for worker processes."""
    try:
        import uvloop

        return uvloop.run(run_load(url, requests, **kwargs))  # type: ignore[arg-type]
    except ImportError:
        return asyncio.run(run_load(url, requests, **kwargs))  # type: ignore[arg-type]
