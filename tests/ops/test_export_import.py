"""``llm-cache export`` / ``import``: any backend to any backend, proven by real SDK requests.

A cache is filled through the real proxy (OpenAI and Anthropic SDKs, JSON and streams,
embeddings), exported, imported into another backend, and a proxy in ``offline`` mode on that
backend must answer every request as a hit with the same content (a miss would be an error).
"""

from __future__ import annotations

import gzip
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import ProxyFactory, Upstream
from tests.ops.conftest import (
    OPENAI_CHAT,
    Backend,
    Cli,
    MakeBackend,
    fill,
    openai_client,
    replay_offline,
)

PAIRS = [
    ("sqlite", "sqlite", "backup.jsonl"),
    ("sqlite", "redis", "backup.jsonl.gz"),
    ("redis", "sqlite", "backup.jsonl.zst"),
    ("redis", "redis", "backup.jsonl"),
]


def lines_of(path: Path) -> list[dict[str, Any]]:
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    elif path.suffix == ".zst":
        import zstandard

        raw = zstandard.ZstdDecompressor().decompressobj().decompress(raw)
    return [orjson.loads(line) for line in raw.splitlines() if line.strip()]


@pytest.mark.parametrize(("source", "target", "name"), PAIRS, ids=[f"{a}-{b}" for a, b, _ in PAIRS])
def test_export_then_import_serves_every_request_as_a_hit(
    start_proxy: ProxyFactory,
    upstream: Upstream,
    make_backend: MakeBackend,
    run_cli: Cli,
    tmp_path: Path,
    source: str,
    target: str,
    name: str,
) -> None:
    src, dst = make_backend(source), make_backend(target)
    originals = fill(start_proxy, src)
    calls = upstream.fake.request_count

    exported = run_cli(src, "export", str(tmp_path / name))
    assert exported.exit_code == 0, exported.stderr
    assert f"exported 5 entries from {source}" in exported.stderr
    records = lines_of(tmp_path / name)
    assert len(records) == 5
    assert {r["format"] for r in records} == {"llm-cache-entry/1"}
    assert {r["metadata"]["provider"] for r in records} == {"openai", "anthropic"}
    assert sum("events" in r["response"] for r in records) == 2
    # Each record carries the request it answers, and no credential.
    assert all(r["request"]["method"] == "POST" and r["request"]["body"] for r in records)
    assert all(r["request"]["url"].startswith(upstream.url) for r in records)
    raw = (tmp_path / name).read_bytes()
    assert b"sk-test-123" not in raw and b"sk-ant-test-456" not in raw

    imported = run_cli(dst, "import", str(tmp_path / name))
    assert imported.exit_code == 0, imported.stderr
    assert f"imported 5 entries into {target}" in imported.stderr
    assert "re-keyed" not in imported.stderr  # every key recomputed from its request matched
    assert dst.storage().get_size() == 5

    replayed = replay_offline(start_proxy, dst)
    assert {name: hit for name, (hit, _) in replayed.items()} == dict.fromkeys(originals, "true")
    assert {n: body for n, (_, body) in replayed.items()} == {
        n: body for n, (_, body) in originals.items()
    }
    assert upstream.fake.request_count == calls  # nothing reached the upstream


def test_export_filters_by_provider_model_and_age(
    start_proxy: ProxyFactory, make_backend: MakeBackend, run_cli: Cli, tmp_path: Path
) -> None:
    backend = make_backend("sqlite")
    fill(start_proxy, backend)
    out = tmp_path / "x.jsonl"

    assert run_cli(backend, "export", str(out), "--provider", "anthropic").exit_code == 0
    assert {r["metadata"]["provider"] for r in lines_of(out)} == {"anthropic"}
    assert len(lines_of(out)) == 2

    assert run_cli(backend, "export", str(out), "--model", "text-embedding-3-small").exit_code == 0
    assert [r["metadata"]["endpoint"] for r in lines_of(out)] == ["/embeddings"]

    time.sleep(1.2)
    with start_proxy(**backend.overrides) as proxy:
        openai_client(proxy).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "a newer one"}]
        )
    result = run_cli(backend, "export", str(out), "--since", "1s")
    assert result.exit_code == 0 and "exported 1 entries" in result.stderr
    assert len(lines_of(out)) == 1

    bad = run_cli(backend, "export", str(out), "--since", "yesterday")
    assert bad.exit_code == 2 and "cannot read duration 'yesterday'" in bad.stderr


def test_export_to_stdout_and_import_a_compressed_stream_from_stdin(
    start_proxy: ProxyFactory, make_backend: MakeBackend, run_cli: Cli
) -> None:
    src, dst = make_backend("sqlite"), make_backend("redis")
    fill(start_proxy, src)
    exported = run_cli(src, "export", "-")
    assert exported.exit_code == 0
    assert len(exported.stdout_bytes.splitlines()) == 5
    imported = run_cli(dst, "import", "-", input=gzip.compress(exported.stdout_bytes))
    assert imported.exit_code == 0, imported.stderr
    assert "imported 5 entries" in imported.stderr
    replayed = replay_offline(start_proxy, dst)
    assert {hit for hit, _ in replayed.values()} == {"true"}


# -- bad files ---------------------------------------------------------------------------------


@pytest.fixture
def good_lines(start_proxy: ProxyFactory, make_backend: MakeBackend, run_cli: Cli) -> list[bytes]:
    backend = make_backend("sqlite")
    fill(start_proxy, backend)
    return run_cli(backend, "export").stdout_bytes.splitlines()


def test_a_bad_line_imports_nothing_and_names_each_bad_line(
    good_lines: list[bytes], make_backend: MakeBackend, run_cli: Cli, tmp_path: Path
) -> None:
    wrong_status = orjson.loads(good_lines[2])
    wrong_status["response"]["status"] = 500
    lines = [
        good_lines[0],
        b'{"format": "llm-cache-entry/1", "key": "k", "response": ',  # truncated JSON
        good_lines[1],
        b'{"format": "something-else/9"}',
        orjson.dumps(wrong_status),
        b"[1, 2]",
        good_lines[3],
    ]
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    backend = make_backend("sqlite")

    result = run_cli(backend, "import", str(path))
    assert result.exit_code == 1
    assert "4 bad lines" in result.stderr and "nothing imported" in result.stderr
    assert f"{path}:2: not valid JSON" in result.stderr
    assert f"{path}:4: 'format' must be 'llm-cache-entry/1', got 'something-else/9'" in (
        result.stderr
    )
    assert f"{path}:5: 'response.status' must be a 2xx integer, got 500" in result.stderr
    assert f"{path}:6: expected a JSON object, got list" in result.stderr
    assert backend.storage().get_size() == 0

    dry = run_cli(backend, "import", str(path), "--dry-run", "--skip-invalid")
    assert dry.exit_code == 0 and "3 valid entries, 4 bad lines" in dry.stderr
    assert backend.storage().get_size() == 0

    partial = run_cli(backend, "import", str(path), "--skip-invalid")
    assert partial.exit_code == 0
    assert f"skipped {path}:2: not valid JSON" in partial.stderr
    assert "imported 3 entries" in partial.stderr and "4 bad lines skipped" in partial.stderr
    assert backend.storage().get_size() == 3


def test_a_corrupt_compressed_file_is_refused_whole(
    good_lines: list[bytes], make_backend: MakeBackend, run_cli: Cli, tmp_path: Path
) -> None:
    packed = gzip.compress(b"\n".join(good_lines) + b"\n")
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(packed[: len(packed) - 20])  # the gzip trailer and some data are missing
    backend = make_backend("sqlite")
    result = run_cli(backend, "import", str(path))
    assert result.exit_code == 1
    assert "cannot read the file" in result.stderr and "nothing imported" in result.stderr
    assert backend.storage().get_size() == 0


def test_missing_file_directory_and_memory_backend_get_clear_errors(
    make_backend: MakeBackend, run_cli: Cli, tmp_path: Path
) -> None:
    backend = make_backend("sqlite")
    missing = run_cli(backend, "import", str(tmp_path / "nope.jsonl"))
    assert missing.exit_code == 1 and "nope.jsonl: no such file" in missing.stderr
    folder = run_cli(backend, "import", str(tmp_path))
    assert folder.exit_code == 1 and "holds no cassettes" in folder.stderr
    (tmp_path / "ok.jsonl").write_bytes(b"")
    memory = run_cli(Backend("memory", {"LLM_CACHE_BACKEND": "memory"}, {}), "import", "ok.jsonl")
    assert memory.exit_code == 2 and "LLM_CACHE_BACKEND=memory" in memory.stderr
    export_dir = run_cli(backend, "export", str(tmp_path))
    assert export_dir.exit_code == 1 and "is a directory" in export_dir.stderr


# -- what import does with each record ---------------------------------------------------------


def test_records_whose_key_rules_changed_are_rekeyed_from_their_request(
    start_proxy: ProxyFactory,
    upstream: Upstream,
    good_lines: list[bytes],
    make_backend: MakeBackend,
    run_cli: Cli,
    tmp_path: Path,
) -> None:
    record = next(
        r
        for r in map(orjson.loads, good_lines)
        if r["response"].get("body", {}).get("object") == "chat.completion"
    )
    # An entry written under older key rules: its key no longer matches; its request does.
    assert record["request"]["body"]["messages"] == OPENAI_CHAT["messages"]
    record["key"] = "0" * 64
    no_request = dict(orjson.loads(good_lines[0]), request=None, key="1" * 64)
    path = tmp_path / "old.jsonl"
    path.write_bytes(orjson.dumps(record) + b"\n" + orjson.dumps(no_request) + b"\n")
    backend = make_backend("sqlite")
    result = run_cli(backend, "import", str(path))
    assert result.exit_code == 0, result.stderr
    assert "imported 2 entries" in result.stderr and "1 re-keyed" in result.stderr
    assert backend.storage().peek_entry("0" * 64) is None
    assert backend.storage().peek_entry("1" * 64) is not None  # no request: kept as it was

    with start_proxy(mode="offline", **backend.overrides) as proxy:
        raw = openai_client(proxy).chat.completions.with_raw_response.create(**OPENAI_CHAT)  # type: ignore[arg-type]
    assert raw.headers["x-cache-hit"] == "true"
    assert orjson.loads(raw.http_response.content) == record["response"]["body"]


def test_expiry_is_kept_and_expired_records_are_skipped(
    good_lines: list[bytes], make_backend: MakeBackend, run_cli: Cli, tmp_path: Path
) -> None:
    alive, dead, plain = (orjson.loads(line) for line in good_lines[:3])
    alive["metadata"]["expires"] = time.time() + 3600
    dead["metadata"]["expires"] = time.time() - 1
    path = tmp_path / "ttl.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in (alive, dead, plain)) + b"\n")
    backend = make_backend("redis")
    result = run_cli(backend, "import", str(path))
    assert result.exit_code == 0
    assert "imported 2 entries" in result.stderr and "1 expired, skipped" in result.stderr
    storage = backend.storage()
    kept = storage.peek_entry(alive["key"])
    assert kept is not None and kept.info["expires"] is not None
    assert abs(kept.info["expires"] - alive["metadata"]["expires"]) < 5
    plain_entry = storage.peek_entry(plain["key"])
    assert plain_entry is not None and plain_entry.info["expires"] is None
    assert storage.peek_entry(dead["key"]) is None


def test_skip_existing_keeps_entries_already_present(
    good_lines: list[bytes], make_backend: MakeBackend, run_cli: Cli, tmp_path: Path
) -> None:
    backend = make_backend("sqlite")
    first = orjson.loads(good_lines[0])
    backend.storage().set_bytes(first["key"], b"jkept")
    path = tmp_path / "all.jsonl"
    path.write_bytes(b"\n".join(good_lines) + b"\n")
    result = run_cli(backend, "import", str(path), "--skip-existing")
    assert result.exit_code == 0
    assert "imported 4 entries" in result.stderr and "1 already present, kept" in result.stderr
    entry = backend.storage().peek_entry(first["key"])
    assert entry is not None and entry.data == b"jkept"


# -- on a terminal -----------------------------------------------------------------------------


def test_a_terminal_gets_a_progress_bar_and_a_pipe_does_not(
    start_proxy: ProxyFactory, make_backend: MakeBackend, tmp_path: Path
) -> None:
    backend = make_backend("sqlite")
    fill(start_proxy, backend)
    exe = str(Path(sys.executable).parent / "llm-cache")
    env = {**os.environ, **backend.env, "COLUMNS": "120", "TERM": "xterm"}
    out = tmp_path / "tty.jsonl"

    master, slave = pty.openpty()
    proc = subprocess.Popen([exe, "export", str(out)], stderr=slave, env=env, cwd=tmp_path)
    os.close(slave)
    screen = b""
    while True:
        ready, _, _ = select.select([master], [], [], 30)
        if not ready:
            break
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        screen += chunk
    assert proc.wait(30) == 0
    os.close(master)
    text = screen.decode("utf-8", "replace")
    assert "exporting" in text and "5/5" in text  # the bar, with its count
    assert "exported 5 entries" in text

    piped = subprocess.run(
        [exe, "export", str(out)], env=env, cwd=tmp_path, capture_output=True, timeout=60
    )
    assert piped.returncode == 0
    assert piped.stderr.decode().strip().splitlines() == [
        f"exported 5 entries from sqlite ({backend.env['LLM_CACHE_SQLITE_PATH']}) to {out}"
    ]


# -- a storage that fails ----------------------------------------------------------------------


def big_records(n: int) -> bytes:
    """``n`` valid records of ~80 kB each."""
    lines = []
    for i in range(n):
        record = {
            "format": "llm-cache-entry/1",
            "key": f"{i:064x}",
            "request": None,
            "response": {
                "status": 200,
                "content_type": "application/json",
                "body": {"i": i, "pad": os.urandom(40_000).hex()},
            },
            "metadata": {"provider": "openai", "model": "m", "endpoint": "/chat/completions"},
        }
        lines.append(orjson.dumps(record))
    return b"\n".join(lines) + b"\n"


def test_a_storage_that_fails_part_way_says_how_much_was_imported(tmp_path: Path) -> None:
    from llm_cache.cache.redis_storage import RedisStorage
    from llm_cache.ops.transfer import ImportStorageError, import_file
    from tests.support.redis_servers import REDIS_SERVER, spawn_redis_server

    if REDIS_SERVER is None:
        pytest.skip("needs the redis-server binary")
    path = tmp_path / "big.jsonl"
    path.write_bytes(big_records(30))
    with spawn_redis_server() as server:
        storage = RedisStorage(url=f"redis://127.0.0.1:{server.port}")
        seen: list[tuple[int, int]] = []

        def after_each(imported: int) -> None:  # the server dies after the 2nd batch of 5
            seen.append((imported, storage.get_size()))
            if imported == 10:
                server.stop()

        with pytest.raises(ImportStorageError) as failed:
            import_file(storage, str(path), batch_size=5, on_batch=after_each)
        storage.close()
    assert seen == [(5, 5), (10, 10)]  # each batch was really written before the next
    assert failed.value.written == 10 and failed.value.total == 30
    message = str(failed.value)
    assert message.startswith("the storage failed after 10 of 30 entries were imported")
    assert "(those 10 stay imported)" in message and "redis" in message


def test_an_unreachable_backend_is_a_clear_error(run_cli: Cli, tmp_path: Path) -> None:
    from tests.support.redis_servers import free_port

    down = Backend(
        "redis",
        {"LLM_CACHE_BACKEND": "redis", "LLM_CACHE_REDIS_URL": f"redis://127.0.0.1:{free_port()}"},
        {},
    )
    (tmp_path / "one.jsonl").write_bytes(big_records(1))
    for args in (
        ("ls",),
        ("export", "-"),
        ("import", "one.jsonl"),
        ("prune", "--older-than", "1d"),
    ):
        result = run_cli(down, *args)
        assert result.exit_code == 1, args
        assert "llm-cache: the cache cannot be used" in result.stderr, result.stderr
        assert "redis" in result.stderr
        assert "Traceback" not in result.stderr


def test_request_answer_pairs_become_the_entries_the_proxy_stored(
    good_lines: list[bytes], make_backend: MakeBackend, start_proxy: ProxyFactory
) -> None:
    """The pytest plugin's cassettes yield ``(request, response)`` pairs in the export form;
    each becomes the entry the proxy itself stored for that request, under the same key."""
    from llm_cache.engine.entry import Entry
    from llm_cache.ops.records import item_from_exchange, parse_record

    backend = make_backend("sqlite")
    storage = backend.storage()
    for line in good_lines:
        record = orjson.loads(line)
        item = item_from_exchange(record["request"], record["response"])
        assert item.key == record["key"]
        assert item.metadata == {
            k: record["metadata"][k] for k in ("provider", "endpoint", "model")
        }
        same = Entry.decode(parse_record(line).blob)
        assert Entry.decode(item.blob).payload == same.payload  # the answer, byte for byte
        storage.set_bytes(item.key, item.blob, item.metadata)
    replayed = replay_offline(start_proxy, backend)
    assert {hit for hit, _ in replayed.values()} == {"true"}

    with pytest.raises(ValueError, match="not a cached route"):
        item_from_exchange({"url": "https://x.test/v1/models", "body": {}}, {"status": 200})
