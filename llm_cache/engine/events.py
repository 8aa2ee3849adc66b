"""One event per exchange: what every front end reports, and what stats, logs and metrics read.

Every request through the proxy or an httpx transport ends with exactly one ``ExchangeEvent``
emitted on the engine's ``EventBus``. Subscribers (the request log, the process counters,
Prometheus metrics, the dashboard's recent history) each take what they need from it; nothing
is counted in two places. A subscriber that raises is logged and never fails the request.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CACHE_STATUSES",
    "EventBus",
    "ExchangeEvent",
    "ProcessCounters",
]

logger = logging.getLogger("llm_cache.events")

#: ``X-Cache-Status`` values (SPEC "Per-request controls").
HIT = "HIT"
MISS = "MISS"
BYPASS = "BYPASS"
COALESCED = "COALESCED"
PARTIAL = "PARTIAL"
SEMANTIC_HIT = "SEMANTIC-HIT"
CACHE_STATUSES = (HIT, MISS, BYPASS, COALESCED, PARTIAL, SEMANTIC_HIT)


@dataclass(slots=True)
class ExchangeEvent:
    """What happened to one request."""

    front_end: str  # "proxy" | "transport"
    method: str
    path: str  # the request path, never its query (it may hold a credential)
    provider: str = ""
    endpoint: str = ""
    model: str = ""
    #: ``X-Cache-Status`` sent (``HIT``, ``MISS``, ...); ``""`` for uncached pass-through paths.
    cache_status: str = ""
    key: str = ""
    #: HTTP status the client got (0 when it left before the answer started).
    http_status: int = 0
    #: Status the upstream answered (``None``: no upstream call, or it failed to answer).
    upstream_status: int | None = None
    #: Seconds from the request to the last byte sent.
    duration: float = 0.0
    #: Seconds the upstream call took (this request's own call, or the one it shared).
    upstream_duration: float | None = None
    #: On a hit: the upstream seconds the stored entry recorded (the time this hit saved).
    saved_seconds: float = 0.0
    #: ``{"input": n, "output": n}`` of the answer, when known (on a hit: what was saved).
    usage: dict[str, int] | None = None
    #: Whether the answer was stored.
    stored: bool = False
    #: Why this is an error, when it is one (bad request, upstream unreachable, offline miss).
    error: str | None = None
    namespace: str = ""
    time: float = field(default_factory=time.time)

    @property
    def is_error(self) -> bool:
        return self.error is not None or self.http_status >= 400

    @property
    def metric_status(self) -> str:
        """The ``status`` label of ``llm_cache_requests_total``."""
        if self.is_error or not self.cache_status:
            return "error" if self.is_error else "passthrough"
        return self.cache_status.lower().replace("-", "_")

    @property
    def served_from_cache(self) -> bool:
        return self.cache_status in (HIT, SEMANTIC_HIT)

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


Subscriber = Callable[[ExchangeEvent], None]


class EventBus:
    """Synchronous fan-out of exchange events to subscribers."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> Subscriber:
        self._subscribers.append(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        if subscriber in self._subscribers:
            self._subscribers.remove(subscriber)

    def emit(self, event: ExchangeEvent) -> None:
        for subscriber in self._subscribers:
            try:
                subscriber(event)
            except Exception:
                logger.exception("exchange event subscriber %r failed", subscriber)


class ProcessCounters:
    """This process's figures by status, and its most recent events (for the dashboard)."""

    def __init__(self, recent: int = 200) -> None:
        self._lock = threading.Lock()
        self.by_status: Counter[str] = Counter()
        self.saved_seconds = 0.0
        self.saved_tokens: Counter[str] = Counter()
        self.recent: deque[ExchangeEvent] = deque(maxlen=recent)

    def __call__(self, event: ExchangeEvent) -> None:
        with self._lock:
            self.by_status[event.metric_status] += 1
            if event.served_from_cache:
                self.saved_seconds += event.saved_seconds
                usage = event.usage
                if usage:
                    self.saved_tokens["input"] += usage.get("input", 0)
                    self.saved_tokens["output"] += usage.get("output", 0)
            self.recent.append(event)

    def snapshot(self) -> dict[str, Any]:
        """This process's requests by status (savings across workers come from the metrics)."""
        with self._lock:
            return {"by_status": dict(self.by_status)}
