"""In-process backend: an ordered dict in LRU order. For tests, notebooks and the memory tier."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any

from llm_cache.cache.storage import CacheStorage, EntryMetadata


class MemoryStorage(CacheStorage):
    """Thread-safe LRU map of key -> (bytes, expiry). Nothing survives the process."""

    backend_name = "memory"

    def __init__(self, max_size: int = 1000, ttl: float | None = None) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self.max_size = max_size
        self.ttl = ttl
        self._data: OrderedDict[str, tuple[bytes, float | None]] = OrderedDict()
        self._lock = threading.Lock()
        self._hits = 0
        self._misses = 0

    def get_bytes(self, key: str) -> bytes | None:
        with self._lock:
            item = self._data.get(key)
            if item is not None:
                data, expires = item
                if expires is None or expires > time.time():
                    self._data.move_to_end(key)
                    self._hits += 1
                    return data
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
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
            self._data[key] = (data, expires)
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
