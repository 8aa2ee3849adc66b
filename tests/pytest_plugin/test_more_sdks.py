"""The SDKs built on ``httpx`` (google-genai, ollama, cohere) under the plugin, end to end.

Same method as test_record_replay.py: a real pytest subprocess records against the simulated
Gemini, Ollama and Cohere servers, then replays with all three stopped.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fake_providers.cohere import create_cohere_fake
from tests.fake_providers.gemini import create_gemini_fake
from tests.fake_providers.ollama import create_ollama_fake
from tests.pytest_plugin.conftest import Sandbox, UpstreamServer

#: A Google-shaped key: sent in ``x-goog-api-key``, it must never reach a cassette.
KEY = "AIzaSy" + "Q7x3Kd9LmN2pR5tV8wY1zB4cE6gH0jA3kM"


@pytest.fixture
def servers() -> Iterator[dict[str, UpstreamServer]]:
    running: dict[str, UpstreamServer] = {}
    try:
        for name, make in (
            ("GEMINI_URL", create_gemini_fake),
            ("OLLAMA_URL", create_ollama_fake),
            ("COHERE_URL", create_cohere_fake),
        ):
            running[name] = UpstreamServer(make())
        yield running
    finally:
        for server in running.values():
            server.stop()


def test_genai_ollama_cohere_record_then_replay_offline(
    tmp_path: Path, servers: dict[str, UpstreamServer]
) -> None:
    sandbox = Sandbox(tmp_path, servers["GEMINI_URL"], sample="sample_more_sdks.py")
    env = {name: server.url for name, server in servers.items()} | {"FAKE_API_KEY": KEY}
    first = sandbox.run(env=env)
    first.assert_passed()
    assert set(first.results) == {"test_gemini", "test_ollama", "test_cohere"}
    counts = {name: server.fake.request_count for name, server in servers.items()}
    assert counts == {"GEMINI_URL": 2, "OLLAMA_URL": 1, "COHERE_URL": 2}
    for server in servers.values():
        server.stop()

    second = sandbox.run("--llm-cache-mode=replay", env=env)
    second.assert_passed()
    assert second.results == first.results
    assert first.results["test_ollama"]["chunks"] > 2  # replayed line by line

    for path in sandbox.cassettes.iterdir():
        assert KEY not in path.read_text(encoding="utf-8")
    gemini = sandbox.load("test_gemini")["interactions"]
    assert [i["request"]["headers"] for i in gemini] == [{}, {}]  # no x-goog-api-key
    assert gemini[1]["request"]["url"].endswith(":streamGenerateContent?alt=sse")
    assert gemini[1]["response"]["events"][0]["data"]["candidates"]
    ollama = sandbox.load("test_ollama")["interactions"][0]["response"]
    assert ollama["content_type"] == "application/x-ndjson"
    assert ollama["events"][-1]["done"] is True
    cohere = sandbox.load("test_cohere")["interactions"][1]["response"]
    assert cohere["events"][0]["event"] == "message-start"
