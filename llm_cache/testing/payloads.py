"""Bodies and streams in the readable form a cassette keeps them, and back to bytes.

A body is kept as parsed JSON (``"body"``) when it is JSON, else as text (``"text"``), else as
base64 (``"body_base64"``). A stream is kept event by event (``"events"``), cut into frames by
the framing of the provider registry whose media type it has (the registry is the only place
that knows the wire formats):

* SSE (``text/event-stream``): ``{"event": name, "id": …, "data": …}`` per event, the name and
  id only when present; ``data`` is the parsed JSON when the data is a JSON object or array,
  otherwise the raw text (``"[DONE]"``). Comments are dropped (no SDK reads them).
* any other framing whose frames each carry one JSON value (JSON lines, for one): the parsed
  value of each frame, and once, under ``"frame"``, the text around a value in every frame
  (``{"before": "", "after": "\\n"}``), read off the recorded frames themselves.

A stream that fits neither (binary frames, frames without JSON) is kept as its network chunks
(``"chunks"`` as text, ``"chunks_base64"`` when not UTF-8). Replaying turns each event back into
its own chunk, so the code under test sees a stream arriving event by event, as when recorded.
"""

from __future__ import annotations

import base64
import contextlib
import json
from functools import cache
from typing import Any

from llm_cache.providers import all_providers
from llm_cache.providers.base import SSE, Framing
from llm_cache.providers.sse import SSEEvent, parse_sse

__all__ = [
    "body_bytes",
    "body_fields",
    "is_json_type",
    "sse_event_dict",
    "sse_event_of",
    "stream_chunks",
    "stream_fields",
    "stream_framing",
]


@cache
def _framings() -> dict[str, Framing]:
    found: dict[str, Framing] = {SSE.content_type: SSE}
    for provider in all_providers():
        found.setdefault(provider.framing.content_type.lower(), provider.framing)
    return found


def stream_framing(content_type: str) -> Framing | None:
    """The framing of a streamed answer (by media type), or ``None`` for one read whole."""
    return _framings().get(content_type.split(";", 1)[0].strip().lower())


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
        with contextlib.suppress(ValueError):
            return {"body": json.loads(text)}
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


def stream_fields(framing: Framing, chunks: list[bytes]) -> dict[str, Any]:
    """The cassette form of a finished stream: its events, or its chunks when they do not parse."""
    data = b"".join(chunks)
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return {"chunks_base64": [base64.b64encode(c).decode("ascii") for c in chunks]}
    if framing is SSE:
        return {"events": [sse_event_dict(event) for event in parse_sse(data)]}
    splitter = framing.splitter()
    frames = [*splitter.feed(data), *splitter.finish()]
    events = _json_frames(framing, frames)
    if events is None:
        return {"chunks": [c.decode("utf-8") for c in chunks]}
    return events


def _json_frames(framing: Framing, frames: list[bytes]) -> dict[str, Any] | None:
    """Frames that each hold one JSON value in the same surrounding text, or ``None``."""
    values: list[Any] = []
    around: tuple[str, str] | None = None
    for raw in frames:
        frame = framing.decode(raw)
        if frame is None:
            continue
        text, inner = raw.decode("utf-8"), frame.data
        at = text.find(inner) if inner else -1
        if at < 0:
            return None
        try:
            values.append(json.loads(inner))
        except ValueError:
            return None
        shape = (text[:at], text[at + len(inner) :])
        if around not in (None, shape):
            return None
        around = shape
    if around is None:
        return None
    return {"frame": {"before": around[0], "after": around[1]}, "events": values}


def stream_chunks(framing: Framing | None, fields: dict[str, Any]) -> list[bytes]:
    """The chunks replaying a stream kept by ``stream_fields``: one per event."""
    if "chunks_base64" in fields:
        return [base64.b64decode(c) for c in fields["chunks_base64"]]
    if "chunks" in fields:
        return [str(c).encode("utf-8") for c in fields["chunks"]]
    events = fields.get("events") or []
    frame = fields.get("frame")
    if isinstance(frame, dict):
        before, after = str(frame.get("before", "")), str(frame.get("after", ""))
        return [(before + dumps(event) + after).encode("utf-8") for event in events]
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
    """The cassette form of one SSE event."""
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
