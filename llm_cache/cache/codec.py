"""One place for how a cached value becomes bytes and back (backends only see bytes).

Format: one tag byte, then the payload. ``j`` = orjson; ``z`` = zstd-compressed orjson, used
above ``COMPRESS_THRESHOLD`` bytes where it pays for itself. The tag leaves room for new forms
without invalidating stored entries.
"""

from __future__ import annotations

import threading
from typing import Any

import orjson
import zstandard

COMPRESS_THRESHOLD = 4096
_ZSTD_LEVEL = 3

_TAG_JSON = b"j"
_TAG_ZSTD = b"z"


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


def encode_value(value: dict[str, Any]) -> bytes:
    """Serialize a JSON-able dict; raises ``TypeError`` for values orjson cannot encode."""
    raw = orjson.dumps(value)
    if len(raw) > COMPRESS_THRESHOLD:
        packed = _compressor().compress(raw)
        if len(packed) < len(raw):
            return _TAG_ZSTD + packed
    return _TAG_JSON + raw


def decode_value(blob: bytes) -> dict[str, Any]:
    """Inverse of ``encode_value``; raises ``CorruptValueError`` on anything unreadable."""
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
