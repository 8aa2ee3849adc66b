"""Export records (``llm-cache-entry/1``): a stored entry as one JSON object, and back.

One line of an export::

    {"format": "llm-cache-entry/1", "key": "<64 hex>",
     "request": {"method", "url", "headers", "body"} | null,
     "response": {"status", "content_type", "body" | "body_text" | "events"},
     "metadata": {"provider", "endpoint", "model", "created", "last_hit", "hits", "expires", ...}}

``body`` is the answer parsed when it is JSON (``body_text`` otherwise); ``events`` are a
stream's frames, each ``{"t": seconds since the request, "data": the frame as sent}``. Values
that are not HTTP answers (results of ``@cached`` functions) travel as ``"response":
{"value": <stored form>}`` with a ``null`` request: they cannot be re-keyed, only copied.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

import orjson

from llm_cache.cache.codec import CorruptValueError, decode_value, encode_value
from llm_cache.cache.storage import StoredEntry
from llm_cache.exchange import VALUE_VERSION, exchange_key, json_value, parse_events
from llm_cache.providers import get_provider

ENTRY_FORMAT = "llm-cache-entry/1"
_KEY = re.compile(r"[0-9a-f]{64}")
_INFO_FIELDS = ("created", "last_hit", "hits", "expires")


class RecordError(ValueError):
    """A line that is not a valid export record; the message says what is wrong."""


@dataclass(slots=True)
class ImportItem:
    """What one record stores: under ``key`` (re-keyed when the rules changed), ``blob``."""

    key: str
    original_key: str
    blob: bytes
    metadata: dict[str, Any]
    expires: float | None

    @property
    def rekeyed(self) -> bool:
        return self.key != self.original_key


# -- export ----------------------------------------------------------------------------------


def to_record(entry: StoredEntry) -> dict[str, Any]:
    """The export record of a stored entry; ``CorruptValueError`` when its value is unreadable."""
    value = decode_value(entry.data)
    info = entry.info
    metadata: dict[str, Any] = {
        "provider": info.get("provider") or "",
        "endpoint": info.get("endpoint") or "",
        "model": info.get("model") or "",
    }
    metadata.update({name: info.get(name) for name in _INFO_FIELDS})
    return {
        "format": ENTRY_FORMAT,
        "key": entry.key,
        "request": None,
        "response": _response_of(value),
        "metadata": metadata,
    }


def _response_of(value: dict[str, Any]) -> dict[str, Any]:
    if value.get("v") != VALUE_VERSION or "status" not in value:
        return {"value": value}
    response: dict[str, Any] = {"status": value["status"], "content_type": value["content_type"]}
    stream = value.get("stream")
    if isinstance(stream, str):
        response["events"] = [
            {"t": 0.0, "data": event.encode().decode("utf-8")} for event in parse_events(stream)
        ]
        return response
    text = str(value.get("body", ""))
    try:
        response["body"] = orjson.loads(text)
    except orjson.JSONDecodeError:
        response["body_text"] = text
    return response


def summary(entry: StoredEntry) -> dict[str, Any]:
    """Provider, endpoint and model of an entry, for listings and filters."""
    info = entry.info
    return {
        "provider": info.get("provider") or "",
        "endpoint": info.get("endpoint") or "",
        "model": info.get("model") or "",
    }


# -- import ----------------------------------------------------------------------------------


def parse_record(line: bytes) -> ImportItem:
    """An ``ImportItem`` from one line of an export; ``RecordError`` says what is wrong."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise RecordError(f"not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise RecordError(f"expected a JSON object, got {type(obj).__name__}")
    if obj.get("format") != ENTRY_FORMAT:
        raise RecordError(f"'format' must be {ENTRY_FORMAT!r}, got {obj.get('format')!r}")
    key = obj.get("key")
    if not isinstance(key, str) or not key:
        raise RecordError("'key' must be a non-empty string")
    metadata = obj.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise RecordError("'metadata' must be an object")
    request = obj.get("request")
    if request is not None and not isinstance(request, dict):
        raise RecordError("'request' must be an object or null")
    response = obj.get("response")
    if not isinstance(response, dict):
        raise RecordError("'response' must be an object")
    blob = _blob_of(response)
    expires = metadata.get("expires")
    if expires is not None and not isinstance(expires, int | float):
        raise RecordError("'metadata.expires' must be a number of epoch seconds or null")
    new_key = rekey(request, metadata) if request is not None else key
    kept = {n: str(metadata[n]) for n in ("provider", "model", "endpoint") if metadata.get(n)}
    return ImportItem(new_key, key, blob, kept, float(expires) if expires is not None else None)


def _blob_of(response: dict[str, Any]) -> bytes:
    if "value" in response:
        if not isinstance(response["value"], dict):
            raise RecordError("'response.value' must be an object")
        return encode_value(response["value"])
    status = response.get("status")
    if not isinstance(status, int) or isinstance(status, bool) or not 200 <= status < 300:
        raise RecordError(f"'response.status' must be a 2xx integer, got {status!r}")
    content_type = response.get("content_type")
    if not isinstance(content_type, str) or not content_type:
        raise RecordError("'response.content_type' must be a non-empty string")
    if "events" in response:
        events = response["events"]
        if not isinstance(events, list) or not events:
            raise RecordError("'response.events' must be a non-empty list")
        frames = []
        for i, event in enumerate(events):
            if not isinstance(event, dict) or not isinstance(event.get("data"), str):
                raise RecordError(f"'response.events[{i}]' must be an object with a 'data' string")
            frames.append(event["data"])
        value: dict[str, Any] | None = {
            "v": VALUE_VERSION,
            "status": status,
            "content_type": content_type,
            "stream": "".join(frames),
        }
    elif "body" in response:
        value = json_value(status, content_type, orjson.dumps(response["body"]))
    elif isinstance(response.get("body_text"), str):
        value = json_value(status, content_type, response["body_text"].encode("utf-8"))
    else:
        raise RecordError("'response' needs one of 'body', 'body_text', 'events' or 'value'")
    if value is None:  # pragma: no cover - json_value refuses only non-UTF-8 bytes
        raise RecordError("'response' body is not UTF-8 text")
    return encode_value(value)


def rekey(request: dict[str, Any], metadata: dict[str, Any]) -> str:
    """The key of ``request`` under the rules of this version (what the proxy would compute)."""
    url, body = request.get("url"), request.get("body")
    headers = request.get("headers") or {}
    if not isinstance(url, str) or not url:
        raise RecordError("'request.url' must be a non-empty string")
    if not isinstance(body, dict):
        raise RecordError("'request.body' must be an object")
    if not isinstance(headers, dict):
        raise RecordError("'request.headers' must be an object")
    try:
        provider = get_provider(str(metadata.get("provider") or "openai"))
    except ValueError as exc:
        raise RecordError(f"'metadata.provider': {exc}") from None
    lowered = {str(k).lower(): str(v) for k, v in headers.items()}
    return exchange_key(provider, url, body, lowered)  # type: ignore[arg-type]


def is_expired(item: ImportItem, now: float | None = None) -> bool:
    return item.expires is not None and item.expires <= (time.time() if now is None else now)


def valid_key(text: str) -> bool:
    return bool(_KEY.fullmatch(text))


__all__ = [
    "ENTRY_FORMAT",
    "CorruptValueError",
    "ImportItem",
    "RecordError",
    "is_expired",
    "parse_record",
    "rekey",
    "summary",
    "to_record",
]
