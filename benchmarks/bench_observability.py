"""What observability costs per request: each event subscriber, timed on its own.

    .venv/bin/python benchmarks/bench_observability.py [--n 200000]

Every request through the proxy ends with one ``ExchangeEvent``; the metrics, the request log
and the recent-entries list each handle it on the event loop after the answer was sent. This
times each subscriber on a hit event (the hot path) and a miss event, single process and in
prometheus-client's multiprocess mode (``--workers N``), and the request log line written to
a file in text and JSON. Prints CPU microseconds per event.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _bench(n: int) -> dict[str, float]:
    from llm_cache.engine.events import ExchangeEvent
    from llm_cache.observability.history import RecentKeys
    from llm_cache.observability.metrics import Metrics
    from llm_cache.observability.request_log import JsonFormatter, RequestLog

    metrics = Metrics()
    metrics.prices.load()
    common = {
        "front_end": "proxy",
        "method": "POST",
        "path": "/v1/chat/completions",
        "provider": "openai",
        "endpoint": "/chat/completions",
        "model": "gpt-4o-mini",
        "http_status": 200,
        "usage": {"input": 120, "output": 80},
    }
    hit = ExchangeEvent(**common, cache_status="HIT", key="ab" * 32, duration=0.0002)
    hit.saved_seconds = 0.8
    miss = ExchangeEvent(**common, cache_status="MISS", key="cd" * 32, duration=0.8)
    miss.upstream_status, miss.upstream_duration, miss.stored = 200, 0.79, True
    results: dict[str, float] = {}

    def timed(name: str, fn: object, event: ExchangeEvent) -> None:
        call = fn  # type: ignore[assignment]
        for _ in range(1000):
            call(event)  # type: ignore[operator]
        # CPU time of this process: the cost of the work, not of waiting for a core on a
        # machine shared with other jobs.
        start = time.process_time()
        for _ in range(n):
            call(event)  # type: ignore[operator]
        results[name] = (time.process_time() - start) / n * 1e6

    timed("metrics, hit", metrics, hit)
    timed("metrics, miss", metrics, miss)
    timed("recent entries, hit", RecentKeys(), hit)
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in ("text", "json"):
            logger = logging.getLogger(f"bench.{fmt}")
            logger.propagate = False
            stream = open(os.path.join(tmp, f"{fmt}.log"), "w")  # noqa: SIM115
            handler = logging.StreamHandler(stream)  # what ``serve`` uses, to a file
            handler.setFormatter(
                JsonFormatter() if fmt == "json" else logging.Formatter("%(levelname)s %(message)s")
            )
            logger.addHandler(handler)
            logger.setLevel(logging.INFO)
            timed(f"request log line ({fmt}, to a file)", RequestLog(logger), hit)
            handler.close()
            stream.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        for name, us in _bench(args.n).items():
            print(f"  {name:<40} {us:7.2f} µs CPU/event")
        return
    print("single process (--workers 1)")
    subprocess.run([sys.executable, __file__, "--child", "--n", str(args.n)], check=True)
    with tempfile.TemporaryDirectory() as shared:
        print("multiprocess mode (--workers N)")
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": shared}
        subprocess.run(
            [sys.executable, __file__, "--child", "--n", str(args.n)], check=True, env=env
        )


if __name__ == "__main__":
    main()
