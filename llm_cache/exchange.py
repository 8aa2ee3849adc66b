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
from dataclasses import dataclass
from typing import Any

import orjson

from llm_cache.cache.key_generator import key_for, normalize_request_params
from llm_cache.providers.base import Provider
from llm_cache.providers.sse import SSEEvent, SSEParser

VALUE_VERSION = 1
JSON_TYPE = "application/json"
SSE_TYPE = "text/event-stream"
CONTROL_PREFIX = "_cache_"
_TRUE = ("1", "true", "yes", "on")


class BadRequest(ValueError):
    """A request the cache must refuse (answered 400 in the provider's error shape)."""


@dataclass(slots=True)
class Controls:
    """A request's cache controls (SPEC "Per-request controls"), read once for every front end.

    ``body``/``raw`` are what goes upstream: our ``_cache_*`` fields removed (``raw`` is then
    re-serialized; otherwise it is the client's bytes unchanged).
    """

    body: dict[str, Any]
    raw: bytes
    bypass: bool
    no_store: bool
    ttl: float | None
    rewritten: bool


def parse_body(raw: bytes) -> dict[str, Any]:
    """The JSON object a cached route needs, or ``BadRequest`` saying what is wrong."""
    if not raw:
        raise BadRequest("the request body is empty; expected a JSON object")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    return body


def parse_ttl(raw: str | None) -> float | None:
    if raw is None or not raw.strip():
        return None
    try:
        ttl = float(raw)
    except ValueError:
        raise BadRequest(f"X-Cache-TTL must be a number of seconds, got {raw!r}") from None
    if not ttl > 0 or ttl == float("inf"):
        raise BadRequest(f"X-Cache-TTL must be a positive number of seconds, got {raw!r}")
    return ttl


def read_controls(body: dict[str, Any], raw: bytes, headers: Mapping[str, str]) -> Controls:
    """Bypass, no-store and TTL from headers (lower-case names) and ``_cache_*`` body fields."""
    ttl = parse_ttl(headers.get("x-cache-ttl"))
    bypass = headers.get("x-cache-bypass", "").lower() in _TRUE or body.get("_cache_bypass") is True
    no_store = "no-store" in headers.get("cache-control", "").lower()
    rewritten = any(k.startswith(CONTROL_PREFIX) for k in body)
    if rewritten:
        body = {k: v for k, v in body.items() if not k.startswith(CONTROL_PREFIX)}
        raw = orjson.dumps(body)
    return Controls(body, raw, bypass, no_store, ttl, rewritten)


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


def answer_value(
    provider: Provider, endpoint: str, status: int, content_type: str, data: bytes
) -> dict[str, Any] | None:
    """Stored form of a complete upstream answer, or ``None`` when it must not be stored:
    not 2xx, a stream that did not finish cleanly, or a body that is neither JSON nor SSE."""
    if not 200 <= status < 300:
        return None
    if content_type.startswith(SSE_TYPE):
        if stream_finished(provider, endpoint, data):
            return stream_value(status, content_type, data)
        return None
    if content_type.startswith(JSON_TYPE):
        return json_value(status, content_type, data)
    return None


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
