"""Export records (``llm-cache-entry/1``): a stored entry as one JSON object, and back.

One line of an export (the engine's ``Entry.to_export``)::

    {"format": "llm-cache-entry/1", "key": "<64 hex>",
     "request": {"method", "url", "headers", "body"} | null,
     "response": {"status", "content_type", "body" | "body_text" | "events"},
     "metadata": {"provider", "endpoint", "model", "usage", "upstream_duration", "created",
                  "last_hit", "hits", "expires"}}

``body`` is the answer parsed when it is JSON (``body_text`` otherwise); ``events`` are a
stream's frames, each ``{"t": seconds since the request went upstream, "data": the frame}``
(``"data_b64"`` instead for a frame that is not UTF-8 text: AWS event-stream).
The storage's own figures (``last_hit``, ``hits``, ``expires``) travel in ``metadata``; on
import an entry keeps its remaining lifetime and one already past ``expires`` is skipped.

Values that are not HTTP entries (results of ``@cached`` functions) travel as ``"response":
{"value": <stored form>}`` with a ``null`` request: they are copied as they are, under their key.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson

from llm_cache.cache.codec import CorruptValueError, decode_value, encode_value, is_entry
from llm_cache.cache.storage import StoredEntry
from llm_cache.engine.entry import ENTRY_FORMAT, Entry
from llm_cache.engine.exchange import exchange_key
from llm_cache.providers import get_provider, match_path
from llm_cache.providers.base import RouteMatch

__all__ = [
    "ENTRY_FORMAT",
    "CorruptValueError",
    "ImportItem",
    "RecordError",
    "describe",
    "is_expired",
    "item_from_exchange",
    "parse_record",
    "rekey",
    "to_record",
]

_STORAGE_FIELDS = ("last_hit", "hits", "expires")


class RecordError(ValueError):
    """A line that is not a valid export record; the message says what is wrong."""


@dataclass(slots=True)
class ImportItem:
    """What one record stores: ``blob`` under ``key`` (re-keyed when the rules changed)."""

    key: str
    original_key: str
    blob: bytes
    metadata: dict[str, Any]
    expires: float | None

    @property
    def rekeyed(self) -> bool:
        return self.key != self.original_key


# -- export ----------------------------------------------------------------------------------


def to_record(stored: StoredEntry) -> dict[str, Any]:
    """The export record of a stored entry; ``CorruptValueError`` when it is unreadable."""
    info = stored.info
    extra = {name: info.get(name) for name in _STORAGE_FIELDS}
    if is_entry(stored.data):
        entry = Entry.decode(stored.data)
        if not entry.created and info.get("created"):
            entry.created = float(info["created"] or 0.0)
        record = entry.to_export(stored.key, extra)
        _keep_binary_frames(record, entry)
        return record
    value = decode_value(stored.data)
    metadata = {
        "provider": info.get("provider") or "",
        "endpoint": info.get("endpoint") or "",
        "model": info.get("model") or "",
        "created": info.get("created"),
        **extra,
    }
    return {
        "format": ENTRY_FORMAT,
        "key": stored.key,
        "request": None,
        "response": {"value": value},
        "metadata": metadata,
    }


def _keep_binary_frames(record: dict[str, Any], entry: Entry) -> None:
    """Frames that are not UTF-8 text (AWS event-stream) travel as ``data_b64``, byte-exact."""
    events = record["response"].get("events")
    if not events or entry.frames is None:
        return
    for event, frame in zip(events, entry.frames, strict=True):
        try:
            frame.decode("utf-8")
        except UnicodeDecodeError:
            del event["data"]
            event["data_b64"] = base64.b64encode(frame).decode("ascii")


def _binary_frames(obj: dict[str, Any], events: list[Any]) -> tuple[dict[str, Any], list[bytes]]:
    """``obj`` with ``data_b64`` events made readable for ``Entry.from_export``, and the
    frames' true bytes."""
    frames: list[bytes] = []
    readable = []
    for i, event in enumerate(events):
        if isinstance(event, dict) and "data_b64" in event:
            try:
                frames.append(base64.b64decode(str(event["data_b64"]), validate=True))
            except (ValueError, TypeError):
                raise RecordError(f"'response.events[{i}].data_b64' is not base64") from None
            readable.append({"t": event.get("t"), "data": ""})
        else:
            data = event.get("data") if isinstance(event, dict) else None
            frames.append(data.encode("utf-8") if isinstance(data, str) else b"")
            readable.append(event)
    response = dict(obj["response"], events=readable)
    return dict(obj, response=response), frames


def describe(stored: StoredEntry) -> dict[str, Any]:
    """Provider, endpoint, model and ``created`` of an entry, for listings and filters.

    ``created`` is when the answer was recorded (the entry record's time, kept across export
    and import), falling back to when the backend stored it; provider, endpoint and model are
    completed from the record where the backend keeps fewer (SQLite has no endpoint column).
    """
    info = stored.info
    out: dict[str, Any] = {
        "provider": info.get("provider"),
        "endpoint": info.get("endpoint"),
        "model": info.get("model"),
        "created": info.get("created"),
    }
    if not is_entry(stored.data):
        return out
    try:
        entry = Entry.decode(stored.data)
    except CorruptValueError:
        return out
    for name, value in (
        ("provider", entry.provider),
        ("endpoint", entry.endpoint),
        ("model", entry.model),
    ):
        out[name] = out[name] or value or None
    if entry.created:
        out["created"] = entry.created
    return out


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
    expires = metadata.get("expires")
    if expires is not None and (not isinstance(expires, int | float) or isinstance(expires, bool)):
        raise RecordError("'metadata.expires' must be a number of epoch seconds or null")
    request = obj.get("request")
    if request is not None and not isinstance(request, dict):
        raise RecordError("'request' must be an object or null")
    response = obj.get("response")
    if not isinstance(response, dict):
        raise RecordError("'response' must be an object")
    until = float(expires) if expires is not None else None
    if "value" in response:
        if not isinstance(response["value"], dict):
            raise RecordError("'response.value' must be an object")
        kept = {n: str(metadata[n]) for n in ("provider", "model", "endpoint") if metadata.get(n)}
        return ImportItem(key, key, encode_value(response["value"]), kept, until)
    entry = _entry_of(obj, response)
    new_key = rekey(entry.request, entry.provider) if entry.request is not None else key
    kept = {"provider": entry.provider, "model": entry.model, "endpoint": entry.endpoint}
    return ImportItem(new_key, key, entry.encode(), {k: v for k, v in kept.items() if v}, until)


def item_from_exchange(request: Any, response: Any) -> ImportItem:
    """An ``ImportItem`` from a ``(request, response)`` pair in the export form (what the
    pytest plugin's cassettes hold): keyed from the request, as the proxy would key it."""
    if not isinstance(request, dict) or not isinstance(response, dict):
        raise RecordError("an exchange needs a request object and a response object")
    url, body = request.get("url"), request.get("body")
    headers = request.get("headers") or {}
    if not isinstance(url, str) or not isinstance(body, dict) or not isinstance(headers, dict):
        raise RecordError("the request needs a 'url' string, a 'body' object and 'headers'")
    lowered = {str(k).lower(): str(v) for k, v in headers.items()}
    match = _match(urlsplit(url).path, "", lowered)
    metadata = {
        "provider": match.provider.name,
        "endpoint": match.endpoint,
        "model": match.provider.model(match, body),
    }
    obj = {"format": ENTRY_FORMAT, "request": request, "response": response, "metadata": metadata}
    entry = _entry_of(obj, response)
    key = rekey(request, match.provider.name)
    return ImportItem(key, key, entry.encode(), {k: v for k, v in metadata.items() if v}, None)


def _entry_of(obj: dict[str, Any], response: dict[str, Any]) -> Entry:
    status = response.get("status")
    if not isinstance(status, int) or isinstance(status, bool) or not 200 <= status < 300:
        raise RecordError(f"'response.status' must be a 2xx integer, got {status!r}")
    content_type = response.get("content_type")
    if not isinstance(content_type, str) or not content_type:
        raise RecordError("'response.content_type' must be a non-empty string")
    events = response.get("events")
    if "events" in response and not events:
        raise RecordError("'response.events' must not be empty")
    binary: list[bytes] | None = None
    if isinstance(events, list) and any(isinstance(e, dict) and "data_b64" in e for e in events):
        obj, binary = _binary_frames(obj, events)
    try:
        entry = Entry.from_export(obj)
    except (ValueError, TypeError) as exc:
        raise RecordError(str(exc)) from None
    if binary is not None:
        entry.frames = binary
    return entry


def rekey(request: dict[str, Any], provider_name: str) -> str:
    """The key of ``request`` under this version's rules: what the proxy computes for it."""
    url, body = request.get("url"), request.get("body")
    headers = request.get("headers") or {}
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise RecordError("'request.url' must be an http(s) URL")
    if not isinstance(body, dict):
        raise RecordError("'request.body' must be an object")
    if not isinstance(headers, dict):
        raise RecordError("'request.headers' must be an object")
    lowered = {str(k).lower(): str(v) for k, v in headers.items()}
    match = _match(urlsplit(url).path, provider_name, lowered)
    return exchange_key(match, url, body, lowered)


def _match(path: str, provider_name: str, headers: dict[str, str]) -> RouteMatch:
    match: RouteMatch | None = None
    if provider_name:
        try:
            match = get_provider(provider_name).match(path)
        except ValueError as exc:
            raise RecordError(f"'metadata.provider': {exc}") from None
    match = match or match_path(path, headers)
    if match is None:
        raise RecordError(f"'request.url' path {path!r} is not a cached route of any provider")
    return match


def is_expired(item: ImportItem, now: float | None = None) -> bool:
    return item.expires is not None and item.expires <= (time.time() if now is None else now)
