"""Proxy hit latency and throughput with the Redis backend, for 1, 2 and 4 worker processes.

    .venv/bin/python benchmarks/bench_redis_proxy.py [--seconds 5] [--requests 2000]
        [--redis-url redis://127.0.0.1:6379/14] [--workers 1 2 4] [--memory-tier 256]

Starts the simulated upstream and ``python -m llm_cache.proxy.server --workers N`` with
``LLM_CACHE_BACKEND=redis`` as separate processes, and drives them from a load-generator process
on raw keep-alive connections (the helpers of ``bench_proxy.py``). Prints, per worker count:
hit latency p50/p99 at concurrency 1 and hit throughput at concurrency 32, and the throughput
ratio against one worker. ``--memory-tier N`` repeats the runs with ``LLM_CACHE_MEMORY_TIER_SIZE=N``
(an in-process LRU in front of Redis).

Redis: a dedicated database (default db 14 on 127.0.0.1:6379); the proxies use the default
namespace ``llm_cache`` there, and only that namespace's keys are deleted, before and after.
Targets (issue 5): hit p50 <= 1.5 ms at concurrency 1; 2 workers >= 1.7x one worker. The load
generator runs on the same machine, so on a 2-core box it competes with the workers.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_proxy import chat_body, load, ms, proxy, upstream  # noqa: E402
from benchmarks.loadgen import LoadResult  # noqa: E402
from llm_cache.cache.redis_storage import RedisStorage  # noqa: E402

DEFAULT_URL = "redis://127.0.0.1:6379/14"


def clear_namespace(url: str) -> None:
    storage = RedisStorage(url=url)  # namespace "llm_cache", the proxies' default
    try:
        storage.clear()
    finally:
        storage.close()


# -- CPU accounting (Linux /proc; zeros elsewhere): is the machine or the proxy the limit? --


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def machine_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs since boot."""
    fields = _read("/proc/stat").split("\n", 1)[0].split()[1:]
    values = [int(v) for v in fields[:8]] if fields else [0] * 8
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def proxy_pids(port: int) -> list[int]:
    """The proxy process listening on ``port`` and its worker processes."""
    stats: dict[int, tuple[int, str]] = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if entry.isdigit():
            stat = _read(f"/proc/{entry}/stat")
            cmd = _read(f"/proc/{entry}/cmdline").replace("\0", " ")
            if stat:
                stats[int(entry)] = (int(stat.rsplit(")", 1)[1].split()[1]), cmd)
    roots = [
        pid
        for pid, (_, cmd) in stats.items()
        if "llm_cache.proxy.server" in cmd and str(port) in cmd
    ]
    return roots + [pid for pid, (ppid, _) in stats.items() if ppid in roots]


def process_ticks(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        stat = _read(f"/proc/{pid}/stat")
        if stat:
            fields = stat.rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime
    return total


class Run:
    def __init__(
        self, latency: LoadResult, throughput: LoadResult, busy: float, proxy_cores: float
    ):
        self.latency, self.throughput = latency, throughput
        self.busy, self.proxy_cores = busy, proxy_cores


def run(up: str, workers: int, tmp: str, requests: int, seconds: float) -> Run:
    same = [chat_body("What is the capital of France?")]
    with proxy(up, workers, "redis", tmp) as px:
        load(px, same, concurrency=1, seconds=10, limit=5)  # store the entry
        load(px, same, concurrency=32, seconds=1)  # warm every worker (connections, scripts)
        print(f"  {workers} worker(s): hit latency, c=1 ...", flush=True)
        latency = load(px, same, concurrency=1, seconds=60, limit=requests)
        print(f"  {workers} worker(s): hit throughput, c=32, {seconds:.0f} s ...", flush=True)
        pids = proxy_pids(int(px.rsplit(":", 1)[1]))
        busy0, total0 = machine_ticks()
        proc0 = process_ticks(pids)
        throughput = load(px, same, concurrency=32, seconds=seconds)
        busy1, total1 = machine_ticks()
        proc1 = process_ticks(pids)
    cpus = os.cpu_count() or 1
    span = (total1 - total0) / cpus  # ticks of one CPU over the run (spawning the load included)
    busy = (busy1 - busy0) / (total1 - total0) if total1 > total0 else 0.0
    proxy_cores = (proc1 - proc0) / span if span else 0.0
    return Run(latency, throughput, busy, proxy_cores)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="each throughput run")
    parser.add_argument("--requests", type=int, default=2000, help="requests per latency run")
    parser.add_argument("--redis-url", default=DEFAULT_URL, help="a dedicated Redis database")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument(
        "--memory-tier", type=int, default=0, help="also run with a memory tier of N entries"
    )
    args = parser.parse_args()

    os.environ["LLM_CACHE_REDIS_URL"] = args.redis_url  # read by every proxy worker
    os.environ.pop("LLM_CACHE_MEMORY_TIER_SIZE", None)
    variants = [("redis", 0)] + (
        [("redis + memory tier", args.memory_tier)] * bool(args.memory_tier)
    )
    results: list[tuple[str, int, Run]] = []
    clear_namespace(args.redis_url)
    try:
        with tempfile.TemporaryDirectory() as tmp, upstream() as up:
            for name, tier in variants:
                if tier:
                    os.environ["LLM_CACHE_MEMORY_TIER_SIZE"] = str(tier)
                print(f"{name}:", flush=True)
                for workers in args.workers:
                    clear_namespace(args.redis_url)
                    results.append(
                        (name, workers, run(up, workers, tmp, args.requests, args.seconds))
                    )
                os.environ.pop("LLM_CACHE_MEMORY_TIER_SIZE", None)
    finally:
        clear_namespace(args.redis_url)

    print()
    header = f"{'backend':22} {'workers':>7} {'hit p50 c=1':>13} {'hit p99 c=1':>13}"
    header += f" {'hits/s c=32':>12} {'vs 1 worker':>12} {'CPU busy':>9} {'proxy CPU':>10}"
    header += f" {'errors':>7}"
    print(header)
    print("-" * len(header))
    base: dict[str, float] = {}
    for name, workers, r in results:
        latency, throughput = r.latency, r.throughput
        base.setdefault(name, throughput.rps)
        ratio = throughput.rps / base[name] if base[name] else float("nan")
        errors = latency.errors + throughput.errors
        print(
            f"{name:22} {workers:>7} {ms(latency.p50):>13} {ms(latency.pct(99)):>13}"
            f" {throughput.rps:>12.0f} {ratio:>11.2f}x {r.busy:>8.0%} {r.proxy_cores:>6.2f} cpu"
            f" {errors:>7}"
        )
    print(
        "\nCPU busy: the whole machine during the c=32 run; proxy CPU: cores used by the proxy's"
        "\nprocesses (the rest goes to the load generator, Redis and the upstream)."
    )
    print(f"cores: {os.cpu_count()}; Redis: {args.redis_url}")
    print("targets: hit p50 <= 1.5 ms at c=1; 2 workers >= 1.7x one worker")


if __name__ == "__main__":
    main()
