"""Semantic cache speed: embedder, vector index, whole lookup, and the proxy, in one run.

    .venv/bin/python benchmarks/bench_semantic.py [--minilm] [--no-redis] [--no-proxy]

Prints, for this machine:
* embedder: load time and time to embed one question (local; MiniLM with ``--minilm``);
* index search p50/p95 (memory, SQLite, Redis on 127.0.0.1:6379 when it answers), with
  10,000 vectors in one partition and with 100,000 vectors over 1,000 partitions, warm
  (the process mirror is current) and cold (first look of a process at a partition);
* a whole ``SemanticCache.lookup`` (partition, embed, search, guards) over SQLite with
  10,000 questions in one partition -- the issue's target is p50 <= 20 ms;
* through the proxy (c=1): exact-hit latency with semantic off and on (it must not change),
  and semantic-hit latency.

Redis: a namespace of its own (``bench-semantic-<random>``) whose keys are deleted afterwards;
nothing else is touched.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_proxy import (  # noqa: E402
    chat_body,
    free_port,
    load,
    process,
    upstream,
)
from llm_cache.cache.sqlite_storage import SQLiteStorage  # noqa: E402
from llm_cache.config import Config  # noqa: E402
from llm_cache.semantic.cache import SemanticCache  # noqa: E402
from llm_cache.semantic.embedders import build_embedder, normalize_rows  # noqa: E402
from llm_cache.semantic.index import MemoryIndex, VectorIndex, pack_vector  # noqa: E402
from llm_cache.semantic.redis_index import RedisIndex, encode_add  # noqa: E402
from llm_cache.semantic.sqlite_index import SQLiteIndex  # noqa: E402

DIM = 256
LOOKUPS = 200


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.3f} ms"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


async def timed(fn: Callable[[], Awaitable[Any]], n: int) -> list[float]:
    out: list[float] = []
    for _ in range(n):
        t = time.perf_counter()
        await fn()
        out.append(time.perf_counter() - t)
    return out


# -- embedders ------------------------------------------------------------------------------


def bench_embedder(spec: str) -> None:
    t = time.perf_counter()
    embedder = build_embedder(spec)
    loaded = time.perf_counter() - t
    question = ["How do I reverse a list in Python without making a copy of it?"]
    sync = getattr(embedder, "embed_sync")  # noqa: B009 - local embedders have it
    sync(question)
    times = []
    for _ in range(LOOKUPS):
        t = time.perf_counter()
        sync(question)
        times.append(time.perf_counter() - t)
    print(
        f"  {embedder.identity:<45} load {loaded:6.2f} s   embed one question "
        f"p50 {ms(statistics.median(times))}"
    )


# -- indexes --------------------------------------------------------------------------------


def random_vectors(n: int, seed: int) -> Any:
    return normalize_rows(np.random.default_rng(seed).normal(size=(n, DIM)))


def fill_sqlite(path: Path, rows: list[tuple[str, str, str, bytes]]) -> None:
    index = SQLiteIndex(path)
    conn = index._connection()
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO semantic_vectors (partition, entry_key, text, vector) VALUES (?, ?, ?, ?)",
        rows,
    )
    conn.execute("COMMIT")
    conn.close()


async def fill_redis(index: RedisIndex, rows: list[tuple[str, str, str, Any]]) -> None:
    client = index._client()
    pipe = client.pipeline(transaction=False)
    for i, (partition, key, text, vector) in enumerate(rows):
        pipe.rpush(index._keys(partition)[1], encode_add(key, text, vector))
        pipe.zadd(index._parts, {partition: time.time()})
        if i % 2000 == 1999:
            await pipe.execute()
    await pipe.execute()


async def bench_index(
    name: str, make: Callable[[], Awaitable[VectorIndex]], partitions: int, per: int
) -> None:
    total = partitions * per
    vectors = random_vectors(total, 1)
    rows = [(f"p{i // per}", f"k{i}", f"question {i}", vectors[i]) for i in range(total)]
    t = time.perf_counter()
    index = await make()
    if isinstance(index, SQLiteIndex):
        fill_sqlite(Path(index.db_path), [(p, k, x, pack_vector(v)) for p, k, x, v in rows])
    elif isinstance(index, RedisIndex):
        await fill_redis(index, rows)
    else:
        for p, k, x, v in rows:
            await index.add(p, x, v, k)
    filled = time.perf_counter() - t
    queries = random_vectors(LOOKUPS, 2)
    rng = np.random.default_rng(3)
    picks = [f"p{int(rng.integers(partitions))}" for _ in range(LOOKUPS)]
    # cold: the first look of a process at a partition (a fresh index object: empty mirror)
    cold: list[float] = []
    for round_ in range(5 if partitions == 1 else 1):
        fresh = await make()
        firsts = ["p0"] if partitions == 1 else [f"p{i}" for i in range(LOOKUPS)]
        for i, partition in enumerate(firsts):
            t = time.perf_counter()
            await fresh.candidates(partition, queries[(i + round_) % LOOKUPS], 0.5)
            cold.append(time.perf_counter() - t)
        await fresh.close()
    # warm: the mirror is current; each lookup checks for news and searches
    searcher = await make()
    for partition in {"p0", *picks}:
        await searcher.candidates(partition, queries[0], 0.5)
    warm: list[float] = []
    for partition, query in zip(picks, queries, strict=True):
        t = time.perf_counter()
        await searcher.candidates(partition, query, 0.5)
        warm.append(time.perf_counter() - t)
    print(
        f"  {name:<7} {total:>7,} vectors in {partitions:>5,} partition(s): "
        f"warm p50 {ms(statistics.median(warm))} p95 {ms(pct(warm, 95))} | "
        f"cold p50 {ms(statistics.median(cold))} | fill {filled:5.1f} s"
    )
    await index.close()
    await searcher.close()


# -- whole lookup ---------------------------------------------------------------------------

TOPICS = [
    "Python",
    "the weather",
    "France",
    "cooking",
    "git",
    "photosynthesis",
    "taxes",
    "football",
    "the moon",
    "SQL",
]


async def bench_lookup(tmp: str) -> None:
    storage = SQLiteStorage(db_path=str(Path(tmp) / "lookup.db"), max_size=20_000)
    cache = SemanticCache(Config(env={}, dotenv_path=None, semantic=True), storage)
    embedder = build_embedder("local")
    texts = [
        f"Question {i}: tell me fact number {i} about {TOPICS[i % 10]}." for i in range(10_000)
    ]
    vectors = await embedder.embed(texts)
    from llm_cache.semantic.partition import partition_for

    def body(text: str) -> dict[str, Any]:
        return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}

    part = partition_for("openai", "/v1/chat/completions", body("x"))
    assert part is not None
    space = cache._space(embedder, part.key)
    fill_sqlite(
        Path(storage.db_path),
        [
            (space, f"k{i}", t, pack_vector(v))
            for i, (t, v) in enumerate(zip(texts, vectors, strict=True))
        ],
    )
    await cache.remember(
        "openai", "/v1/chat/completions", body("What is the capital of France?"), "", "france"
    )
    asks = ["Tell me the capital of France.", "What is the capital of Austria?"]
    results: dict[str, list[float]] = {}
    for ask in asks:
        found = await cache.lookup("openai", "/v1/chat/completions", body(ask), "")
        results[f"{ask!r} -> {'hit' if found else 'miss'}"] = await timed(
            lambda a=ask: cache.lookup("openai", "/v1/chat/completions", body(a), ""),  # type: ignore[misc]
            LOOKUPS,
        )
    for label, times in results.items():
        print(
            f"  10,000 questions in the partition, {label:<48} "
            f"p50 {ms(statistics.median(times))} p95 {ms(pct(times, 95))}"
        )
    storage.close()


# -- proxy ----------------------------------------------------------------------------------


@contextmanager
def semantic_proxy(upstream_url: str, tmp: str, semantic: bool) -> Iterator[str]:
    port = free_port()
    env = {
        "LLM_CACHE_BACKEND": "sqlite",
        "LLM_CACHE_SQLITE_PATH": str(Path(tmp) / f"proxy-{port}.db"),
        "LLM_CACHE_OPENAI_BASE_URL": f"{upstream_url}/v1",
        "LLM_CACHE_LOG_LEVEL": "warning",
        "LLM_CACHE_SEMANTIC": "true" if semantic else "false",
    }
    args = [sys.executable, "-m", "llm_cache.proxy.server", "--port", str(port)]
    with process(args, port, env):
        yield f"http://127.0.0.1:{port}"


def bench_proxy(tmp: str, n: int) -> None:
    same = [chat_body("What is the capital of France?")]
    paraphrase = [chat_body("Tell me the capital of France.")]
    with upstream() as up:
        figures: list[tuple[str, float]] = []
        for semantic in (False, True, False, True):  # twice each: this machine is shared
            with semantic_proxy(up, tmp, semantic) as px:
                load(px, same, concurrency=1, seconds=10, limit=5)  # store the entry
                time.sleep(0.3)  # its question is filed just after the answer
                hit = load(px, same, concurrency=1, seconds=60, limit=n)
                figures.append((f"exact hit, semantic {'on ' if semantic else 'off'}", hit.p50))
                if semantic and not any(label.startswith("semantic hit") for label, _ in figures):
                    near = load(px, paraphrase, concurrency=1, seconds=60, limit=n)
                    figures.append(("semantic hit (paraphrase)", near.p50))
        for label, p50 in figures:
            print(f"  {label:<28} p50 {ms(p50)}")


async def amain(args: argparse.Namespace) -> None:
    print("embedders (one question):")
    bench_embedder("local")
    if args.minilm:
        bench_embedder("local:minilm")
    with tempfile.TemporaryDirectory() as tmp:
        print(f"\nindex search (exact cosine, {DIM}-d, threshold 0.5, top 5):")
        counter = iter(range(1_000_000))

        async def memory() -> VectorIndex:
            return shared_memory

        shared_memory: VectorIndex = MemoryIndex(max_entries=200_000)
        for partitions, per in ((1, 10_000), (1_000, 100)):
            shared_memory = MemoryIndex(max_entries=200_000)
            await bench_index("memory", memory, partitions, per)
            db = Path(tmp) / f"index-{next(counter)}.db"

            async def sqlite(db: Path = db) -> VectorIndex:
                return SQLiteIndex(db, max_entries=200_000)

            await bench_index("sqlite", sqlite, partitions, per)
            if not args.no_redis:
                await bench_redis(partitions, per)
        print("\nwhole SemanticCache.lookup (SQLite, local embedder, guards):")
        await bench_lookup(tmp)
        if not args.no_proxy:
            print("\nthrough the proxy (SQLite, c=1):")
            bench_proxy(tmp, args.requests)


async def bench_redis(partitions: int, per: int) -> None:
    try:
        import redis.asyncio as aredis
    except ImportError:
        print("  redis   (redis package missing: skipped)")
        return
    client = aredis.Redis(host="127.0.0.1", port=6379, db=14)
    try:
        await client.ping()
    except Exception:
        print("  redis   (no Redis on 127.0.0.1:6379: skipped)")
        await client.aclose()
        return
    namespace = f"bench-semantic-{uuid.uuid4().hex[:8]}"

    async def make() -> VectorIndex:
        return RedisIndex(lambda: client, namespace, max_entries=200_000, max_partitions=200_000)

    try:
        await bench_index("redis", make, partitions, per)
    finally:
        keys = [k async for k in client.scan_iter(match="{" + namespace + "}:*", count=1000)]
        for i in range(0, len(keys), 500):
            await client.delete(*keys[i : i + 500])
        await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minilm", action="store_true", help="also time local:minilm (torch)")
    parser.add_argument("--no-redis", action="store_true", help="skip the Redis index")
    parser.add_argument("--no-proxy", action="store_true", help="skip the proxy figures")
    parser.add_argument("--requests", type=int, default=1000, help="requests per proxy run")
    args = parser.parse_args()
    asyncio.run(amain(args))


if __name__ == "__main__":
    main()
