"""The entry record: one stored answer with the request it answers (SPEC "Entries").

Beside the answer an entry keeps the request (method, upstream URL without credentials, the
key headers, the body), the provider, endpoint and model, the usage, the upstream duration
and when it was created. Storage bookkeeping (last hit, hit count) lives in the backend.

The answer is kept as bytes, exactly as the upstream sent it (decoded from any
Content-Encoding): a full body, or a stream as its frames with their time offsets (seconds
since the request went upstream), so a replay can be paced like the original. Encoded with
``codec.encode_entry_parts``: a hit parses only the small ``meta`` object and sends the payload
bytes as stored.

``to_export``/``from_export`` give the JSON Lines form of ``llm-cache export`` / ``import``::

    {"format": "llm-cache-entry/1", "key": ..., "request": {...},
     "response": {"status", "content_type", "body" | "events"}, "metadata": {...}}
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from llm_cache.cache.codec import (
    CorruptValueError,
    decode_entry_parts,
    dumps_exact,
    encode_entry_parts,
)

__all__ = ["ENTRY_FORMAT", "ENTRY_VERSION", "Entry"]

ENTRY_FORMAT = "llm-cache-entry/1"
ENTRY_VERSION = 2


@dataclass(slots=True)
class Entry:
    """A stored answer. Exactly one of ``body`` / ``frames`` is set."""

    status: int
    content_type: str
    body: bytes | None = None
    frames: list[bytes] | None = None
    #: Seconds from sending the request upstream to each frame (streams only).
    offsets: list[float] | None = None
    #: ``{"method", "url", "headers", "body"}`` without credentials (``None`` when unknown).
    request: dict[str, Any] | None = None
    provider: str = ""
    endpoint: str = ""
    model: str = ""
    #: ``{"input": n, "output": n}`` tokens, when the answer says.
    usage: dict[str, int] | None = None
    upstream_duration: float = 0.0
    created: float = field(default_factory=time.time)
    #: Lazily parsed request (kept as bytes on a hit, which never needs it).
    _request_raw: bytes | None = None

    @property
    def is_stream(self) -> bool:
        return self.frames is not None

    @property
    def payload(self) -> bytes:
        """The answer bytes as the client gets them (a stream's frames joined)."""
        if self.frames is not None:
            return b"".join(self.frames)
        return self.body or b""

    def request_dict(self) -> dict[str, Any] | None:
        if self.request is None and self._request_raw:
            try:
                parsed = orjson.loads(self._request_raw)
            except orjson.JSONDecodeError:
                return None
            self.request = parsed if isinstance(parsed, dict) else None
        return self.request

    # -- storage form -------------------------------------------------------------------------

    def meta(self) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "v": ENTRY_VERSION,
            "status": self.status,
            "content_type": self.content_type,
            "provider": self.provider,
            "endpoint": self.endpoint,
            "model": self.model,
            "usage": self.usage,
            "upstream_duration": round(self.upstream_duration, 6),
            "created": self.created,
        }
        if self.frames is not None:
            meta["frames"] = [len(f) for f in self.frames]
            meta["offsets"] = [round(o, 4) for o in (self.offsets or [])]
        return meta

    def encode(self) -> bytes:
        request = self._request_raw
        if request is None:
            request = dumps_exact(self.request) if self.request is not None else b""
        return encode_entry_parts(self.meta(), request, self.payload)

    @classmethod
    def decode(cls, blob: bytes) -> Entry:
        """Inverse of ``encode``; ``CorruptValueError`` for anything that is not an entry."""
        meta, request, payload = decode_entry_parts(blob)
        if meta.get("v") != ENTRY_VERSION:
            raise CorruptValueError(f"entry version {meta.get('v')!r} is not {ENTRY_VERSION}")
        try:
            frames: list[bytes] | None = None
            lengths = meta.get("frames")
            data = bytes(payload)
            if isinstance(lengths, list):
                frames, pos = [], 0
                for n in lengths:
                    frames.append(data[pos : pos + int(n)])
                    pos += int(n)
                if pos != len(data):
                    raise CorruptValueError("frame lengths do not add up to the payload")
            offsets = meta.get("offsets")
            usage = meta.get("usage")
            return cls(
                status=int(meta["status"]),
                content_type=str(meta["content_type"]),
                body=None if frames is not None else data,
                frames=frames,
                offsets=[float(o) for o in offsets] if isinstance(offsets, list) else None,
                provider=str(meta.get("provider", "")),
                endpoint=str(meta.get("endpoint", "")),
                model=str(meta.get("model", "")),
                usage=usage if isinstance(usage, dict) else None,
                upstream_duration=float(meta.get("upstream_duration") or 0.0),
                created=float(meta.get("created") or 0.0),
                _request_raw=bytes(request) if len(request) else None,
            )
        except CorruptValueError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptValueError(f"unreadable entry: {exc}") from exc

    # -- export form --------------------------------------------------------------------------

    def to_export(self, key: str, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        """The ``llm-cache-entry/1`` JSON object (bodies parsed when they are JSON)."""
        response: dict[str, Any] = {"status": self.status, "content_type": self.content_type}
        if self.frames is not None:
            response["events"] = [
                {"t": t, "data": f.decode("utf-8", "replace")}
                for t, f in zip(self.offsets or [0.0] * len(self.frames), self.frames, strict=False)
            ]
        else:
            text = (self.body or b"").decode("utf-8", "replace")
            try:
                response["body"] = orjson.loads(text)
            except orjson.JSONDecodeError:
                response["body_text"] = text
        meta = {
            "provider": self.provider,
            "endpoint": self.endpoint,
            "model": self.model,
            "usage": self.usage,
            "upstream_duration": self.upstream_duration,
            "created": self.created,
            **(metadata or {}),
        }
        return {
            "format": ENTRY_FORMAT,
            "key": key,
            "request": self.request_dict(),
            "response": response,
            "metadata": meta,
        }

    @classmethod
    def from_export(cls, obj: dict[str, Any]) -> Entry:
        """Inverse of ``to_export``; ``ValueError`` saying what is wrong."""
        if obj.get("format") != ENTRY_FORMAT:
            raise ValueError(f"format must be {ENTRY_FORMAT!r}, got {obj.get('format')!r}")
        response = obj.get("response")
        if not isinstance(response, dict):
            raise ValueError("'response' must be an object")
        meta = obj.get("metadata") or {}
        if not isinstance(meta, dict):
            raise ValueError("'metadata' must be an object")
        status = response.get("status")
        if not isinstance(status, int):
            raise ValueError("'response.status' must be an integer")
        body: bytes | None = None
        frames: list[bytes] | None = None
        offsets: list[float] | None = None
        if "events" in response:
            events = response["events"]
            if not isinstance(events, list):
                raise ValueError("'response.events' must be a list")
            frames, offsets = [], []
            for i, ev in enumerate(events):
                if not isinstance(ev, dict) or not isinstance(ev.get("data"), str):
                    raise ValueError(f"'response.events[{i}]' must be {{'t': s, 'data': str}}")
                frames.append(ev["data"].encode("utf-8"))
                offsets.append(float(ev.get("t") or 0.0))
        elif "body" in response:
            body = orjson.dumps(response["body"])
        elif isinstance(response.get("body_text"), str):
            body = response["body_text"].encode("utf-8")
        else:
            raise ValueError("'response' needs 'body' or 'events'")
        request = obj.get("request")
        usage = meta.get("usage")
        return cls(
            status=status,
            content_type=str(response.get("content_type") or "application/json"),
            body=body,
            frames=frames,
            offsets=offsets,
            request=request if isinstance(request, dict) else None,
            provider=str(meta.get("provider") or ""),
            endpoint=str(meta.get("endpoint") or ""),
            model=str(meta.get("model") or ""),
            usage=usage if isinstance(usage, dict) else None,
            upstream_duration=float(meta.get("upstream_duration") or 0.0),
            created=float(meta.get("created") or time.time()),
        )
