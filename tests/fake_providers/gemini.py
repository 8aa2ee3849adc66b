"""A simulated Google Gemini API (``generativelanguage.googleapis.com``).

Routes (``{v}`` is ``v1`` or ``v1beta``; the model is in the path, as ``models/{model}``):

* ``POST /{v}/models/{model}:generateContent`` - a ``GenerateContentResponse``
  (``candidates``, ``usageMetadata``, ``modelVersion``, ``responseId``). ``candidateCount``
  candidates; ``maxOutputTokens`` truncates (``finishReason: MAX_TOKENS``); a ``functionCall``
  part for the first function declaration when ``tools`` are given; ``responseMimeType:
  application/json`` answers JSON text.
* ``POST /{v}/models/{model}:streamGenerateContent?alt=sse`` - SSE, ``data: {chunk}\\r\\n\\r\\n``;
  every chunk shares the ``responseId``; the last carries ``finishReason`` and the full
  ``usageMetadata``. Without ``alt=sse`` the stream is a JSON array (``[{…}\\r\\n,{…}]``).
  In-band error (``error_after``): ``data: {"error": {…}}``.
* ``POST /{v}/models/{model}:embedContent`` → ``{"embedding": {"values": […]}}``;
  ``:batchEmbedContents`` → ``{"embeddings": [{"values": […]}, …]}`` (each request's ``model``
  must equal the path's).

Auth: ``x-goog-api-key`` header or ``?key=`` query (403 ``PERMISSION_DENIED`` without).
Errors: ``{"error": {"code", "message", "status"}}``. Answers hash the model, the API version and
the whole body (Gemini streams by path, so no body field is ignored).
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from tests.fake_providers._base import (
    Call,
    FakeProvider,
    dumps,
    pieces,
    tokens,
    vector,
)

__all__ = ["GeminiFake", "create_gemini_fake"]

_ROUTE = re.compile(r"^/(v1|v1beta)/models/([^/:]+):([A-Za-z]+)$")
STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


class GeminiCall(Call):
    ignored_fields: ClassVar[frozenset[str]] = frozenset()
    request_id_header: ClassVar[bytes | None] = None

    def error_body(self, status: int, message: str) -> Any:
        return {
            "error": {
                "code": status,
                "message": message,
                "status": STATUS_NAMES.get(status, "UNKNOWN"),
            }
        }

    async def route(self) -> None:
        m = _ROUTE.match(self.path)
        if m is None:
            await self.send_error(404, f"Method not found: {self.path}")
            return
        version, model, method = m.groups()
        self.model = model
        # Streamed or not, the same request gets the same answer (a cache may convert).
        kind = "generateContent" if method == "streamGenerateContent" else method
        self.route_key = [version, model, kind]
        handlers = {
            "generateContent": self.generate,
            "streamGenerateContent": self.generate,
            "embedContent": self.embed,
            "batchEmbedContents": self.batch_embed,
        }
        handler = handlers.get(method)
        if handler is None:
            await self.send_error(404, f"Method not found: {method}")
            return
        if self.method != "POST":
            await self.send_error(405, "Method not allowed")
            return
        if not (self.headers.get("x-goog-api-key") or self.query.get("key")):
            await self.send_error(
                403,
                "Method doesn't allow unregistered callers (callers without established "
                "identity). Please use API Key or other form of API consumer identity to call "
                "this API.",
            )
            return
        if await self.simulated_error():
            return
        if self.bad_json or not isinstance(self.body, dict):
            await self.send_error(400, "Invalid JSON payload received.")
            return
        self.streaming = method == "streamGenerateContent"
        await handler()

    # ------------------------------------------------------------------ generateContent
    async def generate(self) -> None:
        b = self.body
        contents = b.get("contents")
        if not isinstance(contents, list) or not contents:
            await self.send_error(
                400, "* GenerateContentRequest.contents: contents is not specified"
            )
            return
        config = b.get("generationConfig") or {}
        n = int(config.get("candidateCount") or 1)
        max_tokens = config.get("maxOutputTokens")
        snippet = _last_text(contents)
        call = _function_call(b.get("tools"), self.hash("args"))
        prompt_tokens = tokens(dumps([contents, b.get("systemInstruction"), b.get("tools")]))
        candidates: list[dict[str, Any]] = []
        out_tokens = 0
        for i in range(n):
            if call is not None:
                parts: list[dict[str, Any]] = [{"functionCall": call}]
                finish = "STOP"
                out_tokens += tokens(dumps(call))
            else:
                text, cut = self.text(f"gemini{i}", snippet, max_tokens)
                if config.get("responseMimeType") == "application/json":
                    text = dumps({"answer": text}).decode()
                parts = [{"text": text}]
                finish = "MAX_TOKENS" if cut else "STOP"
                out_tokens += tokens(text)
            candidates.append(
                {
                    "content": {"parts": parts, "role": "model"},
                    "finishReason": finish,
                    "index": i,
                    "avgLogprobs": -0.125,
                }
            )
        usage = {
            "promptTokenCount": prompt_tokens,
            "candidatesTokenCount": out_tokens,
            "totalTokenCount": prompt_tokens + out_tokens,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt_tokens}],
        }
        response_id = f"fake{self.serial:06d}{self.hash('id')}"
        if not self.streaming:
            await self.send_json(
                200,
                {
                    "candidates": candidates,
                    "usageMetadata": usage,
                    "modelVersion": self.model,
                    "responseId": response_id,
                },
            )
            return
        chunks: list[dict[str, Any]] = []
        for i, cand in enumerate(candidates):
            part = cand["content"]["parts"][0]
            texts = pieces(part["text"]) if "text" in part else [None]
            # Gemini sends a few words per chunk: group the deltas in threes.
            groups = [texts[j : j + 3] for j in range(0, len(texts), 3)]
            for g, group in enumerate(groups):
                last = g == len(groups) - 1
                piece: dict[str, Any] = (
                    {"text": "".join(t for t in group if t is not None)}
                    if group != [None]
                    else part
                )
                chunk_cand: dict[str, Any] = {
                    "content": {"parts": [piece], "role": "model"},
                    "index": i,
                }
                if last:
                    chunk_cand["finishReason"] = cand["finishReason"]
                chunks.append(
                    {
                        "candidates": [chunk_cand],
                        "usageMetadata": {
                            "promptTokenCount": prompt_tokens,
                            "totalTokenCount": prompt_tokens,
                        },
                        "modelVersion": self.model,
                        "responseId": response_id,
                    }
                )
        chunks[-1]["usageMetadata"] = usage
        error = {"error": self.error_body(500, "An internal error has occurred.")["error"]}
        if self.query.get("alt") == "sse":
            frames = [b"data: " + dumps(c) + b"\r\n\r\n" for c in chunks]
            await self.send_stream(
                "text/event-stream", frames, b"data: " + dumps(error) + b"\r\n\r\n"
            )
            return
        # Without alt=sse: a JSON array, streamed element by element.
        frames = [b"[" + dumps(chunks[0])]
        frames += [b"\r\n," + dumps(c) for c in chunks[1:]]
        frames.append(b"]")
        await self.send_stream("application/json; charset=UTF-8", frames, b"\r\n," + dumps(error))

    # ------------------------------------------------------------------ embeddings
    def _embedding(self, request: dict[str, Any]) -> dict[str, Any]:
        dims = int(request.get("outputDimensionality") or 8)
        seed = [self.model, request.get("content"), request.get("taskType"), request.get("title")]
        return {"values": vector(seed, dims)}

    async def embed(self) -> None:
        if not isinstance(self.body.get("content"), dict):
            await self.send_error(400, "* EmbedContentRequest.content: content is not specified")
            return
        await self.send_json(200, {"embedding": self._embedding(self.body)})

    async def batch_embed(self) -> None:
        requests = self.body.get("requests")
        if not isinstance(requests, list) or not requests:
            await self.send_error(400, "* BatchEmbedContentsRequest.requests: is not specified")
            return
        for i, r in enumerate(requests):
            if not isinstance(r, dict) or r.get("model") != f"models/{self.model}":
                await self.send_error(
                    400,
                    f"* BatchEmbedContentsRequest.requests[{i}].model: the model must be "
                    f"models/{self.model}",
                )
                return
        await self.send_json(200, {"embeddings": [self._embedding(r) for r in requests]})


def _last_text(contents: list[Any]) -> str:
    for c in reversed(contents):
        if isinstance(c, dict):
            texts = [
                str(p["text"]) for p in c.get("parts") or [] if isinstance(p, dict) and "text" in p
            ]
            if texts:
                return " ".join(texts)
    return ""


def _function_call(tools: Any, seed: str) -> dict[str, Any] | None:
    for tool in tools or []:
        for decl in (tool or {}).get("functionDeclarations") or []:
            props = ((decl.get("parameters") or {}).get("properties")) or {}
            args = {name: f"{name}-{seed}" for name in props} or {"query": f"q-{seed}"}
            return {"name": decl.get("name"), "args": args}
    return None


class GeminiFake(FakeProvider):
    call_class = GeminiCall


def create_gemini_fake(**knobs: Any) -> GeminiFake:
    return GeminiFake(**knobs)
