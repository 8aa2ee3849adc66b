"""An HTTP exchange as the cache sees it: controls, key, the entry it stores, the answer it gives.

I/O-free. The sequence that uses these (``http_cache``) is shared by the proxy and the httpx
transports, so both compute the same key for the same call and read each other's entries.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson

from llm_cache.cache.key_generator import key_for_parsed_json, normalize_request_params
from llm_cache.engine.controls import ALIAS_HEADER_PREFIXES
from llm_cache.engine.entry import Entry
from llm_cache.providers.base import CREDENTIAL_QUERY, ProviderSpec, RouteMatch

JSON_TYPE = "application/json"

#: Never forwarded in either direction (RFC 9110 §7.6.1).
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
#: The body an answer carries is decoded, so its length and encoding headers no longer hold.
_DROP_RESPONSE = HOP_BY_HOP | {b"content-length", b"content-encoding", b"date", b"server"}
CACHE_HEADER_PREFIX = b"x-cache-"

#: Request headers that are credentials (SPEC): never stored, logged or keyed.
CREDENTIAL_HEADERS = frozenset(
    {
        "authorization",
        "x-api-key",
        "api-key",
        "x-goog-api-key",
        "proxy-authorization",
        "cookie",
        "x-amz-date",
        "x-amz-security-token",
        "x-amz-content-sha256",
    }
)


class BadRequest(ValueError):
    """A request the cache must refuse (answered 4xx in the provider's error shape)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


#: A number of 20 digits or more may be past 64 bits, which orjson reads as a float (so 2**64
#: and 2**64 + 1 would look alike); such bodies are parsed by the exact standard library.
_LONG_NUMBER = re.compile(rb"\d{20,}")


_DIGITS = b"0123456789"


def _may_hold_long_number(raw: bytes) -> bool:
    """A cheap first test (one C call): fewer than 20 digits in all cannot hold one."""
    return len(raw) - len(raw.translate(None, _DIGITS)) >= 20


def parse_body(raw: bytes) -> dict[str, Any]:
    """The JSON object a cached route needs, or ``BadRequest`` saying what is wrong."""
    if not raw:
        raise BadRequest("the request body is empty; expected a JSON object")
    try:
        body = orjson.loads(raw)
        if _may_hold_long_number(raw) and _LONG_NUMBER.search(raw):
            body = json.loads(raw)
    except (orjson.JSONDecodeError, ValueError, RecursionError) as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    return body


# -- keys -------------------------------------------------------------------------------------


def key_query(provider: ProviderSpec, endpoint: str, query: str) -> str:
    """The query parameters that enter the key, canonical (sorted), credentials out."""
    if not query:
        return ""
    items = provider.key_query(endpoint, parse_qsl(query, keep_blank_values=True))
    return "&".join(f"{k}={v}" for k, v in sorted(items))


@functools.lru_cache(maxsize=1024)
def _origin(base: str) -> str:
    parts = urlsplit(base)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}".lower()


def exchange_key(
    match: RouteMatch,
    url: str,
    body: Mapping[str, Any],
    headers: Mapping[str, str],
    namespace: str = "",
    tenant: str = "",
) -> str:
    """Key of a call: the upstream origin and path prefix, the endpoint and its path parameters,
    the query (credentials out), output-affecting headers and the body.

    ``headers`` must have lower-case names. Fields the provider keeps out of the key (and our
    ``_cache_*`` controls) are dropped; every other field, unknown ones too, enters. The path
    itself enters through prefix + endpoint + parameters, so the stream and non-stream routes of
    one call (Gemini's ``:generateContent`` / ``:streamGenerateContent``) share a key.
    ``BadRequest`` for a body nested too deeply to key.
    """
    provider = match.provider
    base, _, query = url.partition("?")
    excluded = provider.excluded_fields_for(match.endpoint)
    kept = provider.key_body(match.endpoint, normalize_request_params(body, excluded))
    material: dict[str, Any] = {
        "origin": _origin(base),
        "prefix": match.prefix,
        "provider": provider.name,
        "endpoint": match.endpoint,
        "params": dict(match.params),
        "query": key_query(provider, match.endpoint, query),
        "headers": {h: headers[h] for h in provider.key_headers if h in headers},
        "body": kept,
    }
    if namespace:
        material["namespace"] = namespace
    if tenant:
        material["tenant"] = tenant
    try:
        return key_for_parsed_json(material)
    except (TypeError, RecursionError):
        raise BadRequest("the request body is nested too deeply to be cached") from None


def bucket_key(key: str, slot: int) -> str:
    """The key of answer number ``slot`` of a bucket (slot 0 is the key itself)."""
    if slot == 0:
        return key
    return hashlib.sha256(f"{key}:bucket:{slot}".encode()).hexdigest()


def credential_of(headers: Mapping[str, str], url: str) -> str | None:
    """The credential a request carries (for tenant isolation only; never stored or logged)."""
    for name in ("authorization", "x-api-key", "api-key", "x-goog-api-key"):
        value = headers.get(name)
        if value:
            return f"{name}:{value}"
    for k, v in parse_qsl(urlsplit(url).query, keep_blank_values=True):
        if k.lower() in CREDENTIAL_QUERY and v:
            return f"query:{v}"
    return None


def clean_url(url: str) -> str:
    """``url`` without credentials (user info, ``key=`` query parameters): safe to store/log."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    query = "&".join(
        f"{k}={v}"
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if k.lower() not in CREDENTIAL_QUERY
    )
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")


# -- headers ----------------------------------------------------------------------------------


def answer_headers(raw: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Upstream response headers a client may get with the decoded body."""
    return [(k, v) for k, v in raw if k.lower() not in _DROP_RESPONSE]


def upstream_headers(raw: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Request headers to send upstream: our ``X-Cache-*`` controls and other gateways' cache
    controls (aliases of ours) removed."""
    return [
        (k, v)
        for k, v in raw
        if not k.lower().startswith(CACHE_HEADER_PREFIX)
        and not k.lower().startswith(ALIAS_HEADER_PREFIXES)
    ]


# -- entries and answers ----------------------------------------------------------------------


def split_frames(provider: ProviderSpec, data: bytes) -> list[bytes]:
    splitter = provider.framing.splitter()
    frames = splitter.feed(data)
    frames.extend(splitter.finish())
    return frames


def decode_frames(provider: ProviderSpec, frames: Iterable[bytes]) -> list[Any]:
    decoded = (provider.framing.decode(f) for f in frames)
    return [f for f in decoded if f is not None]


def is_stream_type(provider: ProviderSpec, content_type: str) -> bool:
    return content_type.lower().startswith(provider.framing.content_type)


def render(
    entry: Entry,
    *,
    want_stream: bool,
    match: RouteMatch,
    request_body: Mapping[str, Any],
) -> tuple[str, bytes] | None:
    """``(content_type, body bytes)`` answering the request from ``entry``, or ``None``.

    Same kind as stored: the stored bytes unchanged. The other kind: converted by the provider
    (a stream merged into the full response, or a full response spelled out as a stream);
    ``None`` when the provider cannot convert for this endpoint (the caller treats it as a miss).
    """
    provider, endpoint = match.provider, match.endpoint
    if want_stream:
        if entry.frames is not None:
            frames = entry.frames
            client = provider.client_frames(endpoint, frames, request_body)
            return entry.content_type, b"".join(client)
        response = _json_object(entry.body)
        if response is None:
            return None
        events = provider.response_to_events(endpoint, response, dict(request_body))
        if events is None:
            return None
        return provider.framing.content_type, provider.framing.encode(events)
    if entry.frames is None:
        return entry.content_type, entry.body or b""
    merged = provider.events_to_response(endpoint, decode_frames(provider, entry.frames))
    if merged is None:
        return None
    return JSON_TYPE, orjson.dumps(merged)


def _json_object(data: bytes | None) -> dict[str, Any] | None:
    try:
        value = orjson.loads(data or b"")
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def complete_answer(
    match: RouteMatch,
    status: int,
    content_type: str,
    chunks: list[bytes],
    offsets: list[float],
) -> tuple[Entry | None, str | None]:
    """The entry for a complete upstream answer, or why it must not be stored.

    Stored: a 2xx JSON object that is not an error in disguise, or a stream of the provider's
    framing that reached its end marker with no error frame.
    """
    provider, endpoint = match.provider, match.endpoint
    if not 200 <= status < 300:
        return None, f"status {status}"
    if is_stream_type(provider, content_type):
        frames, times = _frames_with_times(provider, chunks, offsets)
        events = decode_frames(provider, frames)
        if not provider.stream_finished(endpoint, events):
            return None, "the stream did not finish cleanly"
        merged = provider.events_to_response(endpoint, events)
        usage = provider.usage_tokens(endpoint, merged) if merged else None
        entry = Entry(status, content_type, frames=frames, offsets=times)
    elif content_type.lower().startswith(JSON_TYPE):
        body = b"".join(chunks)
        try:
            response = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None, "the body is not valid JSON"
        if provider.body_is_error(endpoint, response):
            return None, "the body is an error"
        usage = provider.usage_tokens(endpoint, response) if isinstance(response, dict) else None
        entry = Entry(status, content_type, body=body)
    else:
        return None, f"content type {content_type or 'missing'} is not cached"
    entry.provider, entry.endpoint = provider.name, endpoint
    entry.usage = usage.as_dict() if usage is not None else None
    return entry, None


def _frames_with_times(
    provider: ProviderSpec, chunks: list[bytes], offsets: list[float]
) -> tuple[list[bytes], list[float]]:
    """Cut the received chunks into frames, each timed by the chunk that completed it."""
    splitter = provider.framing.splitter()
    frames: list[bytes] = []
    times: list[float] = []
    for chunk, t in zip(chunks, offsets, strict=False):
        for frame in splitter.feed(chunk):
            frames.append(frame)
            times.append(t)
    rest = splitter.finish()
    frames.extend(rest)
    times.extend([offsets[-1] if offsets else 0.0] * len(rest))
    return frames, times


def stored_request(
    method: str, url: str, headers: Mapping[str, str], provider: ProviderSpec, body: Any
) -> dict[str, Any]:
    """The request an entry answers, without credentials (for export, show, re-keying)."""
    return {
        "method": method,
        "url": clean_url(url),
        "headers": {h: headers[h] for h in provider.key_headers if h in headers},
        "body": body,
    }
