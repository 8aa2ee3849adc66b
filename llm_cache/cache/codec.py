"""One place for how a cached value becomes bytes and back (backends only see bytes).

Format: one tag byte, then the payload. ``j`` = orjson; ``z`` = zstd-compressed orjson, used
above ``COMPRESS_THRESHOLD`` bytes where it pays for itself. The tag leaves room for new forms
without invalidating stored entries.

Entries of the HTTP cache (``e``, or ``f`` when zstd-compressed) are three sections, so a hit
reads the small ``meta`` object and hands out the answer bytes exactly as stored, never
unescaping a body kept as a JSON string::

    tag | u32 len(meta) | meta (JSON) | u32 len(request) | request (JSON) | payload (answer bytes)
"""

from __future__ import annotations

import json
import struct
import threading
from typing import Any

import orjson
import zstandard

COMPRESS_THRESHOLD = 4096
_ZSTD_LEVEL = 3

_TAG_JSON = b"j"
_TAG_ZSTD = b"z"
_TAG_ENTRY = b"e"
_TAG_ENTRY_ZSTD = b"f"
_U32 = struct.Struct(">I")


class CorruptValueError(ValueError):
    """A stored blob could not be decoded; callers treat it as a miss."""


_local = threading.local()


def _compressor() -> zstandard.ZstdCompressor:
    # zstandard objects are not safe to share between threads; one per thread is cheap.
    c: zstandard.ZstdCompressor | None = getattr(_local, "c", None)
    if c is None:
        c = _local.c = zstandard.ZstdCompressor(level=_ZSTD_LEVEL)
    return c


def _decompressor() -> zstandard.ZstdDecompressor:
    d: zstandard.ZstdDecompressor | None = getattr(_local, "d", None)
    if d is None:
        d = _local.d = zstandard.ZstdDecompressor()
    return d


def dumps_exact(value: Any) -> bytes:
    """Compact JSON bytes; the exact standard library for what orjson refuses (ints past 64
    bits), so no request the proxy accepted is ever refused or altered when re-serialized."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def encode_value(value: dict[str, Any]) -> bytes:
    """Serialize a JSON-able dict; raises ``TypeError`` for values orjson cannot encode."""
    raw = orjson.dumps(value)
    if len(raw) > COMPRESS_THRESHOLD:
        packed = _compressor().compress(raw)
        if len(packed) < len(raw):
            return _TAG_ZSTD + packed
    return _TAG_JSON + raw


def encode_entry_parts(meta: dict[str, Any], request: bytes, payload: bytes) -> bytes:
    """An HTTP-cache entry: ``meta`` (small JSON object), the request (JSON bytes), the answer."""
    meta_raw = orjson.dumps(meta)
    raw = b"".join((_U32.pack(len(meta_raw)), meta_raw, _U32.pack(len(request)), request, payload))
    if len(raw) > COMPRESS_THRESHOLD:
        packed = _compressor().compress(raw)
        if len(packed) < len(raw):
            return _TAG_ENTRY_ZSTD + packed
    return _TAG_ENTRY + raw


def is_entry(blob: bytes) -> bool:
    return blob[:1] in (_TAG_ENTRY, _TAG_ENTRY_ZSTD)


def decode_entry_parts(blob: bytes) -> tuple[dict[str, Any], memoryview, memoryview]:
    """``(meta, request JSON, payload)`` of an entry; ``CorruptValueError`` when unreadable."""
    try:
        tag = blob[:1]
        if tag == _TAG_ENTRY:
            view = memoryview(blob)[1:]
        elif tag == _TAG_ENTRY_ZSTD:
            view = memoryview(bytes(_decompressor().decompress(blob[1:])))
        else:
            raise CorruptValueError(f"not an entry (tag {tag!r})")
        (meta_len,) = _U32.unpack_from(view, 0)
        meta = orjson.loads(view[4 : 4 + meta_len])
        offset = 4 + meta_len
        (req_len,) = _U32.unpack_from(view, offset)
        offset += 4
        request = view[offset : offset + req_len]
        if len(request) != req_len or not isinstance(meta, dict):
            raise CorruptValueError("truncated entry")
        return meta, request, view[offset + req_len :]
    except CorruptValueError:
        raise
    except Exception as exc:
        raise CorruptValueError(str(exc)) from exc


def decode_value(blob: bytes) -> dict[str, Any]:
    """Inverse of ``encode_value``; raises ``CorruptValueError`` on anything unreadable.

    An HTTP-cache entry decodes to ``{"meta": ..., "request": ..., "payload": <text>}``.
    """
    if is_entry(blob):
        meta, request, answer = decode_entry_parts(blob)
        try:
            return {
                "meta": meta,
                "request": orjson.loads(request) if len(request) else None,
                "payload": bytes(answer).decode("utf-8", "replace"),
            }
        except orjson.JSONDecodeError as exc:
            raise CorruptValueError(str(exc)) from exc
    try:
        tag, payload = blob[:1], blob[1:]
        if tag == _TAG_JSON:
            value = orjson.loads(payload)
        elif tag == _TAG_ZSTD:
            value = orjson.loads(_decompressor().decompress(payload))
        else:
            raise CorruptValueError(f"unknown value tag {tag!r}")
    except CorruptValueError:
        raise
    except Exception as exc:  # zstd and orjson raise their own types
        raise CorruptValueError(str(exc)) from exc
    if not isinstance(value, dict):
        raise CorruptValueError("stored value is not an object")
    return value
