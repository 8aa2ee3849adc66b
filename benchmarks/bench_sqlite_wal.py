"""SQLite WAL size against set throughput, by how many pages the WAL holds between checkpoints.

    .venv/bin/python benchmarks/bench_sqlite_wal.py [--sets 20000] [--value-kib 1] [--rounds 3]
        [--pages 1000,2500,10000]

The storage's default is ``_CHECKPOINT_PAGES``; 10,000 was the setting before issue 9.

Runs the two settings alternately in one process (so load from elsewhere hits both alike) and
prints sets per second, p50/p99 set latency and the largest WAL file seen.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import llm_cache.cache.sqlite_storage as sqlite_module
from llm_cache.cache.sqlite_storage import SQLiteStorage


def run(pages: int, sets: int, value: bytes) -> tuple[float, float, float, int]:
    sqlite_module._CHECKPOINT_PAGES = pages
    sqlite_module._WAL_LIMIT_BYTES = pages * 4096
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.db"
        wal = Path(f"{path}-wal")
        storage = SQLiteStorage(path, max_size=sets + 1)
        times = []
        largest = 0
        started = time.perf_counter()
        for i in range(sets):
            t0 = time.perf_counter()
            storage.set_bytes(f"key-{i}", value)
            times.append(time.perf_counter() - t0)
            if i % 100 == 0 and wal.exists():
                largest = max(largest, wal.stat().st_size)
        elapsed = time.perf_counter() - started
        storage.close()
    times.sort()
    p50 = statistics.median(times) * 1e6
    p99 = times[int(len(times) * 0.99)] * 1e6
    return sets / elapsed, p50, p99, largest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", type=int, default=20_000)
    parser.add_argument("--value-kib", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pages", default="1000,2500,10000")
    args = parser.parse_args()
    value = b"x" * int(args.value_kib * 1024)
    choices = [int(p) for p in args.pages.split(",")]
    results: dict[int, list[tuple[float, float, float, int]]] = {p: [] for p in choices}
    for _ in range(args.rounds):
        for pages in choices:
            results[pages].append(run(pages, args.sets, value))
    print(f"{args.sets} sets of {args.value_kib:g} KiB, {args.rounds} rounds (median)")
    print(f"{'checkpoint every':>18} {'sets/s':>9} {'p50 us':>8} {'p99 us':>8} {'max WAL MiB':>12}")
    for pages, rows in results.items():
        rate = statistics.median(r[0] for r in rows)
        p50 = statistics.median(r[1] for r in rows)
        p99 = statistics.median(r[2] for r in rows)
        wal = max(r[3] for r in rows) / 2**20
        print(f"{pages:>12} pages {rate:>9,.0f} {p50:>8.1f} {p99:>8.1f} {wal:>12.1f}")


if __name__ == "__main__":
    main()
