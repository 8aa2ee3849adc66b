"""Framing codecs: NDJSON (Ollama) and AWS event-stream (Bedrock).

Both parsers must give the same records for every way the network can split the bytes, and
re-encode them byte for byte. The event-stream encoder is checked against botocore's own parser
(the one boto3 uses to read Bedrock streams), so a frame we write is a frame AWS clients read.
"""

from __future__ import annotations

import uuid
import zlib

import orjson
import pytest
from botocore.eventstream import ChecksumMismatch, EventStreamBuffer
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_cache.providers.eventstream import (
    CONTENT_TYPE,
    EVENTSTREAM,
    EventStreamError,
    EventStreamMessage,
    EventStreamParser,
    Header,
    HeaderType,
    parse_eventstream,
)
from llm_cache.providers.ndjson import (
    NDJSON,
    NDJSONParser,
    NDJSONRecord,
    encode_records,
    parse_ndjson,
)


def record(obj: object) -> bytes:
    return NDJSONRecord.from_json(obj).encode()


def record_json(rec: NDJSONRecord) -> object:
    return rec.json()


OLLAMA_STREAM = [
    {
        "model": "llama3.2",
        "created_at": "2026-01-01T00:00:00.1Z",
        "message": {"role": "assistant", "content": "Grüße, "},
        "done": False,
    },
    {
        "model": "llama3.2",
        "created_at": "2026-01-01T00:00:00.2Z",
        "message": {"role": "assistant", "content": "世界 🌍"},
        "done": False,
    },
    {
        "model": "llama3.2",
        "created_at": "2026-01-01T00:00:00.3Z",
        "message": {"role": "assistant", "content": ""},
        "done_reason": "stop",
        "done": True,
        "eval_count": 3,
    },
]


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, prev = [], 0
    for p in [*points, len(data)]:
        out.append(data[prev:p])
        prev = p
    return out


# ---------------------------------------------------------------------- NDJSON
def test_ndjson_every_split_point_gives_the_same_records_and_exact_bytes() -> None:
    wire = b"".join(record(obj) for obj in OLLAMA_STREAM)
    for cut in range(len(wire) + 1):
        parser = NDJSONParser()
        records = parser.feed(wire[:cut]) + parser.feed(wire[cut:]) + parser.finish()
        assert [record_json(r) for r in records] == OLLAMA_STREAM, cut
        assert encode_records(records) == wire


def test_ndjson_byte_by_byte_and_one_chunk() -> None:
    wire = b"".join(record(obj) for obj in OLLAMA_STREAM)
    parser = NDJSONParser()
    records = [r for i in range(len(wire)) for r in parser.feed(wire[i : i + 1])]
    assert not parser.pending
    assert records == parse_ndjson(wire)
    assert len(records) == 3


def test_ndjson_keeps_crlf_and_drops_blank_lines() -> None:
    wire = b'{"a":1}\r\n\n  \n{"b":2}\n'
    records = parse_ndjson(wire)
    assert [r.raw for r in records] == [b'{"a":1}\r\n', b'{"b":2}\n']
    assert [r.data for r in records] == ['{"a":1}', '{"b":2}']
    assert all(r.event is None for r in records)
    assert [record_json(r) for r in records] == [{"a": 1}, {"b": 2}]


def test_ndjson_unterminated_last_record() -> None:
    parser = NDJSONParser()
    assert parser.feed(b'{"a":1}\n{"b"') == [NDJSONRecord(b'{"a":1}\n')]
    assert parser.pending
    assert parser.feed(b":2}") == []
    assert parser.finish() == [NDJSONRecord(b'{"b":2}')]  # as received: no newline invented
    assert not parser.pending
    assert parser.finish() == []


def test_ndjson_malformed_record_is_reported_by_json() -> None:
    (bad,) = parse_ndjson(b"{not json\n")
    with pytest.raises(orjson.JSONDecodeError):
        bad.json()


def test_ndjson_framing_codec() -> None:
    wire = b"".join(record(obj) for obj in OLLAMA_STREAM)
    parser = NDJSON.parser()
    frames = parser.feed(wire) + parser.finish()
    assert NDJSON.encode(frames) == wire
    assert NDJSON.content_type == "application/x-ndjson" and NDJSON.name == "ndjson"


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)


@settings(max_examples=150, deadline=None)
@given(
    objs=st.lists(_json_values, min_size=1, max_size=8),
    cuts=st.lists(st.integers(0, 10_000), max_size=12),
)
def test_ndjson_property_any_split(objs: list[object], cuts: list[int]) -> None:
    wire = b"".join(record(o) for o in objs)
    parser = NDJSONParser()
    records = [r for piece in _split(wire, cuts) for r in parser.feed(piece)]
    records += parser.finish()
    assert [record_json(r) for r in records] == objs
    assert encode_records(records) == wire


# ---------------------------------------------------------------------- event stream
ALL_TYPES = (
    Header("t", HeaderType.TRUE, True),
    Header("f", HeaderType.FALSE, False),
    Header("byte", HeaderType.BYTE, -7),
    Header("short", HeaderType.SHORT, -300),
    Header("int", HeaderType.INTEGER, 70_000),
    Header("long", HeaderType.LONG, -(2**40)),
    Header("bytes", HeaderType.BYTES, b"\x00\xffraw"),
    Header("str", HeaderType.STRING, "héllo"),
    Header("ts", HeaderType.TIMESTAMP, 1_700_000_000_123),
    Header("id", HeaderType.UUID, uuid.UUID("12345678-1234-5678-1234-567812345678")),
)


def _converse_frames() -> list[EventStreamMessage]:
    payloads = [
        ("messageStart", {"role": "assistant", "p": "abcd"}),
        ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hi ünïcode"}}),
        ("contentBlockStop", {"contentBlockIndex": 0}),
        ("messageStop", {"stopReason": "end_turn"}),
        ("metadata", {"usage": {"inputTokens": 3, "outputTokens": 2, "totalTokens": 5}}),
    ]
    return [EventStreamMessage.for_event(t, orjson.dumps(p)) for t, p in payloads]


def _botocore_parse(wire: bytes) -> list[tuple[dict[str, object], bytes]]:
    buffer = EventStreamBuffer()
    buffer.add_data(wire)
    return [(dict(m.headers), m.payload) for m in buffer]


def test_botocore_reads_our_frames_with_every_header_type() -> None:
    frame = EventStreamMessage(ALL_TYPES, b'{"x": 1}')
    (parsed,) = _botocore_parse(frame.encode())
    headers, payload = parsed
    assert payload == b'{"x": 1}'
    assert headers == {
        "t": True,
        "f": False,
        "byte": -7,
        "short": -300,
        "int": 70_000,
        "long": -(2**40),
        "bytes": b"\x00\xffraw",
        "str": "héllo",
        "ts": 1_700_000_000_123,
        "id": uuid.UUID("12345678-1234-5678-1234-567812345678").bytes,
    }


def test_botocore_reads_a_converse_stream_and_we_read_it_back_exactly() -> None:
    frames = _converse_frames()
    wire = b"".join(f.encode() for f in frames)
    theirs = _botocore_parse(wire)
    assert [h[":event-type"] for h, _ in theirs] == [f.event_type for f in frames]
    assert all(h[":message-type"] == "event" for h, _ in theirs)
    assert [p for _, p in theirs] == [f.payload for f in frames]
    ours = parse_eventstream(wire)
    assert ours == frames
    assert b"".join(f.encode() for f in ours) == wire


def test_every_split_point_of_a_stream() -> None:
    frames = _converse_frames()
    wire = b"".join(f.encode() for f in frames)
    for cut in range(len(wire) + 1):
        parser = EventStreamParser()
        got = parser.feed(wire[:cut])
        got += parser.feed(wire[cut:])
        assert got == frames, cut
        assert not parser.pending


def test_byte_by_byte() -> None:
    frames = _converse_frames()
    wire = b"".join(f.encode() for f in frames)
    parser = EventStreamParser()
    got = [f for i in range(len(wire)) for f in parser.feed(wire[i : i + 1])]
    assert got == frames


@settings(max_examples=100, deadline=None)
@given(
    payloads=st.lists(st.binary(max_size=300), min_size=1, max_size=6),
    names=st.lists(st.text(min_size=1, max_size=12), min_size=0, max_size=3, unique=True),
    cuts=st.lists(st.integers(0, 100_000), max_size=10),
)
def test_property_any_split_any_payload(
    payloads: list[bytes], names: list[str], cuts: list[int]
) -> None:
    headers = tuple(Header.of(n, f"v-{i}") for i, n in enumerate(names) if len(n.encode()) < 256)
    frames = [EventStreamMessage(headers, p) for p in payloads]
    wire = b"".join(f.encode() for f in frames)
    parser = EventStreamParser()
    got = [f for piece in _split(wire, cuts) for f in parser.feed(piece)]
    assert got == frames
    assert not parser.pending
    assert [p for _, p in _botocore_parse(wire)] == payloads


def test_exception_frame() -> None:
    frame = EventStreamMessage.for_exception("throttlingException", b'{"message":"slow down"}')
    (parsed,) = parse_eventstream(frame.encode())
    assert parsed.message_type == "exception"
    assert parsed.event_type == "throttlingException"
    (theirs,) = _botocore_parse(frame.encode())
    assert theirs[0][":exception-type"] == "throttlingException"


@pytest.mark.parametrize("where", ["prelude", "headers", "payload", "message_crc"])
def test_a_flipped_byte_is_an_error_never_a_wrong_frame(where: str) -> None:
    wire = bytearray(EventStreamMessage.for_event("chunk", b'{"bytes":"eyJ4IjoxfQ=="}').encode())
    index = {"prelude": 2, "headers": 14, "payload": len(wire) - 8, "message_crc": len(wire) - 1}
    wire[index[where]] ^= 0x01
    parser = EventStreamParser()
    with pytest.raises(EventStreamError, match="CRC"):
        parser.feed(bytes(wire))
    with pytest.raises(EventStreamError):  # and it stays broken
        parser.feed(b"")
    with pytest.raises(ChecksumMismatch):  # botocore agrees the frame is bad
        _botocore_parse(bytes(wire))


def test_impossible_lengths_are_errors() -> None:
    def prelude(total: int, headers: int) -> bytes:
        head = total.to_bytes(4, "big") + headers.to_bytes(4, "big")
        return head + zlib.crc32(head).to_bytes(4, "big")

    with pytest.raises(EventStreamError, match="too small"):
        EventStreamParser().feed(prelude(16, 10))
    with pytest.raises(EventStreamError, match="headers length"):
        EventStreamParser().feed(prelude(300_000, 200_000))
    with pytest.raises(EventStreamError, match="payload length"):
        EventStreamParser().feed(prelude(30 * 1024 * 1024, 0))


def test_unknown_header_type_is_an_error() -> None:
    frame = bytearray(EventStreamMessage.build([("k", "v")], b"").encode())
    frame[12 + 2] = 42  # the header's type byte
    body = bytes(frame[:-4])
    fixed = body + zlib.crc32(body).to_bytes(4, "big")
    with pytest.raises(EventStreamError, match="header type"):
        parse_eventstream(fixed)


def test_a_cut_stream_is_pending_and_parse_eventstream_refuses_it() -> None:
    wire = b"".join(f.encode() for f in _converse_frames())
    parser = EventStreamParser()
    frames = parser.feed(wire[:-5])
    assert len(frames) == 4
    assert parser.pending
    with pytest.raises(EventStreamError, match="ends inside a frame"):
        parse_eventstream(wire[:-5])


def test_duplicate_header_is_an_error() -> None:
    frame = EventStreamMessage.build([("k", "v"), ("k", "w")], b"")
    with pytest.raises(EventStreamError, match="duplicate"):
        parse_eventstream(frame.encode())


def test_eventstream_framing_codec_and_frame_protocol() -> None:
    frames = _converse_frames()
    wire = b"".join(f.encode() for f in frames)
    parser = EVENTSTREAM.parser()
    got = parser.feed(wire[:-3])
    assert got == frames[:-1] and parser.pending
    assert parser.finish() == []  # a partial frame is never returned
    assert not parser.pending
    assert EVENTSTREAM.encode(frames) == wire
    first = frames[0]
    assert first.event == "messageStart" and first.json()["role"] == "assistant"
    assert first.data == first.payload.decode()
    assert EVENTSTREAM.content_type == CONTENT_TYPE


def test_header_lookup_and_build() -> None:
    frame = EventStreamMessage.build([(":event-type", "chunk"), ("n", 5), ("ok", True)], b"x")
    assert frame.header("n") == 5
    assert frame.header("ok") is True
    assert frame.header("missing") is None
    assert frame.event_type == "chunk"
    assert frame.message_type is None
    with pytest.raises(TypeError):
        Header.of("x", 1.5)  # type: ignore[arg-type]
    assert CONTENT_TYPE == "application/vnd.amazon.eventstream"


# ---------------------------------------------------------------------- descriptor framings
def test_ndjson_splitter_keeps_raw_records_and_decode_reads_them() -> None:
    wire = b"".join(record(obj) for obj in OLLAMA_STREAM) + b"\n"  # a trailing blank line
    for cut in range(len(wire) + 1):
        splitter = NDJSON.splitter()
        raw = splitter.feed(wire[:cut]) + splitter.feed(wire[cut:]) + splitter.finish()
        assert b"".join(raw) == wire.rstrip(b"\n") + b"\n", cut
        frames = [NDJSON.decode(r) for r in raw]
        assert [f.json() for f in frames if f is not None] == OLLAMA_STREAM
    assert NDJSON.decode(b"  \n") is None
    splitter = NDJSON.splitter()
    assert splitter.feed(b'{"a":1}') == [] and splitter.finish() == [b'{"a":1}']


def test_eventstream_splitter_raw_frames_exact_and_checked() -> None:
    frames = _converse_frames()
    wire = b"".join(f.encode() for f in frames)
    for cut in range(0, len(wire) + 1, 7):
        splitter = EVENTSTREAM.splitter()
        raw = splitter.feed(wire[:cut]) + splitter.feed(wire[cut:]) + splitter.finish()
        assert b"".join(raw) == wire
        assert [EVENTSTREAM.decode(r) for r in raw] == frames
    splitter = EVENTSTREAM.splitter()
    assert len(splitter.feed(wire[:-2])) == 4
    assert splitter.finish() == []  # the cut last frame is dropped, never half-returned
    corrupt = bytearray(wire)
    corrupt[20] ^= 0xFF
    with pytest.raises(EventStreamError):
        EVENTSTREAM.splitter().feed(bytes(corrupt))
    assert EVENTSTREAM.decode(wire[:10]) is None
    assert EVENTSTREAM.decode(wire) is None  # several frames are not one frame
