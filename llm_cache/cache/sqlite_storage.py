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
- A file that cannot serve never stops start-up (``_open_file``): one that is not a database
  (a corrupt header) is moved aside and a new one made; one that cannot be opened (permissions,
  a directory in its place) leaves the storage failing every call with ``StorageError`` (the
  front ends serve uncached, ``/health`` says degraded) and is tried again every few seconds.
  A file written by the original llm-caching project (its ``cache``/``stats`` tables) is
  migrated: its counters carried over, its entries kept aside in ``original_cache``.
- A file deleted (or replaced) while open is noticed within a second and made anew.
- The WAL is checkpointed every ``_CHECKPOINT_PAGES`` pages and truncated to
  ``_WAL_LIMIT_BYTES``; when the disk is full, a write checkpoints and truncates the WAL, then
  tries once more, so a small disk keeps storing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from hashlib import blake2b
from pathlib import Path
from typing import Any, TypeVar

from llm_cache.cache.storage import (
    BulkItem,
    BulkWriteError,
    CacheStorage,
    EntryInfo,
    EntryMetadata,
    StorageError,
    StoredEntry,
)

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
# The WAL is checkpointed every 1000 pages (4 MiB, SQLite's default) and cut back to 4 MiB after;
# at 10,000 pages it grew to 40 MiB between checkpoints, which filled a small disk.
_CHECKPOINT_PAGES = 1000
_WAL_LIMIT_BYTES = 4 * 1024 * 1024
_SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_NOTADB = 11, 13, 26
_REOPEN_INTERVAL = 5.0  # seconds between attempts to open a file that could not be opened
_CHECK_INTERVAL = 1.0  # seconds between checks that the file is still there
_HEADER = b"SQLite format 3\x00"
# What the original llm-caching project's file holds (user_version 0).
_ORIGINAL_TABLES = {
    "cache": {"key", "value", "created_at", "last_accessed", "access_count", "metadata"},
    "stats": {"key", "value"},
}

# (recency stamps by key, hits, misses) not yet written to the file
_Pending = tuple[dict[str, float], int, int]


def _is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)
    return "locked" in str(exc) or "busy" in str(exc)


def _error_code(exc: BaseException) -> int | None:
    """The primary SQLite result code behind ``exc`` (or its cause), when known."""
    for err in (exc, exc.__cause__):
        code = getattr(err, "sqlite_errorcode", None)
        if isinstance(code, int):
            return code & 0xFF
    text = str(exc)
    if "not a database" in text or "malformed" in text:
        return _SQLITE_NOTADB
    if "database or disk is full" in text:
        return _SQLITE_FULL
    return None


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


def _fetch_all(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> list[Any]:
    return conn.execute(sql, params).fetchall()


def _bad_header(path: Path) -> bool:
    """A file that exists, is not empty and does not start like a SQLite database."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(_HEADER))
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        return False  # nothing to move aside / opening will report it
    except OSError:
        return False
    return len(head) > 0 and head != _HEADER


def _close_without_checkpoint(conn: sqlite3.Connection) -> None:
    """Ask a connection to a deleted file not to checkpoint on close (Python 3.12+): closing the
    last connection would otherwise delete ``<path>-wal`` by name, which may by then be the WAL
    of the file made anew. On older Pythons the window is the few statements in flight."""
    setconfig = getattr(conn, "setconfig", None)
    option = getattr(sqlite3, "SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE", None)
    if setconfig is not None and option is not None:
        setconfig(option, True)


@contextlib.contextmanager
def _recovery_lock(path: Path) -> Any:
    """Serialize opening and recovery of a file across processes: ``flock`` on its directory
    (no lock file beside the cache; SQLite's own locks are ``fcntl`` locks on the file and do
    not interact with it)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    try:
        fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        yield  # opening the file will say what is wrong
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


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
        self.db_path = Path(path).absolute()  # a later chdir must not move the cache
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
        self._open_lock = threading.Lock()
        self._ready = False  # the file is open and has our schema
        self._open_error: StorageError | None = None
        self._next_open = 0.0  # monotonic time of the next attempt to open a failed file
        self._file_id: tuple[int, int] | None = None  # (device, inode) of the file opened
        self._next_check = 0.0
        self._generation = 0  # bumped when the file is made anew: threads reconnect
        self._try_open()

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
            self._size_wal(conn)
        except sqlite3.Error as exc:
            raise StorageError(f"sqlite: cannot open {self.db_path}: {exc}") from exc
        return conn

    def _size_wal(self, conn: sqlite3.Connection) -> None:
        """Checkpoint every ``_CHECKPOINT_PAGES`` pages, fewer when the disk has less than four
        times that free: a WAL must never fill the disk (a checkpoint then cannot run, as it
        grows the file before the WAL shrinks); after a checkpoint the WAL is cut back."""
        pages = _CHECKPOINT_PAGES
        try:
            st = os.statvfs(self.db_path.parent)
        except (OSError, AttributeError):  # AttributeError: no statvfs on Windows
            pass
        else:
            pages = max(16, min(pages, st.f_bavail * st.f_frsize // (4 * 4096)))
        conn.execute(f"PRAGMA wal_autocheckpoint = {pages}")
        conn.execute(f"PRAGMA journal_size_limit = {min(_WAL_LIMIT_BYTES, pages * 4096)}")

    def _conn(self) -> sqlite3.Connection:
        if not self._ready:
            self._ensure_open()
        elif time.monotonic() >= self._next_check:
            self._check_file()
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if (
            conn is None
            or self._pid != os.getpid()
            or getattr(self._local, "generation", None) != self._generation
        ):
            if self._pid != os.getpid():  # forked: never touch the parent's connections
                with self._state_lock:
                    self._reset_connections()
                self._write_lock = threading.Lock()
            conn = self._connect()
            self._local.conn = conn
            self._local.generation = self._generation
            with self._state_lock:
                self._conns.append(conn)
        return conn

    # -- opening, recovering and watching the file -----------------------------------------------

    def _try_open(self) -> None:
        """Open the file at construction; a failure is logged and left for later calls."""
        try:
            self._open_file()
        except StorageError as exc:
            self._open_error = exc
            self._next_open = time.monotonic() + _REOPEN_INTERVAL
            logger.error("cache file unusable, serving uncached until it is: %s", exc)

    def _ensure_open(self) -> None:
        """Raise the opening error, or try again when it is time; never blocks on a wait."""
        with self._open_lock:
            if self._ready:
                return
            if self._open_error is not None and time.monotonic() < self._next_open:
                raise self._open_error
            try:
                self._open_file()
            except StorageError as exc:
                self._open_error = exc
                self._next_open = time.monotonic() + _REOPEN_INTERVAL
                raise
            if self._open_error is not None:
                logger.warning("cache file %s usable again", self.db_path)
                self._open_error = None

    def _open_file(self) -> None:
        """Create or check the schema; move a file that is not a database aside first."""
        try:
            self.db_path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"sqlite: cannot create {self.db_path.parent}: {exc}") from exc
        with _recovery_lock(self.db_path):
            if _bad_header(self.db_path):
                self._move_aside("its header is not a SQLite database's")
            try:
                self._init_schema()
            except StorageError as exc:
                if _error_code(exc) not in (_SQLITE_NOTADB, _SQLITE_CORRUPT):
                    raise
                self._move_aside(f"it is corrupt ({exc})")
                self._init_schema()
        self._file_id = self._stat_id()
        self._next_check = time.monotonic() + _CHECK_INTERVAL
        self._ready = True

    def _move_aside(self, why: str) -> None:
        """Rename the unusable file (and its WAL) to ``<name>.corrupt-<time>``; never delete."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        target = self.db_path.with_name(f"{self.db_path.name}.corrupt-{stamp}")
        n = 1
        while target.exists():
            n += 1
            target = self.db_path.with_name(f"{self.db_path.name}.corrupt-{stamp}-{n}")
        try:
            os.replace(self.db_path, target)
        except OSError as exc:
            raise StorageError(
                f"sqlite: {self.db_path} is unusable ({why}) and cannot be moved aside: {exc}"
            ) from exc
        for suffix in ("-wal", "-shm", "-journal"):
            side = Path(f"{self.db_path}{suffix}")
            with contextlib.suppress(OSError):
                if side.exists():
                    os.replace(side, Path(f"{target}{suffix}"))
        logger.warning(
            "cache file %s was unusable (%s): moved aside to %s, starting a new one",
            self.db_path,
            why,
            target.name,
        )

    def _stat_id(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.db_path)
        except OSError:
            return None
        return st.st_dev, st.st_ino

    def _check_file(self) -> None:
        """Notice a file deleted or replaced behind our back and make it anew."""
        with self._open_lock:
            if not self._ready or time.monotonic() < self._next_check:
                return
            self._next_check = time.monotonic() + _CHECK_INTERVAL
            current = self._stat_id()
            if current == self._file_id:
                return
            what = "deleted" if current is None else "replaced"
            logger.warning("cache file %s was %s while in use: reopening it", self.db_path, what)
            with self._write_lock, self._state_lock:
                conns, self._conns = self._conns, []
                self._generation += 1
            for conn in conns:  # before a new file exists: closing removes the old WAL by name
                with contextlib.suppress(sqlite3.Error):
                    _close_without_checkpoint(conn)
                    conn.close()
            if current is None:  # stale WAL/shm of the deleted file must not join the new one
                for suffix in ("-wal", "-shm"):
                    with contextlib.suppress(OSError):
                        Path(f"{self.db_path}{suffix}").unlink()
            self._ready = False
            try:
                self._open_file()
            except StorageError as exc:
                self._open_error = exc
                self._next_open = time.monotonic() + _REOPEN_INTERVAL
                logger.error("cache file unusable, serving uncached until it is: %s", exc)

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
            counters: tuple[int, int] | None = None
            if version == 0:
                counters = self._adopt_foreign_tables(conn)
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
                if counters is not None:
                    conn.executemany(
                        "UPDATE stats SET value = ? WHERE name = ?",
                        [(counters[0], "hits"), (counters[1], "misses")],
                    )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _adopt_foreign_tables(self, conn: sqlite3.Connection) -> tuple[int, int] | None:
        """At ``user_version`` 0: migrate the original llm-caching project's tables.

        Its entries are kept (renamed ``original_cache``: their keys differ from ours, so they
        cannot be served); its hit/miss counters are carried over (returned). Tables of ours'
        names in another shape mean the file is not a cache of ours: refused, never changed.
        """
        tables = {
            name: {row[1] for row in conn.execute(f"PRAGMA table_info({name})")}
            for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        if not tables:
            return None
        if all(tables.get(t, set()) >= cols for t, cols in _ORIGINAL_TABLES.items()):
            counts = dict(conn.execute("SELECT key, value FROM stats").fetchall())
            entries = conn.execute("SELECT COUNT(*) FROM cache").fetchone()[0]
            kept = "original_cache"
            if kept in tables:
                conn.execute("DROP TABLE cache")
            else:
                conn.execute(f"ALTER TABLE cache RENAME TO {kept}")
            conn.execute("DROP TABLE stats")
            logger.warning(
                "%s was written by the original llm-caching project: migrated (hit/miss "
                "counters carried over; its %d entries kept in table %s, not served: their "
                "keys differ from this version's)",
                self.db_path,
                entries,
                kept,
            )
            return int(counts.get("hits") or 0), int(counts.get("misses") or 0)
        clash = sorted(set(tables) & set(_OLD_TABLES))
        if clash:
            raise StorageError(
                f"sqlite: {self.db_path} is not an llm-cache file (it has tables "
                f"{', '.join(clash)} of another layout); set LLM_CACHE_SQLITE_PATH to another file"
            )
        return None

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
        if not self._record(key, hit, miss):
            return
        try:
            conn = self._conn()  # before the write lock: it may reopen the file
        except StorageError:
            return  # kept pending; the failure is reported by the calls themselves
        # Opportunistic: if another thread is writing, it flushes this too.
        if self._write_lock.acquire(blocking=False):
            try:
                self._write_locked(conn, lambda conn: None)
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
            try:
                return _retry(attempt)
            except StorageError as exc:
                if _error_code(exc) != _SQLITE_FULL:
                    raise
                # disk full: fold the WAL into the file, cut it to nothing, try once more
                logger.warning("cache disk full: checkpointing the WAL and retrying")
                try:
                    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                    self._size_wal(conn)
                except sqlite3.Error:
                    raise exc from None
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

        def store(conn: sqlite3.Connection) -> int:
            with self._state_lock:
                now = self._stamp_locked()
            expires = None if ttl is None else now + ttl
            conn.execute(_UPSERT, (id_, key, data, now, expires, len(data), provider, model))
            excess = conn.execute(_COUNT).fetchone()[0] - self.max_size
            if excess > 0:  # expired entries go first, then the least recently used
                excess -= conn.execute(_PURGE_EXPIRED, (now,)).rowcount
            if excess > 0:
                return int(conn.execute(_EVICT, (excess,)).rowcount)
            return 0

        self._evicted(self._write(store))

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
        return await self._write_soon(self.try_lock, key, ttl)

    async def aunlock(self, key: str, token: str) -> bool:
        return await self._write_soon(self.unlock, key, token)

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

    async def _write_soon(self, fn: Callable[..., _T], *args: Any) -> _T:
        """A short write inline when the file's write lock is free this instant (a thread hop
        costs more than the write), else on the writer thread: a lock held by another process
        never stalls the event loop."""
        if not self._write_lock.acquire(blocking=False):
            return await self._off_loop(fn, *args)  # our own writer is busy: queue behind it
        free = False
        try:
            conn = self._conn()
            conn.execute("PRAGMA busy_timeout = 0")
            try:
                conn.execute("BEGIN IMMEDIATE")
                free = True
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            finally:
                conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
        except sqlite3.Error:
            free = False
        finally:
            self._write_lock.release()
        if not free:
            return await self._off_loop(fn, *args)
        return fn(*args)

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
        await self._write_soon(self.set_bytes, key, data, metadata, ttl)

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

    def set_many_bytes(self, items: Sequence[BulkItem]) -> int:
        """All ``items`` in one write transaction (all or none), evicting once at the end."""
        rows = []
        for key, data, metadata, ttl in items:
            ttl = self.ttl if ttl is None else ttl
            meta = (_metadata_text(metadata, "provider"), _metadata_text(metadata, "model"))
            rows.append((key_row_id(key), key, bytes(data), ttl, *meta))

        def store(conn: sqlite3.Connection) -> None:
            now = 0.0
            for id_, key, data, ttl, provider, model in rows:
                with self._state_lock:
                    now = self._stamp_locked()
                expires = None if ttl is None else now + ttl
                conn.execute(_UPSERT, (id_, key, data, now, expires, len(data), provider, model))
            excess = conn.execute(_COUNT).fetchone()[0] - self.max_size
            if excess > 0:
                excess -= conn.execute(_PURGE_EXPIRED, (now,)).rowcount
            if excess > 0:
                conn.execute(_EVICT, (excess,))

        try:
            self._write(store)
        except StorageError as exc:
            raise BulkWriteError(0, exc) from exc
        return len(rows)

    # -- entries, for the operator tools --------------------------------------------------------

    _ITER_BATCH = 500

    def _flush_pending(self) -> None:
        """Flush only when this process holds deferred work: reading entries never writes to
        the file otherwise (an export from a read-only copy works)."""
        with self._state_lock:
            pending = bool(self._pending or self._hits or self._misses)
        if pending:
            self.flush()

    def _entry_columns(self, conn: sqlite3.Connection) -> list[str]:
        """The ``entries`` columns to read: the base ones, plus per-entry hit figures and the
        endpoint where the schema in this file has them."""
        have = {row[1] for row in _retry(lambda: conn.execute("PRAGMA table_info(entries)"))}
        base = ["e.key", "e.value", "e.created", "e.expires", "e.size", "e.provider", "e.model"]
        return base + [f"e.{c}" for c in ("endpoint", "hits", "last_hit") if c in have]

    def _entry(self, names: list[str], row: tuple[Any, ...], last_used: Any) -> StoredEntry:
        cols = dict(zip(names, row, strict=True))
        created = float(cols["e.created"])
        last_hit = cols.get("e.last_hit")
        if "e.last_hit" not in cols and last_used is not None and last_used > created:
            last_hit = last_used  # recency moves on hits (and explicit touches) only
        value = cols["e.value"]
        info: EntryInfo = {
            "created": created,
            "last_hit": None if last_hit is None else float(last_hit),
            "hits": None if cols.get("e.hits") is None else int(cols["e.hits"]),
            "expires": cols["e.expires"],
            "size": int(cols["e.size"]),
            "provider": cols["e.provider"] or None,
            "model": cols["e.model"] or None,
            "endpoint": cols.get("e.endpoint") or None,
        }
        data = value if type(value) is bytes else str(value).encode()
        return StoredEntry(str(cols["e.key"]), data, info)

    def iter_entries(self) -> Iterator[StoredEntry]:
        """Entries in row-id order, ``_ITER_BATCH`` rows per short read (no long transaction)."""
        self._flush_pending()  # this process's deferred recency, so last-hit times are current
        conn = self._conn()
        names = self._entry_columns(conn)
        sql = (
            f"SELECT e.id, r.last_used, {', '.join(names)} FROM entries e"
            " LEFT JOIN recency r ON r.id = e.id"
            " WHERE ?1 IS NULL OR e.id > ?1 ORDER BY e.id LIMIT ?2"
        )
        after: int | None = None
        while True:
            rows = _retry(partial(_fetch_all, conn, sql, (after, self._ITER_BATCH)))
            now = time.time()
            for id_, last_used, *row in rows:
                entry = self._entry(names, tuple(row), last_used)
                expires = entry.info["expires"]
                if expires is None or expires > now:
                    yield entry
                after = id_
            if len(rows) < self._ITER_BATCH:
                return

    def peek_entry(self, key: str) -> StoredEntry | None:
        self._flush_pending()
        conn = self._conn()
        names = self._entry_columns(conn)
        sql = (
            f"SELECT r.last_used, {', '.join(names)} FROM entries e"
            " LEFT JOIN recency r ON r.id = e.id WHERE e.id = ? AND e.key = ?"
        )
        params = (key_row_id(key), key)
        row = _retry(lambda: conn.execute(sql, params).fetchone())
        if row is None:
            return None
        entry = self._entry(names, tuple(row[1:]), row[0])
        expires = entry.info["expires"]
        return entry if expires is None or expires > time.time() else None

    def close(self) -> None:
        """Flush pending work and close every connection; the storage reopens on next use."""
        try:
            with self._state_lock:
                pending = bool(self._pending or self._hits or self._misses)
            if pending:
                self.flush()
        except StorageError as exc:
            logger.warning("could not flush cache recency/counters on close: %s", exc)
        finally:
            pool = self.__dict__.pop("_writer_executor", None)
            if pool is not None:
                pool.shutdown(wait=True)
            with self._state_lock:
                conns = self._conns
                self._reset_connections()
            for conn in conns:
                conn.close()
