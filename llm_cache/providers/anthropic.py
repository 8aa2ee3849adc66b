"""The Anthropic Messages wire format (``POST /v1/messages``).

Stream → full merges the events the way the SDK's ``accumulate_event`` does (``ping`` ignored):
``message_start`` gives the message, ``content_block_start``/``_delta``/``_stop`` build each block
(``text_delta``, ``citations_delta``, ``thinking_delta``, ``signature_delta``, ``input_json_delta``
whose concatenated ``partial_json`` becomes the block's ``input``), ``message_delta`` sets the stop
reason, stop sequence and final usage. Full → stream spells a message out with one delta per block.

``anthropic-version`` and ``anthropic-beta`` change the output, so they enter the key.

Stored: a ``message`` object with a ``content`` list, never an error (``"type": "error"``).
Never cached (``never_cache``): requests whose answer depends on a container's files, which
earlier requests changed (``container`` naming a container to reuse), or on a skill version that
may change (a container skill without a pinned ``version``, or ``"latest"``).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, ClassVar

import orjson

from llm_cache.providers.base import ProviderSpec, RouteSpec
from llm_cache.providers.sse import SSEEvent

__all__ = ["PROVIDER", "AnthropicProvider"]

MESSAGES = "/messages"

#: Message fields that ``message_delta`` carries (set at the end of a stream).
_DELTA_FIELDS = ("stop_reason", "stop_sequence", "stop_details", "container")
#: Block types whose ``input`` arrives as ``input_json_delta``.
_TOOL_INPUT_BLOCKS = frozenset({"tool_use", "server_tool_use", "mcp_tool_use"})
#: Usage fields ``message_delta`` carries (cumulative totals).
_DELTA_USAGE = (
    "input_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "server_tool_use",
    "output_tokens_details",
)


class AnthropicProvider(ProviderSpec):
    name = "anthropic"
    semantic_shapes: ClassVar[Mapping[str, str]] = {MESSAGES: "messages"}
    routes = (RouteSpec("/v1" + MESSAGES, MESSAGES),)
    base_url_setting = "anthropic_base_url"
    passthrough_prefixes = ("/v1/",)
    key_headers = ("anthropic-version", "anthropic-beta")

    def prefers(self, headers: Mapping[str, str]) -> bool:
        return "anthropic-version" in headers

    def error_body(self, status: int, message: str, error_type: str) -> bytes:
        return orjson.dumps({"type": "error", "error": {"type": error_type, "message": message}})

    def body_is_error(self, endpoint: str, response: Any) -> bool:
        """Not a storable answer: not an object, an error (``"type": "error"``, or any
        ``error``), or not a message with a ``content`` list."""
        return (
            not isinstance(response, dict)
            or response.get("type") not in (None, "message")
            or response.get("error") is not None
            or not isinstance(response.get("content"), list)
        )

    def never_cache(self, endpoint: str, body: Mapping[str, Any]) -> str | None:
        container = body.get("container")
        if container is None:
            return None
        if not isinstance(container, dict) or container.get("id") is not None:
            return "a reused container holds files earlier requests changed"
        for skill in container.get("skills") or ():
            version = skill.get("version") if isinstance(skill, dict) else None
            if not isinstance(version, str) or version.strip().lower() in ("", "latest"):
                return "a container skill without a pinned version uses whatever is current"
        return None

    def stream_finished(self, endpoint: str, events: list[SSEEvent]) -> bool:
        finished = False
        for event in events:
            kind = _event_type(event)
            if kind == "error":
                return False
            if kind == "message_stop":
                finished = True
        return finished

    # ------------------------------------------------------------------ stream → full
    def events_to_response(self, endpoint: str, events: list[SSEEvent]) -> dict[str, Any] | None:
        if endpoint != MESSAGES:
            return None
        message: dict[str, Any] | None = None
        content: list[dict[str, Any]] = []
        json_bufs: dict[int, str] = {}
        for event in events:
            if event.event == "ping" or not event.data:
                continue
            try:
                data = orjson.loads(event.data)
            except orjson.JSONDecodeError:
                return None
            if not isinstance(data, dict):
                return None
            kind = data.get("type")
            if kind == "error" or event.event == "error":
                return None
            if kind == "message_start":
                message = copy.deepcopy(data.get("message") or {})
                content = list(message.get("content") or [])
                message["content"] = content
            elif message is None:
                if kind == "ping":
                    continue
                return None
            elif kind == "content_block_start":
                index = int(data.get("index", len(content)))
                block = copy.deepcopy(data.get("content_block") or {})
                while len(content) <= index:
                    content.append({})
                content[index] = block
            elif kind == "content_block_delta":
                index = int(data.get("index", 0))
                if index >= len(content):
                    return None
                _apply_delta(content[index], data.get("delta") or {}, json_bufs, index)
            elif kind == "content_block_stop":
                index = int(data.get("index", 0))
                buf = json_bufs.pop(index, "")
                if buf and index < len(content):
                    try:
                        content[index]["input"] = orjson.loads(buf)
                    except orjson.JSONDecodeError:
                        return None
            elif kind == "message_delta":
                delta = data.get("delta") or {}
                for key, value in delta.items():
                    if key == "container" and value is None:
                        continue
                    message[key] = value
                usage = data.get("usage")
                if isinstance(usage, dict):
                    target = message.setdefault("usage", {})
                    for key, value in usage.items():
                        if value is not None or key == "output_tokens":
                            target[key] = value
        if message is None:
            return None
        for index, buf in json_bufs.items():  # blocks never stopped (should not happen)
            if buf and index < len(content):
                try:
                    content[index]["input"] = orjson.loads(buf)
                except orjson.JSONDecodeError:
                    return None
        return message

    # ------------------------------------------------------------------ full → stream
    def response_to_events(
        self, endpoint: str, response: dict[str, Any], request_body: dict[str, Any]
    ) -> list[SSEEvent] | None:
        if endpoint != MESSAGES or response.get("type") not in (None, "message"):
            return None
        blocks = response.get("content")
        if not isinstance(blocks, list):
            return None
        raw_usage = response.get("usage")
        usage: dict[str, Any] = raw_usage if isinstance(raw_usage, dict) else {}
        start = {k: v for k, v in response.items() if k not in _DELTA_FIELDS}
        start["content"] = []
        start["stop_reason"] = None
        start["stop_sequence"] = None
        start["usage"] = dict(usage)
        events = [_ev({"type": "message_start", "message": start}), _ev({"type": "ping"})]
        for index, block in enumerate(blocks):
            if not isinstance(block, dict):
                return None
            events.extend(_block_events(index, block))
        delta = {k: response[k] for k in _DELTA_FIELDS if k in response}
        delta.setdefault("stop_reason", None)
        delta.setdefault("stop_sequence", None)
        delta_usage: dict[str, Any] = {"output_tokens": usage.get("output_tokens", 0)}
        for key in _DELTA_USAGE:
            if usage.get(key) is not None:
                delta_usage[key] = usage[key]
        events.append(_ev({"type": "message_delta", "delta": delta, "usage": delta_usage}))
        events.append(_ev({"type": "message_stop"}))
        return events


PROVIDER = AnthropicProvider()


def _ev(obj: dict[str, Any]) -> SSEEvent:
    return SSEEvent.from_json(obj, event=obj["type"])


def _event_type(event: SSEEvent) -> str | None:
    if event.event is not None:
        return event.event
    if not event.data:
        return None
    try:
        obj = orjson.loads(event.data)
    except orjson.JSONDecodeError:
        return None
    kind = obj.get("type") if isinstance(obj, dict) else None
    return kind if isinstance(kind, str) else None


def _apply_delta(
    block: dict[str, Any], delta: dict[str, Any], json_bufs: dict[int, str], index: int
) -> None:
    kind = delta.get("type")
    if kind == "text_delta":
        block["text"] = (block.get("text") or "") + (delta.get("text") or "")
    elif kind == "input_json_delta":
        json_bufs[index] = json_bufs.get(index, "") + (delta.get("partial_json") or "")
    elif kind == "thinking_delta":
        block["thinking"] = (block.get("thinking") or "") + (delta.get("thinking") or "")
    elif kind == "signature_delta":
        block["signature"] = delta.get("signature")
    elif kind == "citations_delta":
        citations = block.get("citations")
        if not citations:
            block["citations"] = [delta.get("citation")]
        else:
            citations.append(delta.get("citation"))
    # unknown delta types are ignored, like the SDK does


def _block_events(index: int, block: dict[str, Any]) -> list[SSEEvent]:
    kind = block.get("type")
    deltas: list[dict[str, Any]] = []
    start = dict(block)
    if kind == "text":
        start["text"] = ""
        citations = block.get("citations")
        if citations:
            start["citations"] = None
            deltas.extend({"type": "citations_delta", "citation": c} for c in citations)
        if block.get("text"):
            deltas.append({"type": "text_delta", "text": block["text"]})
    elif kind == "thinking":
        start["thinking"] = ""
        start["signature"] = ""
        if block.get("thinking"):
            deltas.append({"type": "thinking_delta", "thinking": block["thinking"]})
        if block.get("signature") is not None:
            deltas.append({"type": "signature_delta", "signature": block["signature"]})
    elif kind in _TOOL_INPUT_BLOCKS and "input" in block:
        start["input"] = {}
        partial = orjson.dumps(block["input"]).decode("utf-8")
        if partial != "{}":
            deltas.append({"type": "input_json_delta", "partial_json": partial})
    events = [_ev({"type": "content_block_start", "index": index, "content_block": start})]
    events.extend(_ev({"type": "content_block_delta", "index": index, "delta": d}) for d in deltas)
    events.append(_ev({"type": "content_block_stop", "index": index}))
    return events
