"""A simulated remote embeddings provider speaking OpenAI's ``POST /v1/embeddings`` format.

Its vectors come from a real model (the local WordLlama weights), so paraphrases really are
close, as with a hosted embedding model. It checks the bearer token and records each call.
Lifespan events are accepted so uvicorn can run it.
"""

from __future__ import annotations

from typing import Any

import orjson

from llm_cache.semantic.embedders import WordLlamaEmbedder

API_KEY = "sk-embed-test"


class EmbeddingUpstream:
    def __init__(self) -> None:
        self.model = WordLlamaEmbedder()
        self.calls: list[dict[str, Any]] = []
        self.fail_with: int | None = None

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
        if scope["path"] != "/v1/embeddings" or scope["method"] != "POST":
            return await self._send(send, 404, {"error": {"message": "not found"}})
        if headers.get("authorization") != f"Bearer {API_KEY}":
            return await self._send(send, 401, {"error": {"message": "bad key"}})
        request = orjson.loads(body)
        self.calls.append(request)
        if self.fail_with:
            return await self._send(send, self.fail_with, {"error": {"message": "boom"}})
        texts = [request["input"]] if isinstance(request["input"], str) else request["input"]
        vectors = self.model.embed_sync(texts)
        data = [
            {"object": "embedding", "index": i, "embedding": [float(x) for x in v]}
            for i, v in enumerate(vectors)
        ]
        await self._send(send, 200, {"object": "list", "data": data, "model": request["model"]})

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
