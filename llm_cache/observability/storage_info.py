"""Read-only looks into a storage backend for metrics and the dashboard.

Two things the ``CacheStorage`` contract does not (yet) offer:

- ``storage_bytes``: how much room the cache takes (the SQLite file with its WAL, the values of
  the memory backend). Redis shares its memory with whatever else the server holds, so no
  figure is given there (``None``) rather than a misleading one.
- ``peek``: an entry's bytes *without* counting a hit or refreshing recency -- opening an entry
  on the dashboard must not change the figures it shows. Backends that have ``peek_entry``
  (the operator tools' storage methods) are asked through it; otherwise the backend's own
  read path is used directly for SQLite and memory, and Redis reads the value hash field.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

from llm_cache.cache.storage import CacheStorage

__all__ = ["iter_stored", "peek", "storage_bytes", "unwrap"]


def unwrap(storage: CacheStorage) -> CacheStorage:
    """The backend behind a memory tier (the figures that matter are the backend's)."""
    inner = getattr(storage, "backend", None)
    return inner if isinstance(inner, CacheStorage) else storage


def storage_bytes(storage: CacheStorage) -> int | None:
    """Bytes the cache occupies, or ``None`` when the backend cannot say honestly."""
    from llm_cache.cache.memory_storage import MemoryStorage
    from llm_cache.cache.sqlite_storage import SQLiteStorage

    backend = unwrap(storage)
    if isinstance(backend, SQLiteStorage):
        total = 0
        for suffix in ("", "-wal"):
            try:
                total += backend.db_path.with_name(backend.db_path.name + suffix).stat().st_size
            except OSError:
                continue
        return total
    if isinstance(backend, MemoryStorage):
        return sum(len(item.data) for item in backend.iter_entries())
    return None


def peek_sync(storage: CacheStorage, key: str) -> bytes | None:
    """The bytes under ``key`` without counting a hit (the storage's ``peek_entry``)."""
    found = unwrap(storage).peek_entry(key)
    return None if found is None else bytes(found.data)


async def peek(storage: CacheStorage, key: str) -> bytes | None:
    """``peek_sync`` off the event loop (a Redis round trip, a SQLite page read)."""
    return await asyncio.to_thread(peek_sync, storage, key)


def iter_stored(storage: CacheStorage) -> Iterator[tuple[str, bytes, dict[str, Any]]]:
    """Every entry as ``(key, bytes, info)`` when the backend can list them.

    ``NotImplementedError`` when it cannot (the dashboard then lists the entries this process
    saw go by instead).
    """
    backend = unwrap(storage)
    iter_entries = getattr(backend, "iter_entries", None)
    if iter_entries is None:
        raise NotImplementedError(f"{type(backend).__name__} cannot list its entries")
    for item in iter_entries():
        yield item.key, bytes(item.data), dict(item.info)
