"""The cache policy, written once for every front end: modes, lookups, stores, fail-open, stats.

Front ends (the proxy, the httpx transport, the callable wrapper) decide *what* an exchange is
and how to answer; this module decides *whether* to look up, whether to store, and keeps a
failing backend from ever failing a request: every storage error is logged (at most once per
``_LOG_EVERY`` seconds) and turned into a miss or a skipped store. After a failure the backend
is left alone for ``retry_after`` seconds (a circuit breaker), so a dead Redis costs one timeout
per window instead of one per request; the next call after the window tries it again, which is
how the proxy reconnects by itself.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from llm_cache.cache.codec import CorruptValueError, encode_value, is_entry
from llm_cache.cache.storage import CacheStorage, EntryMetadata
from llm_cache.config import MODES
from llm_cache.engine.entry import Entry

logger = logging.getLogger("llm_cache.engine")

_LOG_EVERY = 10.0


@runtime_checkable
class SupportsFlightLocks(Protocol):
    """A backend shared by several processes that can single-flight across them (Redis)."""

    async def atry_lock(self, key: str, ttl: float) -> str | None: ...

    async def aunlock(self, key: str, token: str) -> bool: ...

    async def await_unlocked(
        self, key: str, timeout: float, poll_interval: float = ...
    ) -> bool: ...


class CacheEngine:
    """Mode-aware, fail-open access to one storage backend (sync and async)."""

    def __init__(
        self,
        storage: CacheStorage,
        *,
        mode: str = "readwrite",
        ttl: float | None = None,
        retry_after: float = 1.0,
        flight_lock_ttl: float = 60.0,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.storage = storage
        self.mode = mode
        self.ttl = ttl
        self.retry_after = retry_after
        self.flight_lock_ttl = flight_lock_ttl
        self._locks = storage if isinstance(storage, SupportsFlightLocks) else None
        self._skip_until = 0.0
        self._store_failures = 0
        self._last_store_error: str | None = None
        self._last_error: str | None = None
        self._last_logged_at = 0.0
        #: Told of every storage failure (metrics); ``None``: nobody listens.
        self.on_storage_error: Callable[[str, BaseException], None] | None = None

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

    def _available(self) -> bool:
        return time.monotonic() >= self._skip_until

    async def lookup(self, key: str) -> dict[str, Any] | None:
        """The stored value for ``key``, or ``None`` on a miss or any storage failure."""
        if not self._available():
            return None
        try:
            return await self.storage.aget(key)
        except Exception as exc:
            self._storage_failed("lookup", exc)
            return None

    async def lookup_entry(self, key: str, *, count: bool = True) -> Entry | None:
        """The stored HTTP entry for ``key``; ``None`` on a miss, an unreadable entry (dropped,
        counted as a miss) or any storage failure. ``count=False`` for internal re-reads."""
        if not self._available():
            return None
        try:
            blob = await self.storage.aget_bytes(key)
        except Exception as exc:
            self._storage_failed("lookup", exc)
            return None
        if blob is None:
            return None
        try:
            if not is_entry(blob):
                raise CorruptValueError("not an HTTP cache entry")
            return Entry.decode(blob)
        except CorruptValueError as exc:
            logger.warning("dropping unreadable cache entry %s: %s", key[:16], exc)
            try:
                if count:
                    self.storage.recount_as_miss()
                await self.storage.adelete(key)
            except Exception as err:
                self._storage_failed("drop", err)
            return None

    async def store_entry(
        self,
        key: str,
        entry: Entry,
        *,
        ttl: float | None = None,
        metadata: EntryMetadata | dict[str, Any] | None = None,
    ) -> bool:
        """Store an HTTP entry; ``False`` (logged) when the backend failed."""
        try:
            data = entry.encode()
        except (TypeError, ValueError) as exc:  # a request that cannot be kept as JSON
            logger.warning("not storing %s: %s", key[:16], exc)
            return False
        return await self.store_bytes(key, data, ttl=ttl, metadata=metadata)

    async def store_bytes(
        self,
        key: str,
        data: bytes,
        *,
        ttl: float | None = None,
        metadata: EntryMetadata | dict[str, Any] | None = None,
    ) -> bool:
        """Store encoded bytes; ``False`` (logged) when the backend failed."""
        if not self._available():
            return False
        try:
            await self.storage.aset_bytes(key, data, metadata, ttl if ttl is not None else self.ttl)
        except Exception as exc:
            self._storage_failed("store", exc)
            return False
        self._store_failures = 0
        return True

    async def store(
        self,
        key: str,
        value: dict[str, Any],
        *,
        ttl: float | None = None,
        metadata: EntryMetadata | dict[str, Any] | None = None,
    ) -> bool:
        """Store ``value``; ``False`` (logged) when the backend failed."""
        return await self.store_bytes(key, encode_value(value), ttl=ttl, metadata=metadata)

    async def health(self) -> dict[str, Any]:
        """``/health`` body: healthy with the entry count, or degraded with the error."""
        body: dict[str, Any] = {
            "status": "healthy",
            "backend": self.storage.backend_name,
            "cache_max_size": self.storage.max_size,
        }
        try:
            await self.storage.ahealth_check()
            body["cache_size"] = await self.storage.aget_size()
        except Exception as exc:
            self._storage_failed("health check", exc)
            body.update(status="degraded", cache_size=None, error=self._last_error)
        else:
            self._last_error = None  # the backend answers again
            self._skip_until = 0.0
            if self._store_failures:
                # Reads work but writes do not (a full disk, a read-only file): not healthy.
                body.update(
                    status="degraded",
                    error=f"{self._store_failures} store(s) failed since the last success: "
                    f"{self._last_store_error}",
                )
        body["mode"] = self.mode
        return body

    async def lock_flight(self, key: str) -> str | bool:
        """Claim the upstream call for ``key`` across processes.

        A token when this process holds the claim (pass it to ``unlock_flight``); ``True`` when
        there is nothing to claim (backend without locks, or failing: go ahead alone); ``False``
        when another process holds it (call ``wait_flight``, then look up again).
        """
        if self._locks is None or not self._available():
            return True
        try:
            token = await self._locks.atry_lock(key, self.flight_lock_ttl)
        except Exception as exc:
            self._storage_failed("flight lock", exc)
            return True
        return token if token is not None else False

    async def unlock_flight(self, key: str, token: str | bool) -> None:
        if self._locks is None or not isinstance(token, str):
            return
        try:
            await self._locks.aunlock(key, token)
        except Exception as exc:
            self._storage_failed("flight unlock", exc)

    async def wait_flight(self, key: str) -> None:
        """Wait (at most the lock's lifetime) for another process's call on ``key`` to end."""
        if self._locks is None:
            return
        try:
            await self._locks.await_unlocked(key, self.flight_lock_ttl)
        except Exception as exc:
            self._storage_failed("flight wait", exc)

    # -- sync path (wrapper, sync transport) --------------------------------------------------

    def lookup_sync(self, key: str) -> dict[str, Any] | None:
        if not self._available():
            return None
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
        if not self._available():
            return False
        try:
            self.storage.set(key, value, metadata, ttl if ttl is not None else self.ttl)
        except Exception as exc:
            self._storage_failed("store", exc)
            return False
        return True

    # -- failure bookkeeping ------------------------------------------------------------------

    def _storage_failed(self, what: str, exc: BaseException) -> None:
        now = time.monotonic()
        if self.on_storage_error is not None:
            with contextlib.suppress(Exception):
                self.on_storage_error(what, exc)
        self._last_error = f"{type(exc).__name__}: {exc}"
        if what in ("store", "flight lock", "flight unlock"):  # writes
            self._store_failures += 1
            self._last_store_error = self._last_error
        self._skip_until = now + self.retry_after
        if now - self._last_logged_at >= _LOG_EVERY:
            self._last_logged_at = now
            logger.warning(
                "cache %s failed (%s); serving without the cache", what, self._last_error
            )
