"""Prometheus metrics (SPEC "Observability"), fed by the engine's one event per exchange.

``Metrics`` is an ``EventBus`` subscriber. It is also the one place the proxy's savings are
counted: ``/cache/stats`` and the dashboard read their savings figures back from it, so
``/metrics``, the stats and the page always agree.

Several workers (``llm-cache serve --workers N``): every worker is its own process with its own
counters. When ``PROMETHEUS_MULTIPROC_DIR`` is set (``serve`` sets it to a fresh directory
before it starts the workers) prometheus-client writes each worker's values to memory-mapped
files there, and a scrape answered by any worker sums all of them. Entries and storage size
are not counted but measured at scrape time, from the storage every worker shares.

Label cardinality is bounded: ``model`` comes from request bodies, so after ``max_models``
distinct names further ones are counted as ``other``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    Metric,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from llm_cache.cache.storage import CacheStorage
from llm_cache.engine.events import ExchangeEvent
from llm_cache.observability.savings import PriceTable, price_table
from llm_cache.observability.storage_info import storage_bytes

__all__ = ["CONTENT_TYPE", "Metrics", "multiprocess_dir"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
UPSTREAM_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)
REQUEST_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
)
#: Statuses that are lookups answered from storage / that missed it (for ``by_model``).
HIT_STATUSES = ("hit", "semantic_hit")
MISS_STATUSES = ("miss", "coalesced", "partial")
#: Statuses whose upstream duration is this request's own upstream call.
OWN_CALL_STATUSES = ("miss", "bypass", "partial")

disable_created_metrics()  # type: ignore[no-untyped-call]  # ``*_created`` series only add noise to a cache's dashboards


def multiprocess_dir() -> str | None:
    """The directory worker processes share their values through, when in that mode."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR")


class Metrics:
    """The proxy's Prometheus metrics; call it with each ``ExchangeEvent``."""

    def __init__(self, prices: PriceTable | None = None, *, max_models: int = 200) -> None:
        self.prices = prices if prices is not None else price_table()
        self.max_models = max_models
        self._models: set[tuple[str, str]] = set()
        self._series: dict[tuple[str, str, str, str], _Series] = {}
        self._lock = threading.Lock()
        self.shared_dir = multiprocess_dir()
        # In multiprocess mode values live in the shared files; a registry would only collect
        # this worker's, so the metrics are registered nowhere and scrapes read the files.
        registry = None if self.shared_dir else CollectorRegistry()
        self.registry = registry
        self.requests = Counter(
            "llm_cache_requests",
            "Requests through the proxy by cache status (the lower-case X-Cache-Status) or error.",
            ["provider", "endpoint", "model", "status"],
            registry=registry,
        )
        self.saved_tokens = Counter(
            "llm_cache_saved_tokens",
            "Tokens the upstream did not process thanks to hits (from the stored usage).",
            ["provider", "model", "type"],
            registry=registry,
        )
        self.saved_cost = Counter(
            "llm_cache_saved_cost_usd",
            "List price in USD of the tokens hits saved (models without a known price count 0).",
            ["provider", "model"],
            registry=registry,
        )
        self.saved_seconds = Counter(
            "llm_cache_saved_seconds",
            "Upstream seconds hits avoided (each entry's recorded upstream duration).",
            ["provider", "model"],
            registry=registry,
        )
        self.upstream_duration = Histogram(
            "llm_cache_upstream_duration_seconds",
            "Duration of upstream calls, request sent to last byte received.",
            ["provider", "endpoint"],
            buckets=UPSTREAM_BUCKETS,
            registry=registry,
        )
        self.request_duration = Histogram(
            "llm_cache_request_duration_seconds",
            "Time to the last byte sent to the client, on the proxy side.",
            ["status"],
            buckets=REQUEST_BUCKETS,
            registry=registry,
        )
        self.evictions = Counter(
            "llm_cache_evictions",
            "Entries removed to make room (least recently used first).",
            registry=registry,
        )
        self.storage_errors = Counter(
            "llm_cache_storage_errors",
            "Storage operations that failed (the request went on without the cache).",
            registry=registry,
        )
        # Price look-ups import a large table: start now, off the event loop.
        threading.Thread(target=self.prices.load, name="llm-cache-prices", daemon=True).start()

    # -- the subscriber -----------------------------------------------------------------------

    def __call__(self, event: ExchangeEvent) -> None:
        status = event.metric_status
        if status == "passthrough":
            return  # not a cached route: no cache status to count
        provider, endpoint = event.provider or "unknown", event.endpoint or "unknown"
        model = self._model_label(provider, event.model)
        labels = (provider, endpoint, model, status)
        series = self._series.get(labels)
        if series is None:
            series = self._series[labels] = self._make_series(provider, endpoint, model, status)
        series.requests.inc()
        series.request_duration.observe(event.duration)
        if series.upstream_duration is not None and event.upstream_duration is not None:
            series.upstream_duration.observe(event.upstream_duration)
        if event.served_from_cache and series.saved_cost is not None:
            usage = event.usage or {}
            tokens_in, tokens_out = usage.get("input") or 0, usage.get("output") or 0
            if tokens_in > 0:
                series.saved_input.inc(tokens_in)
            if tokens_out > 0:
                series.saved_output.inc(tokens_out)
            cost = self.prices.cost(provider, event.model, event.usage)
            # inc(0) still creates the series, so an unpriced model shows up with 0.
            series.saved_cost.inc(cost or 0.0)
            if event.saved_seconds > 0:
                series.saved_seconds.inc(event.saved_seconds)

    def _make_series(self, provider: str, endpoint: str, model: str, status: str) -> _Series:
        """The children of every metric one kind of event touches (``labels()`` is the
        expensive part of a metric update; this runs once per label combination)."""
        series = _Series(
            requests=self.requests.labels(provider, endpoint, model, status),
            request_duration=self.request_duration.labels(status),
        )
        if status in OWN_CALL_STATUSES:
            series.upstream_duration = self.upstream_duration.labels(provider, endpoint)
        if status in HIT_STATUSES:  # savings series exist only for models that had hits
            series.saved_input = self.saved_tokens.labels(provider, model, "input")
            series.saved_output = self.saved_tokens.labels(provider, model, "output")
            series.saved_cost = self.saved_cost.labels(provider, model)
            series.saved_seconds = self.saved_seconds.labels(provider, model)
        return series

    def _model_label(self, provider: str, model: str) -> str:
        model = (model or "unknown")[:120]
        pair = (provider, model)
        if pair in self._models:
            return model
        with self._lock:
            if len(self._models) >= self.max_models:
                return "other"
            self._models.add(pair)
        return model

    # -- hooks for the storage and the engine -------------------------------------------------

    def evicted(self, count: int) -> None:
        if count > 0:
            self.evictions.inc(count)

    def storage_failed(self, what: str = "", exc: BaseException | None = None) -> None:
        self.storage_errors.inc()

    # -- reading back -------------------------------------------------------------------------

    def collect(self) -> list[Metric]:
        """Every counted family, summed over all workers in multiprocess mode."""
        if self.shared_dir:
            registry = CollectorRegistry()
            MultiProcessCollector(registry, self.shared_dir)  # type: ignore[no-untyped-call]
            return list(registry.collect())
        assert self.registry is not None
        return list(self.registry.collect())

    async def render(self, storage: CacheStorage) -> bytes:
        """The ``/metrics`` body: counted families plus gauges measured from the storage."""
        gauges: list[Metric] = []
        try:
            entries = await storage.aget_size()
        except Exception:
            self.storage_failed("metrics")
        else:
            gauge = GaugeMetricFamily("llm_cache_entries", "Entries stored.")
            gauge.add_metric([], float(entries))
            gauges.append(gauge)
        try:
            size = storage_bytes(storage)
        except OSError:
            size = None
        if size is not None:
            gauge = GaugeMetricFamily(
                "llm_cache_storage_bytes", "Bytes the cache storage occupies (file or values)."
            )
            gauge.add_metric([], float(size))
            gauges.append(gauge)
        return generate_latest(_Families([*self.collect(), *gauges]))  # type: ignore[arg-type]

    def savings(self) -> dict[str, Any]:
        """``tokens_saved``, ``cost_saved_usd``, ``time_saved_seconds``, ``by_model`` (all
        workers), for ``/cache/stats`` and the dashboard."""
        rows: dict[tuple[str, str], dict[str, Any]] = {}
        by_status: dict[str, float] = {}

        def row(provider: str, model: str) -> dict[str, Any]:
            found = rows.get((provider, model))
            if found is None:
                found = rows[(provider, model)] = {
                    "provider": provider,
                    "model": model,
                    "hits": 0,
                    "misses": 0,
                    "requests": 0,
                    "tokens_saved": {"input": 0, "output": 0},
                    "cost_saved_usd": 0.0,
                    "time_saved_seconds": 0.0,
                }
            return found

        for family in self.collect():
            for sample in family.samples:
                labels, value = sample.labels, sample.value
                if sample.name == "llm_cache_requests_total":
                    status = labels["status"]
                    by_status[status] = by_status.get(status, 0) + value
                    r = row(labels["provider"], labels["model"])
                    r["requests"] += int(value)
                    if status in HIT_STATUSES:
                        r["hits"] += int(value)
                    elif status in MISS_STATUSES:
                        r["misses"] += int(value)
                elif sample.name == "llm_cache_saved_tokens_total":
                    r = row(labels["provider"], labels["model"])
                    r["tokens_saved"][labels["type"]] = int(value)
                elif sample.name == "llm_cache_saved_cost_usd_total":
                    row(labels["provider"], labels["model"])["cost_saved_usd"] = value
                elif sample.name == "llm_cache_saved_seconds_total":
                    row(labels["provider"], labels["model"])["time_saved_seconds"] = value
        by_model = sorted(rows.values(), key=lambda r: (-r["hits"], -r["requests"], r["model"]))
        for r in by_model:
            r["cost_saved_usd"] = round(r["cost_saved_usd"], 6)
            r["time_saved_seconds"] = round(r["time_saved_seconds"], 3)
            r["price_known"] = self.prices.available and self.prices.is_priced(
                r["provider"], r["model"]
            )
        tokens = {
            kind: sum(r["tokens_saved"][kind] for r in by_model) for kind in ("input", "output")
        }
        result: dict[str, Any] = {
            "tokens_saved": tokens,
            "cost_saved_usd": round(sum(r["cost_saved_usd"] for r in by_model), 6),
            "time_saved_seconds": round(sum(r["time_saved_seconds"] for r in by_model), 3),
            "by_model": by_model,
            "requests_by_status": {k: int(v) for k, v in sorted(by_status.items())},
        }
        unpriced = [f"{r['provider']}/{r['model']}" for r in by_model if not r["price_known"]]
        if not self.prices.available:
            result["cost_note"] = self.prices.error
        elif unpriced:
            result["cost_note"] = (
                f"no list price known for {', '.join(unpriced[:10])}: their savings count $0"
            )
        return result


@dataclass(slots=True)
class _Series:
    """The metric children for one (provider, endpoint, model, status)."""

    requests: Any
    request_duration: Any
    upstream_duration: Any = None
    saved_input: Any = None
    saved_output: Any = None
    saved_cost: Any = None
    saved_seconds: Any = None


class _Families:
    """A collector over already collected families (what ``generate_latest`` reads)."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self._families
