"""Proxy speed against going straight to the (simulated) upstream, in one run.

    .venv/bin/python benchmarks/bench_proxy.py [--seconds 5] [--backend sqlite]

Starts the simulated upstream and the proxy as separate processes (uvicorn, uvloop, httptools)
and drives them from a load-generator process on raw keep-alive connections. Prints:
hit latency p50/p99 at concurrency 1, hit throughput at concurrency 32 with 1 and 2 workers,
miss overhead and streaming time-to-first-byte overhead — each beside the direct figure.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.loadgen import LoadResult, build_request, run_load_sync  # noqa: E402

UPSTREAM_CODE = """
import sys, uvicorn
sys.path.insert(0, {root!r})
from tests.fake_upstream import create_fake_upstream
uvicorn.run(create_fake_upstream().app, host="127.0.0.1", port={port}, loop="uvloop",
            http="httptools", log_level="warning", access_log=False, interface="asgi3")
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on port {port} after {timeout} s")


#: Peak resident memory (kB) of each proxy run's processes, read just before they stop.
RSS_KB: dict[str, int] = {}


def rss_kb(pid: int) -> int:
    """VmHWM (peak RSS) of ``pid`` and its children, in kB (Linux /proc; 0 elsewhere)."""
    total = 0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(c) for c in children.read_text().split()]
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


@contextmanager
def process(args: list[str], port: int, env: dict[str, str] | None = None) -> Iterator[None]:
    proc = subprocess.Popen(args, env={**os.environ, **(env or {})}, cwd=ROOT)
    try:
        wait_port(port)
        yield
        RSS_KB[" ".join(args[-3:])] = rss_kb(proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextmanager
def upstream() -> Iterator[str]:
    port = free_port()
    code = UPSTREAM_CODE.format(root=str(ROOT), port=port)
    with process([sys.executable, "-c", code], port):
        yield f"http://127.0.0.1:{port}"


@contextmanager
def proxy(upstream_url: str, workers: int, backend: str, tmp: str) -> Iterator[str]:
    port = free_port()
    env = {
        "LLM_CACHE_BACKEND": backend,
        "LLM_CACHE_SQLITE_PATH": str(Path(tmp) / f"bench-{port}.db"),
        "LLM_CACHE_OPENAI_BASE_URL": f"{upstream_url}/v1",
        "LLM_CACHE_ANTHROPIC_BASE_URL": upstream_url,
        "LLM_CACHE_MAX_SIZE": "100000",
        "LLM_CACHE_LOG_LEVEL": "warning",
        "LLM_CACHE_REDIS_DB": "14",
    }
    args = [sys.executable, "-m", "llm_cache.proxy.server", "--port", str(port)]
    args += ["--workers", str(workers)]
    with process(args, port, env):
        yield f"http://127.0.0.1:{port}"


def chat_body(text: str, stream: bool = False) -> bytes:
    return orjson.dumps(
        {
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": text},
            ],
            "temperature": 0,
            "stream": stream,
        }
    )


def requests_for(url: str, bodies: list[bytes]) -> list[bytes]:
    return [build_request(f"{url}/v1/chat/completions", b) for b in bodies]


def load(url: str, bodies: list[bytes], **kwargs: float | int) -> LoadResult:
    """Run the load from a separate process, so the client does not share our interpreter."""
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(run_load_sync, (url, requests_for(url, bodies)), kwargs)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.3f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--seconds", type=float, default=5.0, help="duration of each throughput run"
    )
    parser.add_argument("--requests", type=int, default=2000, help="requests per latency run")
    parser.add_argument("--backend", default="sqlite", choices=["sqlite", "memory", "redis"])
    args = parser.parse_args()
    n = args.requests
    rows: list[tuple[str, str, str, str]] = []
    with tempfile.TemporaryDirectory() as tmp, upstream() as up:
        print(f"upstream on {up}; backend {args.backend}", flush=True)
        same = [chat_body("What is the capital of France?")]
        print("direct: latency, c=1 ...", flush=True)
        direct = load(up, same, concurrency=1, seconds=60, limit=n)
        print("direct: throughput, c=32 ...", flush=True)
        direct_tp = load(up, same, concurrency=32, seconds=args.seconds)
        unique = [chat_body(f"miss {i}") for i in range(n)]
        print("direct: unique requests, c=1 ...", flush=True)
        direct_unique = load(up, unique, concurrency=1, seconds=60, limit=n)
        streams = [chat_body(f"stream {i}", stream=True) for i in range(n)]
        print("direct: streaming TTFB, c=1 ...", flush=True)
        direct_stream = load(up, streams, concurrency=1, seconds=60, limit=n)

        throughput: dict[int, LoadResult] = {}
        for workers in (1, 2):
            with proxy(up, workers, args.backend, tmp) as px:
                load(px, same, concurrency=1, seconds=10, limit=5)  # store the entry
                if workers == 1:
                    print("proxy: hit latency, c=1 ...", flush=True)
                    hit = load(px, same, concurrency=1, seconds=60, limit=n)
                    print("proxy: miss latency, c=1 ...", flush=True)
                    miss = load(
                        px,
                        [chat_body(f"proxy miss {i}") for i in range(n)],
                        concurrency=1,
                        seconds=60,
                        limit=n,
                    )
                    print("proxy: streaming miss TTFB, c=1 ...", flush=True)
                    smiss = load(
                        px,
                        [chat_body(f"proxy stream {i}", stream=True) for i in range(n)],
                        concurrency=1,
                        seconds=60,
                        limit=n,
                    )
                print(f"proxy: hit throughput, c=32, {workers} worker(s) ...", flush=True)
                load(px, same, concurrency=32, seconds=1)  # warm every worker
                throughput[workers] = load(px, same, concurrency=32, seconds=args.seconds)

    rows.append(
        ("hit latency p50 (c=1)", ms(hit.p50), ms(direct.p50), f"{hit.p50 / direct.p50:6.2f}x")
    )
    rows.append(
        (
            "hit latency p99 (c=1)",
            ms(hit.pct(99)),
            ms(direct.pct(99)),
            f"{hit.pct(99) / direct.pct(99):6.2f}x",
        )
    )
    for workers, result in throughput.items():
        rows.append(
            (
                f"hit throughput c=32, {workers} worker(s)",
                f"{result.rps:8.0f} r/s",
                f"{direct_tp.rps:8.0f} r/s",
                f"{result.rps / direct_tp.rps:6.2f}x",
            )
        )
    overhead = miss.p50 - direct_unique.p50
    rows.append(
        (
            "miss latency p50 (c=1)",
            ms(miss.p50),
            ms(direct_unique.p50),
            f"+{overhead * 1000:.3f} ms",
        )
    )
    s_proxy, s_direct = smiss.pct(50, "ttfb"), direct_stream.pct(50, "ttfb")
    rows.append(
        (
            "stream miss TTFB p50",
            ms(s_proxy),
            ms(s_direct),
            f"+{(s_proxy - s_direct) * 1000:.3f} ms",
        )
    )

    errors = hit.errors + miss.errors + smiss.errors + sum(r.errors for r in throughput.values())
    print()
    for name, kb in RSS_KB.items():
        if "llm_cache" in name or "--workers" in name:
            print(f"peak RSS ({name}): {kb / 1024:.1f} MiB")
    print(f"{'measure':36} {'via proxy':>14} {'direct':>14} {'ratio/overhead':>15}")
    print("-" * 82)
    for name, a, b, c in rows:
        print(f"{name:36} {a:>14} {b:>14} {c:>15}")
    print(f"\nerrors: {errors}; cores: {os.cpu_count()}; backend: {args.backend}")
    print(
        "targets: hit p50 <= 1 ms; miss overhead <= 2 ms; stream TTFB overhead <= 5 ms; "
        ">= 5000 r/s with 2 workers"
    )


if __name__ == "__main__":
    main()
