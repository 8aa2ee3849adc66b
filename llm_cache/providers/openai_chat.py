"""OpenAI chat and legacy completions: a stream merged into its full answer, and back.

Stream → full merges each choice's deltas the way the openai SDK's stream helper
(``ChatCompletionStreamState`` / ``accumulate_delta``) does, so the stored answer equals what a
client accumulating the stream itself would hold: strings are concatenated, numbers added,
dicts merged key by key (``audio``: ``id``/``transcript``/``data`` fragments, then
``expires_at``), lists of entries with an ``index`` merged entry by entry (OpenRouter's
``reasoning_details``), other lists extended (``annotations``), ``index`` and ``type`` replaced.
Where the SDK would fail (a second list of dicts without ``index``), the entries are appended.
One deliberate difference, for upstreams that repeat a label in every fragment (OpenRouter sends
``"format": "unknown"`` with each ``reasoning_details`` piece, and its own full answer has it
once): labels (``role``, ``id``, ``format``, and a tool call's ``type``) are replaced, not
concatenated.

Full → stream spells each choice out in a few chunks (role, then one chunk per part, then the
finish reason), with the usage chunk when the request asked for it.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

import orjson

from llm_cache.providers.sse import SSEEvent

__all__ = [
    "asks_usage",
    "chat_chunk_choices",
    "chunks_of",
    "completion_chunk_choices",
    "is_error_event",
    "is_usage_frame",
    "merge_chat",
    "merge_completions",
    "with_usage_asked",
]

#: Per-chunk fields that do not belong to the merged response.
CHUNK_ONLY = frozenset({"object", "choices", "usage", "obfuscation"})
_MESSAGE_CORE = ("role", "content", "refusal", "tool_calls", "function_call")
#: Keys whose value is replaced by a later fragment, never concatenated to it.
_LABELS = frozenset({"index", "type", "role", "id", "format"})
_EMPTY_CHOICES = re.compile(rb'"choices"\s*:\s*\[\s*\]')


# ---------------------------------------------------------------------- usage chunk
def asks_usage(body: Mapping[str, Any]) -> bool:
    """Whether a request asks for the usage chunk (``stream_options.include_usage``)."""
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def with_usage_asked(body: Mapping[str, Any]) -> dict[str, Any] | None:
    """``body`` asking for the usage chunk, or ``None`` when it already does (or when its
    ``stream_options`` is not an object, which the upstream must judge as sent)."""
    options = body.get("stream_options")
    if asks_usage(body) or not (options is None or isinstance(options, dict)):
        return None
    return {**body, "stream_options": {**(options or {}), "include_usage": True}}


def is_usage_frame(raw: bytes) -> bool:
    """Whether one raw SSE frame is the usage chunk (``choices: []`` and a usage object).

    Only frames with an empty ``choices`` array are parsed (Azure's first chunk has one too,
    without usage), so checking every frame of a long stream stays cheap.
    """
    if not _EMPTY_CHOICES.search(raw):
        return False
    data = b"".join(line[5:].lstrip(b" ") for line in raw.splitlines() if line.startswith(b"data:"))
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        return False
    return isinstance(obj, dict) and obj.get("choices") == [] and obj.get("usage") is not None


# ---------------------------------------------------------------------- stream → full
def is_error_event(event: SSEEvent) -> bool:
    """An error frame: ``event: error``, a top-level ``error``, or a choice that finished with
    ``finish_reason: "error"`` (OpenRouter's mid-stream errors)."""
    if event.event == "error":
        return True
    if '"error"' not in event.data:
        return False
    try:
        obj = orjson.loads(event.data)
    except orjson.JSONDecodeError:
        return False
    if not isinstance(obj, dict):
        return False
    if obj.get("error") is not None:
        return True
    return any(
        isinstance(c, dict) and (c.get("finish_reason") == "error" or c.get("error") is not None)
        for c in obj.get("choices") or ()
    )


def chunks_of(events: list[SSEEvent]) -> list[dict[str, Any]] | None:
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
            if key in CHUNK_ONLY:
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


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _indexed(value: Any) -> bool:
    return isinstance(value, list) and any(isinstance(e, dict) and "index" in e for e in value)


def accumulate(acc: dict[str, Any], delta: Mapping[str, Any]) -> dict[str, Any]:
    """Merge one delta object into ``acc`` (see the module docstring); returns ``acc``."""
    for key, value in delta.items():
        current = acc.get(key)
        if current is None:
            acc[key] = _merge_list([], value) if _indexed(value) else _copy(value)
        elif value is None:
            continue
        elif key in _LABELS:
            acc[key] = value
        elif (isinstance(current, str) and isinstance(value, str)) or (
            _number(current) and _number(value)
        ):
            acc[key] = current + value
        elif isinstance(current, dict) and isinstance(value, dict):
            accumulate(current, value)
        elif isinstance(current, list) and isinstance(value, list):
            _merge_list(current, value)
        # other type changes keep what was there, as the SDK does
    return acc


def _copy(value: Any) -> Any:
    """A copy the merge may change without touching the chunk it came from."""
    return copy.deepcopy(value) if isinstance(value, (dict, list)) else value


def _merge_list(current: list[Any], value: list[Any]) -> list[Any]:
    if all(not isinstance(e, dict) for e in current) and (current or not _indexed(value)):
        current.extend(_copy(value))
        return current
    for entry in value:
        index = entry.get("index") if isinstance(entry, dict) else None
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            current.append(_copy(entry))
        elif index < len(current) and isinstance(current[index], dict):
            accumulate(current[index], entry)
        else:
            current.insert(index, _copy(entry))
    return current


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


def merge_chat(chunks: list[dict[str, Any]]) -> dict[str, Any]:
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
            rest: dict[str, Any] = {}
            for key, value in delta.items():
                if key == "tool_calls":
                    for call in value or ():
                        _merge_tool_call(state["tools"], call)
                elif key == "role":
                    if value is not None:
                        message["role"] = value
                else:
                    rest[key] = value
            accumulate(message, rest)
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


def merge_completions(chunks: list[dict[str, Any]]) -> dict[str, Any]:
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


# ---------------------------------------------------------------------- full → stream
def chat_chunk_choices(choices: list[Any]) -> list[dict[str, Any]]:
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


def completion_chunk_choices(choices: list[Any]) -> list[dict[str, Any]]:
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
