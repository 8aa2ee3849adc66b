"""Small raw-ASGI helpers: reading bodies, sending answers, filtering headers.

The proxy speaks raw ASGI on its hot path: a cache hit is one storage read and two ``send``
calls, with no framework objects built in between.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import Any

import orjson

Headers = list[tuple[bytes, bytes]]
Scope = dict[str, Any]
Receive = Any
Send = Any

#: Never forwarded in either direction (RFC 9110 §7.6.1), plus what we recompute ourselves.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
_DROP_REQUEST = HOP_BY_HOP | {b"host", b"content-length", b"accept-encoding"}
#: The body we pass on is decoded, so its length and encoding headers no longer hold.
_DROP_RESPONSE = HOP_BY_HOP | {b"content-length", b"content-encoding", b"date", b"server"}
CACHE_HEADER_PREFIX = b"x-cache-"


def header_dict(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """Lower-case name → value; a repeated header's values joined with ", " (RFC 9110 §5.3),
    so two requests that differ in any of them never look alike."""
    out: dict[str, str] = {}
    for k, v in raw:
        name, value = k.decode("latin-1").lower(), v.decode("latin-1")
        out[name] = f"{out[name]}, {value}" if name in out else value
    return out


def forward_request_headers(raw: Iterable[tuple[bytes, bytes]]) -> Headers:
    """Client headers to send upstream: auth kept; hop-by-hop and ``X-Cache-*`` removed."""
    return [
        (k, v)
        for k, v in raw
        if k.lower() not in _DROP_REQUEST and not k.lower().startswith(CACHE_HEADER_PREFIX)
    ]


def forward_response_headers(raw: Iterable[tuple[bytes, bytes]]) -> Headers:
    return [(k, v) for k, v in raw if k.lower() not in _DROP_RESPONSE]


def cache_headers(hit: bool, key: str) -> Headers:
    return [(b"x-cache-hit", b"true" if hit else b"false"), (b"x-cache-key", key.encode())]


async def read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionAbortedError("client disconnected while sending its request")
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def send_bytes(send: Send, status: int, headers: Headers, body: bytes) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_json(send: Send, status: int, payload: Any, headers: Headers | None = None) -> None:
    await send_bytes(
        send,
        status,
        [(b"content-type", b"application/json"), *(headers or [])],
        orjson.dumps(payload),
    )


async def send_stream(
    send: Send, receive: Receive, status: int, headers: Headers, chunks: AsyncIterator[bytes]
) -> bool:
    """Send ``chunks`` as they come; ``False`` when the client went away first.

    A watcher reads ``receive`` for the disconnect, so a client that leaves while the upstream
    is between chunks is noticed at once, not at the next chunk.
    """
    await send({"type": "http.response.start", "status": status, "headers": headers})
    watcher = asyncio.ensure_future(_wait_disconnect(receive))
    iterator = chunks.__aiter__()
    try:
        while True:
            step = asyncio.ensure_future(iterator.__anext__())
            done, _ = await asyncio.wait({step, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if step not in done:
                step.cancel()
                return False
            try:
                chunk = step.result()
            except StopAsyncIteration:
                break
            if chunk:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return True
    finally:
        watcher.cancel()


async def _wait_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
