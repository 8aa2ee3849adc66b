"""The Cohere API v2 wire format (``/v2/chat``, ``/v2/embed``, ``/v2/rerank``).

``/v2/chat`` streams with ``"stream": true`` as typed SSE events (``event: <type>`` and a JSON
``data`` whose ``type`` repeats it): ``message-start``, ``content-start`` / ``-delta`` / ``-end``,
``tool-plan-delta``, ``tool-call-start`` / ``-delta`` / ``-end``, ``citation-start`` / ``-end``,
``message-end`` (finish reason and usage), then ``data: [DONE]``. A stream is complete at a
``message-end`` whose ``finish_reason`` is not ``ERROR``.

Conversions (chat):

* stream → full: ``{"id", "message": {"role", "content", "tool_plan", "tool_calls",
  "citations"}, "finish_reason", "usage"}`` with each content block and tool call rebuilt from
  its start and deltas (fields a stream left empty are left out, as in Cohere's own answers).
* full → stream: the event sequence above with one delta per block. An answer with
  ``logprobs`` is not converted (the stream spreads them over deltas it cannot re-cut).
"""

from __future__ import annotations

import copy
from typing import Any

import orjson

from llm_cache.providers.base import ProviderSpec, RouteSpec, Usage
from llm_cache.providers.sse import SSEEvent

__all__ = ["PROVIDER", "CohereProvider"]

CHAT = "/v2/chat"
EMBED = "/v2/embed"
RERANK = "/v2/rerank"
DONE = SSEEvent(data="[DONE]")


class CohereProvider(ProviderSpec):
    name = "cohere"
    routes = (
        RouteSpec(CHAT, CHAT),
        RouteSpec(EMBED, EMBED, stream=False),
        RouteSpec(RERANK, RERANK, stream=False),
    )
    base_url_setting = "cohere_base_url"
    passthrough_prefixes = ("/v2/",)
    excluded_fields = frozenset({"stream"})

    def error_body(self, status: int, message: str, error_type: str) -> bytes:
        return orjson.dumps({"id": error_type, "message": message})

    def body_is_error(self, endpoint: str, response: Any) -> bool:
        return (
            isinstance(response, dict)
            and "message" in response
            and not isinstance(response.get("message"), dict)
            and len(response) <= 3
        )

    # ------------------------------------------------------------------ streams
    def stream_finished(self, endpoint: str, events: list[SSEEvent]) -> bool:
        objs = _objects(events)
        if objs is None:
            return False
        ends = [o for o in objs if o.get("type") == "message-end"]
        if len(ends) != 1 or any(o.get("type") == "error" for o in objs):
            return False
        return (ends[0].get("delta") or {}).get("finish_reason") not in (None, "ERROR")

    def events_to_response(self, endpoint: str, events: list[SSEEvent]) -> dict[str, Any] | None:
        if endpoint != CHAT or not self.stream_finished(endpoint, events):
            return None
        objs = _objects(events) or []
        if any("logprobs" in o for o in objs):
            return None  # per-delta log probabilities: no exact merged form
        response: dict[str, Any] = {}
        message: dict[str, Any] = {"role": "assistant"}
        content: dict[int, dict[str, Any]] = {}
        calls: dict[int, dict[str, Any]] = {}
        citations: list[Any] = []
        plan: list[str] = []
        for obj in objs:
            kind = obj.get("type")
            delta = obj.get("delta") or {}
            dmsg = delta.get("message") or {}
            index = obj.get("index", 0)
            if kind == "message-start":
                if "id" in obj:
                    response["id"] = obj["id"]
                if isinstance(dmsg.get("role"), str):
                    message["role"] = dmsg["role"]
            elif kind == "content-start":
                content[index] = copy.deepcopy(dmsg.get("content") or {})
            elif kind == "content-delta":
                block = content.setdefault(index, {"type": "text", "text": ""})
                for key, value in (dmsg.get("content") or {}).items():
                    if isinstance(value, str):
                        block[key] = block.get(key, "") + value
            elif kind == "tool-plan-delta":
                plan.append(str(dmsg.get("tool_plan", "")))
            elif kind == "tool-call-start":
                calls[index] = copy.deepcopy(dmsg.get("tool_calls") or {})
            elif kind == "tool-call-delta":
                call = calls.setdefault(index, {})
                args = ((dmsg.get("tool_calls") or {}).get("function") or {}).get("arguments", "")
                fn = call.setdefault("function", {})
                fn["arguments"] = fn.get("arguments", "") + str(args)
            elif kind == "citation-start":
                citations.append(copy.deepcopy(dmsg.get("citations")))
            elif kind == "message-end":
                response["finish_reason"] = delta.get("finish_reason")
                if "usage" in delta:
                    response["usage"] = delta["usage"]
        if plan:
            message["tool_plan"] = "".join(plan)
        if calls:
            message["tool_calls"] = [calls[i] for i in sorted(calls)]
        if content:
            message["content"] = [content[i] for i in sorted(content)]
        if citations:
            message["citations"] = citations
        return {
            "id": response.get("id"),
            "message": message,
            "finish_reason": response.get("finish_reason"),
            **({"usage": response["usage"]} if "usage" in response else {}),
        }

    def response_to_events(
        self, endpoint: str, response: dict[str, Any], request_body: dict[str, Any]
    ) -> list[SSEEvent] | None:
        if endpoint != CHAT or "logprobs" in response:
            return None
        message = response.get("message")
        if not isinstance(message, dict) or not response.get("finish_reason"):
            return None
        events: list[SSEEvent] = []

        def ev(obj: dict[str, Any]) -> None:
            events.append(SSEEvent.from_json(obj, event=obj["type"]))

        start = {
            "role": message.get("role", "assistant"),
            "content": [],
            "tool_plan": "",
            "tool_calls": [],
            "citations": [],
        }
        ev({"id": response.get("id"), "type": "message-start", "delta": {"message": start}})
        if message.get("tool_plan"):
            ev(
                {
                    "type": "tool-plan-delta",
                    "delta": {"message": {"tool_plan": message["tool_plan"]}},
                }
            )
        for i, call in enumerate(message.get("tool_calls") or []):
            fn = call.get("function") or {}
            head = {**call, "function": {**fn, "arguments": ""}}
            ev({"type": "tool-call-start", "index": i, "delta": {"message": {"tool_calls": head}}})
            args = {"tool_calls": {"function": {"arguments": fn.get("arguments", "")}}}
            ev({"type": "tool-call-delta", "index": i, "delta": {"message": args}})
            ev({"type": "tool-call-end", "index": i})
        for i, block in enumerate(message.get("content") or []):
            if not isinstance(block, dict):
                return None
            empty = {k: ("" if isinstance(v, str) and k != "type" else v) for k, v in block.items()}
            ev({"type": "content-start", "index": i, "delta": {"message": {"content": empty}}})
            text = {k: v for k, v in block.items() if k != "type" and isinstance(v, str)}
            ev({"type": "content-delta", "index": i, "delta": {"message": {"content": text}}})
            ev({"type": "content-end", "index": i})
        for i, citation in enumerate(message.get("citations") or []):
            ev(
                {
                    "type": "citation-start",
                    "index": i,
                    "delta": {"message": {"citations": citation}},
                }
            )
            ev({"type": "citation-end", "index": i})
        end: dict[str, Any] = {"finish_reason": response["finish_reason"]}
        if "usage" in response:
            end["usage"] = response["usage"]
        ev({"type": "message-end", "delta": end})
        events.append(DONE)
        return events

    # ------------------------------------------------------------------ usage
    def usage(self, response: dict[str, Any]) -> dict[str, Any] | None:
        usage = response.get("usage")
        if isinstance(usage, dict):
            return usage
        meta = response.get("meta")
        return meta if isinstance(meta, dict) and "billed_units" in meta else None

    def usage_tokens(self, endpoint: str, response: dict[str, Any]) -> Usage | None:
        usage = self.usage(response)
        if usage is None:
            return None
        billed = usage.get("billed_units") or usage.get("tokens") or {}
        i, o = billed.get("input_tokens", 0), billed.get("output_tokens", 0)
        return Usage(
            int(i) if isinstance(i, (int, float)) else 0,
            int(o) if isinstance(o, (int, float)) else 0,
        )


PROVIDER = CohereProvider()


def _objects(events: list[SSEEvent]) -> list[dict[str, Any]] | None:
    """The events' JSON objects (``[DONE]`` skipped); ``None`` when one is malformed."""
    out: list[dict[str, Any]] = []
    for event in events:
        data = event.data.strip()
        if not data or data == "[DONE]":
            continue
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(obj, dict):
            return None
        out.append(obj)
    return out
