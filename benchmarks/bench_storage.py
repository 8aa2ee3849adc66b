"""Storage speed: get-hit, get-miss and set latency for memory and SQLite at growing sizes.

    .venv/bin/python benchmarks/bench_storage.py                 # 1k, 100k, 1M entries
    .venv/bin/python benchmarks/bench_storage.py --quick         # 1k, 10k
    .venv/bin/python benchmarks/bench_storage.py --sizes 1k,1M --backends sqlite --ops 20000

Values are ~1 KB chat-completion JSON. SQLite is filled through a bulk ``executemany`` (the
timed ``set`` calls go through the public API). Also times ``generate_cache_key`` for a ~2 KB chat
request, and compares SQLite's connection-per-thread design with one shared connection + lock.
Targets (2 cores): SQLite get-hit p50 <= 30 us and set p50 <= 100 us at 1M entries; lookup at 1M
<= 1.5x lookup at 1k; key generation p50 <= 20 us.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from llm_cache.cache.codec import encode_value
from llm_cache.cache.key_generator import generate_cache_key, key_for
from llm_cache.cache.memory_storage import MemoryStorage
from llm_cache.cache.sqlite_storage import SQLiteStorage, key_row_id
from llm_cache.cache.storage import CacheStorage

FILL_CHUNK = 50_000


def parse_size(text: str) -> int:
    text = text.strip().lower()
    factor = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    return int(float(text[:-1] if factor > 1 else text) * factor)


def label(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1_000 and n % 1_000 == 0:
        return f"{n // 1_000}k"
    return str(n)


def chat_completion(i: int) -> dict[str, Any]:
    """A realistic ~1 KB chat completion."""
    return {
        "id": f"chatcmpl-{i:012d}AbCdEfGhIjKlMnOp",
        "object": "chat.completion",
        "created": 1_700_000_000 + i,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": (
                        f"Answer #{i}: caching LLM responses saves both latency and money. "
                        "A cache key must cover every field that can change the answer: the "
                        "model, the messages, temperature, tools, response format and so on. "
                        "Fields such as user or stream can stay out because one stored answer "
                        "serves every value of them. Entries are evicted least recently used "
                        "first once the cache holds max_size of them, and expire after their "
                        "TTL. Hits never touch the upstream provider, which makes them cheap, "
                        "predictable and reproducible in tests and notebooks alike."
                    ),
                    "refusal": None,
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 57,
            "completion_tokens": 118,
            "total_tokens": 175,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
        },
        "system_fingerprint": "fp_0ba0d124f1",
    }


def chat_request() -> dict[str, Any]:
    """A ~2 KB chat request (system prompt, a few turns, a tool)."""
    turn = "Please explain, with an example, how least-recently-used eviction works. " * 3
    return {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are a concise, helpful assistant. " * 8},
            {"role": "user", "content": turn},
            {"role": "assistant", "content": turn[::-1]},
            {"role": "user", "content": turn + " Also cover TTLs."},
        ],
        "temperature": 0.2,
        "max_tokens": 512,
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "lookup",
                    "description": "Look a term up in the glossary.",
                    "parameters": {
                        "type": "object",
                        "properties": {"term": {"type": "string"}, "limit": {"type": "integer"}},
                        "required": ["term"],
                    },
                },
            }
        ],
        "user": "user-1234",
    }


def key(i: int) -> str:
    return key_for({"bench": i})


def blob(i: int) -> bytes:
    return encode_value(chat_completion(i))


# -- filling --------------------------------------------------------------------------------


def progress(what: str, done: int, total: int, started: float) -> None:
    rate = done / max(time.perf_counter() - started, 1e-9)
    print(f"  filling {what}: {done:>9,}/{total:,} ({rate:,.0f}/s)", file=sys.stderr, flush=True)


def fill_memory(storage: MemoryStorage, n: int) -> None:
    started = time.perf_counter()
    template = blob(0)  # one shared bytes object: the bench measures the map, not RAM
    for i in range(n):
        storage.set_bytes(key(i), template)
        if (i + 1) % (FILL_CHUNK * 4) == 0 or i + 1 == n:
            progress("memory", i + 1, n, started)


def fill_sqlite(path: Path, n: int) -> None:
    """Bulk insert with executemany, one transaction per chunk (same rows set_bytes writes)."""
    conn = sqlite3.connect(path, isolation_level=None)
    started = time.perf_counter()
    base = time.time() - n * 1e-3
    template = chat_completion(0)

    def rows(lo: int, hi: int) -> Iterator[tuple[Any, ...]]:
        for i in range(lo, hi):
            template["id"] = f"chatcmpl-{i:012d}AbCdEfGhIjKlMnOp"
            data = encode_value(template)
            stamp = base + i * 1e-3
            k = key(i)
            yield (key_row_id(k), k, data, stamp, None, len(data), "openai", "gpt-4o-mini")

    for lo in range(0, n, FILL_CHUNK):
        hi = min(n, lo + FILL_CHUNK)
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(  # the schema's triggers fill ``recency`` and the entry count
            "INSERT INTO entries (id, key, value, created, expires, size, provider, model)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            rows(lo, hi),
        )
        conn.execute("COMMIT")
        progress("sqlite", hi, n, started)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


# -- timing ---------------------------------------------------------------------------------


def timed(fn: Callable[[int], object], ops: int) -> tuple[float, float, float]:
    """(p50 us, p99 us, ops/s) of ``fn(i)`` for i in range(ops)."""
    samples = [0] * ops
    clock = time.perf_counter_ns
    started = clock()
    for i in range(ops):
        t0 = clock()
        fn(i)
        samples[i] = clock() - t0
    total = (clock() - started) / 1e9
    samples.sort()
    return samples[ops // 2] / 1e3, samples[min(ops - 1, ops * 99 // 100)] / 1e3, ops / total


def bench_storage(
    name: str, make: Callable[[int], CacheStorage], n: int, ops: int
) -> list[tuple[str, str, str, float, float, float]]:
    rng = random.Random(n)
    storage = make(n + ops + 1)  # room for the timed sets: no eviction in "set"
    hit_keys = [key(rng.randrange(n)) for _ in range(ops)]
    miss_keys = [key_for({"missing": i}) for i in range(ops)]
    new_keys = [key_for({"new": i}) for i in range(ops)]
    values = [blob(n + i) for i in range(64)]
    for k in hit_keys[:1000]:  # warm the page cache / mmap like a running server
        storage.get_bytes(k)
    out = [
        ("get-hit", *timed(lambda i: storage.get_bytes(hit_keys[i]), ops)),
        ("get-miss", *timed(lambda i: storage.get_bytes(miss_keys[i]), ops)),
        ("set", *timed(lambda i: storage.set_bytes(new_keys[i], values[i % 64]), ops)),
    ]
    storage.close()
    full = make(n)  # full: every set evicts the least recently used entry
    evict_keys = [key_for({"evict": i}) for i in range(ops)]
    out.append(
        ("set (evicts)", *timed(lambda i: full.set_bytes(evict_keys[i], values[i % 64]), ops))
    )
    full.close()
    return [(name, label(n), op, p50, p99, rate) for op, p50, p99, rate in out]


def bench_keygen(ops: int) -> tuple[float, float, float]:
    request = chat_request()
    body = {k: v for k, v in request.items() if k not in ("model", "messages")}
    model, messages = request["model"], request["messages"]
    for _ in range(1000):
        generate_cache_key("openai", model, messages, **body)
    return timed(lambda i: generate_cache_key("openai", model, messages, **body), ops)


class _SharedConnectionSQLite(SQLiteStorage):
    """The alternative design: one connection for all threads, every call under one lock."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._shared: sqlite3.Connection | None = None
        self._call_lock = threading.RLock()

    def _conn(self) -> sqlite3.Connection:
        if self._shared is None:
            self._shared = self._connect()
            self._conns.append(self._shared)
        return self._shared

    def get_bytes(self, key: str) -> bytes | None:
        with self._call_lock:
            return super().get_bytes(key)

    def set_bytes(self, *args: Any, **kwargs: Any) -> None:
        with self._call_lock:
            super().set_bytes(*args, **kwargs)


def bench_threads(path: Path, n: int, threads: int, ops: int) -> list[tuple[str, float]]:
    out = []
    keys = [key(i % n) for i in range(ops)]
    for design, cls in (
        ("connection per thread", SQLiteStorage),
        ("one connection + lock", _SharedConnectionSQLite),
    ):
        storage = cls(path, max_size=n * 2)
        start = threading.Barrier(threads + 1)

        def work(
            t: int, storage: SQLiteStorage = storage, start: threading.Barrier = start
        ) -> None:
            start.wait()
            for i in range(ops):
                if i % 10 == 0:  # 90 % hits, 10 % writes
                    storage.set_bytes(keys[(i + t) % ops], b"j{}")
                else:
                    storage.get_bytes(keys[(i * 7 + t) % ops])

        pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
        for th in pool:
            th.start()
        start.wait()
        started = time.perf_counter()
        for th in pool:
            th.join()
        out.append((design, threads * ops / (time.perf_counter() - started)))
        storage.close()
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1k,100k,1M", help="comma list, e.g. 1k,100k,1M")
    parser.add_argument("--quick", action="store_true", help="small sizes only (1k,10k)")
    parser.add_argument("--backends", default="memory,sqlite")
    parser.add_argument("--ops", type=int, default=20_000, help="timed operations per figure")
    parser.add_argument("--threads", type=int, default=4, help="threads for the design comparison")
    parser.add_argument(
        "--dir", default=None, help="where the SQLite files go (default: a tmp dir)"
    )
    args = parser.parse_args(argv)
    sizes = [1_000, 10_000] if args.quick else [parse_size(s) for s in args.sizes.split(",")]
    ops = min(args.ops, 5_000) if args.quick else args.ops
    backends = [b.strip() for b in args.backends.split(",")]

    rows: list[tuple[str, str, str, float, float, float]] = []
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for n in sizes:
            if "memory" in backends:
                print(f"memory, {label(n)} entries", file=sys.stderr)
                memory = MemoryStorage(max_size=n + ops + 1)
                fill_memory(memory, n)

                def reuse(max_size: int, memory: MemoryStorage = memory) -> MemoryStorage:
                    memory.max_size = max_size
                    return memory

                rows += bench_storage("memory", reuse, n, ops)
                del memory
            if "sqlite" in backends:
                print(f"sqlite, {label(n)} entries", file=sys.stderr)
                path = Path(tmp) / f"bench-{n}.db"
                SQLiteStorage(path).close()  # schema
                fill_sqlite(path, n)
                rows += bench_storage(
                    "sqlite", lambda m, p=path: SQLiteStorage(p, max_size=m), n, ops
                )
        threads = []
        if "sqlite" in backends:
            print(f"sqlite, {args.threads} threads", file=sys.stderr)
            tpath = Path(tmp) / "threads.db"
            SQLiteStorage(tpath).close()
            fill_sqlite(tpath, 10_000)
            threads = bench_threads(tpath, 10_000, args.threads, ops // args.threads)

    keygen = bench_keygen(ops)

    print()
    print(
        f"{'backend':<8} {'entries':>8} {'operation':<13} {'p50 us':>9} {'p99 us':>9} {'ops/s':>11}"
    )
    print("-" * 62)
    for backend, size, op, p50, p99, rate in rows:
        print(f"{backend:<8} {size:>8} {op:<13} {p50:>9.1f} {p99:>9.1f} {rate:>11,.0f}")
    print("-" * 62)
    p50, p99, rate = keygen
    print(f"{'keygen':<8} {'~2KB':>8} {'generate_key':<13} {p50:>9.1f} {p99:>9.1f} {rate:>11,.0f}")
    print()
    for backend in ("memory", "sqlite"):
        hits = {size: p50 for b, size, op, p50, _, _ in rows if b == backend and op == "get-hit"}
        if len(hits) > 1:
            small, large = label(min(sizes)), label(max(sizes))
            ratio = hits[large] / hits[small]
            print(f"{backend}: get-hit p50 at {large} / at {small} = {ratio:.2f}x")
    for design, rate in threads:
        print(f"sqlite, {args.threads} threads (90% get-hit, 10% set), {design}: {rate:,.0f} ops/s")


if __name__ == "__main__":
    main()
