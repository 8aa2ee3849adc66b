"""A small in-process LRU in front of a shared backend (Redis, SQLite): the memory tier.

    storage = TieredStorage(RedisStorage(...), size=256, ttl=5.0)

Reads look in memory first and answer from there without touching the backend (the async
methods do not await anything on a memory hit); a memory miss reads the backend and keeps what
it found in memory. Writes go to the backend and drop the key from memory, so the next read
loads the new value (keeping the written value in memory would hide the eviction the write may
have caused in the backend: it does not say which key it evicted); ``delete``/``clear`` drop the
key (or everything) from memory and from the backend.

The trade-offs, all bounded by ``ttl`` (seconds an entry stays in memory):

- **Several replicas.** A write, delete or clear on replica A invalidates A's memory at once,
  but replica B may serve the value it loaded for up to ``ttl`` seconds more. Choose ``ttl``
  as the staleness you accept (default 5 s through ``LLM_CACHE_MEMORY_TIER_TTL``).
- **Expiry.** Memory keeps an entry ``ttl`` seconds at most, never longer than the backend's
  default TTL, and never past the expiry of an entry written through this instance (its expiry
  time is remembered), so those expire on time. The remaining lifetime of an entry another
  replica stored with its own short TTL (``X-Cache-TTL``) is not known here: it may be served
  from memory up to ``ttl`` seconds after it expired in the backend.
- **Recency.** A hit served from memory does not refresh the entry's recency in the backend;
  the next read that goes to the backend (at most ``ttl`` later) does. A hot entry can only be
  evicted from the backend if ``max_size`` newer entries arrive within ``ttl`` seconds, and it
  then leaves memory within ``ttl`` too.
- **Counters.** A hit served from memory is counted in this process (exactly, under the
  memory LRU's lock) and added to the backend's counters in ``get_counters``/``get_stats``:
  this process's stats are exact; with several replicas each one reports the shared backend
  figures plus its own memory hits (a memory hit never reaches Redis, which is the point).
  ``get_stats`` shows the memory figures apart under ``memory_tier``.

Only hits are kept in memory (a miss always asks the backend), so a value stored by another
replica is seen at once. The backend's failures propagate as they are (the engine fails open),
but a key still in memory is served from it while the backend is down.

Cross-process locks (``try_lock``/``atry_lock``/...) are the backend's: when it has them, the
tier has them too, so single-flight across replicas keeps working through the tier.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Any

from llm_cache.cache.memory_storage import MemoryStorage
from llm_cache.cache.storage import (
    BulkItem,
    CacheStorage,
    EntryMetadata,
    StoredEntry,
    hit_rate_percent,
)

_LOCK_METHODS = ("atry_lock", "aunlock", "await_unlocked")


class TieredStorage(CacheStorage):
    """``backend`` with a ``size``-entry in-process LRU in front, each entry kept ``ttl`` s.

    When ``backend`` has cross-process locks (Redis), the instance is a
    :class:`LockingTieredStorage` that passes them through.
    """

    async def aget_or_create_secret(self) -> bytes:
        return await self.backend.aget_or_create_secret()

    def __new__(cls, backend: CacheStorage, *args: Any, **kwargs: Any) -> TieredStorage:
        if cls is TieredStorage and all(hasattr(backend, m) for m in _LOCK_METHODS):
            cls = LockingTieredStorage
        return super().__new__(cls)

    def __init__(self, backend: CacheStorage, size: int = 256, ttl: float = 5.0) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        if not ttl > 0:
            raise ValueError("ttl must be a positive number of seconds")
        self.backend = backend
        self.size = size
        self.tier_ttl = ttl
        self.memory = MemoryStorage(max_size=size)
        self.backend_name = backend.backend_name  # type: ignore[misc]  # what /health shows
        # Bumped by every write/delete/clear; a backend read that overlapped one does not
        # populate memory (it may have read the value that was just replaced).
        self._epoch = 0
        self._epoch_lock = threading.Lock()
        # Expiry times of entries written through this instance with a TTL, so that one loaded
        # back into memory leaves it on time (bounded; the oldest are forgotten first).
        self._deadlines: OrderedDict[str, float] = OrderedDict()
        self._max_deadlines = 4 * size + 1024

    def __repr__(self) -> str:
        return f"TieredStorage({self.backend!r}, size={self.size}, ttl={self.tier_ttl})"

    # -- settings that live in the backend ---------------------------------------------------

    @property
    def max_size(self) -> int:
        return self.backend.max_size

    @max_size.setter
    def max_size(self, value: int) -> None:
        self.backend.max_size = value

    @property
    def ttl(self) -> float | None:
        return self.backend.ttl

    @ttl.setter
    def ttl(self, value: float | None) -> None:
        self.backend.ttl = value

    # -- memory helpers ----------------------------------------------------------------------

    def _invalidate(self, key: str | None = None) -> None:
        with self._epoch_lock:
            self._epoch += 1
            if key is None:
                self.memory.clear()
                self._deadlines.clear()
            else:
                self.memory.delete(key)
                self._deadlines.pop(key, None)

    def _memory_ttl(self, ttl: float | None) -> float:
        """Seconds to keep an entry in memory: the tier TTL, capped by the entry's TTL."""
        entry_ttl = self.backend.ttl if ttl is None else ttl
        return self.tier_ttl if entry_ttl is None else min(self.tier_ttl, entry_ttl)

    def _populate(self, key: str, data: bytes, epoch: int) -> None:
        with self._epoch_lock:
            if epoch != self._epoch:
                return
            keep = self._memory_ttl(None)
            deadline = self._deadlines.get(key)
            if deadline is not None:
                keep = min(keep, deadline - time.monotonic())
            if keep > 0:
                self.memory.set_bytes(key, data, ttl=keep)

    def _written(self, key: str, ttl: float | None) -> None:
        """After a write: drop the key from memory, remember when the new entry expires."""
        entry_ttl = self.backend.ttl if ttl is None else ttl
        with self._epoch_lock:
            self._epoch += 1
            self.memory.delete(key)
            self._deadlines.pop(key, None)
            if entry_ttl is not None:
                self._deadlines[key] = time.monotonic() + entry_ttl
                while len(self._deadlines) > self._max_deadlines:
                    self._deadlines.popitem(last=False)

    @property
    def memory_hits(self) -> int:
        """Hits served from memory since the last clear (this process only)."""
        return self.memory.get_counters()[0]

    # -- byte level ----------------------------------------------------------------------------

    def get_bytes(self, key: str) -> bytes | None:
        data = self.memory.get_bytes(key)
        if data is not None:
            return data
        epoch = self._epoch
        data = self.backend.get_bytes(key)
        if data is not None:
            self._populate(key, data, epoch)
        return data

    def set_bytes(
        self,
        key: str,
        data: bytes,
        metadata: EntryMetadata | dict[str, Any] | None = None,
        ttl: float | None = None,
    ) -> None:
        self._invalidate(key)
        self.backend.set_bytes(key, data, metadata, ttl)
        self._written(key, ttl)

    def delete(self, key: str) -> bool:
        self._invalidate(key)
        return self.backend.delete(key)

    def update_access_time(self, key: str) -> None:
        self.backend.update_access_time(key)

    def get_lru_key(self) -> str | None:
        return self.backend.get_lru_key()

    def get_size(self) -> int:
        return self.backend.get_size()

    def clear(self) -> None:
        self._invalidate()
        self.backend.clear()
        self._invalidate()  # counters too, and anything a concurrent read put back

    def recount_as_miss(self) -> None:
        # A corrupt value always came through the backend (which counted the hit): memory only
        # holds what a backend read returned, and dropping the entry empties it here too.
        self.backend.recount_as_miss()

    def get_counters(self) -> tuple[int, int]:
        hits, misses = self.backend.get_counters()
        return hits + self.memory_hits, misses

    def evict_lru(self) -> bool:
        key = self.backend.get_lru_key()
        return key is not None and self.delete(key)

    def close(self) -> None:
        self.memory.clear()
        self.backend.close()

    def health_check(self) -> None:
        self.backend.health_check()

    def get_stats(self) -> dict[str, Any]:
        return self._with_memory(self.backend.get_stats())

    def _with_memory(self, stats: dict[str, Any]) -> dict[str, Any]:
        memory_hits = self.memory_hits
        stats["hits"] = int(stats.get("hits", 0)) + memory_hits
        stats["hit_rate"] = hit_rate_percent(stats["hits"], int(stats.get("misses", 0)))
        stats["memory_tier"] = {
            "size": self.memory.get_size(),
            "max_size": self.size,
            "ttl": self.tier_ttl,
            "hits": memory_hits,
        }
        return stats

    # -- entries: the backend's (memory holds only copies of them) ---------------------------

    def iter_entries(self) -> Iterator[StoredEntry]:
        return self.backend.iter_entries()

    def set_many_bytes(self, items: Sequence[BulkItem]) -> int:
        for key, *_ in items:
            self._invalidate(key)
        stored = self.backend.set_many_bytes(items)
        for key, _, _, ttl in items:
            self._written(key, ttl)
        return stored

    def peek_entry(self, key: str) -> StoredEntry | None:
        return self.backend.peek_entry(key)

    # -- async: a memory hit answers without awaiting the backend ------------------------------

    async def aget_bytes(self, key: str) -> bytes | None:
        data = self.memory.get_bytes(key)
        if data is not None:
            return data
        epoch = self._epoch
        data = await self.backend.aget_bytes(key)
        if data is not None:
            self._populate(key, data, epoch)
        return data

    async def aset_bytes(
        self,
        key: str,
        data: bytes,
        metadata: EntryMetadata | dict[str, Any] | None = None,
        ttl: float | None = None,
    ) -> None:
        self._invalidate(key)
        await self.backend.aset_bytes(key, data, metadata, ttl)
        self._written(key, ttl)

    async def adelete(self, key: str) -> bool:
        self._invalidate(key)
        return await self.backend.adelete(key)

    async def aclear(self) -> None:
        self._invalidate()
        await self.backend.aclear()
        self._invalidate()

    async def aget_size(self) -> int:
        return await self.backend.aget_size()

    async def aget_stats(self) -> dict[str, Any]:
        return self._with_memory(await self.backend.aget_stats())

    async def ahealth_check(self) -> None:
        await self.backend.ahealth_check()

    async def aclose(self) -> None:
        self.memory.clear()
        await self.backend.aclose()


class LockingTieredStorage(TieredStorage):
    """A tier over a backend with cross-process locks (Redis): the locks pass through."""

    def try_lock(self, key: str, ttl: float) -> str | None:
        result: str | None = getattr(self.backend, "try_lock")(key, ttl)  # noqa: B009
        return result

    def unlock(self, key: str, token: str) -> bool:
        return bool(getattr(self.backend, "unlock")(key, token))  # noqa: B009

    def wait_unlocked(self, key: str, timeout: float, poll_interval: float = 0.02) -> bool:
        return bool(getattr(self.backend, "wait_unlocked")(key, timeout, poll_interval))  # noqa: B009

    async def atry_lock(self, key: str, ttl: float) -> str | None:
        result: str | None = await getattr(self.backend, "atry_lock")(key, ttl)  # noqa: B009
        return result

    async def aunlock(self, key: str, token: str) -> bool:
        return bool(await getattr(self.backend, "aunlock")(key, token))  # noqa: B009

    async def await_unlocked(self, key: str, timeout: float, poll_interval: float = 0.02) -> bool:
        waited = getattr(self.backend, "await_unlocked")  # noqa: B009
        return bool(await waited(key, timeout, poll_interval))
