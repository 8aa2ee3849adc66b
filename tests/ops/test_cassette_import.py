"""``llm-cache import FOLDER``: the pytest plugin's cassettes become cache entries.

A real pytest session (the plugin, the OpenAI and Anthropic SDKs) records cassettes against the
simulated upstream; the folder is imported, and an offline proxy on the same upstream URLs
answers each recorded request as a hit with the recorded answer (its id is unique per upstream
call, so a fresh answer would show).
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import httpx2

from tests.conftest import ProxyFactory
from tests.ops.conftest import Backend, Cli
from tests.pytest_plugin.conftest import (  # noqa: F401 - fixtures used by name
    Sandbox,
    sandbox,
    upstream_server,
)

# Three requests with three different keys (the sample's OpenAI stream asks what its chat
# asks: one key, so its entry would replace the chat's, as in any cache).
RECORDED = ("test_openai_chat", "test_anthropic_message", "test_anthropic_stream")


def test_a_cassette_folder_imports_as_hits(
    sandbox: Sandbox,  # noqa: F811
    start_proxy: ProxyFactory,
    run_cli: Cli,
    tmp_path: Path,
) -> None:
    recorded = sandbox.run(tests=RECORDED)
    recorded.assert_passed()
    calls = sandbox.upstream.fake.request_count
    db = tmp_path / "from-cassettes.db"
    backend = Backend("sqlite", {"LLM_CACHE_SQLITE_PATH": str(db)}, {})

    dry = run_cli(backend, "import", str(sandbox.root / "cassettes"), "--dry-run")
    assert dry.exit_code == 0 and "3 cacheable exchanges" in dry.stderr
    imported = run_cli(backend, "import", str(sandbox.root / "cassettes"))
    assert imported.exit_code == 0, imported.stderr
    assert "imported 3 entries from cassettes" in imported.stderr

    url = sandbox.upstream.url
    with start_proxy(
        sqlite_path=str(db), mode="offline", openai_base_url=f"{url}/v1", anthropic_base_url=url
    ) as proxy:
        for test in RECORDED:
            (interaction,) = sandbox.load(test)["interactions"]
            request = interaction["request"]
            answer = httpx2.post(
                proxy.url + urlsplit(request["url"]).path,
                json=request["body"],
                headers={**request["headers"], "authorization": "Bearer sk-other"},
                timeout=10,
            )
            assert answer.status_code == 200, (test, answer.text)
            assert answer.headers["x-cache-hit"] == "true", test
            assert recorded.results[test]["id"] in answer.text, test
    assert sandbox.upstream.fake.request_count == calls


def test_a_folder_holding_something_else_is_refused_whole(run_cli: Cli, tmp_path: Path) -> None:
    folder = tmp_path / "cassettes"
    folder.mkdir()
    (folder / "notes.json").write_text(json.dumps({"hello": "world"}))
    db = tmp_path / "c.db"
    result = run_cli(
        Backend("sqlite", {"LLM_CACHE_SQLITE_PATH": str(db)}, {}), "import", str(folder)
    )
    assert result.exit_code == 1
    assert "notes.json" in result.stderr and "nothing imported" in result.stderr
