"""Cassette files and payload forms: readable, exact round trips, refusals, import pairs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llm_cache.engine.entry import ENTRY_FORMAT, Entry
from llm_cache.testing.cassette import (
    FORMAT,
    Cassette,
    CassetteError,
    CassetteSecretError,
    Interaction,
    iter_entries_from_cassettes,
    response_bytes,
)
from llm_cache.testing.payloads import (
    body_bytes,
    body_fields,
    stream_chunks,
    stream_fields,
    stream_framing,
)

SSE = (
    b'data: {"id":"c1","choices":[{"delta":{"content":"Hi"}}]}\n\n'
    b": keep-alive comment\n\n"
    b'event: message_delta\nid: 7\ndata: {"type":"message_delta"}\n\n'
    b"data: [DONE]\n\n"
)


SSE_FRAMING = stream_framing("text/event-stream; charset=utf-8")
NDJSON_FRAMING = stream_framing("application/x-ndjson")  # Ollama's, from the registry


def test_stream_framings_come_from_the_provider_registry() -> None:
    assert SSE_FRAMING is not None and NDJSON_FRAMING is not None
    assert stream_framing("application/json") is None


def test_sse_is_kept_event_by_event_and_replayed_one_event_per_chunk() -> None:
    assert SSE_FRAMING is not None
    fields = stream_fields(SSE_FRAMING, [SSE[:17], SSE[17:]])  # split mid-event on the wire
    assert fields == {
        "events": [
            {"data": {"id": "c1", "choices": [{"delta": {"content": "Hi"}}]}},
            {"event": "message_delta", "id": "7", "data": {"type": "message_delta"}},
            {"data": "[DONE]"},
        ]
    }
    chunks = stream_chunks(SSE_FRAMING, fields)
    assert chunks == [
        b'data: {"id":"c1","choices":[{"delta":{"content":"Hi"}}]}\n\n',
        b'event: message_delta\nid: 7\ndata: {"type":"message_delta"}\n\n',
        b"data: [DONE]\n\n",
    ]


def test_json_lines_keep_one_value_per_event_and_their_framing() -> None:
    assert NDJSON_FRAMING is not None
    wire = [b'{"message":{"content":"a"},"done":false}\n{"done":', b"true}\n"]
    fields = stream_fields(NDJSON_FRAMING, wire)
    assert fields == {
        "frame": {"before": "", "after": "\n"},
        "events": [{"message": {"content": "a"}, "done": False}, {"done": True}],
    }
    assert stream_chunks(NDJSON_FRAMING, fields) == [
        b'{"message":{"content":"a"},"done":false}\n',
        b'{"done":true}\n',
    ]
    assert stream_fields(NDJSON_FRAMING, [b"not json\n"]) == {"chunks": ["not json\n"]}
    assert stream_chunks(None, stream_fields(NDJSON_FRAMING, [b"\xff\xfe"])) == [b"\xff\xfe"]


def test_bodies_json_text_binary() -> None:
    assert body_fields(b'{"a": [1, 2.5, "\\u00e9"]}', "application/json") == {
        "body": {"a": [1, 2.5, "é"]}
    }
    assert body_fields(b"plain", "text/plain") == {"text": "plain"}
    assert body_fields(b"\x00\xff", "application/octet-stream") == {"body_base64": "AP8="}
    assert body_fields(b"", "application/json") == {}
    for raw in (b'{"a":[1,2.5,"\xc3\xa9"]}', b"plain", b"\x00\xff"):
        assert body_bytes(body_fields(raw, "application/json")) == raw


def interaction(content: str, status: int = 200) -> Interaction:
    return Interaction(
        {
            "method": "POST",
            "url": "https://api.openai.com/v1/chat/completions",
            "headers": {},
            "body": {"model": "m", "messages": [{"role": "user", "content": content}]},
        },
        {"status": status, "content_type": "application/json", "body": {"id": content}},
    )


def test_save_is_pretty_and_loads_back(tmp_path: Path) -> None:
    path = tmp_path / "cassettes" / "mod" / "test_x.json"
    Cassette(path, [interaction("héllo")]).save("mod.py::test_x")
    text = path.read_text(encoding="utf-8")
    assert text.startswith('{\n  "format": "llm-cache-cassette/1",\n  "test": "mod.py::test_x"')
    assert "héllo" in text  # not \\u-escaped
    loaded = Cassette.load(path)
    assert loaded.exists and loaded.interactions == [interaction("héllo")]
    assert not Cassette.load(tmp_path / "missing.json").exists


def test_a_refused_save_writes_nothing_and_leaves_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    Cassette(path, [interaction("fine")]).save("t")
    before = path.read_text()
    key = "sk-proj-" + "Ab3" * 15
    with pytest.raises(CassetteSecretError) as caught:
        Cassette(path, [interaction(f"key {key}")]).save("t", shown="cassettes/c.json")
    message = str(caught.value)
    assert "refused to write the cassette cassettes/c.json" in message
    assert "interactions[0].request.body.messages[0].content" in message
    assert "interactions[0].response.body.id" in message
    assert key not in message
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.json"]  # no temporary file left


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{not json", "is not valid JSON"),
        ('{"interactions": []}', "is not an llm-cache cassette"),
        (json.dumps({"format": FORMAT}), 'has no "interactions" list'),
        (json.dumps({"format": FORMAT, "interactions": [{"request": {}}]}), "#1 of the cassette"),
    ],
)
def test_broken_cassettes_say_what_is_wrong(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "broken.json"
    path.write_text(text)
    with pytest.raises(CassetteError, match=expected) as caught:
        Cassette.load(path)
    assert str(path) in str(caught.value)


def test_iter_entries_from_cassettes_yields_what_a_cache_stores(tmp_path: Path) -> None:
    stream = Interaction(
        interaction("s").request,
        {
            "status": 200,
            "content_type": "text/event-stream",
            "events": [{"data": {"id": "s"}}, {"data": "[DONE]"}],
        },
    )
    Cassette(tmp_path / "a" / "t1.json", [interaction("one"), interaction("err", 429)]).save("t1")
    Cassette(tmp_path / "b" / "t2.json", [stream]).save("t2")
    pairs = list(iter_entries_from_cassettes(tmp_path))
    assert [(req["body"]["messages"][0]["content"], res["status"]) for req, res in pairs] == [
        ("one", 200),
        ("s", 200),
    ]
    request, response = pairs[0]
    assert set(request) == {"method", "url", "headers", "body"}
    assert response == {"status": 200, "content_type": "application/json", "body": {"id": "one"}}
    assert pairs[1][1]["events"] == [
        {"t": 0.0, "data": 'data: {"id":"s"}\n\n'},
        {"t": 0.0, "data": "data: [DONE]\n\n"},
    ]
    # the pairs are the cache's own export form: the engine reads them as entries
    stored = [
        Entry.from_export({"format": ENTRY_FORMAT, "request": req, "response": res})
        for req, res in pairs
    ]
    assert json.loads(stored[0].payload) == {"id": "one"}
    assert stored[1].frames == [b'data: {"id":"s"}\n\n', b"data: [DONE]\n\n"]
    assert stored[1].payload == response_bytes(stream.response)
    assert stored[0].request == request
    assert list(iter_entries_from_cassettes(tmp_path / "a" / "t1.json")) == pairs[:1]
    with pytest.raises(CassetteError, match="no such cassette folder"):
        list(iter_entries_from_cassettes(tmp_path / "nope"))
