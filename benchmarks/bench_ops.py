"""Operator tools: how fast export and import move entries (what a backup or a migration costs).

    .venv/bin/python benchmarks/bench_ops.py                       # 20k entries
    .venv/bin/python benchmarks/bench_ops.py --entries 100000 --redis redis://127.0.0.1:6379/15

A SQLite cache is filled with ~1 KB chat-completion entries (the engine's entry record, with
its request), then timed: ``export`` to plain JSON Lines and to ``.jsonl.zst``, ``import`` into a
fresh SQLite file, and (with ``--redis``) into Redis, in a namespace of its own that is removed
afterwards (only its keys). Prints entries per second and file sizes. No progress bars.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import orjson

from llm_cache.cache.redis_storage import RedisStorage
from llm_cache.cache.sqlite_storage import SQLiteStorage
from llm_cache.cache.storage import CacheStorage
from llm_cache.engine.entry import Entry
from llm_cache.ops.records import rekey
from llm_cache.ops.transfer import export_entries, import_file

URL = "https://api.openai.com/v1/chat/completions"


def make_entry(i: int) -> tuple[str, bytes]:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"question {i}"}]}
    request = {"method": "POST", "url": URL, "headers": {}, "body": body}
    answer = {
        "id": f"chatcmpl-{i}",
        "object": "chat.completion",
        "created": 1_700_000_000 + i,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": f"answer {i} " + "lorem ipsum " * 60},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 140, "total_tokens": 152},
    }
    entry = Entry(200, "application/json", body=orjson.dumps(answer), request=request)
    entry.provider, entry.endpoint, entry.model = "openai", "/chat/completions", "gpt-4o-mini"
    return rekey(request, "openai"), entry.encode()


def timed(label: str, n: int, fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    seconds = time.perf_counter() - started
    print(f"{label:<34} {seconds:7.2f} s   {n / seconds:9,.0f} entries/s")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=20_000)
    parser.add_argument("--redis", metavar="URL", help="also import into this Redis")
    args = parser.parse_args()
    n = args.entries

    with tempfile.TemporaryDirectory() as tmp:
        source = SQLiteStorage(Path(tmp) / "source.db", max_size=n * 2)
        for i in range(n):
            key, blob = make_entry(i)
            source.set_bytes(key, blob, {"provider": "openai", "model": "gpt-4o-mini"})
        print(f"{n:,} entries, {os.path.getsize(Path(tmp) / 'source.db') / 1e6:.1f} MB SQLite\n")

        plain, packed = str(Path(tmp) / "x.jsonl"), str(Path(tmp) / "x.jsonl.zst")
        timed("export -> .jsonl", n, lambda: export_entries(source, plain, show_progress=False))
        timed(
            "export -> .jsonl.zst", n, lambda: export_entries(source, packed, show_progress=False)
        )
        for path in (plain, packed):
            print(f"  {Path(path).name:<14} {os.path.getsize(path) / 1e6:8.1f} MB")

        target: CacheStorage = SQLiteStorage(Path(tmp) / "target.db", max_size=n * 2)
        timed(
            "import .jsonl.zst -> SQLite",
            n,
            lambda: import_file(target, packed, show_progress=False),
        )
        assert target.get_size() == n
        if args.redis:
            redis = RedisStorage(
                url=args.redis, max_size=n * 2, namespace=f"bench-{uuid.uuid4().hex[:8]}"
            )
            try:
                timed(
                    "import .jsonl.zst -> Redis",
                    n,
                    lambda: import_file(redis, packed, show_progress=False),
                )
                assert redis.get_size() == n
            finally:
                redis.clear()  # this namespace's keys only
                redis.close()


if __name__ == "__main__":
    main()
