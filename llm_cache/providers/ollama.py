"""The Ollama native API wire format (``/api/chat``, ``/api/generate``, ``/api/embed``).

Streams are NDJSON (``application/x-ndjson``), one JSON record a line, and a request streams
unless its body says ``"stream": false`` (absent means true). A stream is complete when its last
record says ``"done": true`` and no record is an ``{"error": …}``.

Conversions (chat and generate):

* stream → full: the last record (``done``, ``done_reason``, counters, ``context``) with the
  deltas joined in: ``message.content`` / ``message.thinking`` (or ``response`` / ``thinking``)
  concatenated, ``tool_calls`` and ``images`` collected, in order.
* full → stream: two records — the whole message (``"done": false``), then the final record
  with an empty message and the counters — a stream every Ollama client reads as the answer.

``keep_alive`` only says how long the server keeps the model loaded, never what it answers, so it
stays out of the key (with ``stream``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from llm_cache.providers.base import ProviderSpec, RouteSpec, Usage
from llm_cache.providers.ndjson import NDJSON, NDJSONRecord

__all__ = ["PROVIDER", "OllamaProvider"]

CHAT = "/api/chat"
GENERATE = "/api/generate"
EMBED = "/api/embed"
EMBEDDINGS = "/api/embeddings"

#: Record fields that are per-delta text (joined) and per-delta lists (collected).
_TEXT_FIELDS = ("content", "thinking")
_LIST_FIELDS = ("tool_calls", "images")


class OllamaProvider(ProviderSpec):
    name = "ollama"
    price_provider = None  # local models: no list price
    routes = (
        RouteSpec(CHAT, CHAT),
        RouteSpec(GENERATE, GENERATE),
        RouteSpec(EMBED, EMBED, stream=False),
        RouteSpec(EMBEDDINGS, EMBEDDINGS, stream=False),
    )
    base_url_setting = "ollama_base_url"
    passthrough_prefixes = ("/api/",)
    framing = NDJSON
    stream_default = True
    excluded_fields = frozenset({"stream", "keep_alive"})

    def is_stream_request(self, body: Mapping[str, Any]) -> bool:
        return body.get("stream", True) is not False

    def error_body(self, status: int, message: str, error_type: str) -> bytes:
        return orjson.dumps({"error": message})

    def body_is_error(self, endpoint: str, response: Any) -> bool:
        return isinstance(response, dict) and "error" in response

    # ------------------------------------------------------------------ streams
    def stream_finished(self, endpoint: str, events: list[NDJSONRecord]) -> bool:
        records = _records(events)
        return bool(records) and records[-1].get("done") is True

    def events_to_response(
        self, endpoint: str, events: list[NDJSONRecord]
    ) -> dict[str, Any] | None:
        if endpoint not in (CHAT, GENERATE):
            return None
        records = _records(events)
        if not records or records[-1].get("done") is not True:
            return None
        if any("logprobs" in r for r in records):
            return None  # per-delta log probabilities: no exact merged form
        merged = dict(records[-1])
        if endpoint == CHAT:
            message: dict[str, Any] = {}
            for record in records:
                delta = record.get("message")
                if not isinstance(delta, dict):
                    continue
                _join(message, delta)
            merged["message"] = message
        else:
            for key in ("response", "thinking"):
                parts = [r[key] for r in records if isinstance(r.get(key), str)]
                if parts or key == "response":
                    merged[key] = "".join(parts)
        return merged

    def response_to_events(
        self, endpoint: str, response: dict[str, Any], request_body: dict[str, Any]
    ) -> list[NDJSONRecord] | None:
        if endpoint not in (CHAT, GENERATE) or response.get("done") is not True:
            return None
        if "logprobs" in response:
            return None  # a stream carries them per delta, which cannot be re-cut exactly
        head: dict[str, Any] = {k: response[k] for k in ("model", "created_at") if k in response}
        first: dict[str, Any]
        if endpoint == CHAT:
            message = response.get("message")
            if not isinstance(message, dict):
                return None
            first = {**head, "message": message, "done": False}
            last_message = {"role": message.get("role", "assistant"), "content": ""}
            last = {**response, "message": last_message}
        else:
            text = response.get("response")
            if not isinstance(text, str):
                return None
            first = {**head, "response": text, "done": False}
            if isinstance(response.get("thinking"), str):
                first["thinking"] = response["thinking"]
            last = {k: v for k, v in response.items() if k != "thinking"}
            last["response"] = ""
        return [NDJSONRecord.from_json(first), NDJSONRecord.from_json(last)]

    # ------------------------------------------------------------------ usage
    def usage(self, response: dict[str, Any]) -> dict[str, Any] | None:
        keys = ("prompt_eval_count", "eval_count")
        usage: dict[str, Any] = {k: response[k] for k in keys if k in response}
        return usage or None

    def usage_tokens(self, endpoint: str, response: dict[str, Any]) -> Usage | None:
        usage = self.usage(response)
        if usage is None:
            return None
        i, o = usage.get("prompt_eval_count", 0), usage.get("eval_count", 0)
        return Usage(i if isinstance(i, int) else 0, o if isinstance(o, int) else 0)


PROVIDER = OllamaProvider()


def _records(events: list[NDJSONRecord]) -> list[dict[str, Any]]:
    """The records as JSON objects; empty when one is malformed or an error."""
    out: list[dict[str, Any]] = []
    for event in events:
        try:
            obj = event.json()
        except orjson.JSONDecodeError:
            return []
        if not isinstance(obj, dict) or "error" in obj:
            return []
        out.append(obj)
    return out


def _join(into: dict[str, Any], delta: Mapping[str, Any]) -> None:
    for key, value in delta.items():
        if key in _TEXT_FIELDS and isinstance(value, str):
            into[key] = into.get(key, "") + value
        elif key in _LIST_FIELDS and isinstance(value, list):
            into.setdefault(key, []).extend(value)
        elif value is not None or key not in into:
            into[key] = value
