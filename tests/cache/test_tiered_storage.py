"""TieredStorage (memory tier) over MemoryStorage and over Redis: the shared backend contract,
plus what only the tier does: memory hits that never reach the backend (sync and async),
counters that include them, invalidation on write/delete/clear, bounded staleness between
replicas, TTLs honoured in memory, locks passed through, serving from memory while the
backend is down."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from llm_cache.cache.memory_storage import MemoryStorage
from llm_cache.cache.redis_storage import RedisStorage
from llm_cache.cache.sqlite_storage import SQLiteStorage
from llm_cache.cache.storage import StorageError
from llm_cache.cache.tiered_storage import LockingTieredStorage, TieredStorage
from llm_cache.config import Config
from llm_cache.engine import CacheEngine, SupportsFlightLocks

from .backend_contract import BackendContract, MakeStorage

MakeRedis = Callable[..., RedisStorage]


class TestTieredOverMemory(BackendContract):
    TRACKS_HITS = False  # hits served from memory never reach the backend's entry

    @pytest.fixture
    def make_storage(self) -> Iterator[MakeStorage]:
        made: list[TieredStorage] = []

        def make(max_size: int = 1000, ttl: float | None = None) -> TieredStorage:
            made.append(TieredStorage(MemoryStorage(max_size=max_size, ttl=ttl), size=50, ttl=5))
            return made[-1]

        yield make
        for storage in made:
            storage.close()


class TestTieredOverRedis(BackendContract):
    TRACKS_HITS = False  # hits served from memory never reach the backend's entry

    @pytest.fixture
    async def make_storage(self, make_redis_storage: MakeRedis) -> AsyncIterator[MakeStorage]:
        made: list[TieredStorage] = []

        def make(max_size: int = 1000, ttl: float | None = None) -> TieredStorage:
            backend = make_redis_storage(max_size=max_size, ttl=ttl)
            made.append(TieredStorage(backend, size=50, ttl=5))
            return made[-1]

        yield make
        for storage in made:
            await storage.aclose()


class CountingBackend(MemoryStorage):
    """A MemoryStorage that counts the reads that reach it and can be made to fail."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.reads = 0
        self.down = False

    def get_bytes(self, key: str) -> bytes | None:
        if self.down:
            raise StorageError("backend is down")
        self.reads += 1
        return super().get_bytes(key)

    async def aget_bytes(self, key: str) -> bytes | None:
        if self.down:
            raise StorageError("backend is down")
        self.reads += 1
        await asyncio.sleep(0)  # a real network backend yields here
        return super().get_bytes(key)


@pytest.fixture
def backend() -> CountingBackend:
    return CountingBackend(max_size=100)


def test_repeated_reads_are_served_from_memory_and_counted(backend: CountingBackend) -> None:
    tier = TieredStorage(backend, size=10, ttl=5)
    tier.set("k", {"v": 1})
    assert [tier.get("k") for _ in range(5)] == [{"v": 1}] * 5
    assert backend.reads == 1  # the first read loads memory; the other four never left it
    assert tier.get("missing") is None
    assert backend.reads == 2  # a miss is not kept: it always asks the backend
    assert tier.get_counters() == (5, 1)
    stats = tier.get_stats()
    assert (stats["hits"], stats["misses"], stats["hit_rate"]) == (5, 1, 83.33)
    assert stats["memory_tier"] == {"size": 1, "max_size": 10, "ttl": 5, "hits": 4}
    assert stats["backend"] == "memory"


async def test_async_memory_hit_does_not_await_the_backend(backend: CountingBackend) -> None:
    tier = TieredStorage(backend, size=10, ttl=5)
    await tier.aset("k", {"v": 1})
    assert await tier.aget("k") == {"v": 1}  # loads memory
    backend.down = True  # any backend call would now raise
    assert await tier.aget("k") == {"v": 1}
    assert await tier.aget_bytes("k") is not None
    assert backend.reads == 1
    with pytest.raises(StorageError):  # a memory miss does reach the (failing) backend
        await tier.aget("other")


def test_memory_entries_expire_after_the_tier_ttl(backend: CountingBackend) -> None:
    tier = TieredStorage(backend, size=10, ttl=0.1)
    tier.set("k", {"v": 1})
    tier.get("k")
    tier.get("k")
    assert backend.reads == 1
    time.sleep(0.15)
    assert tier.get("k") == {"v": 1}  # still in the backend, reloaded
    assert backend.reads == 2


def test_memory_is_a_bounded_lru(backend: CountingBackend) -> None:
    tier = TieredStorage(backend, size=3, ttl=5)
    for i in range(5):
        tier.set(f"k{i}", {"v": i})
        tier.get(f"k{i}")
    assert tier.memory.get_size() == 3
    assert backend.reads == 5
    tier.get("k4")
    tier.get("k0")  # fell out of memory, back from the backend
    assert backend.reads == 6
    assert tier.get_size() == 5  # the backend keeps everything


def test_write_delete_and_clear_invalidate_memory(backend: CountingBackend) -> None:
    tier = TieredStorage(backend, size=10, ttl=60)
    tier.set("k", {"v": 1})
    assert tier.get("k") == {"v": 1}
    tier.set("k", {"v": 2})
    assert tier.get("k") == {"v": 2}
    assert tier.delete("k") is True
    assert tier.get("k") is None
    tier.set("a", {"v": 1})
    tier.get("a")
    tier.clear()
    assert tier.get("a") is None
    assert tier.get_counters() == (0, 1)
    assert tier.memory.get_size() == 0


async def test_async_write_delete_and_clear_invalidate_memory(backend: CountingBackend) -> None:
    tier = TieredStorage(backend, size=10, ttl=60)
    await tier.aset("k", {"v": 1})
    assert await tier.aget("k") == {"v": 1}
    await tier.aset("k", {"v": 2})
    assert await tier.aget("k") == {"v": 2}
    assert await tier.adelete("k") is True
    assert await tier.aget("k") is None
    await tier.aset("a", {"v": 1})
    await tier.aget("a")
    await tier.aclear()
    assert await tier.aget("a") is None


async def test_a_read_racing_a_write_does_not_put_the_old_value_back() -> None:
    class SlowBackend(MemoryStorage):
        async def aget_bytes(self, key: str) -> bytes | None:
            data = super().get_bytes(key)  # reads the old value...
            await asyncio.sleep(0.05)  # ...and answers after the write below
            return data

    tier = TieredStorage(SlowBackend(), size=10, ttl=60)
    await tier.aset("k", {"v": "old"})
    reader = asyncio.create_task(tier.aget("k"))
    await asyncio.sleep(0.01)
    await tier.aset("k", {"v": "new"})
    assert await reader == {"v": "old"}  # it did read before the write
    assert await tier.aget("k") == {"v": "new"}  # but memory did not keep the old value


def test_entry_ttl_is_honoured_in_memory(backend: CountingBackend) -> None:
    tier = TieredStorage(backend, size=10, ttl=60)
    tier.set("short", {"v": 1}, ttl=0.1)
    assert tier.get("short") == {"v": 1}
    assert tier.get("short") == {"v": 1}  # from memory
    time.sleep(0.15)
    assert tier.get("short") is None


def test_two_replicas_see_a_delete_within_the_tier_ttl() -> None:
    shared = MemoryStorage(max_size=100)  # stands for Redis: one store, two processes' tiers
    a = TieredStorage(shared, size=10, ttl=0.2)
    b = TieredStorage(shared, size=10, ttl=0.2)
    a.set("k", {"v": 1})
    assert b.get("k") == {"v": 1}  # a value stored by A is seen by B at once (misses not kept)
    assert a.delete("k") is True
    assert a.get("k") is None  # A's own memory is invalidated at once
    assert b.get("k") == {"v": 1}  # B's memory may serve it for up to its TTL...
    time.sleep(0.25)
    assert b.get("k") is None  # ...and no longer


def test_serves_from_memory_while_the_backend_is_down(backend: CountingBackend) -> None:
    tier = TieredStorage(backend, size=10, ttl=5)
    tier.set("k", {"v": 1})
    tier.get("k")
    backend.down = True
    assert tier.get("k") == {"v": 1}
    with pytest.raises(StorageError):
        tier.get("other")


def test_locks_pass_through_only_when_the_backend_has_them(
    make_redis_storage: MakeRedis, tmp_path: Any
) -> None:
    plain = TieredStorage(MemoryStorage(), size=10, ttl=5)
    assert type(plain) is TieredStorage
    assert not isinstance(plain, SupportsFlightLocks)
    assert CacheEngine(plain)._locks is None

    sqlite = TieredStorage(SQLiteStorage(db_path=str(tmp_path / "c.db")), size=10, ttl=5)
    assert isinstance(sqlite, SupportsFlightLocks)  # SQLite locks across processes on one file
    assert CacheEngine(sqlite)._locks is sqlite
    sqlite.close()

    tier = TieredStorage(make_redis_storage(), size=10, ttl=5)
    assert isinstance(tier, LockingTieredStorage)
    assert isinstance(tier, SupportsFlightLocks)
    assert CacheEngine(tier)._locks is tier
    token = tier.try_lock("k", 5)
    assert token is not None
    assert tier.try_lock("k", 5) is None
    assert tier.unlock("k", token) is True
    assert tier.wait_unlocked("k", 1) is True

    async def run() -> None:
        token = await tier.atry_lock("k", 0.2)
        assert token is not None
        assert await tier.atry_lock("k", 5) is None
        started = time.monotonic()
        assert await tier.await_unlocked("k", 5) is True  # the lock expired by itself
        assert time.monotonic() - started < 1
        assert await tier.aunlock("k", token) is False
        await tier.aclose()

    asyncio.run(run())


def test_redis_replicas_share_entries_and_counters(make_redis_storage: MakeRedis) -> None:
    a = TieredStorage(make_redis_storage(), size=10, ttl=5)
    b = TieredStorage(make_redis_storage(), size=10, ttl=5)
    a.set("k", {"v": 1})
    for _ in range(3):
        assert b.get("k") == {"v": 1}
    assert b.get("nope") is None
    # the backend counted B's first read and its miss; B adds its own two memory hits
    assert b.get_counters() == (3, 1)
    assert a.get_counters() == (1, 1)
    a.clear()
    b.close()
    a.close()


def test_validation() -> None:
    with pytest.raises(ValueError):
        TieredStorage(MemoryStorage(), size=0, ttl=5)
    with pytest.raises(ValueError):
        TieredStorage(MemoryStorage(), size=10, ttl=0)


def test_config_wraps_the_backend_when_the_tier_is_on(tmp_path: Any) -> None:
    env = {"LLM_CACHE_BACKEND": "sqlite", "LLM_CACHE_SQLITE_PATH": str(tmp_path / "c.db")}
    plain = Config(env=env, dotenv_path=None).get_storage()
    assert isinstance(plain, SQLiteStorage)
    plain.close()
    config = Config(
        env={**env, "LLM_CACHE_MEMORY_TIER_SIZE": "64", "LLM_CACHE_MEMORY_TIER_TTL": "2.5"},
        dotenv_path=None,
    )
    assert (config.memory_tier_size, config.memory_tier_ttl) == (64, 2.5)
    storage = config.get_storage()
    assert isinstance(storage, TieredStorage)
    assert isinstance(storage.backend, SQLiteStorage)
    assert (storage.size, storage.tier_ttl, storage.max_size) == (64, 2.5, 1000)
    assert storage.backend_name == "sqlite"
    storage.close()
    # the memory backend is already in memory: no tier in front of it
    memory = Config(env={**env, "LLM_CACHE_BACKEND": "memory"}, memory_tier_size=10)
    assert isinstance(memory.get_storage(), MemoryStorage)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LLM_CACHE_MEMORY_TIER_SIZE", "-1"),
        ("LLM_CACHE_MEMORY_TIER_SIZE", "lots"),
        ("LLM_CACHE_MEMORY_TIER_TTL", "0"),
        ("LLM_CACHE_MEMORY_TIER_TTL", "soon"),
    ],
)
def test_invalid_tier_settings_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=name):
        Config(env={name: value}, dotenv_path=None)


def test_tier_settings_default_off() -> None:
    config = Config(env={}, dotenv_path=None)
    assert (config.memory_tier_size, config.memory_tier_ttl) == (0, 5.0)
    assert config.to_dict()["memory_tier_size"] == 0
