"""SQLiteStorage: the shared contract, plus what only a file shared by processes must do."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import random
import sqlite3
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llm_cache.cache.codec import decode_value
from llm_cache.cache.memory_storage import MemoryStorage
from llm_cache.cache.sqlite_storage import SQLiteStorage
from llm_cache.cache.storage import StorageError

from .backend_contract import BackendContract, MakeStorage


class TestSQLiteStorage(BackendContract):
    TRACKS_HITS = False  # no per-entry hit count in the schema

    @pytest.fixture
    def make_storage(self, tmp_path: Path) -> Iterator[MakeStorage]:
        made: list[SQLiteStorage] = []

        def make(max_size: int = 1000, ttl: float | None = None) -> SQLiteStorage:
            made.append(SQLiteStorage(tmp_path / f"cache{len(made)}.db", max_size, ttl))
            return made[-1]

        yield make
        for storage in made:
            storage.close()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "sub" / "dir" / "cache.db"


def raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def data_version(conn: sqlite3.Connection) -> int:
    """Changes whenever another connection commits to the file."""
    return int(conn.execute("PRAGMA data_version").fetchone()[0])


# -- construction and file format ---------------------------------------------------------------


def test_construction_creates_directory_schema_and_wal(db_path: Path) -> None:
    storage = SQLiteStorage(db_path)
    assert db_path.exists()
    conn = raw(db_path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"entries", "recency", "stats"} <= tables
    storage.close()


def test_invalid_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        SQLiteStorage(tmp_path / "a.db", max_size=0)
    with pytest.raises(ValueError):
        SQLiteStorage(tmp_path / "a.db", ttl=0)
    with pytest.raises(ValueError):
        SQLiteStorage(":memory:")


def test_newer_schema_is_refused_but_never_changed(db_path: Path) -> None:
    """A newer version's file is left alone: every call fails (front ends serve uncached)."""
    SQLiteStorage(db_path).close()
    raw(db_path).execute("PRAGMA user_version = 99")
    storage = SQLiteStorage(db_path)  # start-up goes on
    with pytest.raises(StorageError, match="newer"):
        storage.get("k")
    with pytest.raises(StorageError, match="newer"):
        storage.health_check()
    assert raw(db_path).execute("PRAGMA user_version").fetchone()[0] == 99


def test_older_schema_is_replaced_with_a_warning(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A file of the v2 layout (last_used inside ``entries``) is a cache: dropped and rebuilt."""
    db_path.parent.mkdir(parents=True)
    conn = raw(db_path)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(
        "CREATE TABLE entries (id INTEGER PRIMARY KEY, key TEXT NOT NULL, value BLOB NOT NULL,"
        " created REAL NOT NULL, last_used REAL NOT NULL, expires REAL, size INTEGER NOT NULL,"
        " provider TEXT, model TEXT)"
    )
    conn.execute("CREATE INDEX entries_last_used ON entries (last_used)")
    conn.execute("CREATE TABLE stats (name TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL)")
    conn.execute("INSERT INTO stats VALUES ('entries', 1), ('hits', 5), ('misses', 7)")
    conn.execute("INSERT INTO entries VALUES (1, 'old', x'00', 1.0, 1.0, NULL, 1, NULL, NULL)")
    conn.execute("PRAGMA user_version = 2")
    conn.close()
    with caplog.at_level(logging.WARNING, logger="llm_cache"):
        storage = SQLiteStorage(db_path, max_size=2)
    assert any("v2" in r.getMessage() and "dropping" in r.getMessage() for r in caplog.records)
    assert storage.get_size() == 0 and storage.get_counters() == (0, 0)
    for i in range(3):
        storage.set(f"k{i}", {"v": i})
    assert storage.get_size() == 2 and storage.get("k0") is None and storage.get("k2") == {"v": 2}
    storage.close()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="llm_cache"):
        SQLiteStorage(db_path).close()  # the current layout is kept as is
    assert caplog.records == []
    assert raw(db_path).execute("SELECT COUNT(*) FROM entries").fetchone()[0] == 2


def test_recency_rows_follow_entries(db_path: Path) -> None:
    """Triggers keep one ``recency`` row per entry through set, overwrite, delete, evict, clear."""
    storage = SQLiteStorage(db_path, max_size=5)
    rng = random.Random(3)
    for _ in range(300):
        key = f"k{rng.randrange(12)}"
        op = rng.random()
        if op < 0.6:
            storage.set(key, {"key": key}, ttl=rng.choice([None, 60.0]))
        elif op < 0.8:
            storage.delete(key)
        else:
            storage.get(key)
    storage.flush()
    conn = raw(db_path)
    entry_ids = sorted(r[0] for r in conn.execute("SELECT id FROM entries"))
    assert entry_ids == sorted(r[0] for r in conn.execute("SELECT id FROM recency"))
    storage.clear()
    assert conn.execute("SELECT COUNT(*) FROM recency").fetchone()[0] == 0
    storage.close()


def test_metadata_columns(db_path: Path) -> None:
    storage = SQLiteStorage(db_path)
    storage.set("k", {"v": 1}, metadata={"provider": "openai", "model": "gpt-4o"}, ttl=60)
    storage.set("plain", {"v": 2})
    storage.close()
    rows = raw(db_path).execute(
        "SELECT key, created, last_used, expires, size, provider, model"
        " FROM entries JOIN recency USING (id) ORDER BY key"
    )
    (k, created, last_used, expires, size, provider, model), plain = rows.fetchall()
    assert k == "k" and (provider, model) == ("openai", "gpt-4o")
    assert expires == pytest.approx(created + 60)
    assert last_used >= created
    assert size == len(b'j{"v":1}')
    assert plain[3] is None and plain[5] is None and plain[6] is None


def test_expired_entry_is_deleted_from_the_file(db_path: Path) -> None:
    storage = SQLiteStorage(db_path)
    storage.set("k", {"v": 1}, ttl=0.05)
    raw(db_path).execute("UPDATE entries SET expires = expires - 10")
    assert storage.get("k") is None
    assert raw(db_path).execute("SELECT COUNT(*) FROM entries").fetchone()[0] == 0
    storage.close()


def test_expired_entries_are_evicted_before_live_ones(db_path: Path) -> None:
    storage = SQLiteStorage(db_path, max_size=3)
    storage.set("live0", {"v": 0})
    storage.set("dying", {"v": 1}, ttl=60)
    storage.set("live1", {"v": 2})
    raw(db_path).execute("UPDATE entries SET expires = 0 WHERE key = 'dying'")
    storage.set("live2", {"v": 3})
    assert storage.get_size() == 3
    assert all(storage.get(k) for k in ("live0", "live1", "live2"))
    storage.close()


# -- persistence --------------------------------------------------------------------------------


def test_entries_and_counters_survive_reopen(db_path: Path) -> None:
    storage = SQLiteStorage(db_path, max_size=10)
    for i in range(3):
        storage.set(f"k{i}", {"v": i})
    storage.get("k0")
    storage.get("k1")
    storage.get("nope")
    storage.close()

    again = SQLiteStorage(db_path, max_size=10)
    assert again.get_size() == 3
    assert again.get_counters() == (2, 1)
    assert again.get("k2") == {"v": 2}
    assert again.get_stats()["hit_rate"] == 75.0
    again.close()


def test_counters_are_flushed_in_batches(db_path: Path) -> None:
    storage = SQLiteStorage(db_path, flush_every=3, flush_interval=3600)
    storage.set("k", {"v": 1})
    other = SQLiteStorage(db_path)
    storage.get("k")
    storage.get("k")
    assert other.get_counters() == (0, 0)  # still pending in the first process
    assert storage.get_counters() == (2, 0)  # but counted where they happened
    storage.get("missing")  # the third operation flushes
    assert other.get_counters() == (2, 1)
    storage.close()
    other.close()


def test_counters_flush_after_interval(db_path: Path) -> None:
    storage = SQLiteStorage(db_path, flush_every=10**6, flush_interval=0.0)
    other = SQLiteStorage(db_path)
    storage.get("missing")
    assert other.get_counters() == (0, 1)
    storage.close()
    other.close()


def test_size_counter_matches_rows(db_path: Path) -> None:
    storage = SQLiteStorage(db_path, max_size=50)
    rng = random.Random(7)
    for _ in range(400):
        key = f"k{rng.randrange(80)}"
        op = rng.random()
        if op < 0.6:
            storage.set(key, {"key": key})
        elif op < 0.8:
            storage.delete(key)
        else:
            storage.get(key)
    count = raw(db_path).execute("SELECT COUNT(*) FROM entries").fetchone()[0]
    assert storage.get_size() == count <= 50
    storage.clear()
    assert (
        storage.get_size()
        == 0
        == raw(db_path).execute("SELECT COUNT(*) FROM entries").fetchone()[0]
    )
    storage.close()


# -- deferred recency -----------------------------------------------------------------------------


def test_hits_do_not_write(db_path: Path) -> None:
    storage = SQLiteStorage(db_path, flush_every=10**6, flush_interval=3600)
    for i in range(3):
        storage.set(f"k{i}", {"v": i})
    watcher = raw(db_path)
    before = data_version(watcher)
    for _ in range(50):
        assert storage.get("k0") is not None
    assert data_version(watcher) == before  # no transaction committed by 50 hits
    assert storage.get_lru_key() == "k1"  # the LRU decision flushed first
    assert data_version(watcher) != before
    storage.close()


def test_deferred_recency_keeps_lru_exact(db_path: Path) -> None:
    """Same random workload on SQLite (flushing every 7 ops) and MemoryStorage: same survivors."""
    storage = SQLiteStorage(db_path, max_size=20, flush_every=7, flush_interval=3600)
    model = MemoryStorage(max_size=20)
    rng = random.Random(42)
    for step in range(600):
        key = f"k{rng.randrange(40)}"
        op = rng.random()
        if op < 0.45:
            assert (storage.get(key) is None) == (model.get(key) is None), step
        elif op < 0.55:
            storage.update_access_time(key)
            model.update_access_time(key)
        else:
            storage.set(key, {"key": key})
            model.set(key, {"key": key})
        if step % 50 == 0:
            assert storage.get_lru_key() == model.get_lru_key(), step
    assert storage.get_counters() == model.get_counters()
    survivors = {f"k{i}" for i in range(40) if model.get_bytes(f"k{i}") is not None}
    assert {f"k{i}" for i in range(40) if storage.get_bytes(f"k{i}") is not None} == survivors
    storage.close()


def test_close_flushes_recency(db_path: Path) -> None:
    storage = SQLiteStorage(db_path, max_size=3, flush_every=10**6, flush_interval=3600)
    for i in range(3):
        storage.set(f"k{i}", {"v": i})
    storage.get("k0")
    storage.close()
    again = SQLiteStorage(db_path, max_size=3)
    assert again.get_lru_key() == "k1"
    again.close()


# -- corruption -----------------------------------------------------------------------------------


def test_corrupt_row_written_behind_our_back(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    storage = SQLiteStorage(db_path)
    storage.set("k", {"v": 1})
    storage.set("text", {"v": 2})
    conn = raw(db_path)
    conn.execute("UPDATE entries SET value = x'7a0001ff' WHERE key = 'k'")
    conn.execute("UPDATE entries SET value = 'not a blob' WHERE key = 'text'")
    with caplog.at_level(logging.WARNING, logger="llm_cache"):
        assert storage.get("k") is None
        assert storage.get("text") is None
    messages = [r.getMessage() for r in caplog.records]
    assert any("corrupt" in m and "k" in m for m in messages)
    assert any("text" in m for m in messages)
    assert conn.execute("SELECT COUNT(*) FROM entries").fetchone()[0] == 0
    storage.close()


# -- concurrency ---------------------------------------------------------------------------------


def test_many_threads_with_eviction_and_reads(db_path: Path) -> None:
    storage = SQLiteStorage(db_path, max_size=30, flush_every=16)
    errors: list[str] = []
    start = threading.Barrier(8)

    def work(t: int) -> None:
        rng = random.Random(t)
        try:
            start.wait()
            for _ in range(200):
                key = f"k{rng.randrange(50)}"
                op = rng.random()
                if op < 0.5:
                    value = storage.get(key)
                    if value is not None and value["key"] != key:
                        errors.append(f"{key} -> {value['key']}")
                elif op < 0.9:
                    storage.set(key, {"key": key, "pad": key * 40})
                elif op < 0.95:
                    storage.delete(key)
                else:
                    storage.get_lru_key()
        except Exception:
            errors.append(traceback.format_exc())

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    storage.flush()
    conn = raw(db_path)
    assert storage.get_size() == conn.execute("SELECT COUNT(*) FROM entries").fetchone()[0] <= 30
    for key, blob in conn.execute("SELECT key, value FROM entries"):
        assert decode_value(blob)["key"] == key
    storage.close()


def _process_worker(
    path: str, worker: int, ops: int, start: Any, results: Any
) -> None:  # pragma: no cover - runs in a child process
    try:
        storage = SQLiteStorage(path, max_size=100_000, flush_every=50)
        rng = random.Random(worker)
        written: set[str] = set()
        bad: list[str] = []
        gets = 0
        start.wait()
        for i in range(ops):
            key = f"key-{rng.randrange(300)}"
            if rng.random() < 0.5:
                gets += 1
                value = storage.get(key)
                if value is not None and (value["key"] != key or value["pad"] != key * 20):
                    bad.append(key)
            else:
                storage.set(key, {"key": key, "worker": worker, "i": i, "pad": key * 20})
                written.add(key)
        storage.close()
        results.put((worker, sorted(written), bad, gets, None))
    except BaseException:
        start.abort()  # let the other workers fail fast instead of waiting at the barrier
        results.put((worker, [], [], 0, traceback.format_exc()))


def test_four_processes_share_one_file(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.db")
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(4, timeout=30)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_process_worker, args=(path, w, 500, start, results), daemon=True)
        for w in range(4)
    ]
    try:
        for proc in procs:
            proc.start()
        outcomes = [results.get(timeout=60) for _ in procs]
        for proc in procs:
            proc.join(timeout=30)
            assert proc.exitcode == 0
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
    written: set[str] = set()
    gets = 0
    for worker, keys, bad, n_gets, error in outcomes:
        assert error is None, f"worker {worker}:\n{error}"
        assert bad == [], f"worker {worker} read mismatched values for {bad}"
        written.update(keys)
        gets += n_gets

    storage = SQLiteStorage(path, max_size=100_000)
    conn = raw(Path(path))
    rows = dict(conn.execute("SELECT key, value FROM entries").fetchall())
    assert set(rows) == written  # no entry lost
    for key, blob in rows.items():
        value = decode_value(blob)
        assert value["key"] == key and value["pad"] == key * 20
    assert storage.get_size() == len(rows)
    hits, misses = storage.get_counters()
    assert hits + misses == gets  # every process flushed its counters on close
    assert hits > 0
    storage.close()


# -- cross-process single-flight locks ---------------------------------------------------------


def test_flight_lock_is_exclusive_and_released_only_by_its_holder(tmp_path: Path) -> None:
    one = SQLiteStorage(db_path=str(tmp_path / "c.db"))
    two = SQLiteStorage(db_path=str(tmp_path / "c.db"))  # another "process" on the same file
    token = one.try_lock("k", 30)
    assert token is not None
    assert two.try_lock("k", 30) is None
    assert two.is_locked("k")
    assert not two.unlock("k", "not-the-token")
    assert one.unlock("k", token)
    assert not two.is_locked("k")
    assert two.try_lock("k", 30) is not None
    assert one.try_lock("other", 30) is not None  # locks are per key


def test_a_dead_holders_flight_lock_expires(tmp_path: Path) -> None:
    one = SQLiteStorage(db_path=str(tmp_path / "c.db"))
    two = SQLiteStorage(db_path=str(tmp_path / "c.db"))
    assert one.try_lock("k", 0.2) is not None  # and then "one" dies without unlocking
    assert two.try_lock("k", 30) is None
    started = time.monotonic()
    assert asyncio.run(two.await_unlocked("k", timeout=5))
    assert time.monotonic() - started < 1.0
    assert two.try_lock("k", 30) is not None


def test_waiting_for_a_held_lock_times_out(tmp_path: Path) -> None:
    storage = SQLiteStorage(db_path=str(tmp_path / "c.db"))
    assert storage.try_lock("k", 30) is not None
    assert asyncio.run(storage.await_unlocked("k", timeout=0.1)) is False


# -- a file that cannot serve never stops start-up (issue 9 item 5) ---------------------------


@pytest.fixture
def fast_recovery(monkeypatch: pytest.MonkeyPatch) -> None:
    """Re-open attempts and file checks at every call instead of every few seconds."""
    import llm_cache.cache.sqlite_storage as module

    monkeypatch.setattr(module, "_REOPEN_INTERVAL", 0.0, raising=False)
    monkeypatch.setattr(module, "_CHECK_INTERVAL", 0.0, raising=False)


def log_lines(caplog: pytest.LogCaptureFixture, word: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if word in r.getMessage()]


@pytest.mark.parametrize(
    "garbage",
    [
        b"this is not a database at all" * 100,
        b"SQLite format 3\x00" + bytes(range(256)) * 20,  # the magic, then nonsense
    ],
    ids=["garbage", "valid-magic-bad-header"],
)
def test_a_corrupt_file_is_moved_aside_and_replaced(
    db_path: Path, garbage: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    db_path.parent.mkdir(parents=True)
    db_path.write_bytes(garbage)
    with caplog.at_level(logging.WARNING, logger="llm_cache"):
        storage = SQLiteStorage(db_path)  # today: sqlite3.DatabaseError, start-up dies
    storage.set("k", {"v": 1})
    assert storage.get("k") == {"v": 1}
    aside = list(db_path.parent.glob("cache.db.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == garbage  # kept, never deleted
    assert len(log_lines(caplog, "moved aside")) == 1
    storage.close()


@pytest.mark.parametrize("where", ["directory at the path", "file as the parent"])
def test_an_unopenable_path_serves_uncached_then_recovers(
    tmp_path: Path, where: str, fast_recovery: None, caplog: pytest.LogCaptureFixture
) -> None:
    if where == "directory at the path":
        path = tmp_path / "cache.db"
        path.mkdir()
    else:
        (tmp_path / "blocker").write_text("a file, not a directory")
        path = tmp_path / "blocker" / "cache.db"
    with caplog.at_level(logging.ERROR, logger="llm_cache"):
        storage = SQLiteStorage(path)  # today: an exception, start-up dies
    assert log_lines(caplog, "serving uncached")
    with pytest.raises(StorageError):
        storage.get("k")
    with pytest.raises(StorageError):
        storage.health_check()
    # the cause goes away: the next call opens the file
    if where == "directory at the path":
        path.rmdir()
    else:
        (tmp_path / "blocker").unlink()
    storage.set("k", {"v": 1})
    assert storage.get("k") == {"v": 1}
    storage.close()


CHMOD_SCRIPT = """
import os, sys
from llm_cache.cache.sqlite_storage import SQLiteStorage
from llm_cache.cache.storage import StorageError
if os.geteuid() == 0:  # root reads any file: become nobody (imports are done)
    os.setegid(65534)
    os.seteuid(65534)
storage = SQLiteStorage(sys.argv[1])
try:
    storage.get("k")
except StorageError as exc:
    print("uncached:", exc)
else:
    print("opened")
"""


def test_an_unreadable_file_serves_uncached(tmp_path: Path) -> None:
    """chmod 000, in a subprocess that drops root (which reads any file) before opening."""
    import subprocess
    import sys
    import tempfile

    shared = Path(tempfile.mkdtemp(prefix="llm-cache-chmod-"))
    try:
        shared.chmod(0o777)
        path = shared / "cache.db"
        SQLiteStorage(path).close()
        path.chmod(0o000)
        done = subprocess.run(
            [sys.executable, "-c", CHMOD_SCRIPT, str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=shared,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("uncached:"), done.stdout + done.stderr
        assert "serving uncached" in done.stderr
    finally:
        for p in shared.glob("*"):
            p.chmod(0o600)
            p.unlink()
        shared.rmdir()


def test_a_file_deleted_while_open_is_noticed_and_made_anew(
    db_path: Path, fast_recovery: None, caplog: pytest.LogCaptureFixture
) -> None:
    storage = SQLiteStorage(db_path)
    storage.set("before", {"v": 0})
    db_path.unlink()  # rm llm_cache.db while the proxy runs
    with caplog.at_level(logging.WARNING, logger="llm_cache"):
        assert storage.get("before") is None
        storage.set("after", {"v": 1})
    assert len(log_lines(caplog, "was deleted while in use")) == 1
    assert db_path.exists()  # today: writes go on into the deleted file, nothing on disk
    assert storage.get("after") == {"v": 1}
    storage.close()
    reopened = raw(db_path)
    keys = [r[0] for r in reopened.execute("SELECT key FROM entries")]
    assert keys == ["after"]


def test_the_wal_stays_small_between_checkpoints(db_path: Path) -> None:
    storage = SQLiteStorage(db_path, max_size=100_000)
    wal = Path(f"{db_path}-wal")
    value = {"text": "x" * 8000}
    largest = 0
    for i in range(3000):  # ~24 MB written
        storage.set(f"k{i}", value)
        if i % 50 == 0 and wal.exists():
            largest = max(largest, wal.stat().st_size)
    storage.close()
    assert largest <= 8 * 1024 * 1024, f"WAL grew to {largest / 2**20:.1f} MiB"  # today: 24+


@pytest.fixture
def tiny_disk() -> Iterator[Path]:
    """A real 2 MiB filesystem (tmpfs): needs root and mount permission, else skipped."""
    import os
    import subprocess
    import tempfile

    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    where = Path(tempfile.mkdtemp(prefix="llm-cache-tiny-"))
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        where.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=False)
        where.rmdir()


def test_a_small_disk_keeps_storing(tiny_disk: Path) -> None:
    storage = SQLiteStorage(tiny_disk / "cache.db", max_size=300)
    value = {"text": "y" * 1000}
    for i in range(1500):  # today: StorageError (disk full) after a few dozen entries
        storage.set(f"k{i}", value)
    assert storage.get_size() == 300
    assert storage.get("k1499") == value
    storage.close()
