"""Newline-delimited JSON (Ollama's streams): an incremental splitter that keeps exact bytes.

A stream is a sequence of records, each one JSON value on one line. ``NDJSONParser.feed`` takes
arbitrary byte chunks (a record split anywhere, even inside a multi-byte UTF-8 character) and
returns the records each chunk completes. An ``NDJSONRecord`` keeps its *exact* wire bytes,
terminator included, so ``encode_records(records)`` re-encodes a stream byte for byte and a
replay is what the upstream sent. Whitespace-only lines carry nothing (NDJSON says to skip them)
and are dropped. ``NDJSON`` is the framing codec a provider descriptor names.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = [
    "CONTENT_TYPE",
    "NDJSON",
    "NDJSONFraming",
    "NDJSONParser",
    "NDJSONRecord",
    "NDJSONSplitter",
    "encode_records",
    "parse_ndjson",
]

#: The media type Ollama streams with.
CONTENT_TYPE = "application/x-ndjson"


@dataclass(frozen=True, slots=True)
class NDJSONRecord:
    """One record: its exact bytes on the wire (line terminator included when it had one)."""

    raw: bytes

    @property
    def event(self) -> str | None:
        """NDJSON records have no event name (the frame protocol's field)."""
        return None

    @property
    def data(self) -> str:
        """The record's JSON text, without the line terminator."""
        return self.raw.decode("utf-8", "replace").strip()

    def json(self) -> Any:
        """The record's JSON value (raises ``orjson.JSONDecodeError`` on a malformed line)."""
        return orjson.loads(self.raw)

    def encode(self) -> bytes:
        return self.raw

    @classmethod
    def from_json(cls, obj: Any) -> NDJSONRecord:
        """``obj`` as one record: compact JSON and ``\\n`` (Ollama's own spelling)."""
        return cls(orjson.dumps(obj) + b"\n")


class NDJSONParser:
    """Incremental NDJSON splitter; ``feed`` returns the records each chunk completes.

    A record is one line with its ``\\n`` (or ``\\r\\n``). Work is one ``find`` per record,
    never per byte.
    """

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, chunk: bytes) -> list[NDJSONRecord]:
        if not chunk:
            return []
        buf = self._buf
        start = len(buf)
        buf += chunk
        end = buf.find(b"\n", start)
        if end < 0:
            return []
        records: list[NDJSONRecord] = []
        pos = 0
        while end >= 0:
            line = bytes(buf[pos : end + 1])
            if line.strip():
                records.append(NDJSONRecord(line))
            pos = end + 1
            end = buf.find(b"\n", pos)
        del buf[:pos]
        return records

    def finish(self) -> list[NDJSONRecord]:
        """The last record when the stream ended without its newline; resets the parser.

        The record is returned as received (no newline added), so re-encoding stays exact.
        """
        rest = bytes(self._buf)
        self._buf.clear()
        return [NDJSONRecord(rest)] if rest.strip() else []

    @property
    def pending(self) -> bool:
        """Whether bytes of an unfinished record are buffered."""
        return bool(self._buf.strip())


def parse_ndjson(stream: bytes) -> list[NDJSONRecord]:
    """Every record of a complete stream (an unterminated last line included)."""
    parser = NDJSONParser()
    records = parser.feed(stream)
    records.extend(parser.finish())
    return records


def encode_records(records: Iterable[NDJSONRecord]) -> bytes:
    """The wire form of records: their exact bytes, in order."""
    return b"".join(r.raw for r in records)


class NDJSONSplitter:
    """Cuts a stream into raw records, exactly as sent (the engine stores and replays these)."""

    __slots__ = ("_parser",)

    def __init__(self) -> None:
        self._parser = NDJSONParser()

    def feed(self, chunk: bytes) -> list[bytes]:
        return [r.raw for r in self._parser.feed(chunk)]

    def finish(self) -> list[bytes]:
        return [r.raw for r in self._parser.finish()]


class NDJSONFraming:
    """``application/x-ndjson``: the framing codec of a provider descriptor."""

    name = "ndjson"
    content_type = CONTENT_TYPE

    def parser(self) -> NDJSONParser:
        return NDJSONParser()

    def splitter(self) -> NDJSONSplitter:
        return NDJSONSplitter()

    def decode(self, raw: bytes) -> NDJSONRecord | None:
        """One raw record as a frame; ``None`` for a blank line."""
        return NDJSONRecord(raw) if raw.strip() else None

    def encode(self, frames: Iterable[Any]) -> bytes:
        return b"".join(f.encode() for f in frames)


NDJSON = NDJSONFraming()
