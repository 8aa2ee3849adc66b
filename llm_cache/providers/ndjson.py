"""Newline-delimited JSON (Ollama's streams): an incremental splitter that keeps exact bytes.

A stream is a sequence of records, each one JSON value on one line. ``NDJSONParser.feed`` takes
arbitrary byte chunks (a record split anywhere, even inside a multi-byte UTF-8 character) and
returns the records each chunk completes, each as its *exact* wire bytes, terminator included.
So ``b"".join(records)`` re-encodes a stream byte for byte and a replay is what the upstream
sent. Whitespace-only lines carry nothing (NDJSON says to skip them) and are dropped.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

__all__ = ["NDJSONParser", "encode_records", "parse_ndjson", "record", "record_json"]


class NDJSONParser:
    """Incremental NDJSON splitter; ``feed`` returns the records each chunk completes.

    A record is ``bytes``: one line with its ``\\n`` (or ``\\r\\n``). Work is one ``find`` per
    record, never per byte.
    """

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, chunk: bytes) -> list[bytes]:
        if not chunk:
            return []
        buf = self._buf
        start = len(buf)
        buf += chunk
        end = buf.find(b"\n", start)
        if end < 0:
            return []
        records: list[bytes] = []
        pos = 0
        while end >= 0:
            line = bytes(buf[pos : end + 1])
            if line.strip():
                records.append(line)
            pos = end + 1
            end = buf.find(b"\n", pos)
        del buf[:pos]
        return records

    def finish(self) -> list[bytes]:
        """The last record when the stream ended without its newline; resets the parser.

        The record is returned as received (no newline added), so re-encoding stays exact.
        """
        rest = bytes(self._buf)
        self._buf.clear()
        return [rest] if rest.strip() else []

    @property
    def pending(self) -> bool:
        """Whether bytes of an unfinished record are buffered."""
        return bool(self._buf.strip())


def record(obj: Any) -> bytes:
    """``obj`` as one NDJSON record: compact JSON and ``\\n`` (Ollama's own spelling)."""
    return orjson.dumps(obj) + b"\n"


def record_json(line: bytes) -> Any:
    """A record's JSON value (raises ``orjson.JSONDecodeError`` on a malformed line)."""
    return orjson.loads(line)


def parse_ndjson(stream: bytes) -> list[bytes]:
    """Every record of a complete stream (an unterminated last line included)."""
    parser = NDJSONParser()
    records = parser.feed(stream)
    records.extend(parser.finish())
    return records


def encode_records(records: Iterable[bytes]) -> bytes:
    """The wire form of records as returned by the parser: their bytes, in order."""
    return b"".join(records)
