"""A simulated Amazon Bedrock runtime (``https://bedrock-runtime.{region}.amazonaws.com``).

Routes (the model id is one percent-encoded path segment, ``:`` → ``%3A``, ARNs' ``/`` → ``%2F``):

* ``POST /model/{modelId}/converse`` - ``output.message.content`` (``text`` or ``toolUse``
  blocks), ``stopReason``, ``usage``, ``metrics.latencyMs`` (unique per call).
  ``inferenceConfig.maxTokens`` truncates (``max_tokens``); ``toolConfig`` → a ``toolUse`` block.
* ``POST /model/{modelId}/converse-stream`` - ``application/vnd.amazon.eventstream`` frames:
  ``messageStart``, ``contentBlockStart`` (tool use), ``contentBlockDelta`` …,
  ``contentBlockStop``, ``messageStop``, ``metadata`` (usage, metrics); every payload carries
  AWS's random-length ``p`` padding. In-band error (``error_after``): an exception frame
  ``modelStreamErrorException``.
* ``POST /model/{modelId}/invoke`` - the model's native body: Anthropic Messages
  (``anthropic.*`` ids, ``anthropic_version: bedrock-2023-05-31``), Titan embeddings
  (``amazon.titan-embed*``: ``embedding``, ``inputTextTokenCount``), or a Llama-style
  ``generation`` for the others; token counts in ``X-Amzn-Bedrock-*`` headers.
* ``POST /model/{modelId}/invoke-with-response-stream`` - event-stream ``chunk`` frames whose
  payload is ``{"bytes": <base64 of one native stream chunk>}`` (Anthropic's stream events, the
  last with ``amazon-bedrock-invocationMetrics``).

Auth: SigV4 (service ``bedrock``, region ``region``) checked by ``tests/fake_providers/sigv4.py``
against ``credentials`` (access key id → secret, session token), or ``Authorization: Bearer``
with a key in ``api_keys``. Errors: ``{"message": …}`` with ``x-amzn-ErrorType``.
"""

from __future__ import annotations

import base64
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import unquote

from llm_cache.providers.eventstream import CONTENT_TYPE, EventStreamMessage
from tests.fake_providers._base import (
    Call,
    FakeProvider,
    Headers,
    dumps,
    last_text,
    pieces,
    tokens,
    vector,
)
from tests.fake_providers.sigv4 import Credentials, SigV4Error, verify_sigv4

__all__ = ["TEST_CREDENTIALS", "BedrockFake", "create_bedrock_fake"]

_ROUTE = re.compile(
    r"^/model/([^/]+)/(converse|converse-stream|invoke|invoke-with-response-stream)$"
)
#: Access key id → credentials the fake accepts by default.
TEST_CREDENTIALS = {
    "AKIDFAKECLIENT000001": Credentials("client-secret-key"),
    "AKIDFAKEPROXY0000001": Credentials("proxy-secret-key"),
    "ASIAFAKETEMPORARY001": Credentials("temp-secret-key", "temp-session-token"),
}
ERROR_TYPES = {
    400: "ValidationException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    408: "ModelTimeoutException",
    424: "ModelErrorException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
}
#: Request headers that change an answer (guardrails, trace, latency tier, accept).
HASHED_HEADERS = (
    "accept",
    "x-amzn-bedrock-accept",
    "x-amzn-bedrock-trace",
    "x-amzn-bedrock-guardrailidentifier",
    "x-amzn-bedrock-guardrailversion",
    "x-amzn-bedrock-performanceconfig-latency",
    "x-amzn-bedrock-service-tier",
)


class BedrockCall(Call):
    ignored_fields: ClassVar[frozenset[str]] = frozenset()
    hashed_headers: ClassVar[tuple[str, ...]] = HASHED_HEADERS
    compresses: ClassVar[bool] = False
    request_id_header: ClassVar[bytes | None] = b"x-amzn-requestid"

    fake: BedrockFake

    def request_id(self) -> str:
        return str(uuid.UUID(int=(self.serial << 64) | 0xFA4E))

    def error_body(self, status: int, message: str) -> Any:
        return {"message": message}

    def error_headers(self, status: int) -> Headers:
        etype = getattr(self, "error_type", None) or ERROR_TYPES.get(
            status, "InternalServerException"
        )
        out = [
            (
                b"x-amzn-errortype",
                f"{etype}:http://internal.amazon.com/coral/com.amazon.bedrock/".encode(),
            )
        ]
        return out + super().error_headers(status)

    async def fail(self, status: int, message: str, error_type: str | None = None) -> None:
        self.error_type = error_type
        await self.send_error(status, message)

    def padding(self) -> str:
        """AWS's ``p`` field: random-length filler that hides the payload's true size."""
        n = 1 + (self.serial * 7 + len(self.fake.requests)) % 20
        return "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"[:n]

    async def route(self) -> None:
        m = _ROUTE.match(self.rec.raw_path)
        if m is None:
            await self.fail(
                404, "The requested resource was not found", "UnknownOperationException"
            )
            return
        self.model = unquote(m.group(1))
        self.op = m.group(2)
        streaming = self.op.endswith("-stream")
        kind = self.op.removesuffix("-stream").removesuffix("-with-response")
        self.route_key = [kind, self.model]
        if self.method != "POST":
            await self.fail(405, "Method not allowed")
            return
        if not await self.authenticate():
            return
        if await self.simulated_error():
            return
        if self.bad_json or not isinstance(self.body, dict):
            await self.fail(
                400, "Malformed input request, please reformat your input and try again."
            )
            return
        if self.model.startswith("missing"):
            await self.fail(404, "The provided model identifier is invalid.")
            return
        if kind == "converse":
            await self.converse(streaming)
        else:
            await self.invoke(streaming)

    async def authenticate(self) -> bool:
        auth = self.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            if auth[7:] in self.fake.api_keys:
                self.identity = "bearer"
                return True
            await self.fail(
                403,
                "Invalid API Key format: Must start with pre-defined prefix",
                "UnrecognizedClientException",
            )
            return False
        if not auth:
            await self.fail(
                403, "Missing Authentication Token", "MissingAuthenticationTokenException"
            )
            return False
        try:
            self.identity = verify_sigv4(
                method=self.method,
                raw_path=self.rec.raw_path,
                query="&".join(f"{k}={v}" for k, v in sorted(self.query.items())),
                headers=self.headers,
                body=self.rec.raw_body,
                credentials=self.fake.credentials,
                region=self.fake.region,
                service="bedrock",
            )
        except SigV4Error as exc:
            await self.fail(403, exc.message, exc.code)
            return False
        self.fake.identities.append(self.identity)
        return True

    # ------------------------------------------------------------------ converse
    async def converse(self, streaming: bool) -> None:
        b = self.body
        messages = b.get("messages")
        if not isinstance(messages, list) or not messages:
            await self.fail(400, "A conversation must start with a user message.")
            return
        config = b.get("inferenceConfig") or {}
        max_tokens = config.get("maxTokens")
        text, cut = self.text("converse", last_text(messages), max_tokens)
        tool = None
        for t in (b.get("toolConfig") or {}).get("tools") or []:
            spec = (t or {}).get("toolSpec") or {}
            props = (((spec.get("inputSchema") or {}).get("json")) or {}).get("properties") or {}
            args = {n: f"{n}-{self.hash('args')}" for n in props} or {"query": self.hash("args")}
            tool = {
                "toolUseId": f"tooluse_{self.hash('tooluse')}",
                "name": spec.get("name"),
                "input": args,
            }
            break
        content: list[dict[str, Any]] = [{"text": text}]
        if tool is not None:
            content = [
                {"text": f"I will call {tool['name']} [h={self.hash('plan')}]."},
                {"toolUse": tool},
            ]
        stop = "tool_use" if tool else ("max_tokens" if cut else "end_turn")
        in_tokens = tokens(dumps([messages, b.get("system"), b.get("toolConfig")]))
        out_tokens = tokens(dumps(content))
        usage = {
            "inputTokens": in_tokens,
            "outputTokens": out_tokens,
            "totalTokens": in_tokens + out_tokens,
        }
        metrics = {"latencyMs": 100 + self.serial}
        if not streaming:
            await self.send_json(
                200,
                {
                    "output": {"message": {"role": "assistant", "content": content}},
                    "stopReason": stop,
                    "usage": usage,
                    "metrics": metrics,
                },
            )
            return
        frames: list[bytes] = []

        def ev(event_type: str, payload: dict[str, Any]) -> None:
            payload = {**payload, "p": self.padding()}
            frames.append(EventStreamMessage.for_event(event_type, dumps(payload)).encode())

        ev("messageStart", {"role": "assistant"})
        for i, block in enumerate(content):
            if "text" in block:
                for piece in pieces(block["text"]):
                    ev("contentBlockDelta", {"contentBlockIndex": i, "delta": {"text": piece}})
            else:
                use = block["toolUse"]
                start = {"toolUse": {"toolUseId": use["toolUseId"], "name": use["name"]}}
                ev("contentBlockStart", {"contentBlockIndex": i, "start": start})
                args = dumps(use["input"]).decode()
                for j in range(0, len(args), 10):
                    delta = {"toolUse": {"input": args[j : j + 10]}}
                    ev("contentBlockDelta", {"contentBlockIndex": i, "delta": delta})
            ev("contentBlockStop", {"contentBlockIndex": i})
        ev("messageStop", {"stopReason": stop})
        ev("metadata", {"usage": usage, "metrics": metrics})
        error = EventStreamMessage.for_exception(
            "modelStreamErrorException",
            dumps({"message": "The model stream failed.", "originalStatusCode": 500}),
        ).encode()
        await self.send_stream(CONTENT_TYPE, frames, error)

    # ------------------------------------------------------------------ invoke
    async def invoke(self, streaming: bool) -> None:
        if "titan-embed" in self.model or "cohere.embed" in self.model:
            if streaming:
                await self.fail(400, "The model is unsupported for streaming.")
                return
            text = str(self.body.get("inputText", ""))
            dims = int(self.body.get("dimensions") or 8)
            await self.send_native(
                {
                    "embedding": vector([self.model, self.body], dims),
                    "inputTextTokenCount": tokens(text),
                },
                tokens(text),
                0,
            )
            return
        if "anthropic." in self.model:
            await self.invoke_anthropic(streaming)
            return
        prompt = self.body.get("prompt")
        if not isinstance(prompt, str):
            await self.fail(400, "Malformed input request: #: required key [prompt] not found")
            return
        text, cut = self.text("invoke", prompt, self.body.get("max_gen_len"))
        in_tokens, out_tokens = tokens(prompt), tokens(text)
        stop = "length" if cut else "stop"
        if not streaming:
            await self.send_native(
                {
                    "generation": text,
                    "prompt_token_count": in_tokens,
                    "generation_token_count": out_tokens,
                    "stop_reason": stop,
                },
                in_tokens,
                out_tokens,
            )
            return
        chunks: list[dict[str, Any]] = []
        parts = pieces(text)
        for i, piece in enumerate(parts):
            last = i == len(parts) - 1
            chunk: dict[str, Any] = {
                "generation": piece,
                "prompt_token_count": in_tokens if i == 0 else None,
                "generation_token_count": i + 1,
                "stop_reason": stop if last else None,
            }
            if last:
                chunk["amazon-bedrock-invocationMetrics"] = self.invocation_metrics(
                    in_tokens, out_tokens
                )
            chunks.append(chunk)
        await self.send_chunks(chunks)

    async def invoke_anthropic(self, streaming: bool) -> None:
        b = self.body
        if b.get("anthropic_version") != "bedrock-2023-05-31":
            await self.fail(
                400, "Malformed input request: #: required key [anthropic_version] not found"
            )
            return
        messages = b.get("messages")
        if (
            not isinstance(messages, list)
            or not messages
            or not isinstance(b.get("max_tokens"), int)
        ):
            await self.fail(
                400, "Malformed input request: #: required key [messages, max_tokens] not found"
            )
            return
        text, cut = self.text("invoke", last_text(messages), b["max_tokens"])
        in_tokens, out_tokens = tokens(dumps(messages)), tokens(text)
        stop = "max_tokens" if cut else "end_turn"
        message = {
            "id": f"msg_bdrk_{self.serial:06d}{self.hash('id')}",
            "type": "message",
            "role": "assistant",
            "model": "claude-fake",
            "content": [{"type": "text", "text": text}],
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": {"input_tokens": in_tokens, "output_tokens": out_tokens},
        }
        if not streaming:
            await self.send_native(message, in_tokens, out_tokens)
            return
        start = {
            **message,
            "content": [],
            "stop_reason": None,
            "usage": {"input_tokens": in_tokens, "output_tokens": 1},
        }
        chunks: list[dict[str, Any]] = [
            {"type": "message_start", "message": start},
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ]
        for piece in pieces(text):
            chunks.append(
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": piece},
                }
            )
        chunks.append({"type": "content_block_stop", "index": 0})
        chunks.append(
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": None},
                "usage": {"output_tokens": out_tokens},
            }
        )
        chunks.append(
            {
                "type": "message_stop",
                "amazon-bedrock-invocationMetrics": self.invocation_metrics(in_tokens, out_tokens),
            }
        )
        await self.send_chunks(chunks)

    def invocation_metrics(self, in_tokens: int, out_tokens: int) -> dict[str, int]:
        return {
            "inputTokenCount": in_tokens,
            "outputTokenCount": out_tokens,
            "invocationLatency": 200 + self.serial,
            "firstByteLatency": 50 + self.serial,
        }

    async def send_native(self, obj: Any, in_tokens: int, out_tokens: int) -> None:
        await self.send_json(
            200,
            obj,
            [
                (b"x-amzn-bedrock-input-token-count", str(in_tokens).encode()),
                (b"x-amzn-bedrock-output-token-count", str(out_tokens).encode()),
                (b"x-amzn-bedrock-invocation-latency", str(200 + self.serial).encode()),
            ],
        )

    async def send_chunks(self, chunks: list[dict[str, Any]]) -> None:
        frames = [
            EventStreamMessage.for_event(
                "chunk", dumps({"bytes": base64.b64encode(dumps(c)).decode(), "p": self.padding()})
            ).encode()
            for c in chunks
        ]
        error = EventStreamMessage.for_exception(
            "modelStreamErrorException",
            dumps({"message": "The model stream failed.", "originalStatusCode": 500}),
        ).encode()
        await self.send_stream(
            CONTENT_TYPE, frames, error, [(b"x-amzn-bedrock-content-type", b"application/json")]
        )


@dataclass
class BedrockFake(FakeProvider):
    """Knobs of the base fake plus the AWS identity it accepts."""

    region: str = "us-east-1"
    credentials: dict[str, Credentials] = field(default_factory=lambda: dict(TEST_CREDENTIALS))
    api_keys: set[str] = field(default_factory=lambda: {"bedrock-api-key-test"})
    #: Access key ids of the SigV4-verified requests, in order.
    identities: list[str] = field(default_factory=list)

    call_class = BedrockCall

    def reset(self) -> None:
        super().reset()
        self.identities.clear()


def create_bedrock_fake(**knobs: Any) -> BedrockFake:
    return BedrockFake(**knobs)
