"""An HTTP exchange as the cache sees it: its key, its stored form, and how to answer from it.

Shared by the proxy and the httpx transport, so both compute the same key for the same call and
read each other's entries. A stored value is a small dict::

    {"v": 1, "status": 200, "content_type": "application/json", "body": "<the JSON text>"}
    {"v": 1, "status": 200, "content_type": "text/event-stream", "stream": "<the SSE text>"}

The body or stream is kept exactly as the upstream sent it (decoded from any
Content-Encoding), so a hit returns the bytes the upstream sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from llm_cache.cache.key_generator import key_for, normalize_request_params
from llm_cache.providers.base import Provider
from llm_cache.providers.sse import SSEEvent, SSEParser

VALUE_VERSION = 1
JSON_TYPE = "application/json"
SSE_TYPE = "text/event-stream"


def exchange_key(
    provider: Provider,
    url: str,
    body: Mapping[str, Any],
    headers: Mapping[str, str],
) -> str:
    """Key of a call: the full upstream URL (query included), output-affecting headers, body.

    ``headers`` must have lower-case names. Fields the provider keeps out of the key (and our
    ``_cache_*`` controls) are dropped; every other field, unknown ones too, enters.
    """
    kept = normalize_request_params(body)
    for name in provider.excluded_fields:
        kept.pop(name, None)
    key_headers = {h: headers[h] for h in provider.key_headers if h in headers}
    return key_for({"url": url, "headers": key_headers, "body": kept})


def json_value(status: int, content_type: str, body: bytes) -> dict[str, Any] | None:
    """Stored form of a complete non-streamed answer; ``None`` when it cannot be kept as text."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return {"v": VALUE_VERSION, "status": status, "content_type": content_type, "body": text}


def stream_value(status: int, content_type: str, stream: bytes) -> dict[str, Any] | None:
    """Stored form of a complete SSE stream; ``None`` when it is not UTF-8."""
    try:
        text = stream.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return {"v": VALUE_VERSION, "status": status, "content_type": content_type, "stream": text}


def is_valid_value(value: Mapping[str, Any]) -> bool:
    return value.get("v") == VALUE_VERSION and (
        isinstance(value.get("body"), str) or isinstance(value.get("stream"), str)
    )


def parse_events(stream_text: str) -> list[SSEEvent]:
    parser = SSEParser()
    events = parser.feed(stream_text.encode("utf-8"))
    events.extend(parser.feed(b"\n\n"))  # flush an unterminated last event
    return events


def render(
    value: Mapping[str, Any],
    *,
    want_stream: bool,
    provider: Provider,
    endpoint: str,
    request_body: Mapping[str, Any],
) -> tuple[str, bytes] | None:
    """``(content_type, body bytes)`` answering the request from ``value``, or ``None``.

    Same kind as stored: the stored bytes unchanged. The other kind: converted by the provider
    (a stream merged into the full response, or a full response spelled out as a stream);
    ``None`` when the provider cannot convert for this endpoint, and the caller treats it as a
    miss.
    """
    body = value.get("body")
    stream = value.get("stream")
    if want_stream:
        if isinstance(stream, str):
            return str(value.get("content_type") or SSE_TYPE), stream.encode("utf-8")
        if not isinstance(body, str):
            return None
        try:
            response = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(response, dict):
            return None
        events = provider.response_to_events(endpoint, response, dict(request_body))
        if events is None:
            return None
        return SSE_TYPE + "; charset=utf-8", b"".join(e.encode() for e in events)
    if isinstance(body, str):
        return str(value.get("content_type") or JSON_TYPE), body.encode("utf-8")
    if not isinstance(stream, str):
        return None
    merged = provider.events_to_response(endpoint, parse_events(stream))
    if merged is None:
        return None
    return JSON_TYPE, orjson.dumps(merged)


def stream_finished(provider: Provider, endpoint: str, stream: bytes) -> bool:
    """Whether a recorded stream ended cleanly and carries no error event (safe to store)."""
    try:
        events = parse_events(stream.decode("utf-8"))
    except UnicodeDecodeError:
        return False
    return provider.stream_finished(endpoint, events)
