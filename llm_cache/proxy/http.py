"""Small raw-ASGI helpers: reading bodies, sending answers, filtering headers.

The proxy speaks raw ASGI on its hot path: a cache hit is one storage read and two ``send``
calls, with no framework objects built in between.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import Any

import orjson

from llm_cache.engine.exchange import CACHE_HEADER_PREFIX, HOP_BY_HOP

Headers = list[tuple[bytes, bytes]]
Scope = dict[str, Any]
Receive = Any
Send = Any

_DROP_REQUEST = HOP_BY_HOP | {b"host", b"content-length", b"accept-encoding"}


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


class BodyTooLarge(ValueError):
    """The request body is over ``LLM_CACHE_MAX_BODY_BYTES`` (answered 413, not read further)."""


async def read_body(receive: Receive, limit: int | None = None) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionAbortedError("client disconnected while sending its request")
        chunk = message.get("body", b"")
        size += len(chunk)
        if limit is not None and size > limit:
            raise BodyTooLarge(
                f"the request body is larger than {limit} bytes (LLM_CACHE_MAX_BODY_BYTES)"
            )
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


class ClientWatch:
    """Notices the client hanging up, once the body is read (one ``receive`` reader only)."""

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._task: asyncio.Future[None] | None = None

    def future(self) -> asyncio.Future[None]:
        """Completes when the client disconnects (started on first use: hits never pay)."""
        if self._task is None:
            self._task = asyncio.ensure_future(_wait_disconnect(self._receive))
        return self._task

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()


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
    send: Send, watch: ClientWatch, status: int, headers: Headers, chunks: AsyncIterator[bytes]
) -> bool:
    """Send ``chunks`` as they come; ``False`` when the client went away first.

    The watcher notices a client that leaves while the upstream is between chunks at once, not
    at the next chunk. An exception from ``chunks`` propagates before the final empty body
    message, so the response ends aborted.
    """
    await send({"type": "http.response.start", "status": status, "headers": headers})
    watcher: asyncio.Future[Any] = watch.future()
    iterator = chunks.__aiter__()
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


async def _wait_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
