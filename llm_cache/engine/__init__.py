"""The cache engine: policy (modes, fail-open storage), entries, single-flight, the HTTP
exchange sequence and its events. Front ends (proxy, transports, wrapper) sit above it."""

from __future__ import annotations

from llm_cache.engine.policy import CacheEngine, SupportsFlightLocks

__all__ = ["CacheEngine", "SupportsFlightLocks"]
