"""In-process backend: an ordered dict in LRU order. For tests, notebooks and the memory tier."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from llm_cache.cache.storage import CacheStorage, EntryInfo, EntryMetadata, StoredEntry


class _Item:
    """One entry: its bytes, expiry, and what ``iter_entries`` reports about it."""

    __slots__ = ("created", "data", "expires", "hits", "last_hit", "metadata")

    def __init__(
        self, data: bytes, expires: float | None, metadata: EntryMetadata | dict[str, Any] | None
    ) -> None:
        self.data = data
        self.expires = expires
        self.created = time.time()
        self.last_hit: float | None = None
        self.hits = 0
        self.metadata = metadata

    # Reads as the ``(data, expires)`` pair this map used to hold (tests peek at it).
    def __iter__(self) -> Iterator[Any]:
        return iter((self.data, self.expires))

    def __getitem__(self, index: int) -> Any:
        return (self.data, self.expires)[index]

    def info(self) -> EntryInfo:
        meta = self.metadata or {}

        def text(name: str) -> str | None:
            value = meta.get(name)
            return None if value is None else str(value)

        return {
            "created": self.created,
            "last_hit": self.last_hit,
            "hits": self.hits,
            "expires": self.expires,
            "size": len(self.data),
            "provider": text("provider"),
            "model": text("model"),
            "endpoint": text("endpoint"),
        }


class MemoryStorage(CacheStorage):
    """Thread-safe LRU map of key -> entry. Nothing survives the process."""

    backend_name = "memory"

    def __init__(self, max_size: int = 1000, ttl: float | None = None) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self.max_size = max_size
        self.ttl = ttl
        self._data: OrderedDict[str, _Item] = OrderedDict()
        self._lock = threading.Lock()
        self._hits = 0
        self._misses = 0

    def get_bytes(self, key: str) -> bytes | None:
        with self._lock:
            item = self._data.get(key)
            if item is not None:
                now = time.time()
                if item.expires is None or item.expires > now:
                    self._data.move_to_end(key)
                    self._hits += 1
                    item.hits += 1
                    item.last_hit = now
                    return item.data
                del self._data[key]
            self._misses += 1
            return None

    def set_bytes(
        self,
        key: str,
        data: bytes,
        metadata: EntryMetadata | dict[str, Any] | None = None,
        ttl: float | None = None,
    ) -> None:
        ttl = self.ttl if ttl is None else ttl
        expires = time.time() + ttl if ttl is not None else None
        item = _Item(data, expires, dict(metadata) if metadata else None)
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
            self._data[key] = item
            evicted = 0
            while len(self._data) > self.max_size:
                self._data.popitem(last=False)
                evicted += 1
        self._evicted(evicted)

    def delete(self, key: str) -> bool:
        with self._lock:
            return self._data.pop(key, None) is not None

    def update_access_time(self, key: str) -> None:
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)

    def get_lru_key(self) -> str | None:
        with self._lock:
            return next(iter(self._data), None)

    def get_size(self) -> int:
        return len(self._data)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._hits = self._misses = 0

    def recount_as_miss(self) -> None:
        with self._lock:
            self._hits -= 1
            self._misses += 1

    def get_counters(self) -> tuple[int, int]:
        return self._hits, self._misses

    # -- entries ------------------------------------------------------------------------------

    def iter_entries(self) -> Iterator[StoredEntry]:
        with self._lock:  # a snapshot: the lock is not held while the caller works
            items = list(self._data.items())
        now = time.time()
        for key, item in items:
            if item.expires is None or item.expires > now:
                yield StoredEntry(key, item.data, item.info())

    def peek_entry(self, key: str) -> StoredEntry | None:
        with self._lock:
            item = self._data.get(key)
        if item is None or (item.expires is not None and item.expires <= time.time()):
            return None
        return StoredEntry(key, item.data, item.info())
