"""The behaviour every storage backend must show: subclass ``BackendContract`` once per backend.

A subclass provides the ``make_storage`` fixture: a factory ``make_storage(max_size=1000,
ttl=None)`` returning a fresh, empty backend, which the fixture cleans up afterwards. Nothing here
knows which backend it tests.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar

import pytest

from llm_cache.cache.codec import encode_value
from llm_cache.cache.storage import CacheStorage

MakeStorage = Callable[..., CacheStorage]

TTL = 0.2  # short enough for a fast suite, long enough for a set + get to land inside it


def chat_value(n: int = 0) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{n}",
        "object": "chat.completion",
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": f"answer {n} — ünïcödé ✓ 日本語 🚀"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19},
        "nested": {"a": [1, 2.5, None, True, {"b": ["c", {"d": []}]}]},
    }


class BackendContract:
    """Shared behaviour tests. Subclasses override ``make_storage``."""

    #: Whether the backend counts hits per entry (``EntryInfo.hits``); SQLite does not.
    TRACKS_HITS: ClassVar[bool] = True

    @pytest.fixture
    def make_storage(self) -> MakeStorage:  # pragma: no cover - always overridden
        raise NotImplementedError("subclass BackendContract and provide make_storage")

    @pytest.fixture
    def storage(self, make_storage: MakeStorage) -> CacheStorage:
        return make_storage(max_size=100)

    # -- values ----------------------------------------------------------------------------

    def test_round_trip(self, storage: CacheStorage) -> None:
        value = chat_value(1)
        storage.set("k1", value)
        assert storage.get("k1") == value

    def test_round_trip_with_metadata_and_odd_key(self, storage: CacheStorage) -> None:
        key = "clé:ü/ 1\n" + "x" * 300
        storage.set(key, {"v": 1}, metadata={"provider": "openai", "model": "gpt-4o"})
        assert storage.get(key) == {"v": 1}

    def test_large_value_round_trips_exactly(self, storage: CacheStorage) -> None:
        blob = os.urandom(1024 * 1024).hex()  # 2 MB of incompressible text
        value = {"content": blob, "tail": "✓"}
        storage.set("big", value)
        assert storage.get("big") == value

    def test_bytes_round_trip_exactly(self, storage: CacheStorage) -> None:
        data = os.urandom(2 * 1024 * 1024)
        storage.set_bytes("raw", data)
        assert storage.get_bytes("raw") == data

    def test_missing_key_is_none_and_counts_a_miss(self, storage: CacheStorage) -> None:
        assert storage.get("nope") is None
        assert storage.get_counters() == (0, 1)

    def test_overwrite_replaces_value_without_growing(self, storage: CacheStorage) -> None:
        storage.set("k", {"v": 1})
        storage.set("k", {"v": 2})
        assert storage.get("k") == {"v": 2}
        assert storage.get_size() == 1

    def test_delete(self, storage: CacheStorage) -> None:
        storage.set("k", {"v": 1})
        assert storage.delete("k") is True
        assert storage.get("k") is None
        assert storage.delete("k") is False
        assert storage.get_size() == 0

    # -- counters and stats ------------------------------------------------------------------

    def test_hits_misses_and_hit_rate(self, storage: CacheStorage) -> None:
        storage.set("a", {"v": 1})
        storage.get("a")
        storage.get("a")
        storage.get("b")
        stats = storage.get_stats()
        assert (stats["hits"], stats["misses"]) == (2, 1)
        assert stats["hit_rate"] == 66.67
        assert stats["size"] == 1
        assert stats["max_size"] == 100
        assert stats["backend"] == storage.backend_name

    def test_hit_rate_is_zero_without_lookups(self, storage: CacheStorage) -> None:
        assert storage.get_stats()["hit_rate"] == 0.0

    def test_clear_resets_entries_and_counters(self, storage: CacheStorage) -> None:
        for i in range(5):
            storage.set(f"k{i}", {"v": i})
        storage.get("k0")
        storage.get("zz")
        storage.clear()
        assert storage.get_size() == 0
        assert storage.get_counters() == (0, 0)
        assert storage.get_lru_key() is None
        assert storage.get_bytes("k0") is None

    # -- LRU ---------------------------------------------------------------------------------

    def test_lru_scenario(self, make_storage: MakeStorage) -> None:
        storage = make_storage(max_size=5)
        for i in range(5):
            storage.set(f"key{i}", {"v": i})
        assert storage.get("key0") == {"v": 0}
        storage.set("key5", {"v": 5})
        assert storage.get_size() == 5
        assert storage.get("key1") is None
        for key in ("key0", "key2", "key3", "key4", "key5"):
            assert storage.get(key) is not None, key

    def test_size_never_exceeds_max_size(self, make_storage: MakeStorage) -> None:
        storage = make_storage(max_size=5)
        for i in range(20):
            storage.set(f"k{i}", {"v": i})
            assert storage.get_size() == min(i + 1, 5)
        assert [storage.get(f"k{i}") for i in range(15, 20)] == [{"v": i} for i in range(15, 20)]

    def test_get_lru_key(self, storage: CacheStorage) -> None:
        assert storage.get_lru_key() is None
        for i in range(3):
            storage.set(f"k{i}", {"v": i})
        assert storage.get_lru_key() == "k0"
        storage.get("k0")
        assert storage.get_lru_key() == "k1"
        storage.set("k1", {"v": "new"})  # an overwrite is a use
        assert storage.get_lru_key() == "k2"

    def test_update_access_time_affects_lru(self, make_storage: MakeStorage) -> None:
        storage = make_storage(max_size=3)
        for i in range(3):
            storage.set(f"k{i}", {"v": i})
        storage.update_access_time("k0")
        assert storage.get_lru_key() == "k1"
        storage.set("k3", {"v": 3})
        assert storage.get_bytes("k0") is not None
        assert storage.get_bytes("k1") is None

    def test_update_access_time_of_missing_key_is_harmless(self, storage: CacheStorage) -> None:
        storage.update_access_time("ghost")
        assert storage.get_size() == 0
        assert storage.get_lru_key() is None

    def test_evict_lru(self, storage: CacheStorage) -> None:
        assert storage.evict_lru() is False
        storage.set("a", {"v": 1})
        storage.set("b", {"v": 2})
        storage.get("a")
        assert storage.evict_lru() is True
        assert storage.get_size() == 1
        assert storage.get_bytes("b") is None
        assert storage.get_bytes("a") is not None

    def test_is_full(self, make_storage: MakeStorage) -> None:
        storage = make_storage(max_size=2)
        assert storage.max_size == 2
        assert not storage.is_full()
        storage.set("a", {"v": 1})
        assert not storage.is_full()
        storage.set("b", {"v": 2})
        assert storage.is_full()
        storage.delete("a")
        assert not storage.is_full()

    # -- TTL ---------------------------------------------------------------------------------

    def test_default_ttl_expires_entries(self, make_storage: MakeStorage) -> None:
        storage = make_storage(max_size=10, ttl=TTL)
        storage.set("k", {"v": 1})
        assert storage.get("k") == {"v": 1}
        time.sleep(TTL + 0.05)
        assert storage.get("k") is None
        assert storage.get_counters() == (1, 1)
        assert storage.get_size() == 0  # an expired entry is removed, not just hidden

    def test_per_entry_ttl(self, make_storage: MakeStorage) -> None:
        storage = make_storage(max_size=10)
        storage.set("short", {"v": 1}, ttl=TTL)
        storage.set("forever", {"v": 2})
        assert storage.get("short") == {"v": 1}
        time.sleep(TTL + 0.05)
        assert storage.get("short") is None
        assert storage.get("forever") == {"v": 2}

    def test_per_entry_ttl_overrides_default(self, make_storage: MakeStorage) -> None:
        storage = make_storage(max_size=10, ttl=TTL)
        storage.set("long", {"v": 1}, ttl=60)
        storage.set("default", {"v": 2})
        time.sleep(TTL + 0.05)
        assert storage.get("long") == {"v": 1}
        assert storage.get("default") is None

    def test_overwrite_renews_ttl(self, make_storage: MakeStorage) -> None:
        storage = make_storage(max_size=10)
        storage.set("k", {"v": 1}, ttl=TTL)
        storage.set("k", {"v": 2})  # no TTL any more
        time.sleep(TTL + 0.05)
        assert storage.get("k") == {"v": 2}

    # -- corrupt values ----------------------------------------------------------------------

    @pytest.mark.parametrize(
        "garbage", [b"", b"\x00\xff garbage", b"j{not json", b"zXXXX", encode_value({"v": 1})[:-1]]
    )
    def test_corrupt_value_is_a_miss_and_logged(
        self, storage: CacheStorage, garbage: bytes, caplog: pytest.LogCaptureFixture
    ) -> None:
        storage.set_bytes("bad", garbage)
        with caplog.at_level(logging.WARNING):
            assert storage.get("bad") is None
        assert any("bad" in r.getMessage() for r in caplog.records)
        assert storage.get_bytes("bad") is None  # dropped, so it is not decoded again
        storage.set("bad", {"v": "fixed"})
        assert storage.get("bad") == {"v": "fixed"}

    def test_json_that_is_not_an_object_is_corrupt(self, storage: CacheStorage) -> None:
        storage.set_bytes("list", b"j[1,2,3]")
        assert storage.get("list") is None

    def test_a_corrupt_value_counts_as_a_miss(self, storage: CacheStorage) -> None:
        storage.set_bytes("bad", b"\x00garbage")
        storage.set("good", {"v": 1})
        assert storage.get("bad") is None
        assert storage.get("good") == {"v": 1}
        stats = storage.get_stats()
        assert (stats["hits"], stats["misses"]) == (1, 1)

    async def test_async_corrupt_value_counts_as_a_miss(self, storage: CacheStorage) -> None:
        await storage.aset_bytes("bad", b"\x00garbage")
        assert await storage.aget("bad") is None
        stats = await storage.aget_stats()
        assert (stats["hits"], stats["misses"]) == (0, 1)

    # -- concurrency -------------------------------------------------------------------------

    def test_many_threads(self, make_storage: MakeStorage) -> None:
        storage = make_storage(max_size=40)
        errors: list[BaseException] = []
        gets = 8 * 150 // 2
        start = threading.Barrier(8)

        def work(t: int) -> None:
            try:
                start.wait()
                for i in range(150):
                    key = f"k{(t * 7 + i) % 60}"
                    if i % 2:
                        value = storage.get(key)
                        assert value is None or value["key"] == key, (key, value)
                    else:
                        storage.set(key, {"key": key, "by": t, "pad": key * 50})
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        hits, misses = storage.get_counters()
        assert hits + misses == gets
        assert 0 < storage.get_size() <= 40
        survivors = [storage.get(f"k{i}") for i in range(60)]
        for i, value in enumerate(survivors):
            assert value is None or value["key"] == f"k{i}"

    # -- async -------------------------------------------------------------------------------

    async def test_async_counterparts(self, storage: CacheStorage) -> None:
        await storage.aset("a", {"v": 1}, metadata={"provider": "openai"})
        await storage.aset("b", {"v": 2}, ttl=60)
        assert await storage.aget("a") == {"v": 1}
        assert await storage.aget("missing") is None
        await storage.aset_bytes("raw", b"\x00\x01")
        assert await storage.aget_bytes("raw") == b"\x00\x01"
        assert await storage.aget_size() == 3
        stats = await storage.aget_stats()
        assert (stats["hits"], stats["misses"], stats["size"]) == (2, 1, 3)
        assert await storage.adelete("a") is True
        assert await storage.adelete("a") is False
        await storage.ahealth_check()
        await storage.aclear()
        assert await storage.aget_size() == 0
        assert (await storage.aget_stats())["hits"] == 0

    async def test_async_corrupt_value_is_a_miss(self, storage: CacheStorage) -> None:
        await storage.aset_bytes("bad", b"\x00garbage")
        assert await storage.aget("bad") is None
        assert await storage.aget_bytes("bad") is None

    def test_health_check_and_close(self, storage: CacheStorage) -> None:
        storage.health_check()
        storage.set("k", {"v": 1})
        storage.close()

    # -- entries (operator tools) ------------------------------------------------------------

    def test_iter_entries_lists_live_entries_with_their_info(self, storage: CacheStorage) -> None:
        before = time.time()
        meta = {"provider": "openai", "model": "gpt-4o-mini", "endpoint": "/chat/completions"}
        storage.set("a", chat_value(1), metadata=meta)
        storage.set("b", {"v": 2})
        storage.set("gone", {"v": 3}, ttl=TTL)
        storage.get("a")
        storage.get("a")
        time.sleep(TTL + 0.05)
        entries = {e.key: e for e in storage.iter_entries()}
        assert set(entries) == {"a", "b"}  # the expired one is not listed
        a, b = entries["a"], entries["b"]
        assert a.data == encode_value(chat_value(1)) and b.data == encode_value({"v": 2})
        assert a.info["size"] == len(a.data)
        assert (a.info["provider"], a.info["model"]) == ("openai", "gpt-4o-mini")
        assert a.info["endpoint"] in ("/chat/completions", None)  # SQLite keeps no endpoint
        assert b.info["provider"] is None and b.info["model"] is None
        created = a.info["created"]
        assert created is not None and before - 1 <= created <= time.time() + 1
        assert a.info["expires"] is None
        last_hit = a.info["last_hit"]
        assert last_hit is not None and last_hit >= created
        assert b.info["last_hit"] is None
        if self.TRACKS_HITS:
            assert (a.info["hits"], b.info["hits"]) == (2, 0)

    def test_iter_entries_counts_nothing_and_keeps_lru_order(self, storage: CacheStorage) -> None:
        for i in range(3):
            storage.set(f"k{i}", {"v": i}, ttl=60 if i == 2 else None)
        storage.get("k0")
        counters = storage.get_counters()
        entries = list(storage.iter_entries())
        assert sorted(e.key for e in entries) == ["k0", "k1", "k2"]
        expires = next(e.info["expires"] for e in entries if e.key == "k2")
        assert expires is not None and time.time() + 50 < expires < time.time() + 70
        assert storage.get_counters() == counters
        assert storage.get_lru_key() == "k1"
        assert storage.peek_entry("k1") is not None
        assert storage.get_counters() == counters
        assert storage.get_lru_key() == "k1"

    def test_peek_entry(self, storage: CacheStorage) -> None:
        key = "clé:ü/ 1\n" + "x" * 300
        storage.set(key, {"v": 1}, metadata={"provider": "anthropic", "model": "claude"})
        entry = storage.peek_entry(key)
        assert entry is not None
        assert entry.key == key and entry.data == encode_value({"v": 1})
        assert entry.info["provider"] == "anthropic"
        assert storage.peek_entry("missing") is None
        storage.set("short", {"v": 1}, ttl=TTL)
        time.sleep(TTL + 0.05)
        assert storage.peek_entry("short") is None

    def test_iter_entries_reads_every_entry_once_past_batch_sizes(
        self, make_storage: MakeStorage
    ) -> None:
        storage = make_storage(max_size=5000)
        keys = {f"key-{i}" for i in range(1234)}
        for key in keys:
            storage.set_bytes(key, key.encode())
        seen = [(e.key, e.data) for e in storage.iter_entries()]
        assert len(seen) == len(keys)
        assert {k for k, _ in seen} == keys
        assert all(data == key.encode() for key, data in seen)

    def test_entries_can_be_deleted_while_iterating(self, storage: CacheStorage) -> None:
        for i in range(50):
            storage.set(f"k{i}", {"v": i})
        removed = sum(storage.delete(e.key) for e in storage.iter_entries() if e.key != "k7")
        assert removed == 49
        assert [e.key for e in storage.iter_entries()] == ["k7"]
        assert storage.get_size() == 1

    def test_set_many_bytes_stores_a_batch_like_set_bytes(self, make_storage: MakeStorage) -> None:
        storage = make_storage(max_size=10)
        storage.set_bytes("old", b"jold")
        meta = {"provider": "openai", "model": "m"}
        items = [(f"k{i}", f"v{i}".encode(), meta, None) for i in range(6)]
        items.append(("short", b"vshort", None, TTL))
        assert storage.set_many_bytes(items) == 7
        assert storage.get_size() == 8
        assert [storage.get_bytes(f"k{i}") for i in range(6)] == [
            f"v{i}".encode() for i in range(6)
        ]
        entry = storage.peek_entry("k3")
        assert entry is not None and entry.info["provider"] == "openai"
        time.sleep(TTL + 0.05)
        assert storage.get_bytes("short") is None
        # a batch larger than the room left evicts the least recently used, as set_bytes does
        storage.get_bytes("old")
        assert storage.set_many_bytes([(f"n{i}", b"jn", None, None) for i in range(8)]) == 8
        assert storage.get_size() == 10
        assert storage.get_bytes("old") is not None  # recently used, so kept
        assert storage.set_many_bytes([]) == 0
