"""The ``llm-cache`` command and the proxy entry points, run as real processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import orjson
import pytest

from llm_cache.cache.sqlite_storage import SQLiteStorage

BIN = Path(sys.executable).parent


def run(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LLM_CACHE_")}
    return subprocess.run(
        args,
        cwd=tmp_path,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def test_help_lists_the_commands(tmp_path: Path) -> None:
    result = run([str(BIN / "llm-cache"), "--help"], tmp_path)
    assert result.returncode == 0
    for word in ("serve", "stats", "clear", "config", "base_url"):
        assert word in result.stdout
    serve_help = run([str(BIN / "llm-cache"), "serve", "--help"], tmp_path)
    assert "--port" in serve_help.stdout and "--workers" in serve_help.stdout


def test_stats_and_clear_act_on_the_configured_sqlite_file(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    storage = SQLiteStorage(db_path=str(db), max_size=50)
    storage.set("k1", {"a": 1})
    storage.set("k2", {"b": 2})
    storage.get("k1")
    storage.get("nope")
    storage.close()

    stats = run(
        [str(BIN / "llm-cache"), "stats", "--json"], tmp_path, LLM_CACHE_SQLITE_PATH=str(db)
    )
    assert stats.returncode == 0, stats.stderr
    data = orjson.loads(stats.stdout)
    assert (data["size"], data["hits"], data["misses"], data["hit_rate"]) == (2, 1, 1, 50.0)

    table = run([str(BIN / "llm-cache"), "stats"], tmp_path, LLM_CACHE_SQLITE_PATH=str(db))
    assert "entries   2 of 1000" in table.stdout
    assert "50.00 %" in table.stdout

    refused = run([str(BIN / "llm-cache"), "clear"], tmp_path, LLM_CACHE_SQLITE_PATH=str(db))
    assert refused.returncode == 1 and "--yes" in refused.stderr
    cleared = run(
        [str(BIN / "llm-cache"), "clear", "--yes"], tmp_path, LLM_CACHE_SQLITE_PATH=str(db)
    )
    assert cleared.returncode == 0 and "removed 2 entries" in cleared.stdout
    assert SQLiteStorage(db_path=str(db)).get_size() == 0


def test_config_masks_secrets_and_bad_values_name_the_variable(tmp_path: Path) -> None:
    shown = run(
        [str(BIN / "llm-cache"), "config"],
        tmp_path,
        LLM_CACHE_ADMIN_TOKEN="tok-123",
        LLM_CACHE_REDIS_URL="redis://:pw-456@localhost:6379/0",
    )
    assert shown.returncode == 0
    assert "tok-123" not in shown.stdout and "pw-456" not in shown.stdout
    assert '"admin_token": "***"' in shown.stdout

    bad = run([str(BIN / "llm-cache"), "stats"], tmp_path, LLM_CACHE_MAX_SIZE="lots")
    assert bad.returncode == 2
    assert "LLM_CACHE_MAX_SIZE" in bad.stderr


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("LLM_CACHE_MAX_SIZE=77\nLLM_CACHE_BACKEND=memory\n")
    shown = run([str(BIN / "llm-cache"), "config"], tmp_path)
    config = orjson.loads(shown.stdout)
    assert (config["max_size"], config["backend"]) == (77, "memory")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(url: str, proc: subprocess.Popen[bytes]) -> dict[str, object]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}")
        try:
            return dict(httpx2.get(f"{url}/health", timeout=1).json())
        except httpx2.HTTPError:
            time.sleep(0.1)
    raise AssertionError("server did not become healthy")


@pytest.mark.parametrize(
    "command",
    [
        ["llm-cache", "serve", "--port", "{port}"],
        ["llm-cache", "serve", "--port", "{port}", "--workers", "2"],
        ["llm-caching-proxy", "--port", "{port}"],
        ["-m", "llm_cache.proxy.server", "--port", "{port}"],
    ],
    ids=["llm-cache serve", "two workers", "llm-caching-proxy", "python -m"],
)
def test_entry_points_start_the_proxy(tmp_path: Path, command: list[str]) -> None:
    port = free_port()
    args = [a.format(port=port) for a in command]
    exe = [sys.executable] if args[0] == "-m" else [str(BIN / args.pop(0))]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LLM_CACHE_")}
    proc = subprocess.Popen(
        exe + args,
        cwd=tmp_path,
        env=clean,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        health = wait_healthy(f"http://127.0.0.1:{port}", proc)
        assert health["status"] == "healthy" and health["backend"] == "sqlite"
        assert (tmp_path / "llm_cache.db").exists()  # the default SQLite file, in the cwd
    finally:
        proc.terminate()
        proc.wait(10)
