"""Vector indexes: exact cosine search within one partition.

A partition holds the questions that differ from each other only in the last user message's
wording (same model, parameters, system prompt, earlier turns...), so it stays small even when
the cache is large, and an exact search over it is fast: a 10,000 x 256 float32 matrix times
one vector is ~1 ms of numpy (benchmarks/bench_semantic.py). No approximate index is needed,
and an exact one can never miss the best candidate.

An index stores pointers, not answers: ``(partition, text, vector) -> entry key``. The answer
stays in the cache storage under that key, so eviction, TTL and ``clear`` of the storage apply
to semantic hits too: a pointer whose entry is gone is simply a miss, and is then forgotten.

Backends: :class:`MemoryIndex` (in process), ``SQLiteIndex`` (a table in the cache's SQLite
file), ``RedisIndex`` (under the cache's namespace, shared by every replica). The last two
keep a per-process mirror of each partition's matrix and read only what changed since.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from llm_cache.semantic.embedders import Vectors


@dataclass(frozen=True, slots=True)
class Candidate:
    """A stored question close to the asked one."""

    entry_key: str
    text: str
    similarity: float


class PartitionVectors:
    """One partition's vectors as a growable matrix, with their entry keys and texts."""

    __slots__ = ("_matrix", "_rows", "_where", "keys", "texts")

    def __init__(self, dim: int) -> None:
        self._matrix = np.empty((8, dim), dtype=np.float32)
        self._rows = 0
        self._where: dict[str, int] = {}
        self.keys: list[str] = []
        self.texts: list[str] = []

    def __len__(self) -> int:
        return self._rows

    def add(self, entry_key: str, text: str, vector: Vectors) -> None:
        """Append (or replace, when ``entry_key`` is already there)."""
        self.remove(entry_key)
        if self._rows == self._matrix.shape[0]:
            grown = np.empty((self._rows * 2, self._matrix.shape[1]), dtype=np.float32)
            grown[: self._rows] = self._matrix[: self._rows]
            self._matrix = grown
        self._matrix[self._rows] = vector
        self._where[entry_key] = self._rows
        self._rows += 1
        self.keys.append(entry_key)
        self.texts.append(text)

    def extend(self, keys: list[str], texts: list[str], matrix: Vectors) -> None:
        """Append many rows at once (a partition read from storage); rows whose key is
        already present (or repeated) replace it, in order."""
        if len(set(keys)) != len(keys) or not self._where.keys().isdisjoint(keys):
            for row, key in enumerate(keys):
                self.add(key, texts[row], matrix[row])
            return
        needed = self._rows + len(keys)
        if needed > self._matrix.shape[0]:
            grown = np.empty((max(needed, 2 * self._rows), self._matrix.shape[1]), np.float32)
            grown[: self._rows] = self._matrix[: self._rows]
            self._matrix = grown
        self._matrix[self._rows : needed] = matrix
        self._where.update(zip(keys, range(self._rows, needed), strict=True))
        self.keys.extend(keys)
        self.texts.extend(texts)
        self._rows = needed

    def remove(self, entry_key: str) -> bool:
        row = self._where.pop(entry_key, None)
        if row is None:
            return False
        last = self._rows - 1
        if row != last:  # move the last row into the hole
            self._matrix[row] = self._matrix[last]
            self.keys[row], self.texts[row] = self.keys[last], self.texts[last]
            self._where[self.keys[row]] = row
        self.keys.pop()
        self.texts.pop()
        self._rows = last
        return True

    def search(self, vector: Vectors, threshold: float, limit: int) -> list[Candidate]:
        """Up to ``limit`` rows with cosine >= ``threshold``, best first."""
        if not self._rows or vector.shape[-1] != self._matrix.shape[1]:
            return []
        # einsum runs on this thread: BLAS's threaded matvec is faster alone but spikes badly
        # when the cores are busy (p95 16-40 ms against einsum's ~7 ms, measured here)
        scores = np.einsum("ij,j->i", self._matrix[: self._rows], vector.reshape(-1))
        above = np.flatnonzero(scores >= threshold)
        if above.size > limit:
            above = above[np.argpartition(-scores[above], limit - 1)[:limit]]
        order = above[np.argsort(-scores[above], kind="stable")]
        return [Candidate(self.keys[i], self.texts[i], float(scores[i])) for i in order]


class VectorIndex(ABC):
    """What the semantic cache needs from an index (async; implementations fail by raising)."""

    @abstractmethod
    async def add(self, partition: str, text: str, vector: Vectors, entry_key: str) -> None:
        """File ``vector`` (of ``text``, answered by ``entry_key``) under ``partition``."""

    @abstractmethod
    async def candidates(
        self, partition: str, vector: Vectors, threshold: float, limit: int = 5
    ) -> list[Candidate]:
        """The closest stored questions of ``partition`` at or above ``threshold``."""

    async def search(
        self, partition: str, vector: Vectors, threshold: float
    ) -> tuple[str, float] | None:
        """``(entry_key, similarity)`` of the closest question at or above ``threshold``."""
        found = await self.candidates(partition, vector, threshold, limit=1)
        return (found[0].entry_key, found[0].similarity) if found else None

    @abstractmethod
    async def forget(self, partition: str, entry_key: str) -> None:
        """Drop the pointer to ``entry_key`` (its entry is gone)."""

    @abstractmethod
    async def size(self) -> int:
        """Number of stored vectors."""

    @abstractmethod
    async def clear(self) -> None:
        """Remove every vector of this index."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


class MemoryIndex(VectorIndex):
    """In-process index for the memory backend; oldest vectors go first beyond ``max_entries``."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self._partitions: dict[str, PartitionVectors] = {}
        self._order: OrderedDict[tuple[str, str], None] = OrderedDict()

    async def add(self, partition: str, text: str, vector: Vectors, entry_key: str) -> None:
        vector = np.asarray(vector, dtype=np.float32).reshape(-1)
        block = self._partitions.get(partition)
        if block is None:
            block = self._partitions[partition] = PartitionVectors(vector.shape[0])
        block.add(entry_key, text, vector)
        self._order[(partition, entry_key)] = None
        self._order.move_to_end((partition, entry_key))
        while len(self._order) > self.max_entries:
            (old_partition, old_key), _ = self._order.popitem(last=False)
            self._drop(old_partition, old_key)

    async def candidates(
        self, partition: str, vector: Vectors, threshold: float, limit: int = 5
    ) -> list[Candidate]:
        block = self._partitions.get(partition)
        return block.search(vector, threshold, limit) if block else []

    async def forget(self, partition: str, entry_key: str) -> None:
        self._order.pop((partition, entry_key), None)
        self._drop(partition, entry_key)

    def _drop(self, partition: str, entry_key: str) -> None:
        block = self._partitions.get(partition)
        if block is not None and block.remove(entry_key) and not len(block):
            del self._partitions[partition]

    async def size(self) -> int:
        return len(self._order)

    async def clear(self) -> None:
        self._partitions.clear()
        self._order.clear()


def pack_vector(vector: Vectors) -> bytes:
    """Little-endian float32 bytes of a 1-D vector."""
    return np.asarray(vector, dtype="<f4").reshape(-1).tobytes()


def unpack_vector(data: bytes) -> Vectors:
    return np.frombuffer(data, dtype="<f4").astype(np.float32)


def unpack_vectors(blobs: list[bytes]) -> Vectors | None:
    """Many packed vectors as one matrix; ``None`` when their sizes differ."""
    if not blobs or len({len(b) for b in blobs}) != 1:
        return None
    flat = np.frombuffer(b"".join(blobs), dtype="<f4")
    return flat.reshape(len(blobs), -1).astype(np.float32)
