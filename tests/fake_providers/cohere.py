"""A simulated Cohere API v2 (``https://api.cohere.com``).

Routes:

* ``POST /v2/chat`` - JSON (``id``, ``finish_reason``, ``message`` with ``content`` parts,
  ``usage`` with ``billed_units`` and ``tokens``), or with ``"stream": true`` typed SSE events
  (``event: <type>`` + ``data: {"type": <type>, …}``): ``message-start``, ``content-start``,
  ``content-delta`` …, ``content-end``, ``message-end`` (finish reason and usage), then
  ``data: [DONE]``. ``max_tokens`` truncates (``MAX_TOKENS``); ``tools`` → ``tool-plan-delta``,
  ``tool-call-start/-delta/-end`` and ``finish_reason: TOOL_CALL``. In-band error
  (``error_after``): a ``message-end`` whose ``finish_reason`` is ``ERROR``.
* ``POST /v2/embed`` - ``embeddings`` by type (``float``, ``int8``, ``uint8``, ``binary``,
  ``ubinary``, ``base64``), ``texts``, ``meta``, ``response_type: embeddings_by_type``.
* ``POST /v2/rerank`` - ``results`` (``index``, ``relevance_score``) best first, ``top_n``.

Auth: ``Authorization: Bearer …`` (401 without). Errors: ``{"id": …, "message": …}``.
"""

from __future__ import annotations

import base64
import struct
import uuid
from typing import Any, ClassVar

from tests.fake_providers._base import (
    Call,
    FakeProvider,
    dumps,
    fingerprint,
    last_text,
    pieces,
    tokens,
    vector,
)

__all__ = ["CohereFake", "create_cohere_fake"]

_META = {"api_version": {"version": "2"}}


class CohereCall(Call):
    request_id_header: ClassVar[bytes | None] = b"x-trace-id"

    def error_body(self, status: int, message: str) -> Any:
        return {"id": str(uuid.UUID(int=self.serial)), "message": message}

    def new_id(self) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"fake-{self.serial}-{self.hash('id')}"))

    async def route(self) -> None:
        path = self.path.rstrip("/")
        self.route_key = path
        handlers = {"/v2/chat": self.chat, "/v2/embed": self.embed, "/v2/rerank": self.rerank}
        handler = handlers.get(path)
        if handler is None:
            await self.send_error(404, f"path {path} not found")
            return
        if self.method != "POST":
            await self.send_error(405, "method not allowed")
            return
        auth = self.headers.get("authorization", "")
        if not auth.lower().startswith("bearer ") or len(auth) <= 7:
            await self.send_error(401, "no api key supplied")
            return
        if await self.simulated_error():
            return
        if self.bad_json or not isinstance(self.body, dict):
            await self.send_error(400, "invalid request: body must be valid JSON")
            return
        if not self.body.get("model"):
            await self.send_error(400, "invalid request: model must be specified")
            return
        await handler()

    # ------------------------------------------------------------------ chat
    async def chat(self) -> None:
        b = self.body
        messages = b.get("messages")
        if not isinstance(messages, list) or not messages:
            await self.send_error(400, "invalid request: messages cannot be empty")
            return
        max_tokens = b.get("max_tokens")
        text, cut = self.text("chat", last_text(messages), max_tokens)
        tool_calls: list[dict[str, Any]] = []
        tool_plan = ""
        for tool in b.get("tools") or []:
            fn = (tool or {}).get("function") or {}
            props = (fn.get("parameters") or {}).get("properties") or {}
            args = {n: f"{n}-{self.hash('args')}" for n in props} or {"query": self.hash("args")}
            tool_plan = f"I will call {fn.get('name')} [h={self.hash('plan')}]."
            tool_calls.append(
                {
                    "id": f"{fn.get('name')}_{self.hash('call')}",
                    "type": "function",
                    "function": {"name": fn.get("name"), "arguments": dumps(args).decode()},
                }
            )
            break
        finish = "TOOL_CALL" if tool_calls else ("MAX_TOKENS" if cut else "COMPLETE")
        in_tokens = tokens(dumps([messages, b.get("tools")]))
        out_tokens = tokens(tool_plan + "".join(c["function"]["arguments"] for c in tool_calls))
        if not tool_calls:
            out_tokens = tokens(text)
        usage = {
            "billed_units": {"input_tokens": in_tokens, "output_tokens": out_tokens},
            "tokens": {"input_tokens": in_tokens + 200, "output_tokens": out_tokens + 2},
        }
        message: dict[str, Any] = {"role": "assistant"}
        if tool_calls:
            message["tool_plan"] = tool_plan
            message["tool_calls"] = tool_calls
        else:
            message["content"] = [{"type": "text", "text": text}]
        mid = self.new_id()
        if not b.get("stream"):
            await self.send_json(
                200, {"id": mid, "message": message, "finish_reason": finish, "usage": usage}
            )
            return
        events: list[bytes] = []

        def ev(obj: dict[str, Any]) -> None:
            events.append(b"event: " + obj["type"].encode() + b"\ndata: " + dumps(obj) + b"\n\n")

        start = {
            "role": "assistant",
            "content": [],
            "tool_plan": "",
            "tool_calls": [],
            "citations": [],
        }
        ev({"id": mid, "type": "message-start", "delta": {"message": start}})
        if tool_calls:
            for piece in pieces(tool_plan):
                ev({"type": "tool-plan-delta", "delta": {"message": {"tool_plan": piece}}})
            for i, call in enumerate(tool_calls):
                head = {**call, "function": {**call["function"], "arguments": ""}}
                ev(
                    {
                        "type": "tool-call-start",
                        "index": i,
                        "delta": {"message": {"tool_calls": head}},
                    }
                )
                args = call["function"]["arguments"]
                for j in range(0, len(args), 8):
                    delta = {"tool_calls": {"function": {"arguments": args[j : j + 8]}}}
                    ev({"type": "tool-call-delta", "index": i, "delta": {"message": delta}})
                ev({"type": "tool-call-end", "index": i})
        else:
            block = {"content": {"type": "text", "text": ""}}
            ev({"type": "content-start", "index": 0, "delta": {"message": block}})
            for piece in pieces(text):
                delta = {"message": {"content": {"text": piece}}}
                ev({"type": "content-delta", "index": 0, "delta": delta})
            ev({"type": "content-end", "index": 0})
        ev({"type": "message-end", "delta": {"finish_reason": finish, "usage": usage}})
        events.append(b"data: [DONE]\n\n")
        failed = {"type": "message-end", "delta": {"finish_reason": "ERROR", "usage": usage}}
        error = b"event: message-end\ndata: " + dumps(failed) + b"\n\n"
        await self.send_stream("text/event-stream", events, error)

    # ------------------------------------------------------------------ embed
    async def embed(self) -> None:
        b = self.body
        texts = b.get("texts")
        inputs = b.get("inputs")
        if not isinstance(texts, list) and not isinstance(inputs, list):
            await self.send_error(
                400, "invalid request: one of texts, images or inputs is required"
            )
            return
        if b.get("input_type") is None:
            await self.send_error(400, "invalid request: input_type is required")
            return
        items: list[Any] = texts if isinstance(texts, list) else inputs
        dims = int(b.get("output_dimension") or 8)
        floats = [
            vector([b["model"], b.get("input_type"), b.get("truncate"), item], dims)
            for item in items
        ]
        wanted = b.get("embedding_types") or ["float"]
        embeddings: dict[str, Any] = {}
        for kind in wanted:
            if kind == "float":
                embeddings["float"] = floats
            elif kind == "int8":
                embeddings["int8"] = [[round(x * 127) for x in v] for v in floats]
            elif kind == "uint8":
                embeddings["uint8"] = [[round((x + 1) * 127.5) for x in v] for v in floats]
            elif kind in ("binary", "ubinary"):
                packed = [_pack_bits(v) for v in floats]
                embeddings[kind] = (
                    packed if kind == "ubinary" else [[p - 128 for p in row] for row in packed]
                )
            elif kind == "base64":
                embeddings["base64"] = [
                    base64.b64encode(struct.pack(f"<{len(v)}f", *v)).decode() for v in floats
                ]
            else:
                await self.send_error(400, f"invalid request: embedding type {kind!r}")
                return
        body: dict[str, Any] = {
            "id": self.new_id(),
            "embeddings": embeddings,
            "meta": {
                **_META,
                "billed_units": {"input_tokens": sum(tokens(dumps(i)) for i in items)},
            },
            "response_type": "embeddings_by_type",
        }
        if isinstance(texts, list):
            body["texts"] = texts
        await self.send_json(200, body)

    # ------------------------------------------------------------------ rerank
    async def rerank(self) -> None:
        b = self.body
        docs = b.get("documents")
        if not isinstance(b.get("query"), str) or not isinstance(docs, list):
            await self.send_error(400, "invalid request: query and documents are required")
            return
        scored = []
        for i, doc in enumerate(docs):
            digest = int(fingerprint(b["model"], b["query"], doc), 16)
            scored.append({"index": i, "relevance_score": round(digest / 0xFFFFFFFF, 8)})
        scored.sort(key=lambda r: -r["relevance_score"])
        top_n = b.get("top_n")
        if isinstance(top_n, int):
            scored = scored[:top_n]
        await self.send_json(
            200,
            {
                "id": self.new_id(),
                "results": scored,
                "meta": {**_META, "billed_units": {"search_units": 1}},
            },
        )


def _pack_bits(values: list[float]) -> list[int]:
    out = []
    for i in range(0, len(values), 8):
        byte = 0
        for bit, x in enumerate(values[i : i + 8]):
            if x > 0:
                byte |= 1 << (7 - bit)
        out.append(byte)
    return out


class CohereFake(FakeProvider):
    call_class = CohereCall


def create_cohere_fake(**knobs: Any) -> CohereFake:
    return CohereFake(**knobs)
