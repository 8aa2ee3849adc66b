"""What the dashboard shows over time: the hit-rate timeline and the recent entries.

``Timeline`` samples the cumulative request counts by status (from ``Metrics``, so all workers)
every ``interval`` seconds and keeps an hour of samples; a point of the hit-rate chart is the
difference between two samples. Every worker samples the same shared totals, so whichever
worker answers the dashboard draws the same line.

``RecentKeys`` remembers the keys of the latest answers this process served or stored, newest
first: the entry list of the dashboard when the backend cannot list its entries.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

from llm_cache.engine.events import ExchangeEvent

__all__ = ["RecentKeys", "Timeline"]

logger = logging.getLogger("llm_cache.dashboard")

HITS = ("hit", "semantic_hit")
LOOKUPS = ("hit", "semantic_hit", "miss", "coalesced", "partial")


class Timeline:
    """Periodic samples of cumulative ``{status: count}`` totals."""

    def __init__(
        self,
        totals: Callable[[], dict[str, int]],
        *,
        interval: float = 10.0,
        keep: int = 360,
    ) -> None:
        self.totals = totals
        self.interval = interval
        self.samples: deque[tuple[float, dict[str, int]]] = deque(maxlen=keep)
        self._task: asyncio.Task[None] | None = None

    def sample(self, now: float | None = None) -> None:
        self.samples.append((time.time() if now is None else now, dict(self.totals())))

    def start(self) -> None:
        """Sample in the background on the running loop (idempotent)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            try:
                # Reading every worker's files takes a few ms: not on the event loop.
                totals = await asyncio.to_thread(self.totals)
                self.samples.append((time.time(), dict(totals)))
            except Exception as exc:
                logger.debug("timeline sample failed: %s", exc)
            await asyncio.sleep(self.interval)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    def points(self, current: dict[str, int] | None = None) -> list[dict[str, Any]]:
        """One point per interval: its requests, hits, lookups and hit rate (percent)."""
        samples = list(self.samples)
        if current is not None:
            samples.append((time.time(), current))
        points: list[dict[str, Any]] = []
        for (_, before), (t, after) in itertools.pairwise(samples):
            delta = {k: max(0, after.get(k, 0) - before.get(k, 0)) for k in after}
            hits = sum(delta.get(k, 0) for k in HITS)
            lookups = sum(delta.get(k, 0) for k in LOOKUPS)
            points.append(
                {
                    "t": round(t, 3),
                    "requests": sum(delta.values()),
                    "hits": hits,
                    "lookups": lookups,
                    "errors": delta.get("error", 0),
                    "hit_rate": round(100.0 * hits / lookups, 2) if lookups else None,
                }
            )
        return points


class RecentKeys:
    """``EventBus`` subscriber: keys of recent answers served or stored, newest first."""

    def __init__(self, keep: int = 500) -> None:
        self.keep = keep
        self._keys: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, event: ExchangeEvent) -> None:
        if not event.key or not (event.stored or event.served_from_cache):
            return
        with self._lock:
            self._keys[event.key] = event.time
            self._keys.move_to_end(event.key, last=False)
            while len(self._keys) > self.keep:
                self._keys.popitem()

    def snapshot(self) -> list[str]:
        with self._lock:
            return list(self._keys)

    def forget(self, key: str) -> None:
        with self._lock:
            self._keys.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._keys.clear()
