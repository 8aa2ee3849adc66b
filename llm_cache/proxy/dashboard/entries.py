"""The dashboard's entry list: recent entries, searched by model or text, opened and deleted.

Entries come from the storage when it can list them (``iter_entries``), newest first; else
from the keys this process saw served or stored (``RecentKeys``). Reading an entry here never
counts a hit (``storage_info.peek``), so browsing leaves the figures alone. A stored request
holds no credential (the engine strips them before storing); the page shows it as stored.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import orjson

from llm_cache.cache.codec import CorruptValueError, is_entry
from llm_cache.cache.storage import CacheStorage, StorageError
from llm_cache.engine.entry import Entry
from llm_cache.observability.history import RecentKeys
from llm_cache.observability.storage_info import iter_stored, peek, peek_sync

__all__ = ["EntryBrowser"]

PREVIEW = 160


class EntryBrowser:
    """List, show and delete entries of one storage."""

    def __init__(self, storage: CacheStorage, recent: RecentKeys, scan_limit: int = 5000) -> None:
        self.storage = storage
        self.recent = recent
        self.scan_limit = scan_limit

    async def list(self, query: str = "", limit: int = 100) -> dict[str, Any]:
        return await asyncio.to_thread(self._list, query.strip().lower(), limit)

    def _list(self, query: str, limit: int) -> dict[str, Any]:
        found: list[dict[str, Any]] = []
        scanned = 0
        source = "storage"
        error: str | None = None
        try:
            candidates = self._from_storage()
            first = next(candidates, None)
        except NotImplementedError:
            source, candidates, first = "recent", self._from_recent(), None
        except StorageError as exc:  # storage down: the page still loads, and says why
            source, candidates, first, error = "none", iter(()), None, str(exc)
        items = candidates if first is None else _chain(first, candidates)
        for key, data in items:
            scanned += 1
            if scanned > self.scan_limit:
                break
            summary = _summary(key, data, query)
            if summary is not None:
                found.append(summary)
        found.sort(key=lambda e: -float(e["created"] or 0))
        return {
            "entries": found[:limit],
            "matched": len(found),
            "scanned": min(scanned, self.scan_limit),
            "source": source,
            **({"error": error} if error else {}),
        }

    def _from_storage(self) -> Iterator[tuple[str, bytes]]:
        for key, data, _info in iter_stored(self.storage):
            yield key, data

    def _from_recent(self) -> Iterator[tuple[str, bytes]]:
        for key in self.recent.snapshot():
            data = peek_sync(self.storage, key)
            if data is None:
                self.recent.forget(key)  # evicted, expired or deleted elsewhere
                continue
            yield key, data

    async def show(self, key: str) -> dict[str, Any] | None:
        data = await peek(self.storage, key)
        if data is None or not is_entry(data):
            return None
        try:
            entry = Entry.decode(data)
        except CorruptValueError:
            return None
        export = entry.to_export(key, {"size": len(data), "stream": entry.is_stream})
        export["response"]["text"] = _answer_text(entry)
        return export

    async def delete(self, key: str) -> bool:
        deleted = await self.storage.adelete(key)
        self.recent.forget(key)
        return deleted


def _chain(
    first: tuple[str, bytes], rest: Iterator[tuple[str, bytes]]
) -> Iterator[tuple[str, bytes]]:
    yield first
    yield from rest


def _summary(key: str, data: bytes, query: str) -> dict[str, Any] | None:
    """One row of the list, or ``None`` when it does not match (or is not an HTTP entry)."""
    if not is_entry(data):
        return None  # a value of the Python wrapper: not an HTTP exchange
    try:
        entry = Entry.decode(data)
    except CorruptValueError:
        return None
    request = entry.request_dict() or {}
    asked = _request_text(request.get("body"))
    answered = _answer_text(entry)
    if query:
        haystack = " ".join(
            (key, entry.provider, entry.endpoint, entry.model, asked, answered)
        ).lower()
        if query not in haystack:
            raw = (entry._request_raw or b"").decode("utf-8", "replace").lower()
            if query not in raw:
                return None
    return {
        "key": key,
        "provider": entry.provider,
        "endpoint": entry.endpoint,
        "model": entry.model,
        "created": entry.created,
        "status": entry.status,
        "stream": entry.is_stream,
        "usage": entry.usage,
        "upstream_duration": round(entry.upstream_duration, 4),
        "size": len(data),
        "request_preview": _clip(asked),
        "answer_preview": _clip(answered),
    }


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= PREVIEW else text[: PREVIEW - 1] + "…"


def _text_of(content: Any) -> str:
    """The text in a message ``content`` (a string, or a list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
        return " ".join(parts)
    return ""


def _request_text(body: Any) -> str:
    """The last thing the user said (chat), or the prompt / input (completions, embeddings)."""
    if not isinstance(body, dict):
        return ""
    messages = body.get("messages")
    if isinstance(messages, list) and messages:
        last = messages[-1]
        return _text_of(last.get("content")) if isinstance(last, dict) else ""
    for name in ("input", "prompt"):
        value = body.get(name)
        if isinstance(value, str):
            return value
        if isinstance(value, list):
            return " ".join(v if isinstance(v, str) else _text_of(v) for v in value)[:2000]
    return ""


def _answer_text(entry: Entry) -> str:
    """The text of the answer: a chat reply, a completion, or a stream's deltas joined."""
    if entry.frames is not None:
        pieces: list[str] = []
        for frame in entry.frames:
            for line in frame.split(b"\n"):
                if line.startswith(b"data:"):
                    pieces.append(_delta_text(line[5:].strip()))
        return "".join(pieces)
    try:
        body = orjson.loads(entry.body or b"")
    except orjson.JSONDecodeError:
        return (entry.body or b"")[:PREVIEW].decode("utf-8", "replace")
    return _body_text(body)


def _body_text(body: Any) -> str:
    if not isinstance(body, dict):
        return ""
    choices = body.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        first = choices[0]
        message = first.get("message")
        if isinstance(message, dict):
            return _text_of(message.get("content"))
        if isinstance(first.get("text"), str):
            return str(first["text"])
    if isinstance(body.get("content"), list):
        return _text_of(body["content"])
    if isinstance(body.get("output_text"), str):
        return str(body["output_text"])
    output = body.get("output")
    if isinstance(output, list):
        texts = [_text_of(item.get("content")) for item in output if isinstance(item, dict)]
        return " ".join(t for t in texts if t)
    data = body.get("data")
    if isinstance(data, list) and data and isinstance(data[0], dict) and "embedding" in data[0]:
        return f"[{len(data)} embedding(s)]"
    return ""


def _delta_text(data: bytes) -> str:
    try:
        event = orjson.loads(data)
    except orjson.JSONDecodeError:
        return ""
    if not isinstance(event, dict):
        return ""
    choices = event.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        delta = choices[0].get("delta")
        if isinstance(delta, dict) and isinstance(delta.get("content"), str):
            return str(delta["content"])
        if isinstance(choices[0].get("text"), str):
            return str(choices[0]["text"])
    delta = event.get("delta")
    if isinstance(delta, dict) and isinstance(delta.get("text"), str):
        return str(delta["text"])  # Anthropic content_block_delta
    if event.get("type") == "response.output_text.delta" and isinstance(event.get("delta"), str):
        return str(event["delta"])
    return ""
