"""The cache policy, written once for every front end: modes, lookups, stores, fail-open, stats.

Front ends (the proxy, the httpx transport, the callable wrapper) decide *what* an exchange is
and how to answer; this module decides *whether* to look up, whether to store, and keeps a
failing backend from ever failing a request: every storage error is logged (at most once per
``_LOG_EVERY`` seconds) and turned into a miss or a skipped store.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from llm_cache.cache.storage import CacheStorage, EntryMetadata
from llm_cache.config import MODES

logger = logging.getLogger("llm_cache.engine")

_LOG_EVERY = 10.0


class CacheEngine:
    """Mode-aware, fail-open access to one storage backend (sync and async)."""

    def __init__(
        self,
        storage: CacheStorage,
        *,
        mode: str = "readwrite",
        ttl: float | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.storage = storage
        self.mode = mode
        self.ttl = ttl
        self._last_error: str | None = None
        self._last_error_at = 0.0
        self._last_logged_at = 0.0

    # -- policy -------------------------------------------------------------------------------

    @property
    def reads(self) -> bool:
        """Whether lookups happen at all in this mode."""
        return self.mode in ("readwrite", "readonly", "offline")

    @property
    def writes(self) -> bool:
        """Whether fresh answers are stored in this mode."""
        return self.mode in ("readwrite", "record")

    @property
    def offline(self) -> bool:
        """A miss must not reach the upstream."""
        return self.mode == "offline"

    # -- async path (proxy, async transport) --------------------------------------------------

    async def lookup(self, key: str) -> dict[str, Any] | None:
        """The stored value for ``key``, or ``None`` on a miss or any storage failure."""
        try:
            return await self.storage.aget(key)
        except Exception as exc:
            self._storage_failed("lookup", exc)
            return None

    async def store(
        self,
        key: str,
        value: dict[str, Any],
        *,
        ttl: float | None = None,
        metadata: EntryMetadata | dict[str, Any] | None = None,
    ) -> bool:
        """Store ``value``; ``False`` (logged) when the backend failed."""
        try:
            await self.storage.aset(key, value, metadata, ttl if ttl is not None else self.ttl)
        except Exception as exc:
            self._storage_failed("store", exc)
            return False
        return True

    async def health(self) -> dict[str, Any]:
        """``/health`` body: healthy with the entry count, or degraded with the error."""
        body: dict[str, Any] = {"status": "healthy", "backend": self.storage.backend_name}
        try:
            await self.storage.ahealth_check()
            body["cache_size"] = await self.storage.aget_size()
        except Exception as exc:
            self._storage_failed("health check", exc)
            body.update(status="degraded", cache_size=None, error=self._last_error)
        else:
            self._last_error = None  # the backend answers again
        body["mode"] = self.mode
        return body

    # -- sync path (wrapper, sync transport) --------------------------------------------------

    def lookup_sync(self, key: str) -> dict[str, Any] | None:
        try:
            return self.storage.get(key)
        except Exception as exc:
            self._storage_failed("lookup", exc)
            return None

    def store_sync(
        self,
        key: str,
        value: dict[str, Any],
        *,
        ttl: float | None = None,
        metadata: EntryMetadata | dict[str, Any] | None = None,
    ) -> bool:
        try:
            self.storage.set(key, value, metadata, ttl if ttl is not None else self.ttl)
        except Exception as exc:
            self._storage_failed("store", exc)
            return False
        return True

    # -- failure bookkeeping ------------------------------------------------------------------

    def _storage_failed(self, what: str, exc: BaseException) -> None:
        now = time.monotonic()
        self._last_error = f"{type(exc).__name__}: {exc}"
        self._last_error_at = now
        if now - self._last_logged_at >= _LOG_EVERY:
            self._last_logged_at = now
            logger.warning(
                "cache %s failed (%s); serving without the cache", what, self._last_error
            )
