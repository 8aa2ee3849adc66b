"""The storage contract: keys and bytes, LRU by ``max_size``, TTL, hit/miss counters.

Backends implement the byte-level methods (``get_bytes``/``set_bytes`` and the bookkeeping
ones); this base class adds the dict-level ``get``/``set`` of the public API on top of the one
shared codec, and async counterparts. The async defaults call the sync methods directly: an
embedded backend answers in microseconds, far less than a thread hand-off costs. Backends that
talk over a network (Redis) override them with native async calls.
"""

from __future__ import annotations

import logging
import secrets
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar, NamedTuple, TypedDict

from llm_cache.cache.codec import CorruptValueError, decode_value, encode_value

logger = logging.getLogger("llm_cache.storage")


class EntryMetadata(TypedDict, total=False):
    """What a backend keeps beside a value (all optional)."""

    provider: str
    model: str
    endpoint: str


class EntryInfo(TypedDict, total=False):
    """What a backend knows about one stored entry, for the operator tools (``ls``, export).

    Times are epoch seconds. A field a backend does not track is ``None`` (SQLite keeps no
    per-entry hit count; Redis no last-hit time before its first hit).
    """

    created: float | None
    last_hit: float | None
    hits: int | None
    expires: float | None
    size: int
    provider: str | None
    model: str | None
    endpoint: str | None


class StoredEntry(NamedTuple):
    """One entry as :meth:`CacheStorage.iter_entries` yields it: key, stored bytes, info."""

    key: str
    data: bytes
    info: EntryInfo


class StorageError(RuntimeError):
    """The backend failed (connection lost, disk full...). Front ends fail open on it."""


#: One item of :meth:`CacheStorage.set_many_bytes`: key, data, metadata, ttl.
BulkItem = tuple[str, bytes, "EntryMetadata | dict[str, Any] | None", "float | None"]


class BulkWriteError(StorageError):
    """``set_many_bytes`` failed; ``stored`` items of the batch are known to be stored."""

    def __init__(self, stored: int, cause: BaseException) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.stored = stored
        self.cause = cause


def hit_rate_percent(hits: int, misses: int) -> float:
    """Hit rate in percent with two decimals, 0.0 when nothing was looked up."""
    total = hits + misses
    return round(100.0 * hits / total, 2) if total else 0.0


class CacheStorage(ABC):
    """Abstract cache backend. Values are opaque bytes here; dicts at the public API.

    ``get`` counts a hit or a miss and refreshes recency; ``set`` evicts least recently used
    entries while the cache is full. ``ttl`` (seconds) applies to entries stored without their
    own; ``None`` keeps them until evicted.
    """

    backend_name: ClassVar[str] = "abstract"
    max_size: int
    ttl: float | None
    #: Told how many entries a store evicted to make room (metrics); ``None``: nobody listens.
    on_evict: Callable[[int], None] | None = None

    def _evicted(self, count: int) -> None:
        if count > 0 and self.on_evict is not None:
            try:
                self.on_evict(count)
            except Exception:  # an observer never fails a store
                logger.exception("eviction observer failed")

    # -- byte level: what each backend implements ---------------------------------------------

    @abstractmethod
    def get_bytes(self, key: str) -> bytes | None:
        """Stored bytes for ``key`` (counting a hit or miss, refreshing recency), or ``None``."""

    @abstractmethod
    def set_bytes(
        self,
        key: str,
        data: bytes,
        metadata: EntryMetadata | dict[str, Any] | None = None,
        ttl: float | None = None,
    ) -> None:
        """Store ``data`` under ``key``, evicting LRU entries while full."""

    @abstractmethod
    def delete(self, key: str) -> bool:
        """Remove ``key``; ``True`` when it was present."""

    @abstractmethod
    def update_access_time(self, key: str) -> None:
        """Mark ``key`` as just used (for LRU)."""

    @abstractmethod
    def get_lru_key(self) -> str | None:
        """The least recently used key, or ``None`` when empty."""

    @abstractmethod
    def get_size(self) -> int:
        """Number of entries."""

    @abstractmethod
    def clear(self) -> None:
        """Remove every entry and reset the counters."""

    @abstractmethod
    def get_counters(self) -> tuple[int, int]:
        """``(hits, misses)`` since the last clear."""

    def recount_as_miss(self) -> None:  # noqa: B027 - optional hook
        """Turn the hit just counted into a miss (its value turned out to be unreadable).

        Called only on that rare path; backends that count hits override it.
        """

    def evict_lru(self) -> bool:
        """Remove the least recently used entry; ``True`` when one was removed."""
        key = self.get_lru_key()
        return key is not None and self.delete(key)

    def is_full(self) -> bool:
        return self.get_size() >= self.max_size

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections and flush deferred work."""

    def health_check(self) -> None:
        """Raise when the backend cannot serve; default: a cheap size query."""
        self.get_size()

    # -- entries, for the operator tools (export, ls, show, prune) ----------------------------

    def iter_entries(self) -> Iterator[StoredEntry]:
        """Every live entry, in no particular order, without counting hits or touching recency.

        Reads in batches, so a large cache is never held in memory at once; entries written or
        removed meanwhile may or may not be seen. Backends that cannot list their entries
        raise ``NotImplementedError``.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot list its entries")

    def set_many_bytes(self, items: Sequence[BulkItem]) -> int:
        """Store ``(key, data, metadata, ttl)`` items as ``set_bytes`` would, one after another;
        the number stored. Backends override it to store a batch in one transaction or round
        trip (import). On an error, the items before the failing one may be stored."""
        for n, (key, data, metadata, ttl) in enumerate(items):
            try:
                self.set_bytes(key, data, metadata, ttl)
            except Exception as exc:
                raise BulkWriteError(n, exc) from exc
        return len(items)

    def peek_entry(self, key: str) -> StoredEntry | None:
        """The entry under ``key`` without counting a hit or refreshing recency, or ``None``.

        The default scans :meth:`iter_entries`; backends override it with a direct read.
        """
        return next((e for e in self.iter_entries() if e.key == key), None)

    # -- dict level: the public API -----------------------------------------------------------

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored dict, or ``None``; an undecodable value is logged, dropped and a miss."""
        blob = self.get_bytes(key)
        if blob is None:
            return None
        try:
            return decode_value(blob)
        except CorruptValueError as exc:
            logger.warning("dropping corrupt cache entry %s: %s", key, exc)
            self._drop_corrupt(key)
            return None

    def _drop_corrupt(self, key: str) -> None:
        try:
            self.recount_as_miss()
            self.delete(key)
        except Exception:  # pragma: no cover - best effort
            logger.exception("could not drop corrupt entry %s", key)

    def set(
        self,
        key: str,
        value: dict[str, Any],
        metadata: EntryMetadata | dict[str, Any] | None = None,
        ttl: float | None = None,
    ) -> None:
        self.set_bytes(key, encode_value(value), metadata, ttl)

    def get_stats(self) -> dict[str, Any]:
        hits, misses = self.get_counters()
        return {
            "backend": self.backend_name,
            "size": self.get_size(),
            "max_size": self.max_size,
            "hits": hits,
            "misses": misses,
            "total_requests": hits + misses,  # the original project's name, kept for its users
            "hit_rate": hit_rate_percent(hits, misses),
        }

    # -- async counterparts (override for network backends) -----------------------------------

    async def aget_bytes(self, key: str) -> bytes | None:
        return self.get_bytes(key)

    async def aset_bytes(
        self,
        key: str,
        data: bytes,
        metadata: EntryMetadata | dict[str, Any] | None = None,
        ttl: float | None = None,
    ) -> None:
        self.set_bytes(key, data, metadata, ttl)

    async def adelete(self, key: str) -> bool:
        return self.delete(key)

    async def aclear(self) -> None:
        self.clear()

    async def aget_size(self) -> int:
        return self.get_size()

    async def aget_stats(self) -> dict[str, Any]:
        return self.get_stats()

    async def ahealth_check(self) -> None:
        self.health_check()

    async def aclose(self) -> None:
        self.close()

    async def aget_or_create_secret(self) -> bytes:
        """A random server secret kept beside the cache, created on first use and the same for
        every process that shares this cache (tenant isolation hashes credentials with it).
        Default: one per storage object (backends shared across processes override it)."""
        secret: bytes | None = self.__dict__.get("_server_secret")
        if secret is None:
            secret = self.__dict__["_server_secret"] = secrets.token_bytes(32)
        return secret

    async def aget(self, key: str) -> dict[str, Any] | None:
        blob = await self.aget_bytes(key)
        if blob is None:
            return None
        try:
            return decode_value(blob)
        except CorruptValueError as exc:
            logger.warning("dropping corrupt cache entry %s: %s", key, exc)
            try:
                self.recount_as_miss()  # rare path: a short blocking call is acceptable here
                await self.adelete(key)
            except Exception:  # pragma: no cover - best effort
                logger.exception("could not drop corrupt entry %s", key)
            return None

    async def aset(
        self,
        key: str,
        value: dict[str, Any],
        metadata: EntryMetadata | dict[str, Any] | None = None,
        ttl: float | None = None,
    ) -> None:
        await self.aset_bytes(key, encode_value(value), metadata, ttl)
