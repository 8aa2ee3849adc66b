"""Server-sent events: one event as a value, and an incremental parser.

``SSEParser.feed`` takes arbitrary byte chunks (events split anywhere; ``\\n``, ``\\r\\n``
or ``\\r`` line endings; comment lines) and returns the events completed so far.
``SSEEvent.encode`` spells an event in its canonical wire form; replaying the encoded events
gives a stream the OpenAI and Anthropic SDK decoders read exactly as the original (comments,
which they ignore, are dropped).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = ["DONE", "SSEEvent", "SSEParser", "encode_events", "parse_sse"]


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One server-sent event. ``data`` is the joined ``data:`` lines (``"\\n"`` between them)."""

    event: str | None = None
    data: str = ""
    id: str | None = None
    retry: int | None = None

    def encode(self) -> bytes:
        """The wire form ``event: x\\ndata: ...\\n\\n``, one ``data:`` line per line of data."""
        data = self.data
        if self.event is None and self.id is None and self.retry is None and "\n" not in data:
            return b"data: " + data.encode("utf-8") + b"\n\n"
        parts: list[str] = []
        if self.event is not None:
            parts.append(f"event: {self.event}\n")
        if self.id is not None:
            parts.append(f"id: {self.id}\n")
        if self.retry is not None:
            parts.append(f"retry: {self.retry}\n")
        for line in data.split("\n"):
            parts.append(f"data: {line}\n")
        parts.append("\n")
        return "".join(parts).encode("utf-8")

    def json(self) -> Any:
        """``data`` parsed as JSON."""
        return orjson.loads(self.data)

    @classmethod
    def from_json(cls, obj: Any, event: str | None = None) -> SSEEvent:
        """An event whose data is ``obj`` as compact JSON."""
        return cls(event=event, data=orjson.dumps(obj).decode("utf-8"))


#: The OpenAI stream terminator, ``data: [DONE]``.
DONE = SSEEvent(data="[DONE]")


class SSEParser:
    """Incremental SSE parser; ``feed`` returns the events each chunk completes.

    Work is per line and per event, never per byte: chunks are normalized to ``\\n`` with
    ``bytes.replace`` and events are found with ``bytearray.find``.
    """

    __slots__ = ("_buf", "_cr")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._cr = False  # the previous chunk ended with "\r" (maybe half of a "\r\n")

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if not chunk:
            return []
        if self._cr and chunk[:1] == b"\n":
            chunk = chunk[1:]
        self._cr = chunk[-1:] == b"\r"
        if b"\r" in chunk:
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        buf = self._buf
        start = len(buf) - 1 if buf else 0
        buf += chunk
        end = buf.find(b"\n\n", start)
        if end < 0:
            return []
        events: list[SSEEvent] = []
        pos = 0
        while end >= 0:
            if end > pos:
                event = _parse_block(buf[pos:end].decode("utf-8", "replace"))
                if event is not None:
                    events.append(event)
            pos = end + 2
            end = buf.find(b"\n\n", pos)
        del buf[:pos]
        return events

    def finish(self) -> list[SSEEvent]:
        """The last event when the stream ended without its blank line; resets the parser."""
        events = self.feed(b"\n\n") if self._buf.strip(b"\n") else []
        self._buf.clear()
        self._cr = False
        return events

    @property
    def pending(self) -> bool:
        """Whether bytes of an unfinished event are buffered."""
        return bool(self._buf.strip(b"\n"))


def _parse_block(block: str) -> SSEEvent | None:
    if block.startswith("data: ") and "\n" not in block:  # the common case
        return SSEEvent(data=block[6:])
    event: str | None = None
    data: list[str] = []
    id_: str | None = None
    retry: int | None = None
    for line in block.split("\n"):
        if not line or line[0] == ":":
            continue
        name, _, value = line.partition(":")
        if value[:1] == " ":
            value = value[1:]
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
        elif name == "id":
            if "\0" not in value:
                id_ = value
        elif name == "retry":
            with contextlib.suppress(ValueError):
                retry = int(value)
    if event is None and not data and id_ is None and retry is None:
        return None
    return SSEEvent(event=event or None, data="\n".join(data), id=id_, retry=retry)


def parse_sse(stream: bytes) -> list[SSEEvent]:
    """Every event of a complete stream (an unterminated last event included)."""
    parser = SSEParser()
    events = parser.feed(stream)
    events.extend(parser.finish())
    return events


def encode_events(events: Iterable[SSEEvent]) -> bytes:
    return b"".join(event.encode() for event in events)
