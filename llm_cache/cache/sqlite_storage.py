"""SQLite backend: one file shared by threads and processes (WAL), LRU by ``max_size``, TTL.

- One connection per thread: WAL lets readers run beside the writer. Writes of this process are
  serialized by a lock (so its threads never sleep in SQLite's busy handler) and run as
  ``BEGIN IMMEDIATE`` transactions; ``SQLITE_BUSY`` from other processes is waited out
  (``busy_timeout``) and then retried.
- A hit is one indexed read and no write: its recency and the hit/miss counters wait in memory
  and are flushed in one transaction every ``flush_every`` operations or ``flush_interval``
  seconds, with any other write of this process, before every LRU decision and on ``close()``.
  Within a process LRU is exact; across processes it lags by at most one flush.
- The entry count lives in the ``stats`` table, kept by triggers: ``get_size`` is O(1).
- Connections are opened lazily per thread (and again after a fork), so building a storage is
  cheap and safe before a pre-forking server forks.
- ``flight_locks`` gives the proxy single-flight across processes on one file (``--workers N``):
  ``try_lock``/``unlock`` with an expiry, and ``await_unlocked`` polling for the holder's end.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from hashlib import blake2b
from pathlib import Path
from typing import Any, TypeVar

from llm_cache.cache.storage import CacheStorage, EntryMetadata, StorageError

logger = logging.getLogger("llm_cache.storage.sqlite")

_T = TypeVar("_T")

SCHEMA_VERSION = 4
# ``id`` is a 64-bit hash of ``key``: a lookup is one descent of the table's B-tree instead of
# one in a key index and one in the table. Two keys sharing an id (odds ~n²/2⁶⁵) just evict each
# other; every query also checks ``key``.
#
# Recency lives apart from the values, in ``recency`` (id -> last_used, ~20 bytes a row) and its
# index: a flush of deferred hits updates those small rows instead of rewriting ~1 KB rows of
# ``entries`` (and their pages) one by one, so hits read ``entries`` pages that flushes never
# touch. Hit throughput rose ~30 % at 1k entries and ~10 % at 1M; a set writes one page more
# (~+15 % set latency at 1M). Triggers keep ``recency`` and the entry count in step with
# ``entries``, whoever writes it.
_SCHEMA = (
    """CREATE TABLE entries (
        id INTEGER PRIMARY KEY,
        key TEXT NOT NULL,
        value BLOB NOT NULL,
        created REAL NOT NULL,
        expires REAL,
        size INTEGER NOT NULL,
        provider TEXT,
        model TEXT
    )""",
    "CREATE INDEX entries_expires ON entries (expires) WHERE expires IS NOT NULL",
    "CREATE TABLE recency (id INTEGER PRIMARY KEY, last_used REAL NOT NULL)",
    "CREATE INDEX recency_last_used ON recency (last_used)",
    "CREATE TABLE stats (name TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL) WITHOUT ROWID",
    "INSERT INTO stats (name, value) VALUES ('entries', 0), ('hits', 0), ('misses', 0)",
    """CREATE TABLE flight_locks (
        key TEXT PRIMARY KEY NOT NULL,
        token TEXT NOT NULL,
        expires REAL NOT NULL
    ) WITHOUT ROWID""",
    """CREATE TRIGGER entries_insert AFTER INSERT ON entries BEGIN
        INSERT INTO recency (id, last_used) VALUES (new.id, new.created)
            ON CONFLICT (id) DO UPDATE SET last_used = excluded.last_used;
        UPDATE stats SET value = value + 1 WHERE name = 'entries';
    END""",
    """CREATE TRIGGER entries_replace AFTER UPDATE OF created ON entries BEGIN
        UPDATE recency SET last_used = new.created WHERE id = new.id;
    END""",
    """CREATE TRIGGER entries_delete AFTER DELETE ON entries BEGIN
        DELETE FROM recency WHERE id = old.id;
        UPDATE stats SET value = value - 1 WHERE name = 'entries';
    END""",
    f"PRAGMA user_version = {SCHEMA_VERSION}",
)
# Every table any version created (their indexes and triggers go with them).
_OLD_TABLES = ("entries", "recency", "stats", "flight_locks")
_GET = "SELECT value, expires FROM entries WHERE id = ? AND key = ?"
_UPSERT = (
    "INSERT INTO entries (id, key, value, created, expires, size, provider, model)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (id) DO UPDATE SET key = ?2,"
    " value = ?3, created = ?4, expires = ?5, size = ?6, provider = ?7, model = ?8"
)
# No ``key`` check: ``recency`` has none, and a colliding id (see above) only reorders the one
# entry that holds it.
_TOUCH = "UPDATE recency SET last_used = ?1 WHERE id = ?2 AND last_used < ?1"
_DELETE = "DELETE FROM entries WHERE id = ? AND key = ?"
_COUNT = "SELECT value FROM stats WHERE name = 'entries'"
_PURGE_EXPIRED = "DELETE FROM entries WHERE expires <= ?"
_EVICT = "DELETE FROM entries WHERE id IN (SELECT id FROM recency ORDER BY last_used LIMIT ?)"
_LRU = "SELECT key FROM entries WHERE id = (SELECT id FROM recency ORDER BY last_used LIMIT 1)"
_LOCK_EXPIRE = "DELETE FROM flight_locks WHERE key = ? AND expires <= ?"
_LOCK_TAKE = "INSERT OR IGNORE INTO flight_locks (key, token, expires) VALUES (?, ?, ?)"
_LOCK_RELEASE = "DELETE FROM flight_locks WHERE key = ? AND token = ?"
_LOCK_HELD = "SELECT 1 FROM flight_locks WHERE key = ? AND expires > ?"

_RETRIES = 6
_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6  # result codes (sqlite3 names them from 3.11 only)
# No mmap: every thread has its own connection, and each would fault the same pages into its own
# mapping; reads through the shared OS page cache measured faster for a cache bigger than RAM
# touched at random (see benchmarks/bench_storage.py). Re-measured with recency split out: a
# connection's first touch of a page (a fault) costs more than a pread, and in WAL mode SQLite
# unmaps the whole file whenever another connection has committed, so with several threads or
# processes writing the mapping never stays warm (4 threads, 10 % sets: -20 % throughput).
# The default page size (4096) is kept: 8192 and 16384 were no faster for lookups at 1M entries
# and slower for sets.
_CACHE_KIB = 8192  # SQLite page cache per connection
_CHECKPOINT_PAGES = 10_000

# (recency stamps by key, hits, misses) not yet written to the file
_Pending = tuple[dict[str, float], int, int]


def _is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)
    return "locked" in str(exc) or "busy" in str(exc)


def _retry(fn: Callable[[], _T]) -> _T:
    """Run ``fn``, retrying with backoff when another process holds the database."""
    delay = 0.005
    for attempt in range(_RETRIES):
        try:
            return fn()
        except sqlite3.Error as exc:
            if not _is_busy(exc) or attempt == _RETRIES - 1:
                raise StorageError(f"sqlite: {exc}") from exc
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


def key_row_id(key: str) -> int:
    """The row id of ``key``: a signed 64-bit hash, the same in every process."""
    return int.from_bytes(blake2b(key.encode(), digest_size=8).digest(), "big", signed=True)


def _metadata_text(metadata: EntryMetadata | dict[str, Any] | None, name: str) -> str | None:
    value = metadata.get(name) if metadata else None
    return None if value is None else str(value)


class SQLiteStorage(CacheStorage):
    """Cache entries in one SQLite file; safe across threads and processes."""

    backend_name = "sqlite"

    def __init__(
        self,
        db_path: str | os.PathLike[str] = "llm_cache.db",
        max_size: int = 1000,
        ttl: float | None = None,
        *,
        flush_every: int = 1000,
        flush_interval: float = 1.0,
        busy_timeout: float = 5.0,
    ) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        if ttl is not None and not ttl > 0:
            raise ValueError("ttl must be a positive number of seconds or None")
        path = os.fspath(db_path)
        if path == ":memory:" or path.startswith("file:"):
            raise ValueError("SQLiteStorage needs a file path (use MemoryStorage in memory)")
        self.db_path = Path(path)
        self.max_size = max_size
        self.ttl = ttl
        self.flush_every = flush_every
        self.flush_interval = flush_interval
        self._busy_timeout = busy_timeout
        self._state_lock = threading.Lock()  # guards the pending state and the connection list
        self._write_lock = threading.Lock()  # one write transaction of this process at a time
        self._reset_connections()
        self._pending: dict[str, float] = {}
        self._hits = self._misses = self._ops = 0
        self._last_flush = time.monotonic()
        self._last_stamp = 0.0
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        self._init_schema()

    # -- connections ---------------------------------------------------------------------------

    def _reset_connections(self) -> None:
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._pid = os.getpid()

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.db_path,
                timeout=self._busy_timeout,
                isolation_level=None,  # autocommit; transactions are explicit
                check_same_thread=False,  # only so close() may close it from another thread
            )
            conn.execute("PRAGMA synchronous = NORMAL")  # durable at checkpoints; safe in WAL
            conn.execute(f"PRAGMA cache_size = -{_CACHE_KIB}")
            conn.execute(f"PRAGMA wal_autocheckpoint = {_CHECKPOINT_PAGES}")
            conn.execute(f"PRAGMA journal_size_limit = {_CHECKPOINT_PAGES * 4096 * 2}")
        except sqlite3.Error as exc:
            raise StorageError(f"sqlite: cannot open {self.db_path}: {exc}") from exc
        return conn

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None or self._pid != os.getpid():
            if self._pid != os.getpid():  # forked: never touch the parent's connections
                with self._state_lock:
                    self._reset_connections()
                self._write_lock = threading.Lock()
            conn = self._connect()
            self._local.conn = conn
            with self._state_lock:
                self._conns.append(conn)
        return conn

    def _init_schema(self) -> None:
        conn = self._connect()
        try:
            version = self._read_version(conn)
            _retry(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone())
            if version != SCHEMA_VERSION:
                _retry(lambda: self._create_schema(conn))
        finally:
            conn.close()

    def _read_version(self, conn: sqlite3.Connection) -> int:
        version = int(_retry(lambda: conn.execute("PRAGMA user_version").fetchone()[0]))
        if version > SCHEMA_VERSION:
            raise StorageError(f"{self.db_path} has cache schema v{version}, newer than this")
        return version

    def _create_schema(self, conn: sqlite3.Connection) -> None:
        """Create the tables, replacing an older layout; under a write lock, so one process
        does it while the others wait and then find it done."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = self._read_version(conn)
            if version < SCHEMA_VERSION:
                if version > 0:  # a cache is disposable: an older layout is simply replaced
                    logger.warning(
                        "%s has cache schema v%d, this version uses v%d: dropping its entries",
                        self.db_path,
                        version,
                        SCHEMA_VERSION,
                    )
                    for table in _OLD_TABLES:
                        conn.execute(f"DROP TABLE IF EXISTS {table}")
                for statement in _SCHEMA:
                    conn.execute(statement)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    # -- deferred recency and counters -----------------------------------------------------------

    def _stamp_locked(self) -> float:
        """A wall-clock time, strictly increasing within this process (LRU order)."""
        now = time.time()
        if now <= self._last_stamp:
            now = self._last_stamp + 1e-6
        self._last_stamp = now
        return now

    def recount_as_miss(self) -> None:
        self._note(None, -1, 1)

    def _record(self, key: str | None, hit: int, miss: int) -> bool:
        """Record a use of ``key`` and/or a hit or miss; whether a flush is due."""
        with self._state_lock:
            if key is not None:
                self._pending[key] = self._stamp_locked()
            self._hits += hit
            self._misses += miss
            self._ops += 1
            return (
                self._ops >= self.flush_every
                or time.monotonic() - self._last_flush >= self.flush_interval
            )

    def _note(self, key: str | None, hit: int, miss: int) -> None:
        """Record a use of ``key`` and/or a hit or miss; flush when enough has piled up."""
        due = self._record(key, hit, miss)
        # Opportunistic: if another thread is writing, it flushes this too.
        if due and self._write_lock.acquire(blocking=False):
            try:
                self._write_locked(self._conn(), lambda conn: None)
            except StorageError as exc:
                logger.warning("could not flush cache recency/counters: %s", exc)
            finally:
                self._write_lock.release()

    def _take_pending(self) -> _Pending:
        with self._state_lock:
            batch = (self._pending, self._hits, self._misses)
            self._pending = {}
            self._hits = self._misses = self._ops = 0
            self._last_flush = time.monotonic()
        return batch

    def _restore_pending(self, batch: _Pending) -> None:
        touches, hits, misses = batch
        with self._state_lock:
            for key, stamp in touches.items():
                if stamp > self._pending.get(key, 0.0):
                    self._pending[key] = stamp
            self._hits += hits
            self._misses += misses

    @staticmethod
    def _apply_pending(conn: sqlite3.Connection, batch: _Pending) -> None:
        touches, hits, misses = batch
        if touches:
            rows = sorted((key_row_id(key), stamp) for key, stamp in touches.items())
            conn.executemany(_TOUCH, [(stamp, id_) for id_, stamp in rows])
        if hits:
            conn.execute("UPDATE stats SET value = value + ? WHERE name = 'hits'", (hits,))
        if misses:
            conn.execute("UPDATE stats SET value = value + ? WHERE name = 'misses'", (misses,))

    # -- transactions --------------------------------------------------------------------------

    def _write(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        conn = self._conn()
        with self._write_lock:
            return self._write_locked(conn, fn)

    def _write_locked(self, conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        """One ``BEGIN IMMEDIATE`` transaction: the pending flush, then ``fn``; retried on busy."""
        batch = self._take_pending()

        def attempt() -> _T:
            conn.execute("BEGIN IMMEDIATE")
            try:
                self._apply_pending(conn, batch)
                result = fn(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return result

        try:
            return _retry(attempt)
        except BaseException:
            self._restore_pending(batch)
            raise

    # -- CacheStorage ----------------------------------------------------------------------------

    def get_bytes(self, key: str) -> bytes | None:
        conn = self._conn()
        params = (key_row_id(key), key)
        row = _retry(lambda: conn.execute(_GET, params).fetchone())
        if row is not None:
            value, expires = row
            if expires is None or expires > time.time():
                self._note(key, 1, 0)
                return value if type(value) is bytes else str(value).encode()
            self._write(lambda c: c.execute(_DELETE + " AND expires <= ?", (*params, time.time())))
        self._note(None, 0, 1)
        return None

    def set_bytes(
        self,
        key: str,
        data: bytes,
        metadata: EntryMetadata | dict[str, Any] | None = None,
        ttl: float | None = None,
    ) -> None:
        ttl = self.ttl if ttl is None else ttl
        provider = _metadata_text(metadata, "provider")
        model = _metadata_text(metadata, "model")
        data = bytes(data)
        id_ = key_row_id(key)

        def store(conn: sqlite3.Connection) -> None:
            with self._state_lock:
                now = self._stamp_locked()
            expires = None if ttl is None else now + ttl
            conn.execute(_UPSERT, (id_, key, data, now, expires, len(data), provider, model))
            excess = conn.execute(_COUNT).fetchone()[0] - self.max_size
            if excess > 0:  # expired entries go first, then the least recently used
                excess -= conn.execute(_PURGE_EXPIRED, (now,)).rowcount
            if excess > 0:
                conn.execute(_EVICT, (excess,))

        self._write(store)

    def delete(self, key: str) -> bool:
        params = (key_row_id(key), key)
        return self._write(lambda c: c.execute(_DELETE, params).rowcount > 0)

    def update_access_time(self, key: str) -> None:
        self._note(key, 0, 0)

    def get_lru_key(self) -> str | None:
        # Inside a write transaction: this process's pending recency is flushed first.
        row = self._write(lambda c: c.execute(_LRU).fetchone())
        return None if row is None else str(row[0])

    def get_size(self) -> int:
        conn = self._conn()
        return int(_retry(lambda: conn.execute(_COUNT).fetchone()[0]))

    def clear(self) -> None:
        def wipe(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM entries")
            conn.execute("UPDATE stats SET value = 0")

        self._write(wipe)

    # -- cross-process single-flight --------------------------------------------------------------

    def try_lock(self, key: str, ttl: float) -> str | None:
        """Take the lock on ``key`` for ``ttl`` seconds: a token, or ``None`` when it is held.

        An expired lock (its holder died) is taken over, so a dead process frees it after ``ttl``.
        """
        token = secrets.token_hex(16)

        def claim(conn: sqlite3.Connection) -> bool:
            now = time.time()
            conn.execute(_LOCK_EXPIRE, (key, now))
            return bool(conn.execute(_LOCK_TAKE, (key, token, now + ttl)).rowcount == 1)

        return token if self._write(claim) else None

    def unlock(self, key: str, token: str) -> bool:
        """Release the lock if ``token`` still holds it."""
        return self._write(lambda c: c.execute(_LOCK_RELEASE, (key, token)).rowcount > 0)

    def is_locked(self, key: str) -> bool:
        conn = self._conn()
        return _retry(lambda: conn.execute(_LOCK_HELD, (key, time.time())).fetchone()) is not None

    async def atry_lock(self, key: str, ttl: float) -> str | None:
        return await self._off_loop(self.try_lock, key, ttl)

    async def aunlock(self, key: str, token: str) -> bool:
        return await self._off_loop(self.unlock, key, token)

    async def await_unlocked(self, key: str, timeout: float, poll_interval: float = 0.02) -> bool:
        """Poll until nobody holds the lock on ``key``; ``False`` when ``timeout`` passed first."""
        deadline = time.monotonic() + timeout
        while self.is_locked(key):
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(poll_interval)
        return True

    def get_counters(self) -> tuple[int, int]:
        conn = self._conn()
        sql = "SELECT name, value FROM stats WHERE name IN ('hits', 'misses')"
        rows = _retry(lambda: conn.execute(sql).fetchall())
        stored = dict(rows)
        with self._state_lock:
            return stored["hits"] + self._hits, stored["misses"] + self._misses

    # -- async: nothing that writes runs on the event loop ---------------------------------------
    #
    # A write waits for the file's write lock, which another process (``llm-cache clear`` on a
    # big cache, another proxy) may hold for seconds. On the event loop that would stall every
    # request of the process; so writes, lock claims and the deferred recency flushes run on one
    # writer thread, and only the requests that must write wait for it. Reads stay on the loop:
    # in WAL mode a reader never waits for a writer, and a hit costs microseconds.

    def _writer_pool(self) -> ThreadPoolExecutor:
        pool: ThreadPoolExecutor | None = self.__dict__.get("_writer_executor")
        if pool is None:
            with self._state_lock:
                pool = self.__dict__.get("_writer_executor")
                if pool is None:
                    pool = ThreadPoolExecutor(1, thread_name_prefix="llm-cache-sqlite-writer")
                    self.__dict__["_writer_executor"] = pool
        return pool

    async def _off_loop(self, fn: Callable[..., _T], *args: Any) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._writer_pool(), fn, *args)

    def _note_deferred(self, key: str | None, hit: int, miss: int) -> None:
        """``_note`` for the event loop: a due flush goes to the writer thread."""
        if self._record(key, hit, miss) and not self.__dict__.get("_flush_queued"):
            self.__dict__["_flush_queued"] = True
            self._writer_pool().submit(self._background_flush)

    def _background_flush(self) -> None:
        try:
            self.flush()
        except StorageError as exc:
            logger.warning("could not flush cache recency/counters: %s", exc)
        finally:
            self.__dict__["_flush_queued"] = False

    async def aget_bytes(self, key: str) -> bytes | None:
        conn = self._conn()
        params = (key_row_id(key), key)
        try:
            row = conn.execute(_GET, params).fetchone()
        except sqlite3.Error as exc:
            raise StorageError(f"sqlite: {exc}") from exc
        if row is not None:
            value, expires = row
            if expires is None or expires > time.time():
                self._note_deferred(key, 1, 0)
                return value if type(value) is bytes else str(value).encode()
            now = time.time()
            self._writer_pool().submit(
                self._write, lambda c: c.execute(_DELETE + " AND expires <= ?", (*params, now))
            )
        self._note_deferred(None, 0, 1)
        return None

    async def aset_bytes(
        self,
        key: str,
        data: bytes,
        metadata: EntryMetadata | dict[str, Any] | None = None,
        ttl: float | None = None,
    ) -> None:
        await self._off_loop(self.set_bytes, key, data, metadata, ttl)

    async def adelete(self, key: str) -> bool:
        return await self._off_loop(self.delete, key)

    async def aclear(self) -> None:
        await self._off_loop(self.clear)

    async def aget_stats(self) -> dict[str, Any]:
        return await asyncio.to_thread(self.get_stats)

    async def ahealth_check(self) -> None:
        await asyncio.to_thread(self.health_check)

    async def aget_size(self) -> int:
        return await asyncio.to_thread(self.get_size)

    def get_or_create_secret(self) -> bytes:
        """The server secret, kept in the cache file (table ``llm_cache_secret``)."""

        def read_or_create(conn: sqlite3.Connection) -> bytes:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS llm_cache_secret"
                " (id INTEGER PRIMARY KEY CHECK (id = 1), value BLOB NOT NULL)"
            )
            conn.execute(
                "INSERT OR IGNORE INTO llm_cache_secret (id, value) VALUES (1, ?)",
                (secrets.token_bytes(32),),
            )
            return bytes(conn.execute("SELECT value FROM llm_cache_secret").fetchone()[0])

        return self._write(read_or_create)

    async def aget_or_create_secret(self) -> bytes:
        return await self._off_loop(self.get_or_create_secret)

    def flush(self) -> None:
        """Write pending recency and counters now (also done on ``close()``)."""
        self._write(lambda conn: None)

    def close(self) -> None:
        """Flush pending work and close every connection; the storage reopens on next use."""
        try:
            with self._state_lock:
                pending = bool(self._pending or self._hits or self._misses)
            if pending:
                self.flush()
        finally:
            pool = self.__dict__.pop("_writer_executor", None)
            if pool is not None:
                pool.shutdown(wait=True)
            with self._state_lock:
                conns = self._conns
                self._reset_connections()
            for conn in conns:
                conn.close()
