"""The OpenAI wire format (also every OpenAI-compatible upstream).

Conversions between a stream and a full response:

* ``/chat/completions``: both ways (role, content, refusal, tool calls, legacy function_call,
  any other delta field such as ``reasoning_content``, logprobs, ``n`` choices, usage and every
  top-level field of the chunks).
* ``/completions`` (legacy): both ways.
* ``/responses``: stream → full (the ``response`` of the final ``response.completed`` /
  ``response.incomplete`` event); full → stream is unsupported (``None``).
* ``/embeddings``: never streamed (``None`` both ways).

``stream_options`` stays in the key: a stored stream is replayed as it was recorded, so one
recorded without the usage chunk cannot answer ``include_usage: true``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from llm_cache.providers.base import ProviderSpec, RouteSpec
from llm_cache.providers.sse import DONE, SSEEvent

__all__ = ["PROVIDER", "OpenAIProvider"]

CHAT = "/chat/completions"
COMPLETIONS = "/completions"
EMBEDDINGS = "/embeddings"
RESPONSES = "/responses"

#: Per-chunk fields that do not belong to the merged response.
_CHUNK_ONLY = frozenset({"object", "choices", "usage", "obfuscation"})
_MESSAGE_CORE = ("role", "content", "refusal", "tool_calls", "function_call")


class OpenAIProvider(ProviderSpec):
    name = "openai"
    routes = (
        RouteSpec(CHAT, CHAT),
        RouteSpec(COMPLETIONS, COMPLETIONS),
        RouteSpec(EMBEDDINGS, EMBEDDINGS),
        RouteSpec(RESPONSES, RESPONSES),
    )
    mount = "/v1"
    base_url_setting = "openai_base_url"
    passthrough_prefixes = ("/",)
    #: ``OpenAI-Beta`` switches API behaviour (e.g. ``assistants=v2``), so it changes answers.
    key_headers = ("openai-beta",)

    def batch_items(self, endpoint: str, body: Mapping[str, Any]) -> list[Any] | None:
        """A list ``input`` of strings (or of token lists) is embedded item by item."""
        items = body.get("input") if endpoint == EMBEDDINGS else None
        if not isinstance(items, list) or not items:
            return None
        if all(isinstance(i, str) for i in items) or all(isinstance(i, list) for i in items):
            return items
        return None  # a list of token ids is one input, not a batch

    # ------------------------------------------------------------------ stream state
    def stream_finished(self, endpoint: str, events: list[SSEEvent]) -> bool:
        if not events:
            return False
        if endpoint == RESPONSES:
            finished = False
            for event in events:
                kind = _responses_type(event)
                if kind in ("error", "response.failed"):
                    return False
                if kind in ("response.completed", "response.incomplete"):
                    finished = True
            return finished
        if events[-1].data.strip() != "[DONE]":
            return False
        return not any(_is_error_event(e) for e in events[:-1])

    # ------------------------------------------------------------------ stream → full
    def events_to_response(self, endpoint: str, events: list[SSEEvent]) -> dict[str, Any] | None:
        if endpoint == RESPONSES:
            return _responses_final(events)
        if endpoint not in (CHAT, COMPLETIONS):
            return None
        chunks = _chunks(events)
        if chunks is None or not chunks:
            return None
        if endpoint == CHAT:
            return _merge_chat(chunks)
        return _merge_completions(chunks)

    # ------------------------------------------------------------------ full → stream
    def response_to_events(
        self, endpoint: str, response: dict[str, Any], request_body: dict[str, Any]
    ) -> list[SSEEvent] | None:
        if endpoint not in (CHAT, COMPLETIONS):
            return None
        choices = response.get("choices")
        if not isinstance(choices, list):
            return None
        options = request_body.get("stream_options")
        include_usage = (
            isinstance(options, dict)
            and options.get("include_usage") is True
            and response.get("usage") is not None
        )
        top = {k: v for k, v in response.items() if k not in _CHUNK_ONLY}
        if endpoint == CHAT:
            top["object"] = "chat.completion.chunk"
            bodies = _chat_chunk_choices(choices)
        else:
            top["object"] = response.get("object", "text_completion")
            bodies = _completion_chunk_choices(choices)
        events = []
        for choice in bodies:
            chunk = {**top, "choices": [choice]}
            if include_usage:
                chunk["usage"] = None
            events.append(SSEEvent.from_json(chunk))
        if include_usage:
            events.append(
                SSEEvent.from_json({**top, "choices": [], "usage": response.get("usage")})
            )
        events.append(DONE)
        return events


PROVIDER = OpenAIProvider()


# ---------------------------------------------------------------------- helpers
def _is_error_event(event: SSEEvent) -> bool:
    if event.event == "error":
        return True
    if '"error"' not in event.data:
        return False
    try:
        obj = orjson.loads(event.data)
    except orjson.JSONDecodeError:
        return False
    return isinstance(obj, dict) and obj.get("error") is not None


def _responses_type(event: SSEEvent) -> str | None:
    if event.event is not None:
        return event.event
    try:
        obj = orjson.loads(event.data)
    except orjson.JSONDecodeError:
        return None
    kind = obj.get("type") if isinstance(obj, dict) else None
    return kind if isinstance(kind, str) else None


def _responses_final(events: list[SSEEvent]) -> dict[str, Any] | None:
    for event in reversed(events):
        if event.event not in (None, "response.completed", "response.incomplete"):
            continue
        try:
            obj = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            continue
        if (
            isinstance(obj, dict)
            and obj.get("type") in ("response.completed", "response.incomplete")
            and isinstance(obj.get("response"), dict)
        ):
            response: dict[str, Any] = obj["response"]
            return response
    return None


def _chunks(events: list[SSEEvent]) -> list[dict[str, Any]] | None:
    """The JSON chunks of a chat/legacy stream; ``None`` when it carries an error."""
    chunks: list[dict[str, Any]] = []
    for event in events:
        data = event.data
        if not data or data.strip() == "[DONE]":
            continue
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(obj, dict) or obj.get("error") is not None or event.event == "error":
            return None
        chunks.append(obj)
    return chunks


def _merge_top(chunks: list[dict[str, Any]], obj_type: str) -> dict[str, Any]:
    top: dict[str, Any] = {}
    usage: Any = None
    for chunk in chunks:
        for key, value in chunk.items():
            if key in _CHUNK_ONLY:
                continue
            if value is not None or key not in top:
                top[key] = value
        if chunk.get("usage") is not None:
            usage = chunk["usage"]
    merged: dict[str, Any] = {
        "id": top.pop("id", None),
        "object": obj_type,
        "created": top.pop("created", None),
        "model": top.pop("model", None),
        "choices": [],
    }
    merged.update(top)
    if usage is not None or any("usage" in c for c in chunks):
        merged["usage"] = usage
    return merged


def _merge_logprobs(old: Any, new: Any) -> Any:
    """Concatenate list fields of two logprobs objects (chat or legacy); keep ``None`` apart."""
    if not isinstance(new, dict):
        return old
    if not isinstance(old, dict):
        return {k: (list(v) if isinstance(v, list) else v) for k, v in new.items()}
    for key, value in new.items():
        if isinstance(value, list):
            current = old.get(key)
            old[key] = [*current, *value] if isinstance(current, list) else list(value)
        elif value is not None or key not in old:
            old[key] = value
    return old


def _merge_chat(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    merged = _merge_top(chunks, "chat.completion")
    states: dict[int, dict[str, Any]] = {}
    for chunk in chunks:
        for choice in chunk.get("choices") or ():
            index = int(choice.get("index", 0))
            state = states.get(index)
            if state is None:
                state = states[index] = {
                    "message": {"role": "assistant", "content": None, "refusal": None},
                    "tools": {},
                    "logprobs": None,
                    "finish_reason": None,
                    "extra": {},
                }
            delta = choice.get("delta") or {}
            message = state["message"]
            for key, value in delta.items():
                if key == "tool_calls":
                    for call in value or ():
                        _merge_tool_call(state["tools"], call)
                elif key == "function_call":
                    if isinstance(value, dict):
                        fc = message.setdefault("function_call", {"name": "", "arguments": ""})
                        for part in ("name", "arguments"):
                            if value.get(part):
                                fc[part] = (fc.get(part) or "") + value[part]
                elif key == "role":
                    if value is not None:
                        message["role"] = value
                elif isinstance(value, str) and isinstance(message.get(key), str):
                    message[key] += value
                elif value is not None or key not in message:
                    message[key] = value
            if "logprobs" in choice:
                state["logprobs"] = _merge_logprobs(state["logprobs"], choice["logprobs"])
            if choice.get("finish_reason") is not None:
                state["finish_reason"] = choice["finish_reason"]
            for key, value in choice.items():
                if key not in ("index", "delta", "logprobs", "finish_reason"):
                    state["extra"][key] = value
    for index in sorted(states):
        state = states[index]
        message = state["message"]
        if state["tools"]:
            message["tool_calls"] = [state["tools"][i] for i in sorted(state["tools"])]
        merged["choices"].append(
            {
                "index": index,
                "message": message,
                "logprobs": state["logprobs"],
                "finish_reason": state["finish_reason"],
                **state["extra"],
            }
        )
    return merged


def _merge_tool_call(tools: dict[int, dict[str, Any]], call: dict[str, Any]) -> None:
    index = int(call.get("index", len(tools)))
    current = tools.get(index)
    if current is None:
        current = tools[index] = {"id": None, "type": "function"}
    for key, value in call.items():
        if key == "index":
            continue
        if key == "function" and isinstance(value, dict):
            fn = current.setdefault("function", {"name": "", "arguments": ""})
            for part, piece in value.items():
                if isinstance(piece, str) and isinstance(fn.get(part), str):
                    fn[part] += piece
                elif piece is not None:
                    fn[part] = piece
        elif value is not None:
            current[key] = value


def _merge_completions(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    merged = _merge_top(chunks, chunks[0].get("object") or "text_completion")
    states: dict[int, dict[str, Any]] = {}
    for chunk in chunks:
        for choice in chunk.get("choices") or ():
            index = int(choice.get("index", 0))
            state = states.setdefault(
                index, {"text": "", "index": index, "logprobs": None, "finish_reason": None}
            )
            for key, value in choice.items():
                if key == "text":
                    state["text"] += value or ""
                elif key == "logprobs":
                    state["logprobs"] = _merge_logprobs(state["logprobs"], value)
                elif key == "index":
                    continue
                elif value is not None or key not in state:
                    state[key] = value
    merged["choices"] = [states[i] for i in sorted(states)]
    return merged


def _chat_chunk_choices(choices: list[Any]) -> list[dict[str, Any]]:
    """Chunk ``choices`` entries (one per chunk) spelling out each full choice in turn.

    Per choice: a role chunk, one chunk per part (content, refusal, each tool call, any other
    message field), a finish chunk. The choice's logprobs ride on the chunk after the role chunk:
    the SDK's accumulator counts logprobs twice on the first chunk of a choice that appears
    after the first chunk of the stream.
    """
    out: list[dict[str, Any]] = []
    for position, choice in enumerate(choices):
        index = choice.get("index", position)
        message = choice.get("message") or {}
        content = message.get("content")
        first: dict[str, Any] = {
            "role": message.get("role", "assistant"),
            "content": "" if isinstance(content, str) else None,
            "refusal": None,
        }
        extra = {
            k: v
            for k, v in choice.items()
            if k not in ("index", "message", "logprobs", "finish_reason", "delta")
        }
        deltas: list[dict[str, Any]] = []
        if content:
            deltas.append({"content": content})
        refusal = message.get("refusal")
        if refusal is not None:
            deltas.append({"refusal": refusal})
        for i, call in enumerate(message.get("tool_calls") or ()):
            deltas.append({"tool_calls": [{"index": i, **call}]})
        function_call = message.get("function_call")
        if function_call is not None:
            deltas.append({"function_call": function_call})
        others = {k: v for k, v in message.items() if k not in _MESSAGE_CORE and v is not None}
        if others:
            deltas.append(others)
        out.append(
            {"index": index, "delta": first, "logprobs": None, "finish_reason": None, **extra}
        )
        logprobs = choice.get("logprobs")
        for delta in deltas:
            out.append(
                {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": None}
            )
            logprobs = None
        out.append(
            {
                "index": index,
                "delta": {},
                "logprobs": logprobs,
                "finish_reason": choice.get("finish_reason"),
            }
        )
    return out


def _completion_chunk_choices(choices: list[Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for position, choice in enumerate(choices):
        index = choice.get("index", position)
        body = {k: v for k, v in choice.items() if k not in ("index", "finish_reason")}
        out.append({**body, "index": index, "finish_reason": None})
        out.append(
            {
                "text": "",
                "index": index,
                "logprobs": None,
                "finish_reason": choice.get("finish_reason"),
            }
        )
    return out
