"""Users of the original llm-caching project keep working (SPEC "Compatibility with the original
project"). The original's shapes are written out here: its SQLite layout, its ``to_dict()``
sections, its error wordings, its routes and their answers."""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest

from llm_cache import Config, LLMCacheWrapper
from llm_cache.cache.memory_storage import MemoryStorage
from llm_cache.cache.sqlite_storage import SQLiteStorage
from llm_cache.proxy.management import handle_compat
from tests.conftest import Proxy, ProxyFactory, Upstream
from tests.servers import run_server

# -- the original's SQLite file ------------------------------------------------------------------

#: The original project's schema, exactly as its ``SQLiteStorage._init_db`` created it.
ORIGINAL_SCHEMA = """
CREATE TABLE IF NOT EXISTS cache (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    created_at REAL NOT NULL,
    last_accessed REAL NOT NULL,
    access_count INTEGER DEFAULT 1,
    metadata TEXT
);
CREATE INDEX IF NOT EXISTS idx_last_accessed ON cache(last_accessed);
CREATE TABLE IF NOT EXISTS stats (
    key TEXT PRIMARY KEY,
    value INTEGER DEFAULT 0
);
INSERT OR IGNORE INTO stats (key, value) VALUES ('hits', 0), ('misses', 0);
"""


def original_file(path: Path, hits: int = 7, misses: int = 3) -> Path:
    """A file as the original wrote it: its tables, two entries, counters, user_version 0."""
    conn = sqlite3.connect(path)
    conn.executescript(ORIGINAL_SCHEMA)
    conn.executemany(
        "INSERT INTO cache (key, value, created_at, last_accessed, access_count, metadata)"
        " VALUES (?, ?, 1700000000.0, 1700000000.0, 1, ?)",
        [
            ("a" * 64, '{"id": "chatcmpl-old", "choices": []}', '{"provider": "openai"}'),
            ("b" * 64, '{"stream_data": "data: [DONE]", "type": "stream"}', "{}"),
        ],
    )
    conn.execute("UPDATE stats SET value = ? WHERE key = 'hits'", (hits,))
    conn.execute("UPDATE stats SET value = ? WHERE key = 'misses'", (misses,))
    conn.commit()
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 0
    conn.close()
    return path


def test_an_original_file_is_migrated_with_one_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = original_file(tmp_path / "llm_cache.db")
    with caplog.at_level(logging.INFO, logger="llm_cache"):
        storage = SQLiteStorage(path)  # today: "table stats already exists"
        stats = storage.get_stats()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "original llm-caching" in lines[0]
    assert (stats["hits"], stats["misses"], stats["total_requests"]) == (7, 3, 10)
    assert stats["size"] == 0  # the old entries' keys are not ours: not served
    storage.set("k", {"v": 1})
    assert storage.get("k") == {"v": 1}
    storage.close()
    conn = sqlite3.connect(path)
    kept = conn.execute("SELECT key FROM original_cache ORDER BY key").fetchall()
    assert kept == [("a" * 64,), ("b" * 64,)]  # nothing of the user's is destroyed
    conn.close()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="llm_cache"):
        SQLiteStorage(path).close()  # migrated once
    assert caplog.records == []


def run_cli(args: list[str], tmp_path: Path, path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_CACHE_")}
    env["LLM_CACHE_SQLITE_PATH"] = str(path)
    return subprocess.run(
        [sys.executable, "-m", "llm_cache.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=env,
    )


def test_llm_cache_stats_over_an_original_file(tmp_path: Path) -> None:
    path = original_file(tmp_path / "llm_cache.db")
    done = run_cli(["stats", "--json"], tmp_path, path)
    assert done.returncode == 0, done.stderr  # today: a traceback
    assert '"total_requests":10' in done.stdout
    assert "original llm-caching" in done.stderr


def test_the_proxy_starts_and_caches_over_an_original_file(
    tmp_path: Path, start_proxy: ProxyFactory, upstream: Upstream
) -> None:
    path = original_file(tmp_path / "llm_cache.db")
    with start_proxy(sqlite_path=str(path)) as proxy:  # today: start-up dies
        client = openai.OpenAI(base_url=proxy.openai_base, api_key="sk-test", max_retries=0)
        messages: Any = [{"role": "user", "content": "hello"}]
        first = client.chat.completions.with_raw_response.create(model="m", messages=messages)
        second = client.chat.completions.with_raw_response.create(model="m", messages=messages)
        assert second.headers["x-cache-hit"] == "true"
        assert second.parse().id == first.parse().id
        assert httpx2.get(f"{proxy.url}/health").json()["status"] == "healthy"
        stats = httpx2.get(f"{proxy.url}/cache/stats").json()
        assert stats["total_requests"] == stats["hits"] + stats["misses"] == 12


# -- stats, settings, wrapper --------------------------------------------------------------------


def test_total_requests_in_every_stats(tmp_path: Path) -> None:
    for storage in (MemoryStorage(), SQLiteStorage(tmp_path / "c.db")):
        storage.set("k", {"v": 1})
        storage.get("k")
        storage.get("absent")
        stats = storage.get_stats()
        assert stats["total_requests"] == 2 == stats["hits"] + stats["misses"]
        storage.close()
    wrapper = LLMCacheWrapper(storage=MemoryStorage())
    f = wrapper.wrap(lambda x: x)
    f(1)
    f(1)
    assert wrapper.get_stats()["total_requests"] == 2


def test_cache_stats_route_carries_total_requests(proxy: Proxy, upstream: Upstream) -> None:
    client = openai.OpenAI(base_url=proxy.openai_base, api_key="sk-test", max_retries=0)
    for _ in range(3):
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    stats = httpx2.get(f"{proxy.url}/cache/stats").json()
    assert (stats["hits"], stats["misses"], stats["total_requests"]) == (2, 1, 3)


def test_to_dict_has_the_original_sections() -> None:
    c = Config(
        env={
            "LLM_CACHE_SQLITE_PATH": "/data/cache.db",
            "LLM_CACHE_REDIS_HOST": "redis.internal",
            "LLM_CACHE_REDIS_PORT": "6380",
            "LLM_CACHE_REDIS_DB": "2",
            "LLM_CACHE_REDIS_PASSWORD": "pw-secret",
            "LLM_CACHE_PROXY_HOST": "0.0.0.0",
            "LLM_CACHE_PROXY_PORT": "9000",
        },
        dotenv_path=None,
    )
    d = c.to_dict()
    assert d["sqlite"] == {"path": "/data/cache.db"}
    assert d["redis"] == {"host": "redis.internal", "port": 6380, "db": 2, "password": "***"}
    assert d["proxy"] == {"host": "0.0.0.0", "port": 9000}
    assert d["backend"] == "sqlite" and d["max_size"] == 1000  # the original's flat keys
    assert "pw-secret" not in repr(c) and "pw-secret" not in str(d)
    plain = Config(env={}, dotenv_path=None).to_dict()
    assert plain["redis"]["password"] is None


@pytest.mark.parametrize(
    ("variable", "raw", "start"),
    [
        ("BACKEND", "mongodb", "Invalid LLM_CACHE_BACKEND: 'mongodb'"),
        ("MAX_SIZE", "0", "LLM_CACHE_MAX_SIZE must be positive, got 0"),
        ("MAX_SIZE", "-5", "LLM_CACHE_MAX_SIZE must be positive, got -5"),
        ("PROXY_PORT", "70000", "Invalid LLM_CACHE_PROXY_PORT: 70000"),
        ("PROXY_PORT", "-1", "Invalid LLM_CACHE_PROXY_PORT: -1"),
        ("PROXY_PORT", "http", "Invalid LLM_CACHE_PROXY_PORT: 'http'"),
    ],
)
def test_invalid_settings_start_with_the_original_wording(
    variable: str, raw: str, start: str
) -> None:
    with pytest.raises(ValueError) as info:
        Config(env={f"LLM_CACHE_{variable}": raw}, dotenv_path=None)
    message = str(info.value)
    assert message.startswith(start)
    assert "Must be" in message or "at least 1" in message  # then what is allowed


def test_overrides_are_checked_with_the_same_words() -> None:
    with pytest.raises(ValueError, match=r"^LLM_CACHE_MAX_SIZE must be positive, got 0"):
        Config(env={}, dotenv_path=None, max_size=0)


def test_forced_provider_property() -> None:
    wrapper = LLMCacheWrapper(storage=MemoryStorage(), provider="anthropic")
    assert wrapper.forced_provider == "anthropic"
    assert LLMCacheWrapper(storage=MemoryStorage()).forced_provider is None
    wrapper.forced_provider = "openai"
    assert wrapper.wrap(lambda: 1).cache_provider == "openai"  # type: ignore[attr-defined]


# -- the original's routes -----------------------------------------------------------------------


def test_old_management_routes_answer_as_aliases(proxy: Proxy, upstream: Upstream) -> None:
    client = openai.OpenAI(base_url=proxy.openai_base, api_key="sk-test", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="m", messages=[{"role": "user", "content": "one"}]
    )
    key = raw.headers["x-cache-key"]
    client.chat.completions.create(model="m", messages=[{"role": "user", "content": "two"}])
    deleted = httpx2.post(f"{proxy.url}/cache/delete/{key}")
    assert deleted.status_code == 200
    assert deleted.json() == {"status": "success", "message": "Cache entry deleted", "key": key}
    again = httpx2.post(f"{proxy.url}/cache/delete/{key}")
    assert again.status_code == 404
    assert again.json()["detail"] == "Cache entry not found"
    cleared = httpx2.delete(f"{proxy.url}/cache/clear")
    assert cleared.status_code == 200
    assert cleared.json() == {"status": "success", "message": "Cache cleared", "entries_removed": 1}
    assert httpx2.get(f"{proxy.url}/cache/stats").json()["size"] == 0


def test_old_routes_need_the_admin_token_when_set(start_proxy: ProxyFactory) -> None:
    with start_proxy(admin_token="tok") as proxy:
        assert httpx2.delete(f"{proxy.url}/cache/clear").status_code == 401
        assert httpx2.post(f"{proxy.url}/cache/delete/abc").status_code == 401
        ok = httpx2.delete(f"{proxy.url}/cache/clear", headers={"Authorization": "Bearer tok"})
        assert ok.status_code == 200


def compat_app(storage: Any, admin: bytes | None = None) -> Any:
    """The proxy's wiring of ``handle_compat``: asked first, anything else is someone else's."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if not await handle_compat(scope, send, storage, admin):
            await send({"type": "http.response.start", "status": 418, "headers": []})
            await send({"type": "http.response.body", "body": b""})

    return app


def test_get_root_describes_the_proxy() -> None:
    from llm_cache import __version__

    storage = MemoryStorage()
    with run_server(compat_app(storage, b"Bearer tok")) as url:
        body = httpx2.get(f"{url}/").json()  # open, like /health
        assert body["version"] == __version__ and body["status"] == "running"
        assert body["name"] == "llm-cache"
        assert body["endpoints"]["openai_chat"] == "/v1/chat/completions"  # the original's
        assert body["endpoints"]["anthropic_messages"] == "/v1/messages"
        assert "GET /cache/stats" in body["routes"]
        assert httpx2.get(f"{url}/v1/models").status_code == 418  # not handle_compat's
        assert httpx2.post(f"{url}/cache/delete/x").status_code == 401


def test_the_proxy_answers_get_root(proxy: Proxy) -> None:
    assert httpx2.get(f"{proxy.url}/").json()["status"] == "running"


def test_create_app_over_a_corrupt_file_serves_uncached(
    tmp_path: Path, start_proxy: ProxyFactory, upstream: Upstream
) -> None:
    """Issue 9 item 5 at the proxy: a garbage cache file never stops start-up."""
    path = tmp_path / "llm_cache.db"
    path.write_bytes(b"garbage" * 1000)
    with start_proxy(sqlite_path=str(path)) as proxy:
        client = openai.OpenAI(base_url=proxy.openai_base, api_key="sk-test", max_retries=0)
        reply = client.chat.completions.with_raw_response.create(
            model="m", messages=[{"role": "user", "content": "x"}]
        )
        assert reply.http_response.status_code == 200
        assert httpx2.get(f"{proxy.url}/health").json()["status"] == "healthy"
    assert list(tmp_path.glob("llm_cache.db.corrupt-*"))


def test_the_proxy_starts_degraded_over_an_unopenable_path(
    tmp_path: Path, start_proxy: ProxyFactory, upstream: Upstream
) -> None:
    path = tmp_path / "llm_cache.db"
    path.mkdir()  # a directory where the file should be
    with start_proxy(sqlite_path=str(path)) as proxy:  # today: start-up dies
        client = openai.OpenAI(base_url=proxy.openai_base, api_key="sk-test", max_retries=0)
        messages: Any = [{"role": "user", "content": "x"}]
        for _ in range(2):
            reply = client.chat.completions.with_raw_response.create(model="m", messages=messages)
            assert reply.http_response.status_code == 200  # served uncached
        assert upstream.fake.count("/chat/completions") == 2
        health = httpx2.get(f"{proxy.url}/health").json()
        assert health["status"] == "degraded" and "error" in health


def test_llm_cache_stats_over_broken_files(tmp_path: Path) -> None:
    """Issue 9 item 5 at the command line: an answer, never a traceback."""
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"not sqlite" * 100)
    done = run_cli(["stats", "--json"], tmp_path, corrupt)
    assert done.returncode == 0, done.stderr
    assert '"size":0' in done.stdout and "moved aside" in done.stderr
    unopenable = tmp_path / "dir.db"
    unopenable.mkdir()
    done = run_cli(["stats"], tmp_path, unopenable)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "llm-cache: the cache cannot be used" in done.stderr
