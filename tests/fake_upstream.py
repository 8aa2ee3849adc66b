"""A simulated OpenAI + Anthropic upstream, as a raw ASGI app, for tests.

    fake = create_fake_upstream()
    with run_server(fake.app) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="sk-test")
        client.chat.completions.create(model="gpt-4o-mini", messages=[...])
        assert fake.request_count == 1

Routes (matched on the path *suffix*, so any prefix such as ``/openai/v1`` works too):

* ``POST …/chat/completions`` - JSON, or SSE (``data: {...}`` chunks, ``data: [DONE]``) when
  ``stream`` is true; ``stream_options.include_usage``; ``n`` choices; ``logprobs``; a tool call to
  the first tool (JSON arguments built from its schema) when ``tools`` is given;
  ``max_tokens``/``max_completion_tokens`` truncate the text (finish_reason ``length``);
  ``audio`` for ``modalities: ["text", "audio"]``, OpenRouter's ``reasoning`` /
  ``reasoning_details`` for ``reasoning``, ``annotations`` for ``web_search_options``
  (``_Call.chat_extras``).
* ``POST …/completions`` (legacy), ``POST …/embeddings`` (``encoding_format`` float or base64),
  ``POST …/responses`` (JSON or the real event sequence ``response.created`` …
  ``response.completed``), ``GET …/models`` (an uncached path).
* ``POST …/messages`` (Anthropic) - JSON, or SSE with the real event names; ``tool_use`` blocks when
  ``tools`` are given, ``thinking`` blocks when ``thinking`` is enabled.

Answers depend on the whole request: the generated text contains ``[h=<8 hex>]``, a hash of the
canonical body (minus ``stream``/``stream_options``/``user``/``metadata``, the fields a cache may
ignore) together with the path kind and the ``anthropic-version``/``anthropic-beta`` headers. So a
wrong cache hit shows in the text. Ids (``chatcmpl-…``, ``msg_…``) are unique per upstream call, so
a hit (same id as the first answer) can be told from a fresh call.

Knobs - attributes of :class:`FakeUpstream` (defaults), overridden per request by headers:

=====================  ============================  =========================================
attribute              header                        effect
=====================  ============================  =========================================
``latency_ms``         ``x-fake-latency-ms``         sleep before the response starts
``chunk_delay_ms``     ``x-fake-chunk-delay-ms``     sleep between SSE events
``status``             ``x-fake-status``             answer this error status (provider error
                                                     shape; 429 adds ``retry-after: 7``)
``abort_after``        ``x-fake-abort-after``        SSE: send N events then drop the connection
                                                     (never the terminator); JSON: send half of
                                                     the body then drop
``size``               ``x-fake-size``               the answer text is exactly this many bytes
(none)                 ``x-fake-error-200``          status 200 with an error body
(none)                 ``x-fake-not-json``           status 200, JSON content type, HTML body
(none)                 ``x-fake-reject-stream-       422 (Mistral's shape) for a body with
                       options``                     ``stream_options``
=====================  ============================  =========================================

Every request is recorded in :attr:`FakeUpstream.requests` (method, path, headers, parsed body).
``accept-encoding: gzip`` → gzip-compressed answers (SSE compressed incrementally, one
``Z_SYNC_FLUSH`` per event). Auth: OpenAI routes need ``authorization: Bearer …``; Anthropic
routes need ``x-api-key`` (or a bearer token) and an ``anthropic-version`` header.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import itertools
import re
import struct
import threading
import time
import zlib
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import orjson

try:  # imported as ``tests.fake_upstream`` (tests is a package) ...
    from .servers import run_server
except ImportError:  # ... or as top-level ``fake_upstream`` (pytest puts tests/ on sys.path)
    from servers import run_server  # type: ignore[no-redef]

__all__ = [
    "FakeUpstream",
    "RecordedRequest",
    "create_fake_upstream",
    "request_hash",
    "run_server",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: Body fields that never change the fake's answer (a cache may keep them out of its key).
IGNORED_FIELDS = frozenset({"stream", "stream_options", "user", "metadata"})
#: Request headers that change the fake's answer.
HASHED_HEADERS = ("anthropic-version", "anthropic-beta")

_FILLER = (
    "The quick brown fox jumps over the lazy dog while the cache keeps every answer it has seen. "
)
_OPENAI_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_denied",
    404: "invalid_request_error",
    409: "conflict",
    422: "invalid_request_error",
    429: "rate_limit_exceeded",
    500: "server_error",
    502: "server_error",
    503: "server_error",
}
_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


@dataclass
class RecordedRequest:
    """One request as the fake upstream received it."""

    method: str
    path: str
    headers: dict[str, str]  # lower-cased names; repeated headers joined with ", "
    body: Any  # parsed JSON, or None when the body was empty or not JSON
    raw_body: bytes = b""
    query: str = ""


def request_hash(kind: str, body: Any, headers: dict[str, str] | None = None) -> str:
    """The 8-hex hash the fake embeds in its answers as ``[h=…]``."""
    if isinstance(body, dict):
        body = {k: v for k, v in body.items() if k not in IGNORED_FIELDS}
    hdrs = {k: (headers or {}).get(k) for k in HASHED_HEADERS}
    material = orjson.dumps([kind, body, hdrs], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(material).hexdigest()[:8]


def _tokens(text: str) -> int:
    return max(1, (len(text) + 3) // 4)


def _json(obj: Any) -> bytes:
    return orjson.dumps(obj)


class _Abort(Exception):
    """Raised to stop the stream without a terminator."""


@dataclass
class FakeUpstream:
    """State and knobs of one simulated upstream; ``app`` is the ASGI callable."""

    latency_ms: float = 0.0
    chunk_delay_ms: float = 0.0
    status: int | None = None
    abort_after: int | None = None
    size: int | None = None
    model_name_override: str | None = None
    requests: list[RecordedRequest] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1), repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # ------------------------------------------------------------------ state helpers
    @property
    def request_count(self) -> int:
        return len(self.requests)

    def count(self, path_suffix: str | None = None, method: str | None = None) -> int:
        """Number of recorded requests, optionally only those whose path ends with a suffix."""
        return sum(
            1
            for r in self.requests
            if (path_suffix is None or r.path.endswith(path_suffix))
            and (method is None or r.method == method.upper())
        )

    @property
    def last_request(self) -> RecordedRequest:
        return self.requests[-1]

    def reset(self) -> None:
        """Forget recorded requests and restore every knob to its default."""
        self.requests.clear()
        self.latency_ms = 0.0
        self.chunk_delay_ms = 0.0
        self.status = None
        self.abort_after = None
        self.size = None

    def _next_id(self) -> int:
        with self._lock:
            return next(self._ids)

    # ------------------------------------------------------------------ ASGI entry
    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":  # pragma: no cover
            return
        raw = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            raw.extend(message.get("body", b""))
            if not message.get("more_body", False):
                break
        headers: dict[str, str] = {}
        for k, v in scope.get("headers", []):
            name = k.decode("latin-1").lower()
            value = v.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        body: Any = None
        bad_json = False
        if raw:
            try:
                body = orjson.loads(bytes(raw))
            except orjson.JSONDecodeError:
                bad_json = True
        method = scope["method"].upper()
        path = scope["path"]
        qs = scope.get("query_string", b"").decode("latin-1")
        self.requests.append(RecordedRequest(method, path, headers, body, bytes(raw), qs))
        call = _Call(self, send, method, path, headers, body)
        await call.handle(bad_json)


class _Call:
    """One request being answered."""

    def __init__(
        self,
        fake: FakeUpstream,
        send: Send,
        method: str,
        path: str,
        headers: dict[str, str],
        body: Any,
    ) -> None:
        self.fake = fake
        self.send = send
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body
        stripped = path.rstrip("/")
        self.anthropic = stripped.endswith("/messages") or (
            not stripped.endswith(("/completions", "/embeddings", "/responses"))
            and ("x-api-key" in headers or "anthropic-version" in headers)
        )
        self.gzip = _accepts_gzip(headers.get("accept-encoding", ""))
        self.latency_ms = _float_header(headers, "x-fake-latency-ms", fake.latency_ms)
        self.chunk_delay_ms = _float_header(headers, "x-fake-chunk-delay-ms", fake.chunk_delay_ms)
        status = headers.get("x-fake-status")
        self.status = int(status) if status else fake.status
        abort = headers.get("x-fake-abort-after")
        self.abort_after = int(abort) if abort else fake.abort_after
        size = headers.get("x-fake-size")
        self.size = int(size) if size else fake.size
        self.serial = fake._next_id()

    # ------------------------------------------------------------------ responses
    def _base_headers(self) -> list[tuple[bytes, bytes]]:
        rid = f"req_fake{self.serial:06d}".encode()
        name = b"request-id" if self.anthropic else b"x-request-id"
        return [(name, rid)]

    async def send_json(
        self, status: int, obj: Any, extra: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        data = _json(obj)
        if self.latency_ms:
            await asyncio.sleep(self.latency_ms / 1000)
        headers = [(b"content-type", b"application/json"), *self._base_headers(), *(extra or [])]
        if self.gzip:
            data = gzip.compress(data, mtime=0)
            headers.append((b"content-encoding", b"gzip"))
            headers.append((b"vary", b"accept-encoding"))
        headers.append((b"content-length", str(len(data)).encode()))
        await self.send({"type": "http.response.start", "status": status, "headers": headers})
        if self.abort_after is not None and 200 <= status < 300:
            await self.send(
                {"type": "http.response.body", "body": data[: len(data) // 2], "more_body": True}
            )
            return  # drop the connection: the body is incomplete
        await self.send({"type": "http.response.body", "body": data})

    async def send_error(self, status: int, message: str, error_type: str | None = None) -> None:
        extra: list[tuple[bytes, bytes]] = []
        if status == 429:
            extra.append((b"retry-after", b"7"))
        if self.anthropic:
            etype = error_type or _ANTHROPIC_ERROR_TYPES.get(status, "api_error")
            obj: Any = {
                "type": "error",
                "error": {"type": etype, "message": message},
                "request_id": f"req_fake{self.serial:06d}",
            }
        else:
            etype = error_type or _OPENAI_ERROR_TYPES.get(status, "server_error")
            code: str | None = None
            if status == 401:
                code = "invalid_api_key"
            elif status == 429:
                code = "rate_limit_exceeded"
            obj = {"error": {"message": message, "type": etype, "param": None, "code": code}}
        saved, self.abort_after = self.abort_after, None
        try:
            await self.send_json(status, obj, extra)
        finally:
            self.abort_after = saved

    async def send_sse(self, events: list[bytes]) -> None:
        if self.latency_ms:
            await asyncio.sleep(self.latency_ms / 1000)
        headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
            *self._base_headers(),
        ]
        comp = None
        if self.gzip:
            comp = zlib.compressobj(6, zlib.DEFLATED, 31)
            headers.append((b"content-encoding", b"gzip"))
            headers.append((b"vary", b"accept-encoding"))
        await self.send({"type": "http.response.start", "status": 200, "headers": headers})
        limit = len(events)
        if self.abort_after is not None:
            limit = max(0, min(self.abort_after, len(events) - 1))
        delay = self.chunk_delay_ms / 1000
        for i, event in enumerate(events[:limit]):
            if i and delay:
                await asyncio.sleep(delay)
            chunk = comp.compress(event) + comp.flush(zlib.Z_SYNC_FLUSH) if comp else event
            await self.send({"type": "http.response.body", "body": chunk, "more_body": True})
        if limit < len(events):
            return  # drop the connection mid-stream, without the terminator
        tail = comp.flush(zlib.Z_FINISH) if comp else b""
        await self.send({"type": "http.response.body", "body": tail, "more_body": False})

    # ------------------------------------------------------------------ routing
    async def handle(self, bad_json: bool) -> None:
        path = self.path.rstrip("/")
        routes: dict[str, Callable[[], Awaitable[None]]] = {
            "/chat/completions": self.chat_completions,
            "/completions": self.completions,
            "/embeddings": self.embeddings,
            "/responses": self.responses,
            "/messages": self.messages,
        }
        handler = None
        for suffix, candidate in routes.items():
            if path.endswith(suffix):
                handler = candidate
                break
        if handler is None and path.endswith("/models"):
            if self.method != "GET":
                await self.send_error(405, f"Method {self.method} not allowed")
                return
            if not await self.check_auth():
                return
            await self.models()
            return
        if handler is None:
            await self.send_error(
                404,
                f"Unknown path {self.path}",
                "not_found_error" if self.anthropic else "invalid_request_error",
            )
            return
        if self.method != "POST":
            await self.send_error(405, f"Method {self.method} not allowed")
            return
        if not await self.check_auth():
            return
        if self.status is not None and self.status >= 400:
            await self.send_error(self.status, f"Simulated error {self.status}")
            return
        if bad_json or not isinstance(self.body, dict):
            await self.send_error(400, "We could not parse the JSON body of your request.")
            return
        if self.headers.get("x-fake-error-200"):
            # Some OpenAI-compatible upstreams answer errors with status 200.
            if self.anthropic:
                obj: Any = {"type": "error", "error": {"type": "overloaded_error", "message": "x"}}
            else:
                obj = {"error": {"message": "upstream overloaded", "type": "server_error"}}
            await self.send_json(200, obj)
            return
        if self.headers.get("x-fake-reject-stream-options") and "stream_options" in self.body:
            # Mistral's answer to a field it does not know (its OpenAI-compatible API).
            detail = {
                "type": "extra_forbidden",
                "loc": ["body", "stream_options"],
                "msg": "Extra inputs are not permitted",
                "input": self.body["stream_options"],
            }
            await self.send_json(
                422,
                {
                    "object": "error",
                    "message": {"detail": [detail]},
                    "type": "invalid_request_error",
                    "param": None,
                    "code": None,
                },
            )
            return
        if self.headers.get("x-fake-not-json"):
            await self.send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await self.send({"type": "http.response.body", "body": b"<html>bad gateway</html>"})
            return
        if "model" not in self.body:
            await self.send_error(400, "model: Field required")
            return
        await handler()

    async def check_auth(self) -> bool:
        auth = self.headers.get("authorization", "")
        bearer = auth.lower().startswith("bearer ") and len(auth) > 7
        if self.anthropic:
            if not (self.headers.get("x-api-key") or bearer):
                await self.send_error(401, "x-api-key header is required")
                return False
            if self.path.rstrip("/").endswith("/messages") and (
                "anthropic-version" not in self.headers
            ):
                await self.send_error(400, "anthropic-version: header is required")
                return False
            return True
        if not bearer:
            await self.send_error(
                401,
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            )
            return False
        return True

    # ------------------------------------------------------------------ text helpers
    def hash(self, kind: str) -> str:
        return request_hash(kind, self.body, self.headers)

    def text(
        self, kind: str, snippet: str, index: int = 0, max_tokens: int | None = None
    ) -> tuple[str, bool]:
        """Answer text and whether it was truncated by max_tokens."""
        h = self.hash(kind)
        choice = f" (choice {index})" if index else ""
        snippet = " ".join(snippet.split())[:60]
        text = f'Fake {kind} answer [h={h}]{choice}: you said "{snippet}".'
        if self.size is not None:
            filler = _FILLER * (self.size // len(_FILLER) + 2)
            text = (text + " " + filler)[: self.size]
            return text, False
        if max_tokens is not None and _tokens(text) > max_tokens:
            return text[: max(1, max_tokens * 4)], True
        return text, False

    def pieces(self, text: str) -> list[str]:
        if len(text) > 4096:
            return [text[i : i + 4096] for i in range(0, len(text), 4096)]
        parts = re.findall(r"\S+\s*|\s+", text)
        return parts or [text]

    def prompt_tokens(self, *parts: Any) -> int:
        return _tokens(_json(parts).decode()) + 3

    def now(self) -> int:
        return int(time.time())

    # ------------------------------------------------------------------ OpenAI chat
    async def chat_completions(self) -> None:
        b = self.body
        messages = b.get("messages")
        if not isinstance(messages, list) or not messages:
            await self.send_error(400, "messages: must be a non-empty array")
            return
        n = int(b.get("n") or 1)
        model = str(b["model"])
        cid = f"chatcmpl-fake{self.serial:06d}{self.hash('chat')}"
        created = self.now()
        fingerprint = "fp_fake" + self.hash("fp")[:6]
        max_tokens = b.get("max_completion_tokens") or b.get("max_tokens")
        want_logprobs = bool(b.get("logprobs"))
        tool = _pick_openai_tool(b)
        if messages and isinstance(messages[-1], dict) and messages[-1].get("role") == "tool":
            tool = None
        snippet = _last_text(messages)
        prompt_tokens = self.prompt_tokens(messages, b.get("tools"))
        choices_data: list[dict[str, Any]] = []
        completion_tokens = 0
        for i in range(n):
            if tool is not None:
                name, args = tool
                args_json = _json(args).decode()
                call = {
                    "id": f"call_{self.hash(f'call{i}')}{i}",
                    "type": "function",
                    "function": {"name": name, "arguments": args_json},
                }
                choices_data.append(
                    {"content": None, "tool_calls": [call], "finish_reason": "tool_calls"}
                )
                completion_tokens += _tokens(args_json) + 5
            else:
                text, cut = self.text("chat", snippet, i, max_tokens)
                extras, before, after = self.chat_extras(text, i)
                choices_data.append(
                    {
                        "content": None if "audio" in extras else text,
                        "tool_calls": None,
                        "finish_reason": "length" if cut else "stop",
                        "extras": extras,
                        "deltas_before": before,
                        "deltas_after": after,
                    }
                )
                completion_tokens += _tokens(text)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }
        if not b.get("stream"):
            choices = []
            for i, c in enumerate(choices_data):
                message: dict[str, Any] = {
                    "role": "assistant",
                    "content": c["content"],
                    "refusal": None,
                    "annotations": [],
                }
                if c["tool_calls"]:
                    message["tool_calls"] = c["tool_calls"]
                message.update(c.get("extras") or {})
                choices.append(
                    {
                        "index": i,
                        "message": message,
                        "logprobs": _logprobs(self.pieces(c["content"]))
                        if want_logprobs and c["content"]
                        else None,
                        "finish_reason": c["finish_reason"],
                    }
                )
            await self.send_json(
                200,
                {
                    "id": cid,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": choices,
                    "usage": usage,
                    "service_tier": "default",
                    "system_fingerprint": fingerprint,
                },
            )
            return
        include_usage = bool((b.get("stream_options") or {}).get("include_usage"))

        def chunk(choices: list[dict[str, Any]], with_usage: Any = None) -> bytes:
            obj: dict[str, Any] = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "service_tier": "default",
                "system_fingerprint": fingerprint,
                "choices": choices,
            }
            if include_usage:
                obj["usage"] = with_usage
            return b"data: " + _json(obj) + b"\n\n"

        events: list[bytes] = []
        for i, c in enumerate(choices_data):
            first: dict[str, Any] = {
                "role": "assistant",
                "content": "" if c["content"] is not None else None,
                "refusal": None,
            }
            lp0 = {"content": [], "refusal": None} if want_logprobs else None
            events.append(
                chunk([{"index": i, "delta": first, "logprobs": lp0, "finish_reason": None}])
            )
            if c["tool_calls"]:
                call = c["tool_calls"][0]
                args = call["function"]["arguments"]
                events.append(
                    chunk(
                        [
                            {
                                "index": i,
                                "delta": {
                                    "tool_calls": [
                                        {
                                            "index": 0,
                                            "id": call["id"],
                                            "type": "function",
                                            "function": {
                                                "name": call["function"]["name"],
                                                "arguments": "",
                                            },
                                        }
                                    ]
                                },
                                "logprobs": None,
                                "finish_reason": None,
                            }
                        ]
                    )
                )
                step = max(1, len(args) // 3)
                for j in range(0, len(args), step):
                    events.append(
                        chunk(
                            [
                                {
                                    "index": i,
                                    "delta": {
                                        "tool_calls": [
                                            {
                                                "index": 0,
                                                "function": {"arguments": args[j : j + step]},
                                            }
                                        ]
                                    },
                                    "logprobs": None,
                                    "finish_reason": None,
                                }
                            ]
                        )
                    )
            else:
                for delta in c["deltas_before"]:
                    events.append(
                        chunk(
                            [{"index": i, "delta": delta, "logprobs": None, "finish_reason": None}]
                        )
                    )
                for piece in self.pieces(c["content"]) if c["content"] is not None else []:
                    lp = _logprobs([piece]) if want_logprobs else None
                    events.append(
                        chunk(
                            [
                                {
                                    "index": i,
                                    "delta": {"content": piece},
                                    "logprobs": lp,
                                    "finish_reason": None,
                                }
                            ]
                        )
                    )
                for delta in c["deltas_after"]:
                    events.append(
                        chunk(
                            [{"index": i, "delta": delta, "logprobs": None, "finish_reason": None}]
                        )
                    )
            events.append(
                chunk(
                    [
                        {
                            "index": i,
                            "delta": {},
                            "logprobs": None,
                            "finish_reason": c["finish_reason"],
                        }
                    ]
                )
            )
        if include_usage:
            events.append(chunk([], usage))
        events.append(b"data: [DONE]\n\n")
        await self.send_sse(events)

    def chat_extras(
        self, text: str, index: int
    ) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
        """Message fields some chat requests add, as the full message holds them and as the
        deltas that stream them (before and after the content):

        * ``modalities: ["text", "audio"]``: ``audio`` (``id``, ``data``, ``expires_at``,
          ``transcript``) instead of ``content``; streamed as ``id`` + transcript pieces, data
          pieces, then an ``expires_at``-only delta, like OpenAI's audio models.
        * ``reasoning`` (OpenRouter): ``reasoning`` text and ``reasoning_details`` (a text entry at
          index 0 streamed in fragments, an encrypted entry at index 1).
        * ``web_search_options``: ``annotations`` (url citations), streamed in one delta.
        """
        b = self.body
        extras: dict[str, Any] = {}
        before: list[dict[str, Any]] = []
        after: list[dict[str, Any]] = []
        if b.get("reasoning") is not None:
            thought = f"Thinking about it [h={self.hash(f'reasoning{index}')}] step by step."
            sealed = base64.b64encode(thought.encode()).decode()
            extras["reasoning"] = thought
            extras["reasoning_details"] = [
                {"type": "reasoning.text", "text": thought, "format": "unknown", "index": 0},
                {"type": "reasoning.encrypted", "data": sealed, "format": "unknown", "index": 1},
            ]
            for piece in self.pieces(thought):
                detail = {"type": "reasoning.text", "text": piece, "format": "unknown", "index": 0}
                before.append({"reasoning": piece, "reasoning_details": [detail]})
            before.append({"reasoning_details": [extras["reasoning_details"][1]]})
        if "audio" in (b.get("modalities") or ()):
            audio_id = f"audio_fake{self.serial:06d}{index}"
            data = base64.b64encode(("PCM16:" + text).encode()).decode()
            expires_at = self.now() + 3600
            extras["audio"] = {
                "id": audio_id,
                "data": data,
                "expires_at": expires_at,
                "transcript": text,
            }
            pieces = self.pieces(text)
            after.append({"audio": {"id": audio_id, "transcript": pieces[0]}})
            after.extend({"audio": {"transcript": p}} for p in pieces[1:])
            half = len(data) // 2
            after.extend([{"audio": {"data": data[:half]}}, {"audio": {"data": data[half:]}}])
            after.append({"audio": {"expires_at": expires_at}})
        if b.get("web_search_options") is not None:
            extras["annotations"] = [
                {
                    "type": "url_citation",
                    "url_citation": {
                        "start_index": 0,
                        "end_index": len(text),
                        "title": f"Source {n}",
                        "url": f"https://example.com/{self.hash('source')}/{n}",
                    },
                }
                for n in (1, 2)
            ]
            after.append({"annotations": extras["annotations"]})
        return extras, before, after

    # ------------------------------------------------------------------ OpenAI legacy
    async def completions(self) -> None:
        b = self.body
        prompt = b.get("prompt", "")
        prompts = (
            prompt
            if isinstance(prompt, list) and prompt and isinstance(prompt[0], str)
            else [prompt]
        )
        n = int(b.get("n") or 1)
        model = str(b["model"])
        cid = f"cmpl-fake{self.serial:06d}{self.hash('completion')}"
        created = self.now()
        max_tokens = b.get("max_tokens", 16)
        texts: list[tuple[str, bool]] = []
        for p in prompts:
            for _ in range(n):
                texts.append(self.text("completion", str(p), len(texts), max_tokens))
        prompt_tokens = self.prompt_tokens(prompt)
        completion_tokens = sum(_tokens(t) for t, _ in texts)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        fingerprint = "fp_fake" + self.hash("fp")[:6]
        if not b.get("stream"):
            await self.send_json(
                200,
                {
                    "id": cid,
                    "object": "text_completion",
                    "created": created,
                    "model": model,
                    "system_fingerprint": fingerprint,
                    "choices": [
                        {
                            "text": t,
                            "index": i,
                            "logprobs": None,
                            "finish_reason": "length" if cut else "stop",
                        }
                        for i, (t, cut) in enumerate(texts)
                    ],
                    "usage": usage,
                },
            )
            return
        include_usage = bool((b.get("stream_options") or {}).get("include_usage"))

        def chunk(choices: list[dict[str, Any]], with_usage: Any = None) -> bytes:
            obj: dict[str, Any] = {
                "id": cid,
                "object": "text_completion",
                "created": created,
                "model": model,
                "system_fingerprint": fingerprint,
                "choices": choices,
            }
            if include_usage:
                obj["usage"] = with_usage
            return b"data: " + _json(obj) + b"\n\n"

        events: list[bytes] = []
        for i, (t, cut) in enumerate(texts):
            for piece in self.pieces(t):
                events.append(
                    chunk([{"text": piece, "index": i, "logprobs": None, "finish_reason": None}])
                )
            events.append(
                chunk(
                    [
                        {
                            "text": "",
                            "index": i,
                            "logprobs": None,
                            "finish_reason": "length" if cut else "stop",
                        }
                    ]
                )
            )
        if include_usage:
            events.append(chunk([], usage))
        events.append(b"data: [DONE]\n\n")
        await self.send_sse(events)

    # ------------------------------------------------------------------ OpenAI embeddings
    async def embeddings(self) -> None:
        b = self.body
        inp = b.get("input")
        if inp is None or inp == "" or inp == []:
            await self.send_error(400, "input: must not be empty")
            return
        if isinstance(inp, str) or (isinstance(inp, list) and inp and isinstance(inp[0], int)):
            inputs: list[Any] = [inp]
        else:
            inputs = list(inp)
        dims = int(b.get("dimensions") or 16)
        fmt = b.get("encoding_format") or "float"
        model = str(b["model"])
        data = []
        for i, item in enumerate(inputs):
            vector = _vector(model, item, dims)
            emb: Any = vector
            if fmt == "base64":
                emb = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode()
            data.append({"object": "embedding", "index": i, "embedding": emb})
        tokens = sum(_tokens(x) if isinstance(x, str) else len(x) for x in inputs)
        await self.send_json(
            200,
            {
                "object": "list",
                "data": data,
                "model": model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )

    # ------------------------------------------------------------------ OpenAI responses
    async def responses(self) -> None:
        b = self.body
        model = str(b["model"])
        rid = f"resp_fake{self.serial:06d}{self.hash('responses')}"
        created = self.now()
        inp = b.get("input", "")
        tool = None
        tools = b.get("tools") or []
        if tools and b.get("tool_choice") != "none":
            for t in tools:
                if isinstance(t, dict) and t.get("type") == "function":
                    tool = (
                        str(t.get("name")),
                        _args_for_schema(t.get("parameters"), self.hash("args")),
                    )
                    break
        if (
            isinstance(inp, list)
            and inp
            and isinstance(inp[-1], dict)
            and (inp[-1].get("type") == "function_call_output")
        ):
            tool = None
        snippet = inp if isinstance(inp, str) else _last_text(inp if isinstance(inp, list) else [])
        max_tokens = b.get("max_output_tokens")
        item: dict[str, Any]
        if tool is not None:
            name, args = tool
            args_json = _json(args).decode()
            item = {
                "id": f"fc_fake{self.serial:06d}",
                "type": "function_call",
                "status": "completed",
                "arguments": args_json,
                "call_id": f"call_{self.hash('rcall')}",
                "name": name,
            }
            out_text = args_json
            cut = False
        else:
            out_text, cut = self.text("responses", str(snippet), 0, max_tokens)
            item = {
                "id": f"msg_fake{self.serial:06d}",
                "type": "message",
                "status": "incomplete" if cut else "completed",
                "role": "assistant",
                "content": [
                    {"type": "output_text", "text": out_text, "annotations": [], "logprobs": []}
                ],
            }
        input_tokens = self.prompt_tokens(inp, b.get("instructions"), tools)
        output_tokens = _tokens(out_text)
        usage = {
            "input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input_tokens + output_tokens,
        }

        def response(status: str, output: list[Any], with_usage: Any) -> dict[str, Any]:
            return {
                "id": rid,
                "object": "response",
                "created_at": created,
                "status": status,
                "background": False,
                "error": None,
                "incomplete_details": {"reason": "max_output_tokens"}
                if status == "incomplete"
                else None,
                "instructions": b.get("instructions"),
                "max_output_tokens": max_tokens,
                "max_tool_calls": None,
                "model": model,
                "output": output,
                "parallel_tool_calls": b.get("parallel_tool_calls", True),
                "previous_response_id": b.get("previous_response_id"),
                "reasoning": {"effort": None, "summary": None},
                "service_tier": "default",
                "store": b.get("store", True),
                "temperature": b.get("temperature", 1.0),
                "text": b.get("text") or {"format": {"type": "text"}, "verbosity": "medium"},
                "tool_choice": b.get("tool_choice", "auto"),
                "tools": tools,
                "top_logprobs": 0,
                "top_p": b.get("top_p", 1.0),
                "truncation": "disabled",
                "usage": with_usage,
                "user": b.get("user"),
                "metadata": b.get("metadata") or {},
            }

        final_status = "incomplete" if cut else "completed"
        if not b.get("stream"):
            await self.send_json(200, response(final_status, [item], usage))
            return
        seq = itertools.count()
        events: list[bytes] = []

        def ev(obj: dict[str, Any]) -> None:
            obj["sequence_number"] = next(seq)
            events.append(b"event: " + obj["type"].encode() + b"\ndata: " + _json(obj) + b"\n\n")

        ev({"type": "response.created", "response": response("in_progress", [], None)})
        ev({"type": "response.in_progress", "response": response("in_progress", [], None)})
        if item["type"] == "function_call":
            ev(
                {
                    "type": "response.output_item.added",
                    "output_index": 0,
                    "item": {**item, "status": "in_progress", "arguments": ""},
                }
            )
            args = item["arguments"]
            step = max(1, len(args) // 3)
            for j in range(0, len(args), step):
                ev(
                    {
                        "type": "response.function_call_arguments.delta",
                        "item_id": item["id"],
                        "output_index": 0,
                        "delta": args[j : j + step],
                    }
                )
            ev(
                {
                    "type": "response.function_call_arguments.done",
                    "item_id": item["id"],
                    "output_index": 0,
                    "arguments": args,
                    "name": item["name"],
                }
            )
        else:
            ev(
                {
                    "type": "response.output_item.added",
                    "output_index": 0,
                    "item": {**item, "status": "in_progress", "content": []},
                }
            )
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            ev(
                {
                    "type": "response.content_part.added",
                    "item_id": item["id"],
                    "output_index": 0,
                    "content_index": 0,
                    "part": part,
                }
            )
            for piece in self.pieces(out_text):
                ev(
                    {
                        "type": "response.output_text.delta",
                        "item_id": item["id"],
                        "output_index": 0,
                        "content_index": 0,
                        "delta": piece,
                        "logprobs": [],
                    }
                )
            ev(
                {
                    "type": "response.output_text.done",
                    "item_id": item["id"],
                    "output_index": 0,
                    "content_index": 0,
                    "text": out_text,
                    "logprobs": [],
                }
            )
            ev(
                {
                    "type": "response.content_part.done",
                    "item_id": item["id"],
                    "output_index": 0,
                    "content_index": 0,
                    "part": item["content"][0],
                }
            )
        ev({"type": "response.output_item.done", "output_index": 0, "item": item})
        done_type = "response.incomplete" if cut else "response.completed"
        ev({"type": done_type, "response": response(final_status, [item], usage)})
        await self.send_sse(events)

    # ------------------------------------------------------------------ models
    async def models(self) -> None:
        names = ["gpt-4o-mini", "gpt-4o", "text-embedding-3-small"]
        if self.anthropic:
            data = [
                {
                    "type": "model",
                    "id": m,
                    "display_name": m.title(),
                    "created_at": "2025-01-01T00:00:00Z",
                }
                for m in ("claude-sonnet-4-5", "claude-haiku-4-5")
            ]
            await self.send_json(
                200,
                {
                    "data": data,
                    "has_more": False,
                    "first_id": data[0]["id"],
                    "last_id": data[-1]["id"],
                },
            )
            return
        await self.send_json(
            200,
            {
                "object": "list",
                "data": [
                    {"id": m, "object": "model", "created": 1700000000, "owned_by": "system"}
                    for m in names
                ],
            },
        )

    # ------------------------------------------------------------------ Anthropic
    async def messages(self) -> None:
        b = self.body
        messages = b.get("messages")
        if not isinstance(messages, list) or not messages:
            await self.send_error(400, "messages: Field required")
            return
        if not isinstance(b.get("max_tokens"), int):
            await self.send_error(400, "max_tokens: Field required")
            return
        model = str(b["model"])
        mid = f"msg_fake{self.serial:06d}{self.hash('messages')}"
        max_tokens = int(b["max_tokens"])
        tools = b.get("tools") or []
        tool_choice = b.get("tool_choice") or {}
        tool = None
        if tools and tool_choice.get("type") != "none":
            first = tools[0]
            if tool_choice.get("type") == "tool":
                first = next((t for t in tools if t.get("name") == tool_choice.get("name")), first)
            tool = (
                str(first.get("name")),
                _args_for_schema(first.get("input_schema"), self.hash("args")),
            )
        last = messages[-1] if isinstance(messages[-1], dict) else {}
        if isinstance(last.get("content"), list) and any(
            isinstance(c, dict) and c.get("type") == "tool_result" for c in last["content"]
        ):
            tool = None
        thinking_cfg = b.get("thinking") or {}
        thinking = thinking_cfg.get("type") in ("enabled", "adaptive")
        snippet = _last_text(messages)
        blocks: list[dict[str, Any]] = []
        if thinking:
            blocks.append(
                {
                    "type": "thinking",
                    "thinking": f"Let me think about [h={self.hash('thinking')}]. "
                    "The user wants an "
                    "answer, so I will give one.",
                    "signature": base64.b64encode(
                        hashlib.sha256(self.hash("sig").encode()).digest() * 2
                    ).decode(),
                }
            )
        text, cut = self.text("messages", snippet, 0, max_tokens)
        if tool is not None:
            text = f"I will call {tool[0]} [h={self.hash('messages')}]."
            cut = False
        blocks.append({"type": "text", "text": text})
        if tool is not None:
            blocks.append(
                {
                    "type": "tool_use",
                    "id": f"toolu_fake{self.hash('toolu')}",
                    "name": tool[0],
                    "input": tool[1],
                }
            )
        stop_reason = "tool_use" if tool is not None else ("max_tokens" if cut else "end_turn")
        input_tokens = self.prompt_tokens(messages, b.get("system"), tools)
        output_tokens = sum(_tokens(_json(blk).decode()) for blk in blocks)
        usage = {
            "input_tokens": input_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
            "output_tokens": output_tokens,
            "service_tier": "standard",
        }
        message = {
            "id": mid,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": blocks,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": usage,
        }
        if not b.get("stream"):
            await self.send_json(200, message)
            return
        events: list[bytes] = []

        def ev(obj: dict[str, Any]) -> None:
            events.append(b"event: " + obj["type"].encode() + b"\ndata: " + _json(obj) + b"\n\n")

        ev(
            {
                "type": "message_start",
                "message": {
                    **message,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {**usage, "output_tokens": 1},
                },
            }
        )
        ev({"type": "ping"})
        for idx, blk in enumerate(blocks):
            if blk["type"] == "thinking":
                ev(
                    {
                        "type": "content_block_start",
                        "index": idx,
                        "content_block": {"type": "thinking", "thinking": "", "signature": ""},
                    }
                )
                for piece in self.pieces(blk["thinking"]):
                    ev(
                        {
                            "type": "content_block_delta",
                            "index": idx,
                            "delta": {"type": "thinking_delta", "thinking": piece},
                        }
                    )
                ev(
                    {
                        "type": "content_block_delta",
                        "index": idx,
                        "delta": {"type": "signature_delta", "signature": blk["signature"]},
                    }
                )
            elif blk["type"] == "text":
                ev(
                    {
                        "type": "content_block_start",
                        "index": idx,
                        "content_block": {"type": "text", "text": ""},
                    }
                )
                for piece in self.pieces(blk["text"]):
                    ev(
                        {
                            "type": "content_block_delta",
                            "index": idx,
                            "delta": {"type": "text_delta", "text": piece},
                        }
                    )
            else:
                ev(
                    {
                        "type": "content_block_start",
                        "index": idx,
                        "content_block": {**blk, "input": {}},
                    }
                )
                args = _json(blk["input"]).decode()
                step = max(1, len(args) // 3)
                ev(
                    {
                        "type": "content_block_delta",
                        "index": idx,
                        "delta": {"type": "input_json_delta", "partial_json": ""},
                    }
                )
                for j in range(0, len(args), step):
                    ev(
                        {
                            "type": "content_block_delta",
                            "index": idx,
                            "delta": {
                                "type": "input_json_delta",
                                "partial_json": args[j : j + step],
                            },
                        }
                    )
            ev({"type": "content_block_stop", "index": idx})
            if idx == 0 and len(blocks) > 1:
                ev({"type": "ping"})
        ev(
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": {
                    "input_tokens": input_tokens,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 0,
                    "output_tokens": output_tokens,
                },
            }
        )
        ev({"type": "message_stop"})
        await self.send_sse(events)


# ---------------------------------------------------------------------- helpers
def _accepts_gzip(value: str) -> bool:
    for part in value.lower().split(","):
        name, _, params = part.strip().partition(";")
        if name.strip() in ("gzip", "*"):
            q = params.strip()
            if q.startswith("q="):
                try:
                    return float(q[2:]) > 0
                except ValueError:
                    return True
            return True
    return False


def _float_header(headers: dict[str, str], name: str, default: float) -> float:
    value = headers.get(name)
    return float(value) if value else default


def _last_text(messages: list[Any]) -> str:
    for m in reversed(messages):
        if not isinstance(m, dict):
            continue
        content = m.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            texts = [c.get("text", "") for c in content if isinstance(c, dict) and "text" in c]
            if texts:
                return " ".join(str(t) for t in texts)
    return ""


def _pick_openai_tool(body: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    tools = body.get("tools") or []
    choice = body.get("tool_choice")
    if not tools or choice == "none":
        return None
    wanted = None
    if isinstance(choice, dict):
        wanted = (choice.get("function") or {}).get("name")
    chosen = None
    for t in tools:
        fn = t.get("function") if isinstance(t, dict) else None
        if not isinstance(fn, dict):
            continue
        if wanted is None or fn.get("name") == wanted:
            chosen = fn
            break
    if chosen is None:
        return None
    seed = request_hash("args", body)
    return str(chosen.get("name")), _args_for_schema(chosen.get("parameters"), seed)


def _args_for_schema(schema: Any, seed: str) -> dict[str, Any]:
    """JSON arguments for a tool call that fit the tool's (simple) JSON schema."""
    props = (schema or {}).get("properties") if isinstance(schema, dict) else None
    if not isinstance(props, dict) or not props:
        return {"query": f"q-{seed}"}
    out: dict[str, Any] = {}
    for i, (name, spec) in enumerate(props.items()):
        spec = spec if isinstance(spec, dict) else {}
        typ = spec.get("type")
        if isinstance(typ, list):
            typ = next((t for t in typ if t != "null"), "string")
        if spec.get("enum"):
            out[name] = spec["enum"][0]
        elif typ in ("integer",):
            out[name] = int(seed[:4], 16) % 100 + i
        elif typ == "number":
            out[name] = round(int(seed[:4], 16) / 100, 2)
        elif typ == "boolean":
            out[name] = True
        elif typ == "array":
            out[name] = []
        elif typ == "object":
            out[name] = {}
        else:
            out[name] = f"{name}-{seed}"
    return out


def _logprobs(tokens: list[str]) -> dict[str, Any]:
    return {
        "content": [
            {"token": t, "logprob": -0.01 * (i + 1), "bytes": list(t.encode()), "top_logprobs": []}
            for i, t in enumerate(tokens)
        ],
        "refusal": None,
    }


def _vector(model: str, item: Any, dims: int) -> list[float]:
    seed = hashlib.sha256(_json([model, item])).digest()
    out: list[float] = []
    counter = 0
    while len(out) < dims:
        block = hashlib.sha256(seed + counter.to_bytes(4, "little")).digest()
        counter += 1
        for j in range(0, len(block), 2):
            if len(out) == dims:
                break
            raw = int.from_bytes(block[j : j + 2], "little")
            # float32-exact values so base64 and float encodings decode to the same numbers
            out.append(struct.unpack("<f", struct.pack("<f", raw / 32768.0 - 1.0))[0])
    return out


def create_fake_upstream(**knobs: Any) -> FakeUpstream:
    """A fresh fake upstream; keyword arguments set knobs (``latency_ms=50`` …)."""
    return FakeUpstream(**knobs)
