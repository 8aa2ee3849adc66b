"""Vector indexes: one behaviour suite run over memory, SQLite and Redis."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from llm_cache.semantic.embedders import normalize_rows
from llm_cache.semantic.index import MemoryIndex, PartitionVectors, VectorIndex
from llm_cache.semantic.redis_index import RedisIndex
from llm_cache.semantic.sqlite_index import SQLiteIndex

DIM = 8


def vec(*values: float) -> Any:
    padded = list(values) + [0.0] * (DIM - len(values))
    return normalize_rows([padded])[0]


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def make_index(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Callable[..., VectorIndex]]:
    made: list[VectorIndex] = []

    def factory(max_entries: int = 1000) -> VectorIndex:
        index: VectorIndex
        if request.param == "memory":
            index = made[0] if made else MemoryIndex(max_entries=max_entries)
        elif request.param == "sqlite":
            index = SQLiteIndex(tmp_path / "cache.db", max_entries=max_entries)
        else:
            storage = request.getfixturevalue("make_redis_storage")()
            index = RedisIndex(
                storage._aclient,
                storage.namespace,
                max_entries=max_entries,
                max_partitions=max_entries,
            )
        made.append(index)
        return index

    yield factory
    for index in made:
        await index.close()


async def test_search_finds_the_closest_above_threshold(
    make_index: Callable[..., VectorIndex],
) -> None:
    index = make_index()
    await index.add("p", "q1", vec(1, 0), "k1")
    await index.add("p", "q2", vec(1, 1), "k2")
    await index.add("p", "q3", vec(0, 1), "k3")
    found = await index.search("p", vec(1, 0.1), 0.5)
    assert found is not None and found[0] == "k1" and found[1] == pytest.approx(0.995, abs=1e-3)
    candidates = await index.candidates("p", vec(1, 0.1), 0.5)
    assert [c.entry_key for c in candidates] == ["k1", "k2"]
    assert candidates[0].text == "q1"
    assert await index.search("p", vec(-1, 0), 0.5) is None
    assert await index.search("other", vec(1, 0), 0.0) is None
    assert await index.size() == 3


async def test_partitions_never_mix(make_index: Callable[..., VectorIndex]) -> None:
    index = make_index()
    await index.add("a", "q", vec(1, 0), "ka")
    await index.add("b", "q", vec(1, 0), "kb")
    assert (await index.search("a", vec(1, 0), 0.9))[0] == "ka"  # type: ignore[index]
    assert (await index.search("b", vec(1, 0), 0.9))[0] == "kb"  # type: ignore[index]


async def test_readding_replaces_and_forget_removes(make_index: Callable[..., VectorIndex]) -> None:
    index = make_index()
    await index.add("p", "old", vec(1, 0), "k")
    assert await index.search("p", vec(1, 0), 0.9) is not None  # mirrored now
    await index.add("p", "new", vec(0, 1), "k")
    assert await index.search("p", vec(1, 0), 0.9) is None
    found = await index.candidates("p", vec(0, 1), 0.9)
    assert [(c.entry_key, c.text) for c in found] == [("k", "new")]
    await index.forget("p", "k")
    assert await index.search("p", vec(0, 1), 0.0) is None


async def test_a_second_process_sees_adds_and_removals(
    make_index: Callable[..., VectorIndex],
) -> None:
    first, second = make_index(), make_index()
    await first.add("p", "q1", vec(1, 0), "k1")
    assert (await second.search("p", vec(1, 0), 0.9))[0] == "k1"  # type: ignore[index]
    await first.add("p", "q2", vec(0, 1), "k2")
    assert (await second.search("p", vec(0, 1), 0.9))[0] == "k2"  # type: ignore[index]
    await first.forget("p", "k1")
    assert await second.search("p", vec(1, 0), 0.9) is None
    await first.clear()
    assert await second.search("p", vec(0, 1), 0.0) is None
    assert await second.size() == 0


async def test_size_stays_bounded(make_index: Callable[..., VectorIndex]) -> None:
    index = make_index(max_entries=10)
    for i in range(200):
        await index.add(f"p{i % 3}", f"q{i}", vec(1, i / 200), f"k{i}")
    assert await index.size() <= 2 * 10 + 64  # pruned in batches, never unbounded
    newest = await index.candidates("p2", vec(1, 197 / 200), 0.999999)
    assert "k197" in {c.entry_key for c in newest}


async def test_limit_returns_the_best_in_order(make_index: Callable[..., VectorIndex]) -> None:
    index = make_index()
    rng = np.random.default_rng(7)
    vectors = normalize_rows(rng.normal(size=(50, DIM)))
    for i, v in enumerate(vectors):
        await index.add("p", f"q{i}", v, f"k{i}")
    query = vectors[13]
    best = await index.candidates("p", query, -1.0, limit=5)
    expected = np.argsort(-(vectors @ query))[:5]
    assert [c.entry_key for c in best] == [f"k{i}" for i in expected]


def test_partition_vectors_extend_replaces_repeated_keys() -> None:
    block = PartitionVectors(DIM)
    block.add("a", "old a", vec(1, 0))
    block.extend(["b", "a"], ["b", "new a"], np.stack([vec(0, 1), vec(0, 0, 1)]))
    assert sorted(zip(block.keys, block.texts, strict=True)) == [("a", "new a"), ("b", "b")]
    block.extend(["c", "c"], ["c1", "c2"], np.stack([vec(1, 1), vec(1, -1)]))
    found = block.search(vec(1, -1), 0.99, 5)
    assert [(c.entry_key, c.text) for c in found] == [("c", "c2")]
    many = [f"k{i}" for i in range(100)]
    block.extend(many, many, normalize_rows(np.ones((100, DIM))))
    assert len(block) == 103
    assert block.search(vec(0, 0, 1), 0.99, 5)[0].entry_key == "a"


async def test_redis_index_on_a_cluster(redis_cluster: Any) -> None:
    """Every key of the index carries the namespace's hash tag: no command crosses slots."""
    from llm_cache.cache.redis_storage import RedisStorage

    storage = RedisStorage(cluster=True, url=redis_cluster.url, namespace=f"t-{uuid.uuid4().hex}")
    vectors = normalize_rows(np.random.default_rng(11).normal(size=(12, DIM)))
    one = RedisIndex(storage._aclient, storage.namespace, max_entries=5, max_partitions=3)
    two = RedisIndex(storage._aclient, storage.namespace)
    try:
        for i in range(12):  # past the cap: the log is trimmed to the newest 5
            await one.add("p0", f"q{i}", vectors[i], f"k{i}")
        await one.forget("p0", "k11")
        assert [c.entry_key for c in await two.candidates("p0", vectors[8], 0.999)] == ["k8"]
        assert await two.search("p0", vectors[2], 0.999) is None  # trimmed away
        assert await two.search("p0", vectors[11], 0.999) is None  # forgotten
        for name in ("p1", "p2", "p3"):  # a fourth partition prunes the oldest (p0)
            await one.add(name, "q", vec(0, 1), "k")
        assert (
            await RedisIndex(storage._aclient, storage.namespace).search("p0", vec(1, 8), 0.0)
            is None
        )
        assert (await two.search("p3", vec(0, 1), 0.999)) == ("k", pytest.approx(1.0))
        await one.clear()
        assert await two.search("p3", vec(0, 1), 0.0) is None
    finally:
        storage.clear()
        await storage.aclose()
