"""Which stored answers a request may be compared with: the partition, and the text compared.

A semantic hit may change only one thing about a request: the wording of the last user
message. Everything else (upstream, endpoint, model, every parameter, tools, the system prompt,
earlier turns, images or tool results beside the question, namespace, tenant) must be equal, so
it is all hashed into the *partition key*, and vectors are only ever compared within one
partition. The last user message's text is replaced by a placeholder before hashing, so two
requests share a partition exactly when they differ at most in that text.

Requests that are not chat-shaped, or whose last turn is not a user's text (a tool result, an
assistant prefill), get ``None``: they are never answered semantically.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from copy import deepcopy
from dataclasses import dataclass
from typing import Any

from llm_cache.cache.key_generator import canonical_json, hash_payload

PARTITION_SCHEMA = "llm-cache/semantic-partition/v1"
#: Stands for the compared text inside the hashed request; no real text can equal it.
TEXT_SLOT = "\x00llm-cache:last-user-text\x00"


@dataclass(frozen=True, slots=True)
class Partition:
    """Where a request belongs (``key``) and the text that is compared (``text``)."""

    key: str
    text: str


def partition_for(
    provider: str,
    endpoint: str,
    body: Mapping[str, Any],
    scope: str = "",
    *,
    key_of: Callable[[Mapping[str, Any]], str] | None = None,
    shape: str | None = None,
) -> Partition | None:
    """The partition of a chat-style request, or ``None`` when it has no last user text.

    ``provider`` and ``endpoint`` (a path such as ``/v1/chat/completions`` or the full upstream
    URL, Gemini's model included) name the API; ``body`` is the request body as it enters the
    exact key (fields that never enter it already dropped); ``scope`` carries whatever else
    separates entries (namespace, tenant, key headers): requests with different scopes never
    share a partition.

    ``key_of`` (the engine's exact-key function for this request) replaces that hashing: the
    partition is then the exact key of the request with its last user text taken out, so it
    covers whatever the exact key covers (URL, key headers, namespace, tenant...), by
    construction.

    ``shape`` names the body layout (a provider declares it per endpoint in
    ``semantic_shapes``): ``"messages"`` (OpenAI chat, Anthropic messages), ``"responses"``
    (OpenAI Responses ``input``), ``"contents"`` (Gemini ``contents``/``parts``). Without it,
    the OpenAI and Anthropic endpoints are recognised by their path.
    """
    take = SHAPES.get(shape) if shape is not None else _shape_of(endpoint)
    if take is None:
        return None
    copy = deepcopy(dict(body))
    text = take(copy)
    if text is None or not text.strip():
        return None
    if key_of is not None:
        return Partition(key_of(copy), text)
    payload = {
        "schema": PARTITION_SCHEMA,
        "provider": provider.lower(),
        "endpoint": endpoint,
        "scope": scope,
        "body": copy,
    }
    return Partition(hash_payload(canonical_json(payload)), text)


_Extractor = Callable[[dict[str, Any]], "str | None"]


def _shape_of(endpoint: str) -> _Extractor | None:
    path = endpoint.split("?", 1)[0].rstrip("/")
    if path.endswith("/chat/completions") or path.endswith("/messages"):
        return _take_messages  # OpenAI chat completions, Anthropic messages
    if path.endswith("/responses"):
        return _take_responses_input
    return None


def _take_messages(body: dict[str, Any]) -> str | None:
    """OpenAI ``messages`` and Anthropic ``messages``: the last one, if it is the user's."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return None
    last = messages[-1]
    if not isinstance(last, dict) or last.get("role") != "user":
        return None
    return _take_content(last, "content", ("text", "input_text"))


def _take_responses_input(body: dict[str, Any]) -> str | None:
    """OpenAI Responses ``input``: a string, or items whose last is a user message."""
    value = body.get("input")
    if isinstance(value, str):
        body["input"] = TEXT_SLOT
        return value
    if not isinstance(value, list) or not value:
        return None
    last = value[-1]
    if not isinstance(last, dict) or last.get("role") != "user":
        return None
    if last.get("type", "message") != "message":
        return None
    return _take_content(last, "content", ("input_text", "text"))


def _take_contents(body: dict[str, Any]) -> str | None:
    """``contents`` (Gemini): a string, or turns whose last is the user's (role may be
    absent)."""
    contents = body.get("contents")
    if isinstance(contents, str):
        body["contents"] = TEXT_SLOT
        return contents
    if isinstance(contents, dict):  # one Content object instead of a list
        contents = [contents]
        body["contents"] = contents
    if not isinstance(contents, list) or not contents:
        return None
    last = contents[-1]
    if not isinstance(last, dict) or last.get("role", "user") != "user":
        return None
    parts = last.get("parts")
    if not isinstance(parts, list) or not parts:
        return None
    texts: list[str] = []
    for part in parts:
        if not isinstance(part, dict):
            return None
        if set(part) == {"text"} and isinstance(part["text"], str):
            texts.append(part["text"])
            part["text"] = TEXT_SLOT
        # other parts (inline data, function responses...) stay in the partition as they are
    return "\n".join(texts) if texts else None


def _take_content(message: dict[str, Any], field: str, text_types: tuple[str, ...]) -> str | None:
    """Take the text of a message's content (a string or a list of parts) out of the message.

    Text parts are replaced by the placeholder; every other part (images, files, tool results,
    cache markers) stays and so must be equal. A message without any text part has nothing to
    compare.
    """
    content = message.get(field)
    if isinstance(content, str):
        message[field] = TEXT_SLOT
        return content
    if not isinstance(content, list) or not content:
        return None
    texts: list[str] = []
    for part in content:
        if isinstance(part, str):
            return None  # not a shape any of these APIs documents: do not guess
        if not isinstance(part, dict):
            return None
        if part.get("type") in text_types and isinstance(part.get("text"), str):
            texts.append(part["text"])
            part["text"] = TEXT_SLOT
        elif part.get("type") in ("tool_result", "function_call_output"):
            return None  # the last turn answers a tool call: not a question to paraphrase
    return "\n".join(texts) if texts else None


SHAPES: dict[str, _Extractor] = {
    "messages": _take_messages,
    "responses": _take_responses_input,
    "contents": _take_contents,
}
