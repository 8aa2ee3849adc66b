"""``llm-cache ls / show / rm / prune`` on SQLite and Redis caches filled through the proxy."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from tests.conftest import ProxyFactory
from tests.ops.conftest import (
    ANTHROPIC_MSG,
    OPENAI_CHAT,
    Cli,
    MakeBackend,
    anthropic_client,
    fill,
    openai_client,
)

BACKENDS = ["sqlite", "redis"]


@pytest.mark.parametrize("kind", BACKENDS)
def test_ls_lists_newest_first_with_filters_and_json(
    start_proxy: ProxyFactory, make_backend: MakeBackend, run_cli: Cli, kind: str
) -> None:
    backend = make_backend(kind)
    fill(start_proxy, backend)
    with start_proxy(**backend.overrides) as proxy:  # one hit, on the Anthropic message
        anthropic_client(proxy).messages.create(**ANTHROPIC_MSG)  # type: ignore[arg-type]

    table = run_cli(backend, "ls")
    assert table.exit_code == 0
    lines = table.stdout.splitlines()
    assert lines[0].split() == [
        "KEY", "PROVIDER", "MODEL", "ENDPOINT", "SIZE", "CREATED", "LAST", "HIT", "HITS"
    ]  # fmt: skip
    assert len(lines) == 6
    assert "5 shown of 5 entries" in table.stderr
    # newest first: the Anthropic stream was the last request made
    assert "anthropic" in lines[1] and "claude-sonnet-4-6" in lines[1]
    assert "/messages" in lines[1]
    assert sum("/chat/completions" in line for line in lines) == 2

    rows = orjson.loads(run_cli(backend, "ls", "--json").stdout)
    assert len(rows) == 5 and all(len(r["key"]) == 64 for r in rows)
    created = [r["created"] for r in rows]
    assert created == sorted(created, reverse=True)
    hit = [r for r in rows if r["last_hit"] is not None]
    assert len(hit) == 1 and hit[0]["provider"] == "anthropic"
    if kind == "redis":  # SQLite keeps no per-entry hit count
        assert hit[0]["hits"] == 1

    only = orjson.loads(run_cli(backend, "ls", "--json", "--provider", "OpenAI").stdout)
    assert {r["provider"] for r in only} == {"openai"} and len(only) == 3
    model = orjson.loads(run_cli(backend, "ls", "--json", "--model", "claude-sonnet-4-6").stdout)
    assert len(model) == 2
    assert len(orjson.loads(run_cli(backend, "ls", "--json", "--limit", "2").stdout)) == 2
    assert run_cli(backend, "ls", "--limit", "0").exit_code == 2


def test_ls_on_an_empty_cache_says_so(make_backend: MakeBackend, run_cli: Cli) -> None:
    result = run_cli(make_backend("sqlite"), "ls")
    assert result.exit_code == 0 and result.stdout == ""
    assert "no entries" in result.stderr


@pytest.mark.parametrize("kind", BACKENDS)
def test_show_prints_request_and_answer_without_counting_a_hit(
    start_proxy: ProxyFactory, make_backend: MakeBackend, run_cli: Cli, kind: str
) -> None:
    backend = make_backend(kind)
    with start_proxy(**backend.overrides) as proxy:
        raw = openai_client(proxy).chat.completions.with_raw_response.create(**OPENAI_CHAT)  # type: ignore[arg-type]
    key = raw.headers["x-cache-key"]
    answer = raw.parse()
    stats = backend.storage().get_stats()

    shown = run_cli(backend, "show", key)
    assert shown.exit_code == 0, shown.stderr
    assert f"key       {key}" in shown.stdout
    assert "provider  openai" in shown.stdout and "model     gpt-4o-mini" in shown.stdout
    assert "response  200 application/json" in shown.stdout
    text = orjson.dumps(answer.choices[0].message.content).decode()
    assert text in shown.stdout  # the stored answer, as JSON
    assert "sk-test-123" not in shown.stdout  # never a credential
    assert '"content": "Name a prime."' in shown.stdout  # the request it answers
    assert "/v1/chat/completions" in shown.stdout

    as_json = orjson.loads(run_cli(backend, "show", key[:10], "--json").stdout)
    assert as_json["key"] == key and as_json["format"] == "llm-cache-entry/1"
    assert as_json["response"]["body"]["id"] == answer.id
    assert backend.storage().get_stats()["hits"] == stats["hits"]  # show is not a hit


def test_show_and_rm_explain_unknown_short_and_ambiguous_keys(
    make_backend: MakeBackend, run_cli: Cli
) -> None:
    backend = make_backend("sqlite")
    storage = backend.storage()
    storage.set("abcdef01" + "0" * 56, {"v": 1})
    storage.set("abcdef02" + "0" * 56, {"v": 2})
    missing = run_cli(backend, "show", "f" * 64)
    assert missing.exit_code == 1 and "no entry with key" in missing.stderr
    short = run_cli(backend, "show", "abc")
    assert short.exit_code == 1 and "6+ characters" in short.stderr
    ambiguous = run_cli(backend, "rm", "abcdef")
    assert ambiguous.exit_code == 1 and "2 keys start with 'abcdef'" in ambiguous.stderr
    assert storage.get_size() == 2
    value = run_cli(backend, "show", "abcdef02")
    assert value.exit_code == 0 and "a cached function result" in value.stdout


@pytest.mark.parametrize("kind", BACKENDS)
def test_rm_removes_one_entry_so_the_next_request_is_a_miss(
    start_proxy: ProxyFactory, make_backend: MakeBackend, run_cli: Cli, kind: str
) -> None:
    backend = make_backend(kind)
    fill(start_proxy, backend)
    with start_proxy(**backend.overrides) as proxy:
        client = openai_client(proxy)
        key = client.chat.completions.with_raw_response.create(**OPENAI_CHAT).headers[  # type: ignore[arg-type]
            "x-cache-key"
        ]
        removed = run_cli(backend, "rm", key[:12])
        assert removed.exit_code == 0 and f"removed {key}" in removed.stderr
        again = client.chat.completions.with_raw_response.create(**OPENAI_CHAT)  # type: ignore[arg-type]
        assert again.headers["x-cache-hit"] == "false"
    assert run_cli(backend, "rm", "0" * 64).exit_code == 1


@pytest.mark.parametrize("kind", BACKENDS)
def test_prune_removes_entries_older_than_the_duration(
    start_proxy: ProxyFactory, make_backend: MakeBackend, run_cli: Cli, kind: str
) -> None:
    backend = make_backend(kind)
    fill(start_proxy, backend)
    time.sleep(1.2)
    with start_proxy(**backend.overrides) as proxy:
        openai_client(proxy).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "fresh"}]
        )
    dry = run_cli(backend, "prune", "--older-than", "1s", "--dry-run")
    assert dry.exit_code == 0 and "would remove 5 of 6 entries" in dry.stderr
    assert backend.storage().get_size() == 6
    pruned = run_cli(backend, "prune", "--older-than", "1s")
    assert pruned.exit_code == 0 and "removed 5 of 6 entries" in pruned.stderr
    assert backend.storage().get_size() == 1
    nothing = run_cli(backend, "prune", "--older-than", "1h")
    assert "removed 0 of 1 entries" in nothing.stderr

    assert run_cli(backend, "prune").exit_code == 2  # --older-than is required
    bad = run_cli(backend, "prune", "--older-than", "-3d")
    assert bad.exit_code == 2 and "--older-than" in bad.stderr


def test_imported_entries_keep_the_age_of_their_answer(
    start_proxy: ProxyFactory, make_backend: MakeBackend, run_cli: Cli, tmp_path: Path
) -> None:
    src, dst = make_backend("sqlite"), make_backend("redis")
    fill(start_proxy, src)
    before = {r["key"]: r["created"] for r in orjson.loads(run_cli(src, "ls", "--json").stdout)}
    time.sleep(1.2)
    assert run_cli(src, "export", str(tmp_path / "x.jsonl")).exit_code == 0
    assert run_cli(dst, "import", str(tmp_path / "x.jsonl")).exit_code == 0
    after = {r["key"]: r["created"] for r in orjson.loads(run_cli(dst, "ls", "--json").stdout)}
    assert after.keys() == before.keys()
    assert all(abs(after[k] - before[k]) < 0.01 for k in before)  # not the import time
    # so answers recorded over a second ago are neither "since 1s" nor spared by a prune,
    # though they were imported just now
    recent = run_cli(dst, "export", "-", "--since", "1s")
    assert recent.stdout == "" and "exported 0 entries" in recent.stderr
    pruned = run_cli(dst, "prune", "--older-than", "1s")
    assert "removed 5 of 5 entries" in pruned.stderr
