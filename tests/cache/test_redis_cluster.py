"""RedisStorage on a real 3-master Redis Cluster (spawned by the ``redis_cluster`` fixture):
the backend contract, and proof that a namespace's keys share one slot so no command crosses
slots (the cluster would answer CROSSSLOT otherwise)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from redis.cluster import RedisCluster, key_slot

from llm_cache.cache.redis_storage import RedisStorage
from llm_cache.cache.storage import StorageError
from llm_cache.config import Config
from tests.support.redis_servers import ClusterHandle

from .backend_contract import BackendContract, MakeStorage

MakeRedis = Callable[..., RedisStorage]


@pytest.fixture
def make_cluster_storage(redis_cluster: ClusterHandle) -> Iterator[MakeRedis]:
    made: list[RedisStorage] = []

    def make(**kwargs: object) -> RedisStorage:
        kwargs.setdefault("url", redis_cluster.url)
        kwargs.setdefault("namespace", f"test-{uuid.uuid4().hex[:12]}")
        made.append(RedisStorage(cluster=True, **kwargs))  # type: ignore[arg-type]
        return made[-1]

    yield make
    for storage in made:
        storage.clear()
        storage.close()


@pytest.fixture
def raw_cluster(redis_cluster: ClusterHandle) -> Iterator[RedisCluster]:
    client = RedisCluster.from_url(redis_cluster.url)
    yield client
    client.close()


class TestRedisClusterStorage(BackendContract):
    @pytest.fixture
    async def make_storage(self, make_cluster_storage: MakeRedis) -> AsyncIterator[MakeStorage]:
        made: list[RedisStorage] = []

        def make(max_size: int = 1000, ttl: float | None = None) -> RedisStorage:
            made.append(make_cluster_storage(max_size=max_size, ttl=ttl))
            return made[-1]

        yield make
        for storage in made:
            await storage.aclose()


def _namespaces_on_distinct_masters(client: RedisCluster, count: int) -> list[str]:
    """Namespaces whose hash tags land on ``count`` different master nodes."""
    chosen: dict[str, str] = {}
    while len(chosen) < count:
        ns = f"test-{uuid.uuid4().hex[:12]}"
        node = client.get_node_from_key("{" + ns + "}:lru").name
        chosen.setdefault(node, ns)
    return list(chosen.values())


def test_namespace_keys_share_one_slot_on_one_node(
    make_cluster_storage: MakeRedis, raw_cluster: RedisCluster
) -> None:
    storage = make_cluster_storage(max_size=3, ttl=60)
    # plain keys that would hash to many different slots without the tag
    keys = [f"key-{i}" for i in range(6)]
    assert len({key_slot(k.encode()) for k in keys}) > 1
    for key in keys:
        storage.set(key, {"k": key}, metadata={"provider": "openai"})
    storage.get("key-5")
    storage.get("missing")
    assert storage.try_lock("key-5", ttl=5) is not None
    assert storage.get_size() == 3

    found = list(raw_cluster.scan_iter(match="*" + storage.namespace + "*", count=1000))
    assert len(found) >= 3 + 4  # 3 values, lru, exp, stats, lock
    slots = {key_slot(name) for name in found}
    assert len(slots) == 1
    owner = raw_cluster.get_node_from_key(found[0])
    for node in raw_cluster.get_primaries():
        on_node = list(
            raw_cluster.scan_iter(match="*" + storage.namespace + "*", target_nodes=node)
        )
        assert len(on_node) == (len(found) if node.name == owner.name else 0)


def test_namespaces_on_different_masters_work_side_by_side(
    make_cluster_storage: MakeRedis, raw_cluster: RedisCluster
) -> None:
    namespaces = _namespaces_on_distinct_masters(raw_cluster, 3)
    stores = [make_cluster_storage(namespace=ns, max_size=2) for ns in namespaces]
    for n, storage in enumerate(stores):
        for i in range(3):
            storage.set(f"k{i}", {"n": n, "i": i})
    for n, storage in enumerate(stores):
        assert storage.get_size() == 2
        assert storage.get("k0") is None
        assert storage.get("k2") == {"n": n, "i": 2}
    stores[0].clear()
    assert stores[0].get_size() == 0
    assert stores[1].get("k1") == {"n": 1, "i": 1}  # clear stayed in its own namespace


def test_replicas_share_entries_and_counters_on_the_cluster(
    make_cluster_storage: MakeRedis,
) -> None:
    one = make_cluster_storage(max_size=2)
    two = make_cluster_storage(max_size=2, namespace=one.namespace)
    one.set("a", {"v": 1})
    two.set("b", {"v": 2})
    assert two.get("a") == {"v": 1}
    two.set("c", {"v": 3})  # evicts b
    assert one.get("b") is None
    assert one.get_stats()["hits"] == two.get_stats()["hits"] == 1


async def test_async_on_the_cluster(make_cluster_storage: MakeRedis) -> None:
    storage = make_cluster_storage(max_size=2)
    for i in range(3):
        await storage.aset(f"k{i}", {"i": i})
    assert await storage.aget("k0") is None
    assert await storage.aget("k2") == {"i": 2}
    assert await storage.aget_size() == 2
    token = await storage.atry_lock("job", ttl=5)
    assert token is not None and await storage.aunlock("job", token)
    await storage.aclear()
    assert await storage.aget_size() == 0
    await storage.aclose()


def test_from_config_with_cluster_flag(redis_cluster: ClusterHandle) -> None:
    config = Config(env={}, dotenv_path=None, redis_url=redis_cluster.url, redis_cluster=True)
    storage = RedisStorage.from_config(config)
    assert storage.cluster
    storage.health_check()
    storage.close()


def test_unreachable_cluster_is_a_storage_error() -> None:
    from tests.support.redis_servers import free_port

    storage = RedisStorage(url=f"redis://127.0.0.1:{free_port()}", cluster=True)
    with pytest.raises(StorageError):
        storage.get("k")
    storage.close()
