"""What every simulated provider shares: request capture, knobs, hashing, JSON and stream sends.

A provider module subclasses :class:`FakeProvider` (state and knobs) and :class:`Call` (one
request being answered) and implements ``Call.route``. Knobs are attributes of the fake,
overridden per request by headers, as in ``tests/fake_upstream.py``:

=====================  ============================  =========================================
attribute              header                        effect
=====================  ============================  =========================================
``latency_ms``         ``x-fake-latency-ms``         sleep before the response starts
``chunk_delay_ms``     ``x-fake-chunk-delay-ms``     sleep between stream frames
``status``             ``x-fake-status``             answer this error status in the provider's
                                                     error shape (429 adds ``retry-after: 7``)
``abort_after``        ``x-fake-abort-after``        stream: send N frames, then drop the
                                                     connection; JSON: send half, then drop
``error_after``        ``x-fake-error-after``        stream: send N frames, then the provider's
                                                     in-band error frame, then end cleanly
=====================  ============================  =========================================

Answers depend on the whole request: texts carry ``[h=<8 hex>]``, a hash of the route (model or
deployment in the path, query parameters that change the answer), the body minus the fields a
cache may ignore, and the headers that change the answer. Ids are unique per upstream call.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import itertools
import re
import threading
import zlib
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import parse_qsl

import orjson

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

_FILLER = "The quick brown fox jumps over the lazy dog while the cache keeps every answer. "


@dataclass
class Recorded:
    """One request as the fake received it."""

    method: str
    path: str  # decoded
    raw_path: str  # as on the wire (percent-escapes kept)
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: Any  # parsed JSON, or None
    raw_body: bytes


def tokens(text: str) -> int:
    """A rough token count (4 characters a token), never 0."""
    return max(1, (len(text) + 3) // 4)


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj)


def fingerprint(*parts: Any) -> str:
    """8 hex characters of SHA-256 over the canonical JSON of ``parts``."""
    return hashlib.sha256(orjson.dumps(parts, option=orjson.OPT_SORT_KEYS)).hexdigest()[:8]


def vector(seed: Any, dims: int) -> list[float]:
    """A deterministic embedding for ``seed``: float32-exact values in [-1, 1)."""
    import struct

    digest = hashlib.sha256(orjson.dumps(seed, option=orjson.OPT_SORT_KEYS)).digest()
    out: list[float] = []
    counter = 0
    while len(out) < dims:
        block = hashlib.sha256(digest + counter.to_bytes(4, "little")).digest()
        counter += 1
        for j in range(0, len(block), 2):
            if len(out) == dims:
                break
            raw = int.from_bytes(block[j : j + 2], "little")
            out.append(struct.unpack("<f", struct.pack("<f", raw / 32768.0 - 1.0))[0])
    return out


def pieces(text: str) -> list[str]:
    """The text cut into word-sized stream deltas (at most ~4 KiB each)."""
    if len(text) > 4096:
        return [text[i : i + 4096] for i in range(0, len(text), 4096)]
    return re.findall(r"\S+\s*|\s+", text) or [text]


class Abort(Exception):
    """Raised by a handler to stop without a terminator."""


@dataclass
class FakeProvider:
    """State and knobs of one simulated provider; ``app`` is the ASGI callable."""

    latency_ms: float = 0.0
    chunk_delay_ms: float = 0.0
    status: int | None = None
    abort_after: int | None = None
    error_after: int | None = None
    requests: list[Recorded] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1), repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    #: The Call subclass answering this provider's requests.
    call_class: ClassVar[type[Call]]

    @property
    def request_count(self) -> int:
        return len(self.requests)

    def count(self, path_contains: str | None = None) -> int:
        """Recorded requests, optionally only those whose raw path contains a string."""
        return sum(1 for r in self.requests if path_contains is None or path_contains in r.raw_path)

    @property
    def last_request(self) -> Recorded:
        return self.requests[-1]

    def reset(self) -> None:
        """Forget recorded requests and restore every knob to its default."""
        self.requests.clear()
        self.latency_ms = 0.0
        self.chunk_delay_ms = 0.0
        self.status = None
        self.abort_after = None
        self.error_after = None

    def next_id(self) -> int:
        with self._lock:
            return next(self._ids)

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":  # pragma: no cover
            return
        read = await read_request(scope, receive)
        if read is None:
            return
        rec, bad_json = read
        self.requests.append(rec)
        call = self.call_class(self, send, rec, bad_json)
        try:
            await call.route()
        except Abort:
            return


async def read_request(scope: Scope, receive: Receive) -> tuple[Recorded, bool] | None:
    """The whole request and whether its body was unparseable JSON; ``None`` on disconnect."""
    raw = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        raw.extend(message.get("body", b""))
        if not message.get("more_body", False):
            break
    headers: dict[str, str] = {}
    for k, v in scope.get("headers", []):
        name = k.decode("latin-1").lower()
        value = v.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    body: Any = None
    bad_json = False
    if raw:
        try:
            body = orjson.loads(bytes(raw))
        except orjson.JSONDecodeError:
            bad_json = True
    raw_path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
    query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
    method = scope["method"].upper()
    return Recorded(method, scope["path"], raw_path, query, headers, body, bytes(raw)), bad_json


class Call:
    """One request being answered; subclasses implement :meth:`route` and :meth:`error_body`."""

    #: Body fields that never change the answer (a cache may keep them out of its key).
    ignored_fields: ClassVar[frozenset[str]] = frozenset({"stream"})
    #: Request headers that change the answer.
    hashed_headers: ClassVar[tuple[str, ...]] = ()
    #: Whether the provider gzips answers for clients that accept it.
    compresses: ClassVar[bool] = True
    #: Name of the response header carrying the request id (``None``: no such header).
    request_id_header: ClassVar[bytes | None] = b"x-request-id"

    def __init__(self, fake: FakeProvider, send: Send, rec: Recorded, bad_json: bool) -> None:
        self.fake = fake
        self.send = send
        self.rec = rec
        self.method = rec.method
        self.path = rec.path
        self.headers = rec.headers
        self.query = rec.query
        self.body = rec.body
        self.bad_json = bad_json
        h = rec.headers
        self.gzip = self.compresses and "gzip" in h.get("accept-encoding", "").lower()
        self.latency_ms = float(h.get("x-fake-latency-ms") or fake.latency_ms)
        self.chunk_delay_ms = float(h.get("x-fake-chunk-delay-ms") or fake.chunk_delay_ms)
        status = h.get("x-fake-status")
        self.status = int(status) if status else fake.status
        abort = h.get("x-fake-abort-after")
        self.abort_after = int(abort) if abort else fake.abort_after
        err = h.get("x-fake-error-after")
        self.error_after = int(err) if err else fake.error_after
        self.serial = fake.next_id()
        self.route_key: Any = None  # what in the URL changes the answer; set by route()

    # ------------------------------------------------------------------ subclass hooks
    async def route(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def error_body(self, status: int, message: str) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def error_headers(self, status: int) -> Headers:
        return [(b"retry-after", b"7")] if status == 429 else []

    # ------------------------------------------------------------------ answer material
    def hash(self, kind: str) -> str:
        body = self.body
        if isinstance(body, dict):
            body = {k: v for k, v in body.items() if k not in self.ignored_fields}
        hdrs = {k: self.headers.get(k) for k in self.hashed_headers}
        return fingerprint(kind, self.route_key, body, hdrs)

    def text(self, kind: str, snippet: str, max_tokens: int | None = None) -> tuple[str, bool]:
        """Answer text (with the request hash) and whether ``max_tokens`` truncated it."""
        snippet = " ".join(snippet.split())[:60]
        text = f'Fake {kind} answer [h={self.hash(kind)}]: you said "{snippet}".'
        size = self.headers.get("x-fake-size")
        if size:
            filler = _FILLER * (int(size) // len(_FILLER) + 2)
            return (text + " " + filler)[: int(size)], False
        if max_tokens is not None and tokens(text) > max_tokens:
            return text[: max(1, max_tokens * 4)], True
        return text, False

    def request_id(self) -> str:
        return f"req_fake{self.serial:06d}"

    def base_headers(self) -> Headers:
        if self.request_id_header is None:
            return []
        return [(self.request_id_header, self.request_id().encode())]

    # ------------------------------------------------------------------ sending
    async def _latency(self) -> None:
        if self.latency_ms:
            await asyncio.sleep(self.latency_ms / 1000)

    async def send_bytes(
        self, status: int, content_type: str, data: bytes, extra: Headers | None = None
    ) -> None:
        """A complete body (honours ``abort_after`` on a 2xx: half the body, then drop)."""
        await self._latency()
        headers = [(b"content-type", content_type.encode()), *self.base_headers(), *(extra or [])]
        if self.gzip:
            data = gzip.compress(data, mtime=0)
            headers += [(b"content-encoding", b"gzip"), (b"vary", b"accept-encoding")]
        headers.append((b"content-length", str(len(data)).encode()))
        await self.send({"type": "http.response.start", "status": status, "headers": headers})
        if self.abort_after is not None and 200 <= status < 300:
            half = data[: len(data) // 2]
            await self.send({"type": "http.response.body", "body": half, "more_body": True})
            raise Abort
        await self.send({"type": "http.response.body", "body": data})

    async def send_json(self, status: int, obj: Any, extra: Headers | None = None) -> None:
        await self.send_bytes(status, "application/json", dumps(obj), extra)

    async def send_error(self, status: int, message: str) -> None:
        self.abort_after = None
        await self.send_json(status, self.error_body(status, message), self.error_headers(status))

    async def simulated_error(self) -> bool:
        """Answer the ``status`` knob's error, if set; whether it did."""
        if self.status is not None and self.status >= 400:
            await self.send_error(self.status, f"Simulated error {self.status}")
            return True
        return False

    async def send_stream(
        self,
        content_type: str,
        frames: list[bytes],
        error_frame: bytes | None = None,
        extra: Headers | None = None,
    ) -> None:
        """A streamed answer, one ``send`` per frame.

        ``abort_after=N``: N frames (never the last), then the connection drops.
        ``error_after=N``: N frames, then ``error_frame``, then a clean end.
        """
        await self._latency()
        headers = [(b"content-type", content_type.encode()), *self.base_headers(), *(extra or [])]
        comp = None
        if self.gzip:
            comp = zlib.compressobj(6, zlib.DEFLATED, 31)
            headers += [(b"content-encoding", b"gzip"), (b"vary", b"accept-encoding")]
        await self.send({"type": "http.response.start", "status": 200, "headers": headers})
        out = list(frames)
        cut = False
        if self.error_after is not None and error_frame is not None:
            out = [*out[: self.error_after], error_frame]
        elif self.abort_after is not None:
            out = out[: max(0, min(self.abort_after, len(out) - 1))]
            cut = True
        delay = self.chunk_delay_ms / 1000
        for i, frame in enumerate(out):
            if i and delay:
                await asyncio.sleep(delay)
            chunk = comp.compress(frame) + comp.flush(zlib.Z_SYNC_FLUSH) if comp else frame
            await self.send({"type": "http.response.body", "body": chunk, "more_body": True})
        if cut:
            raise Abort  # drop the connection mid-stream
        tail = comp.flush(zlib.Z_FINISH) if comp else b""
        await self.send({"type": "http.response.body", "body": tail, "more_body": False})


def last_text(messages: Any) -> str:
    """The text of the last message that has some (string or list-of-parts content)."""
    if not isinstance(messages, list):
        return ""
    for m in reversed(messages):
        if not isinstance(m, dict):
            continue
        content = m.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            texts = [str(c.get("text", "")) for c in content if isinstance(c, dict) and "text" in c]
            if texts:
                return " ".join(texts)
    return ""
