"""The vector index as a table in the cache's SQLite file (shared by workers on that file).

Rows only grow (a re-stored question gets a new row id); each process keeps a mirror of the
partitions it searched and reads only rows newer than the last it saw, so a lookup in a warm
partition is two indexed queries. Removals (forget, prune, clear) bump a generation counter
that makes every process drop its mirror and re-read. Calls run in a worker thread: a cold
10,000-row partition takes milliseconds to read, too long to block the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from llm_cache.semantic.embedders import Vectors
from llm_cache.semantic.index import (
    Candidate,
    PartitionVectors,
    VectorIndex,
    pack_vector,
    unpack_vector,
    unpack_vectors,
)

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS semantic_vectors (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        partition TEXT NOT NULL,
        entry_key TEXT NOT NULL,
        text TEXT NOT NULL,
        vector BLOB NOT NULL,
        UNIQUE (partition, entry_key))""",
    "CREATE INDEX IF NOT EXISTS semantic_vectors_by_partition ON semantic_vectors (partition, id)",
    "CREATE TABLE IF NOT EXISTS semantic_meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS semantic_vectors_by_entry ON semantic_vectors (entry_key)",
)
#: When the cache's own ``entries`` table is in the same file, a vector goes with its entry:
#: eviction, expiry, ``delete`` and ``clear`` remove the question's text and vector at once
#: (nothing of a cleared cache stays behind). Without it, pointers are dropped lazily.
_FOLLOW_ENTRIES = """CREATE TRIGGER IF NOT EXISTS semantic_vectors_follow_entries
    AFTER DELETE ON entries BEGIN
        DELETE FROM semantic_vectors WHERE entry_key = old.key;
    END"""
_PRUNE_EVERY = 64
logger = logging.getLogger("llm_cache.semantic")


class SQLiteIndex(VectorIndex):
    """Vectors in ``db_path`` (the cache file itself, or one beside it)."""

    def __init__(self, db_path: str | Path, *, max_entries: int = 100_000) -> None:
        self.db_path = str(db_path)
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._generation = -1
        self._mirror: OrderedDict[str, tuple[PartitionVectors, int]] = OrderedDict()
        self._mirrored_rows = 0
        self._adds = 0

    # -- connection -----------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(
                self.db_path, timeout=10.0, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA busy_timeout = 10000")
            conn.execute("PRAGMA synchronous = NORMAL")  # a lost vector is only a lost hint
            for statement in _SCHEMA:
                conn.execute(statement)
            self._follow_entries(conn)
            self._conn = conn
        return self._conn

    @staticmethod
    def _follow_entries(conn: sqlite3.Connection) -> None:
        has_entries = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'entries'"
        ).fetchone()
        if has_entries:
            try:
                conn.execute(_FOLLOW_ENTRIES)
            except sqlite3.Error as exc:  # another layout: pointers are dropped lazily
                logger.debug("semantic vectors will not follow entries: %s", exc)

    def _read_generation(self, conn: sqlite3.Connection) -> int:
        row = conn.execute("SELECT value FROM semantic_meta WHERE name = 'generation'").fetchone()
        return int(row[0]) if row else 0

    def _bump_generation(self, conn: sqlite3.Connection) -> None:
        conn.execute(
            "INSERT INTO semantic_meta (name, value) VALUES ('generation', 1) "
            "ON CONFLICT(name) DO UPDATE SET value = value + 1"
        )

    # -- sync bodies (run in a thread) ----------------------------------------------------------

    def _add(self, partition: str, text: str, vector: Vectors, entry_key: str) -> None:
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(
                    "DELETE FROM semantic_vectors WHERE partition = ? AND entry_key = ?",
                    (partition, entry_key),
                )
                conn.execute(
                    "INSERT INTO semantic_vectors (partition, entry_key, text, vector) "
                    "VALUES (?, ?, ?, ?)",
                    (partition, entry_key, text, pack_vector(vector)),
                )
                self._adds += 1
                if self._adds % _PRUNE_EVERY == 0:
                    self._prune(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _prune(self, conn: sqlite3.Connection) -> None:
        """Keep the newest ``max_entries`` vectors (older pointers most likely point at
        entries the cache has evicted already)."""
        (count,) = conn.execute("SELECT count(*) FROM semantic_vectors").fetchone()
        excess = int(count) - self.max_entries
        if excess > 0:
            conn.execute(
                "DELETE FROM semantic_vectors WHERE id IN "
                "(SELECT id FROM semantic_vectors ORDER BY id LIMIT ?)",
                (excess,),
            )
            self._bump_generation(conn)

    def _candidates(
        self, partition: str, vector: Vectors, threshold: float, limit: int
    ) -> list[Candidate]:
        with self._lock:
            conn = self._connection()
            generation = self._read_generation(conn)
            if generation != self._generation:
                self._mirror.clear()
                self._mirrored_rows = 0
                self._generation = generation
            block, last_id = self._mirror.pop(partition, (None, 0))
            rows = conn.execute(
                "SELECT id, entry_key, text, vector FROM semantic_vectors "
                "WHERE partition = ? AND id > ? ORDER BY id",
                (partition, last_id),
            ).fetchall()
            if rows:
                matrix = unpack_vectors([r[3] for r in rows])
                if matrix is None:  # mixed sizes cannot happen within one vector space
                    matrix = np.stack([unpack_vector(r[3]) for r in rows])
                if block is None:
                    block = PartitionVectors(matrix.shape[1])
                before = len(block)
                block.extend([r[1] for r in rows], [r[2] for r in rows], matrix)
                self._mirrored_rows += len(block) - before
                last_id = rows[-1][0]
            if block is None:
                return []
            self._mirror[partition] = (block, last_id)
            self._trim_mirror()
            return block.search(np.asarray(vector, dtype=np.float32), threshold, limit)

    def _trim_mirror(self) -> None:
        """Keep at most ``max_entries`` mirrored rows, least recently searched dropped."""
        while self._mirrored_rows > self.max_entries and len(self._mirror) > 1:
            _, (block, _) = self._mirror.popitem(last=False)
            self._mirrored_rows -= len(block)

    def _forget(self, partition: str, entry_key: str) -> None:
        with self._lock:
            conn = self._connection()
            deleted = conn.execute(
                "DELETE FROM semantic_vectors WHERE partition = ? AND entry_key = ?",
                (partition, entry_key),
            ).rowcount
            if deleted:
                self._bump_generation(conn)

    def _size(self) -> int:
        with self._lock:
            (count,) = (
                self._connection().execute("SELECT count(*) FROM semantic_vectors").fetchone()
            )
            return int(count)

    def _clear(self) -> None:
        with self._lock:
            conn = self._connection()
            conn.execute("DELETE FROM semantic_vectors")
            self._bump_generation(conn)

    def _close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # -- async interface --------------------------------------------------------------------

    async def add(self, partition: str, text: str, vector: Vectors, entry_key: str) -> None:
        await asyncio.to_thread(self._add, partition, text, vector, entry_key)

    async def candidates(
        self, partition: str, vector: Vectors, threshold: float, limit: int = 5
    ) -> list[Candidate]:
        return await asyncio.to_thread(self._candidates, partition, vector, threshold, limit)

    async def forget(self, partition: str, entry_key: str) -> None:
        await asyncio.to_thread(self._forget, partition, entry_key)

    async def size(self) -> int:
        return await asyncio.to_thread(self._size)

    async def clear(self) -> None:
        await asyncio.to_thread(self._clear)

    async def close(self) -> None:
        await asyncio.to_thread(self._close)
