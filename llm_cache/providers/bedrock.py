"""The Amazon Bedrock runtime wire format (``bedrock-runtime.{region}.amazonaws.com``).

Routes (the model id is one path segment): ``/model/{modelId}/converse`` and
``/converse-stream`` (one endpoint, ``converse``: the path says whether to stream),
``/invoke`` and ``/invoke-with-response-stream`` (endpoint ``invoke``, the model's native body).
Streams are AWS event-stream frames (``application/vnd.amazon.eventstream``, both CRCs checked).

Complete streams: ``converse`` ends with ``messageStop`` then ``metadata``; ``invoke`` ends with
a ``chunk`` carrying ``amazon-bedrock-invocationMetrics`` (or Anthropic's ``message_stop``).
An ``exception`` frame (throttling, model stream error …) means the stream failed.

Conversions:

* ``converse`` both ways: content blocks rebuilt from ``contentBlockStart`` / ``Delta`` (text,
  ``toolUse`` input JSON, reasoning text and signature), ``stopReason`` and
  ``additionalModelResponseFields`` from ``messageStop``, ``usage`` / ``metrics`` / ``trace``
  from ``metadata``. AWS's random ``p`` padding is dropped.
* ``invoke``, for Anthropic models (chunks are Anthropic stream events): through the Anthropic
  provider's own conversions. Other native formats are not converted (a stream and a full
  answer then stay two different answers: the other kind is a miss).

Key: the body, the model id and the headers that change the answer (guardrail, trace,
performance tier, ``X-Amzn-Bedrock-Accept``). The client's SigV4 signature, ``x-amz-*`` and
``amz-sdk-*`` headers are credentials or bookkeeping: never keyed or stored. Upstream, the proxy
re-signs with its own AWS credentials (``llm_cache.providers.aws_sigv4``).
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

import orjson

from llm_cache.providers import anthropic
from llm_cache.providers.base import ProviderSpec, RouteMatch, RouteSpec, UpstreamSigner, Usage
from llm_cache.providers.eventstream import EVENTSTREAM, EventStreamMessage
from llm_cache.providers.sse import SSEEvent

__all__ = ["PROVIDER", "BedrockProvider"]

logger = logging.getLogger("llm_cache.providers.bedrock")

CONVERSE = "converse"
INVOKE = "invoke"
_MODEL = "/model/{modelId}"
_METRICS = "amazon-bedrock-invocationMetrics"
_ERROR_CODES = {
    400: "ValidationException",
    401: "UnrecognizedClientException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    413: "ValidationException",
    429: "ThrottlingException",
    500: "InternalServerException",
    502: "ServiceUnavailableException",
    503: "ServiceUnavailableException",
    504: "ModelTimeoutException",
}


class BedrockProvider(ProviderSpec):
    name = "bedrock"
    price_provider = "aws"
    routes = (
        RouteSpec(_MODEL + "/converse", CONVERSE, stream=False),
        RouteSpec(_MODEL + "/converse-stream", CONVERSE, stream=True),
        RouteSpec(_MODEL + "/invoke", INVOKE, stream=False),
        RouteSpec(_MODEL + "/invoke-with-response-stream", INVOKE, stream=True),
    )
    base_url_setting = "bedrock_base_url"
    passthrough_prefixes = ("/model/", "/async-invoke", "/guardrail/")
    framing = EVENTSTREAM
    excluded_fields = frozenset()
    key_headers = (
        "x-amzn-bedrock-accept",
        "x-amzn-bedrock-trace",
        "x-amzn-bedrock-guardrailidentifier",
        "x-amzn-bedrock-guardrailversion",
        "x-amzn-bedrock-performanceconfig-latency",
        "x-amzn-bedrock-service-tier",
        "x-amzn-bedrock-projectidentifier",
    )

    def upstream_signer(self, config: Any) -> UpstreamSigner | None:
        return _signer(config)

    def model(self, match: RouteMatch, body: Mapping[str, Any]) -> str:
        return unquote(match.params.get("modelId", ""))

    def error_body(self, status: int, message: str, error_type: str) -> bytes:
        code = _ERROR_CODES.get(status, "InternalServerException")
        if error_type == "cache_miss":
            code = "CacheMissException"
        return orjson.dumps({"message": message, "__type": code})

    def body_is_error(self, endpoint: str, response: Any) -> bool:
        return (
            isinstance(response, dict)
            and isinstance(response.get("message"), str)
            and set(response) <= {"message", "Message", "__type", "code"}
        )

    # ------------------------------------------------------------------ streams
    def stream_finished(self, endpoint: str, events: list[EventStreamMessage]) -> bool:
        if not events or any(e.message_type != "event" for e in events):
            return False
        if endpoint == CONVERSE:
            kinds = [e.event_type for e in events]
            return "messageStop" in kinds and kinds[-1] == "metadata"
        chunks = _chunks(events)
        if not chunks:
            return False
        last = chunks[-1]
        return _METRICS in last or last.get("type") == "message_stop"

    def events_to_response(
        self, endpoint: str, events: list[EventStreamMessage]
    ) -> dict[str, Any] | None:
        if not self.stream_finished(endpoint, events):
            return None
        if endpoint == CONVERSE:
            return _merge_converse(events)
        chunks = _chunks(events)
        if not chunks or chunks[0].get("type") != "message_start":
            return None
        sse = [
            SSEEvent.from_json({k: v for k, v in c.items() if k != _METRICS}, event=c["type"])
            for c in chunks
        ]
        return anthropic.PROVIDER.events_to_response(anthropic.MESSAGES, sse)

    def response_to_events(
        self, endpoint: str, response: dict[str, Any], request_body: dict[str, Any]
    ) -> list[EventStreamMessage] | None:
        if endpoint == CONVERSE:
            return _converse_frames(response)
        if response.get("type") != "message":
            return None
        sse = anthropic.PROVIDER.response_to_events(anthropic.MESSAGES, response, request_body)
        if sse is None:
            return None
        chunks = [orjson.loads(e.data) for e in sse if e.data]
        usage = response.get("usage") or {}
        chunks[-1][_METRICS] = {
            "inputTokenCount": usage.get("input_tokens", 0),
            "outputTokenCount": usage.get("output_tokens", 0),
            "invocationLatency": 0,  # answered from the cache
            "firstByteLatency": 0,
        }
        return [_chunk_frame(c) for c in chunks]

    # ------------------------------------------------------------------ usage
    def usage(self, response: dict[str, Any]) -> dict[str, Any] | None:
        usage = response.get("usage")
        if isinstance(usage, dict):
            return usage
        native = {
            k: response[k]
            for k in ("inputTextTokenCount", "prompt_token_count", "generation_token_count")
            if isinstance(response.get(k), int)
        }
        return native or None

    def usage_tokens(self, endpoint: str, response: dict[str, Any]) -> Usage | None:
        usage = self.usage(response)
        if usage is None:
            return None

        def first(*names: str) -> int:
            for name in names:
                value = usage.get(name)
                if isinstance(value, int):
                    return value
            return 0

        return Usage(
            first("inputTokens", "input_tokens", "inputTextTokenCount", "prompt_token_count"),
            first("outputTokens", "output_tokens", "generation_token_count"),
        )


PROVIDER = BedrockProvider()


# ---------------------------------------------------------------------- upstream auth
def _signer(config: Any) -> UpstreamSigner:
    """Re-sign with the proxy's AWS credentials, else forward a Bearer API key.

    The credential chain is read on the first Bedrock request, not at start-up: a proxy whose
    users never call Bedrock never probes for AWS credentials (instance metadata included).
    """
    from llm_cache.providers import aws_sigv4

    state: dict[str, aws_sigv4.SigV4Signer | None] = {}

    def sign(
        method: str, url: str, headers: list[tuple[str, str]], body: bytes
    ) -> list[tuple[str, str]] | None:
        if "signer" not in state:
            region = getattr(config, "aws_region", None) or _region_of(url)
            try:
                state["signer"] = aws_sigv4.SigV4Signer.from_environment(region)
            except ImportError:
                logger.warning("botocore is not installed: Bedrock requests are not re-signed")
                state["signer"] = None
            except ValueError as exc:  # credentials but no region to sign for
                logger.error("Bedrock requests are not re-signed: %s", exc)
                state["signer"] = None
        return aws_sigv4.upstream_auth(state["signer"], method, url, headers, body)

    return sign


def _region_of(url: str) -> str | None:
    host = urlsplit(url).hostname or ""
    parts = host.split(".")
    if len(parts) >= 4 and parts[0].startswith("bedrock-runtime") and parts[-2] == "amazonaws":
        return parts[1]
    return None


# ---------------------------------------------------------------------- converse
def _payload(frame: EventStreamMessage) -> dict[str, Any]:
    try:
        obj = frame.json()
    except orjson.JSONDecodeError:
        return {}
    if not isinstance(obj, dict):
        return {}
    obj.pop("p", None)
    return obj


def _merge_converse(events: list[EventStreamMessage]) -> dict[str, Any] | None:
    role = "assistant"
    blocks: dict[int, dict[str, Any]] = {}
    tool_input: dict[int, str] = {}
    response: dict[str, Any] = {}
    for frame in events:
        kind, data = frame.event_type, _payload(frame)
        index = data.get("contentBlockIndex", 0)
        if kind == "messageStart":
            role = data.get("role", role)
        elif kind == "contentBlockStart":
            start = data.get("start") or {}
            if "toolUse" in start:
                blocks[index] = {"toolUse": dict(start["toolUse"])}
                tool_input[index] = ""
            else:
                blocks[index] = {k: dict(v) for k, v in start.items() if isinstance(v, dict)}
        elif kind == "contentBlockDelta":
            _apply_delta(blocks.setdefault(index, {}), tool_input, index, data.get("delta") or {})
        elif kind == "messageStop":
            response["stopReason"] = data.get("stopReason")
            if "additionalModelResponseFields" in data:
                response["additionalModelResponseFields"] = data["additionalModelResponseFields"]
        elif kind == "metadata":
            for key, value in data.items():
                response[key] = value
    for index, raw in tool_input.items():
        try:
            blocks[index]["toolUse"]["input"] = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            return None
    content = [blocks[i] for i in sorted(blocks)]
    return {"output": {"message": {"role": role, "content": content}}, **response}


def _apply_delta(
    block: dict[str, Any], tool_input: dict[int, str], index: int, delta: dict[str, Any]
) -> None:
    if "text" in delta:
        block["text"] = block.get("text", "") + str(delta["text"])
    elif "toolUse" in delta:
        block.setdefault("toolUse", {})
        tool_input[index] = tool_input.get(index, "") + str(delta["toolUse"].get("input", ""))
    elif "reasoningContent" in delta:
        rc = block.setdefault("reasoningContent", {}).setdefault("reasoningText", {})
        part = delta["reasoningContent"]
        if "text" in part:
            rc["text"] = rc.get("text", "") + str(part["text"])
        if "signature" in part:
            rc["signature"] = part["signature"]
        if "redactedContent" in part:
            block["reasoningContent"] = {"redactedContent": part["redactedContent"]}
    else:  # citations, images and whatever comes next: kept as the last value seen
        for key, value in delta.items():
            block[key] = value


def _converse_frames(response: dict[str, Any]) -> list[EventStreamMessage] | None:
    message = (response.get("output") or {}).get("message")
    if not isinstance(message, dict) or not response.get("stopReason"):
        return None

    def ev(kind: str, payload: dict[str, Any]) -> EventStreamMessage:
        return EventStreamMessage.for_event(kind, orjson.dumps(payload))

    frames = [ev("messageStart", {"role": message.get("role", "assistant")})]
    for i, block in enumerate(message.get("content") or []):
        if not isinstance(block, dict):
            return None
        if "text" in block:
            delta: dict[str, Any] = {"text": block["text"]}
            frames.append(ev("contentBlockDelta", {"contentBlockIndex": i, "delta": delta}))
        elif "toolUse" in block:
            use = block["toolUse"]
            start = {"toolUse": {k: v for k, v in use.items() if k != "input"}}
            frames.append(ev("contentBlockStart", {"contentBlockIndex": i, "start": start}))
            delta = {"toolUse": {"input": orjson.dumps(use.get("input", {})).decode()}}
            frames.append(ev("contentBlockDelta", {"contentBlockIndex": i, "delta": delta}))
        elif "reasoningContent" in block:
            rc = block["reasoningContent"]
            text = rc.get("reasoningText") or {}
            delta = {"reasoningContent": {k: v for k, v in text.items() if k == "text"}}
            if "redactedContent" in rc:
                delta = {"reasoningContent": {"redactedContent": rc["redactedContent"]}}
            frames.append(ev("contentBlockDelta", {"contentBlockIndex": i, "delta": delta}))
            if "signature" in text:
                sig = {"reasoningContent": {"signature": text["signature"]}}
                frames.append(ev("contentBlockDelta", {"contentBlockIndex": i, "delta": sig}))
        else:
            return None  # a block kind this cache cannot spell as a stream: a miss instead
        frames.append(ev("contentBlockStop", {"contentBlockIndex": i}))
    stop: dict[str, Any] = {"stopReason": response["stopReason"]}
    if "additionalModelResponseFields" in response:
        stop["additionalModelResponseFields"] = response["additionalModelResponseFields"]
    frames.append(ev("messageStop", stop))
    meta: dict[str, Any] = {k: response[k] for k in ("usage", "metrics", "trace") if k in response}
    frames.append(ev("metadata", meta))
    return frames


# ---------------------------------------------------------------------- invoke
def _chunks(events: list[EventStreamMessage]) -> list[dict[str, Any]]:
    """The decoded native chunks of an invoke stream; empty when one is malformed."""
    out: list[dict[str, Any]] = []
    for frame in events:
        if frame.event_type != "chunk":
            return []
        try:
            raw = base64.b64decode(_payload(frame).get("bytes", ""), validate=True)
            obj = orjson.loads(raw)
        except (binascii.Error, orjson.JSONDecodeError, ValueError):
            return []
        if not isinstance(obj, dict):
            return []
        out.append(obj)
    return out


def _chunk_frame(chunk: dict[str, Any]) -> EventStreamMessage:
    payload = {"bytes": base64.b64encode(orjson.dumps(chunk)).decode("ascii")}
    return EventStreamMessage.for_event("chunk", orjson.dumps(payload))
