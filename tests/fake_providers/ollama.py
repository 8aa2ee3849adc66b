"""A simulated Ollama server (native API, ``http://127.0.0.1:11434``).

Routes:

* ``POST /api/chat`` - streams NDJSON (``application/x-ndjson``) unless ``"stream": false``
  (``stream`` absent means true): one record per delta with ``"done": false``, then a final
  record with ``"done": true``, ``done_reason`` and the counters (``total_duration``,
  ``prompt_eval_count``, ``eval_count`` …). ``options.num_predict`` truncates
  (``done_reason: length``); ``format`` (``"json"`` or a schema) answers JSON text; ``tools`` →
  ``message.tool_calls``; ``think`` → ``message.thinking``.
* ``POST /api/generate`` - the same with ``response`` instead of ``message`` and a ``context``
  list in the final record.
* ``POST /api/embed`` → ``{"model", "embeddings": [[…]], …}`` (``input`` a string or a list);
  ``POST /api/embeddings`` (legacy) → ``{"embedding": […]}``.
* ``GET /api/tags``, ``GET /api/version`` (uncached paths).

Errors: ``{"error": "…"}``; a model named ``missing…`` is 404 ``model "…" not found``.
In-band stream error (``error_after``): a ``{"error": "…"}`` record. No auth (a bearer token
is accepted and ignored). Durations are unique per call (the serial is in them), so a hit
shows; texts hash the body minus ``stream``.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

from tests.fake_providers._base import Call, FakeProvider, dumps, last_text, pieces, tokens, vector

__all__ = ["OllamaFake", "create_ollama_fake"]


class OllamaCall(Call):
    compresses: ClassVar[bool] = False
    request_id_header: ClassVar[bytes | None] = None

    def error_body(self, status: int, message: str) -> Any:
        return {"error": message}

    async def route(self) -> None:
        path = self.path.rstrip("/")
        self.route_key = path
        if self.method == "GET" and path in ("/api/tags", "/api/version"):
            if path == "/api/version":
                await self.send_json(200, {"version": "0.12.0"})
            else:
                await self.send_json(200, {"models": [{"name": "llama3.2:latest"}]})
            return
        handlers = {
            "/api/chat": self.chat,
            "/api/generate": self.generate,
            "/api/embed": self.embed,
            "/api/embeddings": self.embeddings,
        }
        handler = handlers.get(path)
        if handler is None:
            await self.send_error(404, "404 page not found")
            return
        if self.method != "POST":
            await self.send_error(405, "405 method not allowed")
            return
        if await self.simulated_error():
            return
        if self.bad_json or not isinstance(self.body, dict):
            await self.send_error(400, "invalid character 'n' looking for beginning of value")
            return
        model = self.body.get("model")
        if not model:
            await self.send_error(400, "model is required")
            return
        if str(model).startswith("missing"):
            await self.send_error(404, f'model "{model}" not found, try pulling it first')
            return
        self.model = str(model)
        await handler()

    # ------------------------------------------------------------------ shared
    def created_at(self) -> str:
        now = time.time()
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{self.serial:09d}Z"

    def counters(self, prompt: int, output: int) -> dict[str, int]:
        base = 1_000_000 * self.serial
        return {
            "total_duration": base + 500_000 + output,
            "load_duration": base + 100_000,
            "prompt_eval_count": prompt,
            "prompt_eval_duration": base + 200_000,
            "eval_count": output,
            "eval_duration": base + 300_000,
        }

    def answer_text(self, kind: str, snippet: str) -> tuple[str, bool]:
        options = self.body.get("options") or {}
        limit = options.get("num_predict")
        text, cut = self.text(
            kind, snippet, limit if isinstance(limit, int) and limit > 0 else None
        )
        if self.body.get("format") and not cut:
            text = dumps({"answer": text}).decode()
        return text, cut

    def streaming(self) -> bool:
        return self.body.get("stream", True) is not False

    async def send_records(self, records: list[dict[str, Any]], final: dict[str, Any]) -> None:
        frames = [dumps(r) + b"\n" for r in [*records, final]]
        error = dumps({"error": "an error was encountered while running the model"}) + b"\n"
        await self.send_stream("application/x-ndjson", frames, error)

    # ------------------------------------------------------------------ chat / generate
    async def chat(self) -> None:
        messages = self.body.get("messages")
        if messages is not None and not isinstance(messages, list):
            await self.send_error(400, "messages must be an array")
            return
        text, cut = self.answer_text("chat", last_text(messages or []))
        thinking = None
        if self.body.get("think"):
            thinking = f"Thinking about [h={self.hash('think')}] first."
        tool_calls = None
        for tool in self.body.get("tools") or []:
            fn = (tool or {}).get("function") or {}
            props = (fn.get("parameters") or {}).get("properties") or {}
            args = {n: f"{n}-{self.hash('args')}" for n in props} or {"query": self.hash("args")}
            tool_calls = [{"function": {"name": fn.get("name"), "arguments": args}}]
            text, cut = "", False
            break
        prompt = tokens(dumps([messages, self.body.get("tools")]))
        output = tokens(text) + (tokens(thinking) if thinking else 0)
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if thinking:
            message["thinking"] = thinking
        if tool_calls:
            message["tool_calls"] = tool_calls
        reason = "length" if cut else "stop"
        head = {"model": self.model, "created_at": self.created_at()}
        final = {**head, "done": True, "done_reason": reason, **self.counters(prompt, output)}
        if not self.streaming():
            await self.send_json(200, {**head, "message": message, **final})
            return
        records: list[dict[str, Any]] = []
        if thinking:
            for p in pieces(thinking):
                msg = {"role": "assistant", "content": "", "thinking": p}
                records.append({**head, "message": msg, "done": False})
        for p in pieces(text) if text else []:
            records.append({**head, "message": {"role": "assistant", "content": p}, "done": False})
        if tool_calls:
            msg = {"role": "assistant", "content": "", "tool_calls": tool_calls}
            records.append({**head, "message": msg, "done": False})
        final_message = {"role": "assistant", "content": ""}
        await self.send_records(records, {**head, "message": final_message, **final})

    async def generate(self) -> None:
        prompt_text = self.body.get("prompt") or ""
        head = {"model": self.model, "created_at": self.created_at()}
        if not prompt_text:  # Ollama loads the model and answers at once
            await self.send_json(200, {**head, "response": "", "done": True, "done_reason": "load"})
            return
        text, cut = self.answer_text("generate", str(prompt_text))
        prompt = tokens(str(prompt_text)) + 3
        context = [int(self.hash("ctx")[i : i + 2], 16) for i in range(0, 8, 2)]
        final = {
            **head,
            "done": True,
            "done_reason": "length" if cut else "stop",
            "context": context,
            **self.counters(prompt, tokens(text)),
        }
        if not self.streaming():
            await self.send_json(200, {**final, "response": text})
            return
        records = [{**head, "response": p, "done": False} for p in pieces(text)]
        await self.send_records(records, {**final, "response": ""})

    # ------------------------------------------------------------------ embeddings
    def _dims(self) -> int:
        dims = self.body.get("dimensions")
        return int(dims) if isinstance(dims, int) and dims > 0 else 8

    async def embed(self) -> None:
        items = self.body.get("input")
        if isinstance(items, str):
            items = [items]
        if not isinstance(items, list):
            await self.send_error(400, "invalid input type")
            return
        vectors = [vector([self.model, item], self._dims()) for item in items]
        counters = self.counters(sum(tokens(str(i)) for i in items), 0)
        await self.send_json(
            200,
            {
                "model": self.model,
                "embeddings": vectors,
                "total_duration": counters["total_duration"],
                "load_duration": counters["load_duration"],
                "prompt_eval_count": counters["prompt_eval_count"],
            },
        )

    async def embeddings(self) -> None:
        prompt = self.body.get("prompt")
        if not isinstance(prompt, str):
            await self.send_json(200, {"embedding": []})  # what Ollama answers without one
            return
        await self.send_json(200, {"embedding": vector([self.model, prompt], 8)})


class OllamaFake(FakeProvider):
    call_class = OllamaCall


def create_ollama_fake(**knobs: Any) -> OllamaFake:
    return OllamaFake(**knobs)
