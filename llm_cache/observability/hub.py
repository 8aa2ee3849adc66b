"""The proxy's observability in one object: metrics, request log, timeline, recent entries.

``Observability(cache, engine, storage)`` subscribes its parts to the engine's event bus and
hooks the storage (evictions) and the engine (storage failures); the proxy only routes
``/metrics`` and ``/dashboard`` to it and adds ``stats_fields()`` to ``/cache/stats``.
"""

from __future__ import annotations

from typing import Any

from llm_cache.cache.storage import CacheStorage
from llm_cache.engine.http_cache import HttpCache
from llm_cache.engine.policy import CacheEngine
from llm_cache.observability.history import RecentKeys, Timeline
from llm_cache.observability.metrics import Metrics
from llm_cache.observability.request_log import RequestLog
from llm_cache.observability.storage_info import unwrap

__all__ = ["Observability"]


class Observability:
    """Everything the proxy reports about itself, fed by one event per exchange."""

    def __init__(
        self,
        cache: HttpCache,
        engine: CacheEngine,
        storage: CacheStorage,
        *,
        sample_interval: float = 10.0,
    ) -> None:
        self.engine = engine
        self.storage = storage
        self.metrics = Metrics()
        self.request_log = RequestLog()
        self.recent = RecentKeys()
        for subscriber in (self.metrics, self.request_log, self.recent):
            cache.bus.subscribe(subscriber)
        unwrap(storage).on_evict = self.metrics.evicted
        engine.on_storage_error = self.metrics.storage_failed
        self.timeline = Timeline(self.requests_by_status, interval=sample_interval)

    def requests_by_status(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for family in self.metrics.collect():
            for sample in family.samples:
                if sample.name == "llm_cache_requests_total":
                    status = sample.labels["status"]
                    totals[status] = totals.get(status, 0) + int(sample.value)
        return totals

    def start(self) -> None:
        """Start background sampling (call from the running event loop)."""
        self.timeline.start()

    async def aclose(self) -> None:
        await self.timeline.aclose()

    def stats_fields(self) -> dict[str, Any]:
        """The savings fields of ``/cache/stats`` (SPEC: ``tokens_saved``, ``cost_saved_usd``,
        ``time_saved_seconds``, ``by_model``), covering every worker."""
        savings = self.metrics.savings()
        savings.pop("requests_by_status", None)
        savings["savings_scope"] = (
            "all workers since the proxy started" if self.metrics.shared_dir else "since start"
        )
        return savings
