"""Bodies and streams in the readable form a cassette keeps them, and back to bytes.

A body is kept as parsed JSON (``"body"``) when it is JSON, else as text (``"text"``), else as
base64 (``"body_base64"``). A stream is kept event by event (``"events"``):

* SSE (``text/event-stream``): ``{"event": name, "id": …, "data": …}`` per event, the name and
  id only when present; ``data`` is the parsed JSON when the data is a JSON object or array,
  otherwise the raw text (``"[DONE]"``). Comments are dropped (no SDK reads them).
* NDJSON (``application/x-ndjson``, Ollama): one parsed JSON value per line.

A stream that is neither (or does not parse) is kept as its network chunks (``"chunks"`` as text,
``"chunks_base64"`` when not UTF-8). Replaying turns each event back into its own chunk, so the
code under test sees a stream arriving event by event, as it did when recorded.
"""

from __future__ import annotations

import base64
import contextlib
import json
from typing import Any

from llm_cache.providers.sse import SSEEvent, parse_sse

__all__ = [
    "body_bytes",
    "body_fields",
    "is_json_type",
    "sse_event_dict",
    "sse_event_of",
    "stream_chunks",
    "stream_fields",
    "stream_kind",
]

SSE = "sse"
NDJSON = "ndjson"
_NDJSON_TYPES = ("application/x-ndjson", "application/ndjson", "application/jsonl")


def stream_kind(content_type: str) -> str | None:
    """``"sse"``, ``"ndjson"``, or ``None`` for an answer that is read whole."""
    base = content_type.split(";", 1)[0].strip().lower()
    if base == "text/event-stream":
        return SSE
    if base in _NDJSON_TYPES:
        return NDJSON
    return None


def is_json_type(content_type: str) -> bool:
    base = content_type.split(";", 1)[0].strip().lower()
    return base == "application/json" or base.endswith("+json")


def dumps(value: Any) -> str:
    """Compact JSON as SDKs send it (non-ASCII kept as is)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def body_fields(data: bytes, content_type: str) -> dict[str, Any]:
    """The cassette form of a body: ``{"body": …}``, ``{"text": …}``, ``{"body_base64": …}``."""
    if not data:
        return {}
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return {"body_base64": base64.b64encode(data).decode("ascii")}
    if is_json_type(content_type) or text.lstrip()[:1] in ("{", "["):
        try:
            return {"body": json.loads(text)}
        except ValueError:
            pass
    return {"text": text}


def body_bytes(fields: dict[str, Any]) -> bytes:
    """The bytes of a body kept by ``body_fields`` (JSON re-serialized compactly)."""
    if "body" in fields:
        return dumps(fields["body"]).encode("utf-8")
    if "text" in fields:
        return str(fields["text"]).encode("utf-8")
    if "body_base64" in fields:
        return base64.b64decode(fields["body_base64"])
    return b""


def stream_fields(kind: str, chunks: list[bytes]) -> dict[str, Any]:
    """The cassette form of a finished stream: its events, or its chunks when it does not parse."""
    data = b"".join(chunks)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return {"chunks_base64": [base64.b64encode(c).decode("ascii") for c in chunks]}
    if kind == SSE:
        return {"events": [sse_event_dict(event) for event in parse_sse(data)]}
    lines = [line for line in text.splitlines() if line.strip()]
    try:
        return {"events": [json.loads(line) for line in lines]}
    except ValueError:
        return {"chunks": [c.decode("utf-8", "replace") for c in chunks]}


def stream_chunks(kind: str | None, fields: dict[str, Any]) -> list[bytes]:
    """The chunks replaying a stream kept by ``stream_fields``: one per event."""
    if "chunks_base64" in fields:
        return [base64.b64decode(c) for c in fields["chunks_base64"]]
    if "chunks" in fields:
        return [str(c).encode("utf-8") for c in fields["chunks"]]
    events = fields.get("events") or []
    if kind == NDJSON:
        return [dumps(event).encode("utf-8") + b"\n" for event in events]
    return [sse_event_of(event).encode() for event in events]


def sse_event_of(event: Any) -> SSEEvent:
    """The ``SSEEvent`` a cassette event dict stands for."""
    if not isinstance(event, dict):
        return SSEEvent(data=dumps(event))
    data = event.get("data", "")
    retry = event.get("retry")
    return SSEEvent(
        event=event.get("event"),
        data=data if isinstance(data, str) else dumps(data),
        id=event.get("id"),
        retry=retry if isinstance(retry, int) else None,
    )


def sse_event_dict(event: SSEEvent) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if event.event is not None:
        out["event"] = event.event
    if event.id is not None:
        out["id"] = event.id
    if event.retry is not None:
        out["retry"] = event.retry
    data: Any = event.data
    if data[:1] in ("{", "["):
        with contextlib.suppress(ValueError):
            data = json.loads(data)
    out["data"] = data
    return out
