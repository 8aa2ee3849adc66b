"""AWS event-stream binary frames (``application/vnd.amazon.eventstream``), both ways.

Bedrock's ``converse-stream`` and ``invoke-with-response-stream`` answer with these frames:

    prelude   total length (u32 BE) | headers length (u32 BE) | CRC32 of those 8 bytes
    headers   name length (u8) | name (UTF-8) | type (u8) | value  — repeated
    payload   bytes (JSON for Bedrock)
    trailer   CRC32 of everything before it

``EventStreamParser.feed`` takes arbitrary chunks (a frame split anywhere, several frames in one
chunk) and returns the frames each chunk completes, checking both CRCs and every length, so a
corrupted or cut stream is an error, never a wrong frame. ``EventStreamMessage.encode`` writes a
frame back; headers keep their wire type and order, so ``encode(parse(x)) == x``.
"""

from __future__ import annotations

import struct
import uuid
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, NamedTuple

import orjson

__all__ = [
    "CONTENT_TYPE",
    "EVENTSTREAM",
    "EventStreamError",
    "EventStreamFraming",
    "EventStreamMessage",
    "EventStreamParser",
    "EventStreamSplitter",
    "Header",
    "HeaderType",
    "parse_eventstream",
]

#: The media type of a Bedrock stream.
CONTENT_TYPE = "application/vnd.amazon.eventstream"

_PRELUDE = struct.Struct(">II")
_U32 = struct.Struct(">I")
_PRELUDE_LEN = 12  # two lengths and the prelude CRC
_MIN_FRAME = _PRELUDE_LEN + 4
#: The limits AWS documents (and botocore enforces).
MAX_HEADERS_LENGTH = 128 * 1024
MAX_PAYLOAD_LENGTH = 24 * 1024 * 1024

HeaderValue = bool | int | bytes | str | uuid.UUID


class EventStreamError(ValueError):
    """The bytes are not a valid event stream (bad CRC, length or header)."""


class HeaderType(IntEnum):
    """Wire types of a header value."""

    TRUE = 0
    FALSE = 1
    BYTE = 2
    SHORT = 3
    INTEGER = 4
    LONG = 5
    BYTES = 6
    STRING = 7
    TIMESTAMP = 8  # milliseconds since the epoch, as an int
    UUID = 9


_INT_FORMATS = {
    HeaderType.BYTE: struct.Struct(">b"),
    HeaderType.SHORT: struct.Struct(">h"),
    HeaderType.INTEGER: struct.Struct(">i"),
    HeaderType.LONG: struct.Struct(">q"),
    HeaderType.TIMESTAMP: struct.Struct(">q"),
}
_LEN16 = struct.Struct(">H")


class Header(NamedTuple):
    """One header: its name, wire type and value (``bool``, ``int``, ``bytes``, ``str``, UUID)."""

    name: str
    type: HeaderType
    value: HeaderValue

    @classmethod
    def of(cls, name: str, value: HeaderValue) -> Header:
        """A header whose wire type follows from the value (``int`` → 32-bit integer)."""
        if isinstance(value, bool):
            return cls(name, HeaderType.TRUE if value else HeaderType.FALSE, value)
        if isinstance(value, int):
            return cls(name, HeaderType.INTEGER, value)
        if isinstance(value, bytes):
            return cls(name, HeaderType.BYTES, value)
        if isinstance(value, str):
            return cls(name, HeaderType.STRING, value)
        if isinstance(value, uuid.UUID):
            return cls(name, HeaderType.UUID, value)
        raise TypeError(f"unsupported event-stream header value: {value!r}")

    def encode(self) -> bytes:
        name = self.name.encode("utf-8")
        if not 0 < len(name) < 256:
            raise EventStreamError(f"header name length {len(name)} is not 1-255 bytes")
        out = bytes([len(name)]) + name + bytes([self.type])
        typ, value = self.type, self.value
        if typ in (HeaderType.TRUE, HeaderType.FALSE):
            return out
        if typ in _INT_FORMATS:
            assert isinstance(value, int)
            return out + _INT_FORMATS[typ].pack(value)
        if typ in (HeaderType.BYTES, HeaderType.STRING):
            raw = value.encode("utf-8") if isinstance(value, str) else value
            assert isinstance(raw, bytes)
            if len(raw) > 0xFFFF:
                raise EventStreamError(f"header {self.name!r} value is longer than 65535 bytes")
            return out + _LEN16.pack(len(raw)) + raw
        assert isinstance(value, uuid.UUID)
        return out + value.bytes


@dataclass(frozen=True, slots=True)
class EventStreamMessage:
    """One frame: its headers in wire order and its payload."""

    headers: tuple[Header, ...]
    payload: bytes

    def header(self, name: str) -> HeaderValue | None:
        """The value of the first header of that name, or ``None``."""
        for h in self.headers:
            if h.name == name:
                return h.value
        return None

    @property
    def message_type(self) -> str | None:
        """``event``, ``exception`` or ``error`` (the ``:message-type`` header)."""
        value = self.header(":message-type")
        return value if isinstance(value, str) else None

    @property
    def event(self) -> str | None:
        """The frame protocol's name for :attr:`event_type`."""
        return self.event_type

    @property
    def data(self) -> str:
        """The payload as text (Bedrock's payloads are JSON)."""
        return self.payload.decode("utf-8", "replace")

    def json(self) -> Any:
        """The payload parsed as JSON."""
        return orjson.loads(self.payload)

    @property
    def event_type(self) -> str | None:
        """The ``:event-type`` (for an event) or ``:exception-type`` (for an exception)."""
        value = self.header(":event-type") or self.header(":exception-type")
        return value if isinstance(value, str) else None

    def encode(self) -> bytes:
        """The frame's wire bytes, both CRCs computed."""
        headers = _header_block(self.headers)
        if len(headers) > MAX_HEADERS_LENGTH:
            raise EventStreamError(f"headers of {len(headers)} bytes exceed {MAX_HEADERS_LENGTH}")
        if len(self.payload) > MAX_PAYLOAD_LENGTH:
            raise EventStreamError(
                f"payload of {len(self.payload)} bytes exceeds {MAX_PAYLOAD_LENGTH}"
            )
        total = _MIN_FRAME + len(headers) + len(self.payload)
        prelude = _PRELUDE.pack(total, len(headers))
        head = prelude + _U32.pack(zlib.crc32(prelude)) + headers + self.payload
        return head + _U32.pack(zlib.crc32(head))

    @classmethod
    def build(
        cls, headers: Iterable[tuple[str, HeaderValue]], payload: bytes
    ) -> EventStreamMessage:
        """A frame from ``(name, value)`` pairs, types inferred as in :meth:`Header.of`."""
        return cls(tuple(Header.of(n, v) for n, v in headers), payload)

    @classmethod
    def for_event(
        cls, event_type: str, payload: bytes, content_type: str = "application/json"
    ) -> EventStreamMessage:
        """An ``event`` frame as AWS services spell it (header order included)."""
        return cls.build(
            [
                (":event-type", event_type),
                (":content-type", content_type),
                (":message-type", "event"),
            ],
            payload,
        )

    @classmethod
    def for_exception(
        cls, exception_type: str, payload: bytes, content_type: str = "application/json"
    ) -> EventStreamMessage:
        """An ``exception`` frame: a modelled error inside a stream (e.g. throttling)."""
        return cls.build(
            [
                (":exception-type", exception_type),
                (":content-type", content_type),
                (":message-type", "exception"),
            ],
            payload,
        )


class EventStreamParser:
    """Incremental frame parser; ``feed`` returns the frames each chunk completes.

    Raises :class:`EventStreamError` on a CRC mismatch or an impossible length; the parser is
    then unusable (a stream with a bad frame cannot be trusted past it).
    """

    __slots__ = ("_broken", "_buf")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._broken = False

    def feed(self, chunk: bytes) -> list[EventStreamMessage]:
        if self._broken:
            raise EventStreamError("the stream already had an invalid frame")
        buf = self._buf
        buf += chunk
        frames: list[EventStreamMessage] = []
        pos = 0
        try:
            while len(buf) - pos >= _PRELUDE_LEN:
                total, headers_len = _PRELUDE.unpack_from(buf, pos)
                _check_prelude(buf, pos, total, headers_len)
                if len(buf) - pos < total:
                    break
                frames.append(_parse_frame(bytes(buf[pos : pos + total]), headers_len))
                pos += total
        except EventStreamError:
            self._broken = True
            raise
        finally:
            del buf[:pos]
        return frames

    def finish(self) -> list[EventStreamMessage]:
        """Nothing: a partial frame at the end is garbage (its CRC cannot be checked), so it is
        dropped, never returned; the stream's own end marker then shows it is incomplete."""
        self._buf.clear()
        return []

    @property
    def pending(self) -> bool:
        """Whether bytes of an unfinished frame are buffered (a stream cut mid-frame)."""
        return bool(self._buf)


class EventStreamSplitter:
    """Cuts a stream into raw frames, exactly as sent, each one checked (both CRCs, lengths).

    Headers are not parsed here (``EVENTSTREAM.decode`` does that when a frame is read). A
    corrupted stream raises :class:`EventStreamError` (the engine then fails the exchange:
    nothing is stored); a cut one leaves a partial frame that ``finish`` drops.
    """

    __slots__ = ("_broken", "_buf")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._broken = False

    def feed(self, chunk: bytes) -> list[bytes]:
        if self._broken:
            raise EventStreamError("the stream already had an invalid frame")
        buf = self._buf
        buf += chunk
        frames: list[bytes] = []
        pos = 0
        try:
            while len(buf) - pos >= _PRELUDE_LEN:
                total, headers_len = _PRELUDE.unpack_from(buf, pos)
                _check_prelude(buf, pos, total, headers_len)
                if len(buf) - pos < total:
                    break
                frame = bytes(buf[pos : pos + total])
                _check_message_crc(frame)
                frames.append(frame)
                pos += total
        except EventStreamError:
            self._broken = True
            raise
        finally:
            del buf[:pos]
        return frames

    def finish(self) -> list[bytes]:
        self._buf.clear()
        return []


class EventStreamFraming:
    """``application/vnd.amazon.eventstream``: the framing codec of a provider descriptor."""

    name = "eventstream"
    content_type = CONTENT_TYPE

    def parser(self) -> EventStreamParser:
        return EventStreamParser()

    def splitter(self) -> EventStreamSplitter:
        return EventStreamSplitter()

    def decode(self, raw: bytes) -> EventStreamMessage | None:
        """One raw frame as a message (``None`` when it is not one whole valid frame)."""
        if len(raw) < _MIN_FRAME:
            return None
        total, headers_len = _PRELUDE.unpack_from(raw, 0)
        try:
            _check_prelude(raw, 0, total, headers_len)
            if total != len(raw):
                return None
            return _parse_frame(bytes(raw), headers_len)
        except EventStreamError:
            return None

    def encode(self, frames: Iterable[Any]) -> bytes:
        return b"".join(f.encode() for f in frames)


EVENTSTREAM = EventStreamFraming()


def _check_prelude(buf: bytes | bytearray, pos: int, total: int, headers_len: int) -> None:
    (crc,) = _U32.unpack_from(buf, pos + 8)
    actual = zlib.crc32(memoryview(buf)[pos : pos + 8])
    if crc != actual:
        raise EventStreamError(f"prelude CRC mismatch: frame says {crc:#010x}, got {actual:#010x}")
    if headers_len > MAX_HEADERS_LENGTH:
        raise EventStreamError(f"headers length {headers_len} exceeds {MAX_HEADERS_LENGTH}")
    payload_len = total - headers_len - _MIN_FRAME
    if payload_len < 0:
        raise EventStreamError(f"frame length {total} is too small for {headers_len} header bytes")
    if payload_len > MAX_PAYLOAD_LENGTH:
        raise EventStreamError(f"payload length {payload_len} exceeds {MAX_PAYLOAD_LENGTH}")


def _check_message_crc(frame: bytes | memoryview) -> None:
    (crc,) = _U32.unpack_from(frame, len(frame) - 4)
    actual = zlib.crc32(frame[:-4])
    if crc != actual:
        raise EventStreamError(f"message CRC mismatch: frame says {crc:#010x}, got {actual:#010x}")


def _parse_frame(frame: bytes, headers_len: int) -> EventStreamMessage:
    """A whole frame whose prelude was checked: message CRC, then headers and payload."""
    _check_message_crc(frame)
    headers = _parse_headers(frame[_PRELUDE_LEN : _PRELUDE_LEN + headers_len])
    return EventStreamMessage(headers, frame[_PRELUDE_LEN + headers_len : -4])


_TYPES = tuple(HeaderType)  # indexed by the wire type byte
_INT_SIZES = {2: 1, 3: 2, 4: 4, 5: 8, 8: 8}


#: Parsed header blocks by their bytes. A stream repeats a handful of blocks (one per event
#: type), so decoding a frame is mostly one dict lookup. Bounded: cleared when full.
_HEADER_CACHE: dict[bytes, tuple[Header, ...]] = {}
_HEADER_CACHE_SIZE = 512


_BLOCK_CACHE: dict[tuple[Header, ...], bytes] = {}


def _header_block(headers: tuple[Header, ...]) -> bytes:
    """The wire bytes of a header tuple (cached like parsed blocks: streams repeat them)."""
    block = _BLOCK_CACHE.get(headers)
    if block is None:
        block = b"".join(h.encode() for h in headers)
        if len(_BLOCK_CACHE) >= _HEADER_CACHE_SIZE:
            _BLOCK_CACHE.clear()
        _BLOCK_CACHE[headers] = block
    return block


def _parse_headers(data: bytes) -> tuple[Header, ...]:
    cached = _HEADER_CACHE.get(data)
    if cached is None:
        cached = _parse_header_block(data)
        if len(_HEADER_CACHE) >= _HEADER_CACHE_SIZE:
            _HEADER_CACHE.clear()
        _HEADER_CACHE[data] = cached
    return cached


def _parse_header_block(data: bytes) -> tuple[Header, ...]:
    """The headers block; plain ``int`` work per header."""
    headers: list[Header] = []
    names: set[str] = set()
    pos, end = 0, len(data)
    try:
        while pos < end:
            n = data[pos]
            name = data[pos + 1 : pos + 1 + n].decode("utf-8")
            pos += 1 + n
            t = data[pos]
            pos += 1
            value: HeaderValue
            if t == 7 or t == 6:  # string, byte array
                length = int.from_bytes(data[pos : pos + 2], "big")
                raw = data[pos + 2 : pos + 2 + length]
                if len(raw) != length or pos + 2 > end:
                    raise EventStreamError(f"header {name!r} value runs past the headers")
                pos += 2 + length
                value = raw.decode("utf-8") if t == 7 else raw
            elif t <= 1:
                value = t == 0
            elif t in _INT_SIZES:
                size = _INT_SIZES[t]
                raw = data[pos : pos + size]
                if len(raw) != size:
                    raise EventStreamError(f"header {name!r} value runs past the headers")
                value = int.from_bytes(raw, "big", signed=True)
                pos += size
            elif t == 9:
                raw = data[pos : pos + 16]
                if len(raw) != 16:
                    raise EventStreamError(f"header {name!r} value runs past the headers")
                value = uuid.UUID(bytes=raw)
                pos += 16
            else:
                raise EventStreamError(f"unknown event-stream header type {t}")
            if pos > end:
                raise EventStreamError(f"header {name!r} runs past the headers")
            if name in names:
                raise EventStreamError(f"duplicate event-stream header {name!r}")
            names.add(name)
            headers.append(Header(name, _TYPES[t], value))
    except (IndexError, UnicodeDecodeError) as exc:
        raise EventStreamError(f"malformed event-stream headers: {exc}") from exc
    return tuple(headers)


def parse_eventstream(stream: bytes) -> list[EventStreamMessage]:
    """Every frame of a complete stream; a trailing partial frame is an error."""
    parser = EventStreamParser()
    frames = parser.feed(stream)
    if parser.pending:
        raise EventStreamError("the stream ends inside a frame")
    return frames
