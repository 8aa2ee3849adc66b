"""The Google Gemini API wire format (``generativelanguage.googleapis.com``).

The model is in the path and the path says whether to stream:
``/{version}/models/{model}:generateContent`` answers JSON, ``:streamGenerateContent?alt=sse``
answers SSE (``data: {GenerateContentResponse chunk}``). Both are one endpoint,
``generateContent``, so a stored answer of either kind serves the other:

* stream → full: the chunks' parts are concatenated per candidate (adjacent text parts of the
  same kind merge, other parts are appended), the last ``finishReason``, ``usageMetadata``,
  ``modelVersion`` and ``responseId`` win.
* full → stream: one SSE chunk holding the whole response — what Gemini itself sends for a short
  answer, and what every Gemini client reads as a complete stream.

A stream is complete when every candidate it started has a ``finishReason`` (or the prompt was
blocked: ``promptFeedback.blockReason``) and no chunk is an ``error``.

Key rules: the query's ``key`` is a credential (never keyed or stored) and ``alt=sse`` only picks
the framing, so neither enters the key; any other ``alt`` (the JSON-array stream) does, and such a
stream, not being SSE, is relayed but never stored.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit

import orjson

from llm_cache.providers.base import ProviderSpec, RouteMatch, RouteSpec, Usage
from llm_cache.providers.sse import SSEEvent

__all__ = ["PROVIDER", "GeminiProvider"]

GENERATE = "generateContent"
EMBED = "embedContent"
BATCH_EMBED = "batchEmbedContents"

_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_MODEL = "/{version}/models/{model}"


class GeminiProvider(ProviderSpec):
    name = "gemini"
    semantic_shapes: ClassVar[Mapping[str, str]] = {GENERATE: "contents"}
    price_provider = "google"
    routes = (
        RouteSpec(_MODEL + ":generateContent", GENERATE, stream=False),
        RouteSpec(_MODEL + ":streamGenerateContent", GENERATE, stream=True),
        RouteSpec(_MODEL + ":embedContent", EMBED, stream=False),
        RouteSpec(_MODEL + ":batchEmbedContents", BATCH_EMBED, stream=False),
    )
    base_url_setting = "gemini_base_url"
    passthrough_prefixes = ("/v1/", "/v1beta/", "/v1alpha/", "/upload/")
    #: Gemini streams by path: no body field is a streaming switch, every field enters the key.
    excluded_fields = frozenset()

    def prefers(self, headers: Mapping[str, str]) -> bool:
        return "x-goog-api-key" in headers

    def never_cache_url(self, match: RouteMatch, url: str) -> str | None:
        if match.route.stream and ("alt", "sse") not in parse_qsl(urlsplit(url).query):
            return "a stream without alt=sse is a JSON array, which the cache does not keep"
        return None

    def key_query(self, endpoint: str, query: list[tuple[str, str]]) -> list[tuple[str, str]]:
        kept = super().key_query(endpoint, query)
        return [(k, v) for k, v in kept if not (k == "alt" and v == "sse")]

    def error_body(self, status: int, message: str, error_type: str) -> bytes:
        return orjson.dumps(
            {
                "error": {
                    "code": status,
                    "message": message,
                    "status": _STATUS_NAMES.get(status, "UNKNOWN"),
                }
            }
        )

    def body_is_error(self, endpoint: str, response: Any) -> bool:
        # A JSON array is the streamed answer without alt=sse: never an answer to keep.
        return not isinstance(response, dict) or isinstance(response.get("error"), dict)

    # ------------------------------------------------------------------ streams
    def stream_finished(self, endpoint: str, events: list[SSEEvent]) -> bool:
        if endpoint != GENERATE:
            return False
        chunks = _chunks(events)
        if not chunks:
            return False
        started: set[int] = set()
        finished: set[int] = set()
        blocked = False
        for chunk in chunks:
            if (chunk.get("promptFeedback") or {}).get("blockReason"):
                blocked = True
            for pos, cand in enumerate(chunk.get("candidates") or []):
                index = cand.get("index", pos) if isinstance(cand, dict) else pos
                started.add(index)
                if isinstance(cand, dict) and cand.get("finishReason"):
                    finished.add(index)
        if blocked and not started:
            return True
        return bool(started) and started <= finished

    def events_to_response(self, endpoint: str, events: list[SSEEvent]) -> dict[str, Any] | None:
        if endpoint != GENERATE:
            return None
        chunks = _chunks(events)
        if not chunks:
            return None
        merged: dict[str, Any] = {}
        candidates: dict[int, dict[str, Any]] = {}
        scored: dict[int, int] = {}
        for chunk in chunks:
            for pos, cand in enumerate(chunk.get("candidates") or []):
                if isinstance(cand, dict) and "logprobsResult" in cand:
                    return None  # per-chunk token log probabilities: no exact merged form
                if isinstance(cand, dict) and "avgLogprobs" in cand:
                    index = cand.get("index", pos)
                    scored[index] = scored.get(index, 0) + 1
        if any(n > 1 for n in scored.values()):
            return None  # several partial averages cannot be combined exactly
        for chunk in chunks:
            for key, value in chunk.items():
                if key != "candidates":
                    merged[key] = value
            for pos, cand in enumerate(chunk.get("candidates") or []):
                if not isinstance(cand, dict):
                    return None
                index = cand.get("index", pos)
                _merge_candidate(candidates.setdefault(index, {}), cand)
        if candidates:
            merged = {"candidates": [candidates[i] for i in sorted(candidates)], **merged}
        return merged

    def response_to_events(
        self, endpoint: str, response: dict[str, Any], request_body: dict[str, Any]
    ) -> list[SSEEvent] | None:
        if endpoint != GENERATE or not isinstance(response, dict):
            return None
        return [SSEEvent(data=orjson.dumps(response).decode("utf-8"))]

    # ------------------------------------------------------------------ usage
    def usage(self, response: dict[str, Any]) -> dict[str, Any] | None:
        usage = response.get("usageMetadata")
        return usage if isinstance(usage, dict) else None

    def usage_tokens(self, endpoint: str, response: dict[str, Any]) -> Usage | None:
        usage = self.usage(response)
        if usage is None:
            return None
        out = _int(usage.get("candidatesTokenCount")) + _int(usage.get("thoughtsTokenCount"))
        return Usage(_int(usage.get("promptTokenCount")), out)


PROVIDER = GeminiProvider()


def _int(value: Any) -> int:
    return value if isinstance(value, int) else 0


def _chunks(events: list[SSEEvent]) -> list[dict[str, Any]] | None:
    """The JSON chunks; ``None`` when a chunk is an error or not a JSON object."""
    chunks: list[dict[str, Any]] = []
    for event in events:
        if not event.data.strip():
            continue
        try:
            obj = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(obj, dict) or "error" in obj:
            return None
        chunks.append(obj)
    return chunks


def _merge_candidate(into: dict[str, Any], cand: dict[str, Any]) -> None:
    for key, value in cand.items():
        if key == "content" and isinstance(value, dict):
            content = into.setdefault("content", {})
            for ckey, cvalue in value.items():
                if ckey == "parts" and isinstance(cvalue, list):
                    parts = content.setdefault("parts", [])
                    for part in cvalue:
                        _append_part(parts, part)
                else:
                    content[ckey] = cvalue
        else:
            into[key] = copy.deepcopy(value)


def _plain_text(part: Any) -> bool:
    """A part that holds only text (and maybe the ``thought`` flag)."""
    return isinstance(part, dict) and "text" in part and set(part) <= {"text", "thought"}


def _append_part(parts: list[Any], part: Any) -> None:
    last = parts[-1] if parts else None
    if (
        last is not None
        and _plain_text(last)
        and isinstance(part, dict)
        and "text" in part
        and set(part) <= {"text", "thought", "thoughtSignature"}
        and bool(last.get("thought")) == bool(part.get("thought"))
    ):
        last["text"] += part["text"]
        if "thoughtSignature" in part:
            last["thoughtSignature"] = part["thoughtSignature"]
        return
    parts.append(copy.deepcopy(part))
