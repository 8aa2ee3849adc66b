"""RedisStorage against the shared backend contract, plus what only a shared network store does:
replicas sharing entries and counters, eviction under concurrent writers, TTL keeping the LRU
index exact, failing fast and reconnecting, cross-process locks."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis

from llm_cache.cache.redis_storage import RedisStorage
from llm_cache.cache.storage import StorageError
from llm_cache.config import Config
from tests.support.redis_servers import RedisServer, spawn_redis_server

from .backend_contract import BackendContract, MakeStorage

MakeRedis = Callable[..., RedisStorage]


class TestRedisStorage(BackendContract):
    @pytest.fixture
    async def make_storage(self, make_redis_storage: MakeRedis) -> AsyncIterator[MakeStorage]:
        made: list[RedisStorage] = []

        def make(max_size: int = 1000, ttl: float | None = None) -> RedisStorage:
            made.append(make_redis_storage(max_size=max_size, ttl=ttl))
            return made[-1]

        yield make
        for storage in made:  # in the test's event loop, so async connections close cleanly
            await storage.aclose()


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def private_server() -> Iterator[RedisServer]:
    with spawn_redis_server() as server:
        yield server


def ns_keys(raw: redis.Redis, namespace: str) -> set[bytes]:
    return set(raw.scan_iter(match=f"*{namespace}*", count=1000))


# -- construction ---------------------------------------------------------------------------------


def test_module_imports_without_redis_and_constructor_gives_install_hint() -> None:
    code = (
        "import sys; sys.modules['redis'] = None\n"
        "import llm_cache.cache.redis_storage as m\n"
        "try:\n    m.RedisStorage()\nexcept ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'llm-caching[redis]'" in out.stdout


def test_construction_is_lazy_and_failure_is_a_fast_storage_error() -> None:
    from tests.support.redis_servers import free_port

    port = free_port()  # nothing listens there
    for cluster in (False, True):
        storage = RedisStorage(host="127.0.0.1", port=port, cluster=cluster)  # no connection yet
        started = time.monotonic()
        with pytest.raises(StorageError):
            storage.get("k")
        with pytest.raises(StorageError):
            storage.health_check()
        assert time.monotonic() - started < 2.0
        storage.close()


def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError):
        RedisStorage(max_size=0)
    with pytest.raises(ValueError):
        RedisStorage(namespace="a{b}")
    with pytest.raises(ValueError):
        RedisStorage(cluster=True, db=3)


def test_from_config_url_wins(redis_url: str) -> None:
    from tests.support.redis_servers import free_port

    config = Config(
        env={},
        dotenv_path=None,
        backend="redis",
        redis_url=redis_url,
        redis_host="127.0.0.1",
        redis_port=free_port(),  # would fail if used
        max_size=7,
        ttl=30.0,
    )
    storage = config.get_storage()
    assert isinstance(storage, RedisStorage)
    assert (storage.max_size, storage.ttl, storage.cluster) == (7, 30.0, False)
    storage.health_check()  # PING only: no keys written outside this test's namespace
    kwargs = storage._client().connection_pool.connection_kwargs
    assert kwargs["port"] == urlsplit(redis_url).port
    storage.close()


def test_from_config_host_port_db(redis_url: str) -> None:
    url = urlsplit(redis_url)
    host, port, db = url.hostname, url.port, int(url.path.strip("/") or 0)
    config = Config(
        env={},
        dotenv_path=None,
        redis_host=host,
        redis_port=port,
        redis_db=db,
    )
    storage = RedisStorage.from_config(config)
    storage.health_check()
    kwargs = storage._client().connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == (host, port, db)
    storage.close()


def test_rediss_url_uses_tls_and_timeouts_are_set() -> None:
    storage = RedisStorage(url="rediss://:secret@example.invalid:6380/2", socket_timeout=0.7)
    pool = storage._client().connection_pool  # built, not connected
    assert pool.connection_class is redis.SSLConnection
    assert pool.connection_kwargs["socket_timeout"] == 0.7
    assert pool.connection_kwargs["socket_connect_timeout"] == 0.25
    assert pool.connection_kwargs["db"] == 2
    assert "secret" not in repr(storage)


# -- layout and atomicity ---------------------------------------------------------------------


def test_keys_stay_in_the_namespace_and_one_round_trip_per_operation(
    make_redis_storage: MakeRedis, raw: redis.Redis, redis_namespace: str
) -> None:
    storage = make_redis_storage(max_size=2)
    storage.set("warm", {"v": 0})  # loads the scripts
    storage.get("warm")
    client = storage._client()
    calls: list[tuple[Any, ...]] = []
    original = client.execute_command

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return original(*args, **kwargs)

    client.execute_command = counting
    storage.set("a", {"v": 1}, metadata={"provider": "openai", "model": "gpt-4o"})
    storage.set("b", {"v": 2})  # evicts "warm" in the same script
    assert storage.get("a") == {"v": 1}
    assert storage.get("zzz") is None
    assert [c[0] for c in calls] == ["EVALSHA"] * 4

    tag = "{" + redis_namespace + "}"
    assert ns_keys(raw, redis_namespace) == {
        f"{tag}:v:a".encode(),
        f"{tag}:v:b".encode(),
        f"{tag}:lru".encode(),
        f"{tag}:stats".encode(),
    }
    info = storage.get_metadata("a")
    assert info is not None
    assert info["provider"] == "openai" and info["model"] == "gpt-4o"
    assert abs(info["created"] - time.time()) < 60 and info["size"] > 0
    assert storage.get_metadata("nope") is None


def test_scripts_reload_after_script_flush() -> None:
    with spawn_redis_server() as server:
        storage = RedisStorage(url=server.url)
        storage.set("k", {"v": 1})
        redis_client = redis.Redis(port=server.port)
        redis_client.script_flush()
        assert storage.get("k") == {"v": 1}  # EVALSHA misses, EVAL runs and caches it again
        redis_client.close()
        storage.close()


def test_clear_touches_only_its_namespace(
    make_redis_storage: MakeRedis, raw: redis.Redis, redis_namespace: str
) -> None:
    mine = make_redis_storage(namespace=redis_namespace + "*")  # glob characters are escaped
    other = make_redis_storage(namespace=redis_namespace + "x")
    mine.set("k", {"v": 1})
    other.set("k", {"v": 2})
    raw.set(f"{redis_namespace}:plain", b"1")
    mine.clear()
    assert mine.get_size() == 0
    assert other.get("k") == {"v": 2}
    assert raw.get(f"{redis_namespace}:plain") == b"1"
    other.clear()


# -- replicas ---------------------------------------------------------------------------------


def test_two_replicas_share_entries_counters_and_recency(make_redis_storage: MakeRedis) -> None:
    one, two = make_redis_storage(max_size=3), make_redis_storage(max_size=3)
    one.set("a", {"v": "a"})
    two.set("b", {"v": "b"})
    one.set("c", {"v": "c"})
    assert two.get("a") == {"v": "a"}  # a is now the most recent, for both
    assert one.get("nope") is None
    assert one.get_lru_key() == two.get_lru_key() == "b"
    two.set("d", {"v": "d"})  # evicts b, the least recently used across replicas
    assert one.get("b") is None
    for storage in (one, two):
        stats = storage.get_stats()
        assert (stats["size"], stats["hits"], stats["misses"]) == (3, 1, 2)
    assert two.delete("a") is True
    assert one.get_bytes("a") is None
    two.clear()
    assert one.get_counters() == (0, 0)


def test_concurrent_writers_on_several_replicas_respect_max_size(
    make_redis_storage: MakeRedis,
) -> None:
    replicas = [make_redis_storage(max_size=25) for _ in range(4)]
    errors: list[BaseException] = []
    sizes: list[int] = []
    start = threading.Barrier(8)

    def writer(n: int) -> None:
        storage = replicas[n % len(replicas)]
        try:
            start.wait()
            for i in range(60):
                storage.set(f"w{n}-{i}", {"n": n, "i": i})
                if i % 10 == 0:
                    sizes.append(storage.get_size())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert max(sizes) <= 25
    assert replicas[0].get_size() == 25
    # the survivors are real entries: every indexed key has its value
    survivors = [k for n in range(8) for i in range(60) if replicas[1].get(k := f"w{n}-{i}")]
    assert len(survivors) == 25


# -- TTL and the index ------------------------------------------------------------------------


def test_expired_entries_leave_the_index_without_being_read(
    make_redis_storage: MakeRedis, raw: redis.Redis, redis_namespace: str
) -> None:
    storage = make_redis_storage(max_size=100)
    for i in range(5):
        storage.set(f"short{i}", {"i": i}, ttl=0.15)
    for i in range(5):
        storage.set(f"long{i}", {"i": i})
    assert storage.get_size() == 10
    assert storage.get_lru_key() == "short0"
    time.sleep(0.25)
    assert storage.get_size() == 5  # no get touched the expired keys
    assert storage.get_lru_key() == "long0"
    tag = "{" + redis_namespace + "}"
    assert raw.zcard(f"{tag}:lru") == 5
    assert raw.zcard(f"{tag}:exp") == 0
    assert storage.get_counters() == (0, 0)


def test_eviction_prefers_expired_entries_to_live_ones(make_redis_storage: MakeRedis) -> None:
    storage = make_redis_storage(max_size=4)
    storage.set("live0", {"v": 0})
    storage.set("live1", {"v": 1})
    storage.set("dead0", {"v": 0}, ttl=0.1)
    storage.set("dead1", {"v": 1}, ttl=0.1)
    time.sleep(0.2)
    storage.set("new0", {"v": 0})
    storage.set("new1", {"v": 1})
    assert storage.get_size() == 4
    assert storage.get("live0") == {"v": 0}  # the oldest live entry survived
    assert storage.get("live1") == {"v": 1}


def test_removing_ttl_on_overwrite_keeps_the_entry_counted(make_redis_storage: MakeRedis) -> None:
    storage = make_redis_storage()
    storage.set("k", {"v": 1}, ttl=0.1)
    storage.set("k", {"v": 2})
    time.sleep(0.2)
    assert storage.get_size() == 1
    assert storage.get("k") == {"v": 2}


def test_non_positive_ttl_stores_nothing(make_redis_storage: MakeRedis) -> None:
    storage = make_redis_storage()
    storage.set("k", {"v": 1})
    storage.set("k", {"v": 2}, ttl=0)
    assert storage.get("k") is None
    assert storage.get_size() == 0


def test_value_deleted_behind_our_back_is_dropped_from_the_index_on_get(
    make_redis_storage: MakeRedis, raw: redis.Redis, redis_namespace: str
) -> None:
    storage = make_redis_storage()
    storage.set("a", {"v": 1})
    storage.set("b", {"v": 2})
    raw.delete("{" + redis_namespace + "}:v:a")
    assert storage.get("a") is None
    assert storage.get_size() == 1


# -- failures ---------------------------------------------------------------------------------


def test_server_down_gives_storage_error_fast_then_same_instance_reconnects(
    private_server: RedisServer,
) -> None:
    storage = RedisStorage(url=private_server.url, max_size=10)
    storage.set("k", {"v": 1})
    assert storage.get("k") == {"v": 1}
    private_server.stop()
    ops: list[Callable[[], Any]] = [
        lambda: storage.get("k"),
        lambda: storage.set("x", {"v": 2}),
        storage.get_stats,
    ]
    for op in ops:
        started = time.monotonic()
        with pytest.raises(StorageError):
            op()
        assert time.monotonic() - started < 1.0
    private_server.start()  # same port, empty (nothing persisted)
    assert storage.get("k") is None
    storage.set("k", {"v": 3})
    assert storage.get("k") == {"v": 3}
    storage.close()


def test_server_killed_while_connected_then_back(private_server: RedisServer) -> None:
    storage = RedisStorage(url=private_server.url)
    storage.set("k", {"v": 1})
    private_server.kill()
    private_server.start()
    storage.set("k", {"v": 2})  # the pooled connection is dead; one retry on a fresh one
    assert storage.get("k") == {"v": 2}
    storage.close()


def test_slow_server_times_out(private_server: RedisServer) -> None:
    storage = RedisStorage(url=private_server.url, socket_timeout=0.2)
    storage.set("k", {"v": 1})
    admin = redis.Redis(port=private_server.port)
    admin.client_pause(600, all=True)  # the server stops answering
    started = time.monotonic()
    with pytest.raises(StorageError):
        storage.get("k")
    assert time.monotonic() - started < 0.5
    admin.close()
    time.sleep(0.5)
    assert storage.get("k") == {"v": 1}  # after the pause, the same instance answers again
    storage.close()


async def test_async_server_down_then_back(private_server: RedisServer) -> None:
    storage = RedisStorage(url=private_server.url)
    await storage.aset("k", {"v": 1})
    private_server.stop()
    started = time.monotonic()
    with pytest.raises(StorageError):
        await storage.aget("k")
    with pytest.raises(StorageError):
        await storage.ahealth_check()
    assert time.monotonic() - started < 1.0
    private_server.start()
    assert await storage.aget("k") is None
    await storage.aset("k", {"v": 2})
    assert await storage.aget("k") == {"v": 2}
    await storage.aclose()


# -- async ------------------------------------------------------------------------------------


async def test_async_lru_and_replicas(make_redis_storage: MakeRedis) -> None:
    one, two = make_redis_storage(max_size=2), make_redis_storage(max_size=2)
    await one.aset("a", {"v": 1})
    await two.aset("b", {"v": 2})
    assert await two.aget("a") == {"v": 1}
    await one.aupdate_access_time("b")
    assert await one.aget_lru_key() == "a"
    await two.aset("c", {"v": 3})
    assert await one.aget("a") is None
    results = await asyncio.gather(*(one.aget(k) for k in ("b", "c") * 10))
    assert all(r is not None for r in results)
    assert (await two.aget_stats())["hits"] == 21
    await one.aclose()
    await two.aclose()


def test_same_instance_serves_several_event_loops(make_redis_storage: MakeRedis) -> None:
    storage = make_redis_storage()

    async def roundtrip(n: int, close: bool) -> Any:
        await storage.aset("k", {"n": n})
        value = await storage.aget("k")
        if close:
            await storage.aclose()  # closes this loop's connections; the instance stays usable
        return value

    assert asyncio.run(roundtrip(1, close=False)) == {"n": 1}
    # a client bound to the first (now closed) loop would fail here: a new loop gets its own
    assert asyncio.run(roundtrip(2, close=True)) == {"n": 2}
    assert asyncio.run(roundtrip(3, close=True)) == {"n": 3}


# -- locks ------------------------------------------------------------------------------------


def test_lock_is_exclusive_and_only_the_holder_unlocks(make_redis_storage: MakeRedis) -> None:
    one, two = make_redis_storage(), make_redis_storage()
    token = one.try_lock("key", ttl=5)
    assert token is not None
    assert two.try_lock("key", ttl=5) is None
    assert two.is_locked("key")
    assert two.unlock("key", "not-the-token") is False
    assert two.wait_unlocked("key", timeout=0.05) is False
    threading.Timer(0.1, one.unlock, args=("key", token)).start()
    assert two.wait_unlocked("key", timeout=2) is True
    assert one.unlock("key", token) is False  # already released
    assert two.try_lock("key", ttl=5) is not None
    assert one.get_size() == 0  # locks are not entries


def test_lock_expires_when_its_holder_dies(redis_url: str, redis_namespace: str) -> None:
    code = (
        "import sys, time\n"
        "from llm_cache.cache.redis_storage import RedisStorage\n"
        f"s = RedisStorage(url={redis_url!r}, namespace={redis_namespace!r})\n"
        "print(s.try_lock('job', ttl=0.4), flush=True)\n"
        "time.sleep(60)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() not in ("", "None")
        storage = RedisStorage(url=redis_url, namespace=redis_namespace)
        assert storage.try_lock("job", ttl=5) is None
        holder.kill()  # dies without unlocking
        holder.wait()
        assert storage.wait_unlocked("job", timeout=2) is True
        assert storage.try_lock("job", ttl=5) is not None
        storage.close()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()


async def test_async_locks(make_redis_storage: MakeRedis) -> None:
    one, two = make_redis_storage(), make_redis_storage()
    token = await one.atry_lock("k", ttl=0.3)
    assert token is not None
    assert await two.atry_lock("k", ttl=5) is None
    assert await two.ais_locked("k")
    assert await two.await_unlocked("k", timeout=2) is True  # expired by itself
    assert await one.aunlock("k", token) is False
    token2 = await two.atry_lock("k", ttl=5)
    assert token2 is not None and await two.aunlock("k", token2) is True
    await one.aclose()
    await two.aclose()


def test_spawned_server_unpacks_as_port_and_process(private_server: RedisServer) -> None:
    port, process = private_server
    assert port == private_server.port and process.poll() is None
    private_server.restart()
    assert private_server.port == port and private_server.process is not process


def test_missing_redis_skips_locally_but_fails_on_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.support.redis_servers import unavailable

    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        unavailable("no redis")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="no redis"):
        unavailable("no redis")


def test_standalone_url_falls_back_to_a_private_server_then_skips(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.support import redis_servers

    monkeypatch.delenv(redis_servers.URL_ENV, raising=False)
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr(redis_servers, "SHARED_PORT", redis_servers.free_port())  # nobody there
    with redis_servers.standalone_redis_url() as url:
        port = urlsplit(url).port
        assert port is not None and port != redis_servers.SHARED_PORT
        assert redis_servers.ping(port)
    assert not redis_servers.ping(port)  # the private server is gone afterwards
    monkeypatch.setattr(redis_servers, "REDIS_SERVER", None)
    with pytest.raises(pytest.skip.Exception), redis_servers.standalone_redis_url():
        pass
