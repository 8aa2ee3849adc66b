"""A simulated remote OpenAI-style provider with a real embeddings endpoint.

``POST /v1/embeddings`` answers vectors from a real model (the local WordLlama weights), so
paraphrases really are close, as with a hosted embedding model; ``POST /v1/chat/completions``
answers (JSON only) with a text that depends on the question, so a wrong hit shows. The bearer
token is checked on embeddings; calls are recorded. Lifespan events are accepted for uvicorn.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from llm_cache.semantic.embedders import WordLlamaEmbedder

API_KEY = "sk-embed-test"


class EmbeddingUpstream:
    def __init__(self) -> None:
        self.model = WordLlamaEmbedder()
        self.calls: list[dict[str, Any]] = []
        self.fail_with: int | None = None
        self.chats = 0
        self.delay = 0.0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        if scope["path"] == "/v1/chat/completions" and scope["method"] == "POST":
            return await self._chat(send, orjson.loads(body))
        if scope["path"] != "/v1/embeddings" or scope["method"] != "POST":
            return await self._send(send, 404, {"error": {"message": "not found"}})
        if headers.get("authorization") != f"Bearer {API_KEY}":
            return await self._send(send, 401, {"error": {"message": "bad key"}})
        request = orjson.loads(body)
        self.calls.append(request)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail_with:
            return await self._send(send, self.fail_with, {"error": {"message": "boom"}})
        texts = [request["input"]] if isinstance(request["input"], str) else request["input"]
        vectors = self.model.embed_sync(texts)
        data = [
            {"object": "embedding", "index": i, "embedding": [float(x) for x in v]}
            for i, v in enumerate(vectors)
        ]
        await self._send(send, 200, {"object": "list", "data": data, "model": request["model"]})

    async def _chat(self, send: Any, request: dict[str, Any]) -> None:
        self.chats += 1
        question = request["messages"][-1]["content"]
        message = {"role": "assistant", "content": f"answer #{self.chats} to {question}"}
        await self._send(
            send,
            200,
            {
                "id": f"chatcmpl-{self.chats}",
                "object": "chat.completion",
                "created": 1,
                "model": request["model"],
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10},
            },
        )

    @staticmethod
    async def _send(send: Any, status: int, payload: dict[str, Any]) -> None:
        data = orjson.dumps(payload)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": data})
