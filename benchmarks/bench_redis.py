"""Storage-level Redis figures: RedisStorage get/set vs a bare redis-py GET/SET, sync and async.

    .venv/bin/python benchmarks/bench_redis.py [--url redis://127.0.0.1:6379/13] [-n 5000]

Uses its own namespace and deletes it afterwards (never flushes). Prints ops/s and the ratio to
the bare client, i.e. what the Lua bookkeeping (recency, counters, eviction) costs per call.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from collections.abc import Callable

import redis
import redis.asyncio as aredis

from llm_cache.cache.redis_storage import RedisStorage


def rate(n: int, fn: Callable[[int], object]) -> float:
    started = time.perf_counter()
    for i in range(n):
        fn(i)
    return n / (time.perf_counter() - started)


async def arate(n: int, concurrency: int, fn: Callable[[int], object]) -> float:
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with sem:
            await fn(i)  # type: ignore[misc]

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    return n / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="redis://127.0.0.1:6379/13")
    parser.add_argument("-n", type=int, default=5000)
    parser.add_argument("--size", type=int, default=2000, help="value size in bytes")
    args = parser.parse_args()
    ns = f"bench-{uuid.uuid4().hex[:8]}"
    value = os.urandom(args.size)
    storage = RedisStorage(url=args.url, namespace=ns, max_size=args.n, socket_timeout=5)
    bare = redis.Redis.from_url(args.url)
    n, keys = args.n, [f"k{i}" for i in range(args.n)]
    try:
        rows = []
        bare_set = rate(n, lambda i: bare.set(f"{ns}:bare:{i}", value))
        rows.append(("set", rate(n, lambda i: storage.set_bytes(keys[i], value)), bare_set))
        bare_get = rate(n, lambda i: bare.get(f"{ns}:bare:{i}"))
        rows.append(("get hit", rate(n, lambda i: storage.get_bytes(keys[i])), bare_get))
        rows.append(("get miss", rate(n, lambda i: storage.get_bytes("nope")), bare_get))
        evicting = RedisStorage(url=args.url, namespace=ns + "-e", max_size=100, socket_timeout=5)
        rows.append(("set+evict", rate(n, lambda i: evicting.set_bytes(keys[i], value)), bare_set))

        async def async_rows() -> None:
            abare = aredis.Redis.from_url(args.url)
            base = await arate(n, 50, lambda i: abare.get(f"{ns}:bare:{i}"))
            ours = await arate(n, 50, lambda i: storage.aget_bytes(keys[i]))
            rows.append(("async get hit x50", ours, base))
            await abare.aclose()
            await storage.aclose()

        asyncio.run(async_rows())
        print(f"{'operation':<20}{'ops/s':>12}{'bare ops/s':>12}{'ratio':>8}")
        for name, ours, base in rows:
            print(f"{name:<20}{ours:>12.0f}{base:>12.0f}{ours / base:>8.2f}")
        evicting.clear()
        evicting.close()
    finally:
        storage.clear()
        storage.close()
        stale = list(bare.scan_iter(match=f"{ns}:bare:*", count=1000))
        for i in range(0, len(stale), 500):
            bare.unlink(*stale[i : i + 500])
        bare.close()


if __name__ == "__main__":
    main()
