"""The plugin end to end: real pytest sessions on a user's test module, real SDKs, real HTTP.

Each test runs ``python -m pytest`` in a subprocess on ``samples/sample_sdks.py`` (copied as
``test_app.py``), against a simulated upstream of its own. "Replayed" is proven, not assumed:
the upstream is stopped (or its request count checked) and the answers' ids, unique per
upstream call, must equal the recorded ones.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

from tests.pytest_plugin.conftest import API_KEY, Sandbox

SDK_TESTS = (
    "test_openai_chat",
    "test_openai_stream",
    "test_anthropic_message",
    "test_anthropic_stream",
    "test_async_openai",
    "test_async_anthropic_stream",
    "test_plain_httpx",
    "test_langchain",
    "TestInClass::test_method",
    "test_fixture",
)


def test_record_once_then_replay_with_the_upstream_stopped(sandbox: Sandbox) -> None:
    first = sandbox.run(tests=SDK_TESTS)
    first.assert_passed()
    recorded_calls = sandbox.upstream.fake.request_count
    # one upstream call per request: 1+1+1+1 (sync SDKs), 2+3+1 (async, 3 of them concurrent),
    # 2 (httpx), 2 (LangChain), 1 (class), 1 (fixture)
    assert recorded_calls == 16, [r.path for r in sandbox.upstream.fake.requests]
    for name in SDK_TESTS:
        assert sandbox.cassette(name.replace("::", ".")).exists(), name
    assert "llm-cache (once): 10 tests, 0 answers replayed, 16 recorded, 10 cassettes written" in (
        first.output
    )
    assert first.results["test_fixture"]["mode"] == "once"
    assert first.results["test_fixture"]["recorded"] == 1
    assert first.results["test_fixture"]["replayed"] == 0

    sandbox.upstream.stop()
    second = sandbox.run(tests=SDK_TESTS, env={"CI": "true"})
    second.assert_passed()
    assert "warning" not in second.output, second.output
    assert "llm-cache (replay): 10 tests, 16 answers replayed, 0 recorded, 0 cassettes written" in (
        second.output
    )
    assert second.results["test_fixture"]["mode"] == "replay"
    assert second.results["test_fixture"]["replayed"] == 1
    assert second.results["test_fixture"]["recorded"] == 0
    for name in SDK_TESTS:
        key = name.replace("::", ".")
        if key == "test_fixture":
            assert second.results[key]["id"] == first.results[key]["id"]
        else:
            assert second.results[key] == first.results[key], key
    # streams were replayed as streams: as many chunks as when recorded, more than one
    assert second.results["test_openai_stream"]["chunks"] > 1
    assert second.results["test_anthropic_stream"]["chunks"] > 1
    assert second.results["test_langchain"]["streamed"] == first.results["test_langchain"]["text"]


def test_cassettes_are_readable_and_hold_no_credentials(sandbox: Sandbox) -> None:
    run = sandbox.run(tests=("test_openai_chat", "test_openai_stream", "test_anthropic_stream"))
    run.assert_passed()
    for path in sandbox.cassettes.iterdir():
        text = path.read_text(encoding="utf-8")
        assert API_KEY not in text
        assert "authorization" not in text.lower()
        assert "x-api-key" not in text.lower()
        assert text.startswith('{\n  "format": "llm-cache-cassette/1"')  # pretty-printed

    chat = sandbox.load("test_openai_chat")
    assert chat["test"] == "test_app.py::test_openai_chat"
    (interaction,) = chat["interactions"]
    assert interaction["request"]["body"]["messages"][1]["content"] == "What is 2+2?"
    assert interaction["response"]["body"]["id"] == run.results["test_openai_chat"]["id"]

    stream = sandbox.load("test_openai_stream")["interactions"][0]["response"]
    assert stream["content_type"].startswith("text/event-stream")
    events = stream["events"]
    assert isinstance(events[0]["data"], dict)  # parsed, not a JSON string
    assert events[-1] == {"data": "[DONE]"}

    anthropic = sandbox.load("test_anthropic_stream")["interactions"][0]
    assert list(anthropic["request"]["headers"]) == ["anthropic-version"]  # the key header only
    names = [e.get("event") for e in anthropic["response"]["events"]]
    assert names[0] == "message_start" and names[-1] == "message_stop"


def test_changed_prompt_fails_with_a_diff_and_the_rerecord_command_fixes_it(
    sandbox: Sandbox,
) -> None:
    sandbox.run(tests=("test_openai_chat", "test_anthropic_message")).assert_passed()
    calls = sandbox.upstream.fake.request_count

    changed = sandbox.run(
        "--llm-cache-mode=replay",
        tests=("test_openai_chat", "test_anthropic_message"),
        env={"SAMPLE_PROMPT": "What is 3+3?"},
    )
    assert changed.returncode == 1, changed.output
    assert "2 failed" in changed.output
    out = changed.output
    assert "this request has no recorded answer" in out
    assert "cassette:  cassettes/test_app/test_openai_chat.json" in out
    assert "mode:      replay (from --llm-cache-mode: answers come only from the cassette)" in out
    assert "Nearest recorded request: #1 (POST " in out
    assert "It differs in 1 field (recorded != this request):" in out
    assert "body.messages[1].content: 'What is 2+2?' != 'What is 3+3?'" in out
    assert "body.messages[0].content: 'What is 2+2?' != 'What is 3+3?'" in out  # anthropic
    assert "pytest test_app.py::test_openai_chat --llm-cache-mode=record" in out
    assert "pytest test_app.py::test_openai_chat --llm-cache-mode=new" in out
    assert "Traceback" not in out and "httpx2/_transports" not in out  # no library noise
    assert sandbox.upstream.fake.request_count == calls  # a replay miss never went upstream

    rerecord = sandbox.run(
        "--llm-cache-mode=record",
        tests=("test_openai_chat",),
        env={"SAMPLE_PROMPT": "What is 3+3?"},
    )
    rerecord.assert_passed()
    assert sandbox.upstream.fake.request_count == calls + 1
    (interaction,) = sandbox.load("test_openai_chat")["interactions"]
    assert interaction["request"]["body"]["messages"][1]["content"] == "What is 3+3?"
    assert interaction["response"]["body"]["id"] == rerecord.results["test_openai_chat"]["id"]


def test_once_replays_only_and_new_adds_the_missing_answer(sandbox: Sandbox) -> None:
    first = sandbox.run(tests=("test_openai_chat",))
    first.assert_passed()
    recorded_id = first.results["test_openai_chat"]["id"]

    once = sandbox.run(tests=("test_openai_chat",), env={"SAMPLE_EXTRA": "1"})
    assert once.returncode == 1
    assert "the cassette exists, so it is replayed and nothing new is recorded" in once.output
    assert "recorded:  1 interaction, 1 replayed so far in this run" in once.output
    assert sandbox.upstream.fake.request_count == 1

    added = sandbox.run(
        tests=("test_openai_chat",), env={"SAMPLE_EXTRA": "1", "LLM_CACHE_PYTEST_MODE": "new"}
    )
    added.assert_passed()
    assert added.results["test_openai_chat"]["id"] == recorded_id  # replayed
    assert sandbox.upstream.fake.request_count == 2  # only the extra question went upstream
    interactions = sandbox.load("test_openai_chat")["interactions"]
    assert [i["response"]["body"]["id"] for i in interactions] == [
        recorded_id,
        added.results["test_openai_chat"]["extra"],
    ]


def test_nothing_shaped_like_a_key_or_sent_as_a_credential_is_written(
    sandbox: Sandbox,
) -> None:
    leaked = "sk-ant-api03-" + secrets.token_urlsafe(30)
    credential = secrets.token_hex(20)  # no known shape (Cohere, Mistral…): caught as sent
    run = sandbox.run(
        tests=("test_key_in_prompt", "test_credential_in_prompt"),
        env={"LEAKED_KEY": leaked, "FAKE_API_KEY": credential},
    )
    assert run.returncode == 1
    assert "2 passed, 2 errors" in run.output
    assert "refused to write the cassette cassettes/test_app/test_key_in_prompt.json" in run.output
    assert (
        "interactions[0].request.body.messages[0].content: an Anthropic API key (sk-ant-…) "
        f"({leaked[:6]}… {len(leaked)} characters)"
    ) in run.output
    assert (
        "interactions[0].request.body.messages[0].content: a credential this test sent"
    ) in run.output
    assert "nothing was written" in run.output
    assert leaked not in run.output and credential not in run.output
    assert not sandbox.cassettes.exists()


def test_a_recorded_full_answer_replays_to_a_streaming_request(sandbox: Sandbox) -> None:
    sandbox.run(tests=("test_openai_stream",), env={"SAMPLE_STREAM": "0"}).assert_passed()
    recorded = sandbox.load("test_openai_stream")["interactions"][0]["response"]
    assert "body" in recorded  # recorded as a full response
    sandbox.upstream.stop()
    replay = sandbox.run("--llm-cache-mode=replay", tests=("test_openai_stream",))
    replay.assert_passed()
    text = recorded["body"]["choices"][0]["message"]["content"]
    assert replay.results["test_openai_stream"]["text"] == text
    assert replay.results["test_openai_stream"]["id"] == recorded["body"]["id"]


def test_a_swallowed_miss_still_fails_and_unmarked_tests_are_left_alone(
    sandbox: Sandbox,
) -> None:
    run = sandbox.run(
        tests=("test_swallows_errors", "test_unmarked", "test_ignored_host"), env={"CI": "true"}
    )
    assert run.returncode == 1
    assert "1 failed, 2 passed" in run.output
    assert "The cassette does not exist: this test was never recorded." in run.output
    assert "The code under test caught this failure" in run.output
    assert "test_swallows_errors" in run.results  # it did swallow the miss and go on
    assert "test_unmarked" in run.results and "test_ignored_host" in run.results
    assert sandbox.upstream.fake.request_count == 2  # the unmarked and the ignored-host calls
    assert not sandbox.cassettes.exists()


def test_options_dir_off_and_record(sandbox: Sandbox) -> None:
    bad = sandbox.run("--llm-cache-mode=bogus", tests=("test_openai_chat",))
    assert bad.returncode == 4
    assert "--llm-cache-mode: unknown mode 'bogus'; use one of once, replay, new, record, off" in (
        bad.output
    )

    off = sandbox.run("--llm-cache-mode=off", tests=("test_openai_chat",))
    off.assert_passed()
    assert not sandbox.cassettes.exists()

    elsewhere = sandbox.run("--llm-cache-dir=recordings", tests=("test_openai_chat",))
    elsewhere.assert_passed()
    path = sandbox.root / "recordings" / "test_app" / "test_openai_chat.json"
    first_id = json.loads(path.read_text())["interactions"][0]["response"]["body"]["id"]
    assert first_id == elsewhere.results["test_openai_chat"]["id"]

    again = sandbox.run("--llm-cache-dir=recordings", tests=("test_openai_chat",), env={"CI": "1"})
    again.assert_passed()
    assert again.results["test_openai_chat"]["id"] == first_id

    record = sandbox.run(
        "--llm-cache-dir=recordings",
        tests=("test_openai_chat",),
        env={"LLM_CACHE_PYTEST_MODE": "record", "CI": "true"},  # the option beats CI
    )
    record.assert_passed()
    new_id = json.loads(path.read_text())["interactions"][0]["response"]["body"]["id"]
    assert new_id == record.results["test_openai_chat"]["id"] != first_id
    assert sandbox.upstream.fake.request_count == 3  # off, first record, re-record


def test_two_test_files_of_one_name_never_share_a_cassette_folder(tmp_path: Path) -> None:
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "test_same.py").write_text(
            "import pytest\n\n\n@pytest.mark.llm_cache\ndef test_it():\n    pass\n"
        )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLM_CACHE_", "PYTEST_"))}
    options = ["--import-mode=importlib", "-p", "no:cacheprovider", "--llm-cache-dir=recs"]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", *options, "-p", "no:hypothesispytest", "-q", "a", "b"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "1 passed, 1 error" in done.stdout, done.stdout + done.stderr
    assert (
        "llm-cache: b/test_same.py and a/test_same.py would both keep their cassettes in "
        "recs/test_same"
    ) in done.stdout
