"""The OpenAI wire format (also every OpenAI-compatible upstream).

Conversions between a stream and a full response, both ways:

* ``/chat/completions`` and ``/completions`` (legacy): see ``openai_chat`` (deltas merged the
  way the openai SDK accumulates them; a full answer spelled out as chunks).
* ``/responses``: see ``openai_responses`` (the final event's response; a full response as the
  ``response.*`` event sequence).
* ``/embeddings``: never streamed (``None`` both ways).

Usage of streamed chat and legacy completions: a stream always asks the upstream for the usage
chunk (``stream_options.include_usage``, added by ``upstream_body``), so a stored stream converts
to a full answer with ``usage``; a client that did not ask never sees that chunk
(``client_frames``), and ``include_usage`` stays out of the key, so one entry serves both.

What is stored (``body_is_error``): a JSON object of the endpoint's shape (``choices``,
``data``, ``output``) with no ``error``; a Responses answer only when ``completed`` or
``incomplete``. Never cached (``never_cache``): Responses requests whose answer depends on state
kept by the server and changed by others (``conversation``, a ``prompt`` without a ``version``).
``metadata`` and ``user`` stay out of the key except for ``/responses``, whose answer echoes them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from llm_cache.providers import openai_chat as chat
from llm_cache.providers import openai_responses as responses
from llm_cache.providers.base import ProviderSpec, RouteSpec
from llm_cache.providers.sse import DONE, SSEEvent

__all__ = ["PROVIDER", "OpenAIProvider"]

CHAT = "/chat/completions"
COMPLETIONS = "/completions"
EMBEDDINGS = "/embeddings"
RESPONSES = "/responses"

#: The list every answer of an endpoint carries (an answer without it is not one).
_ANSWER_LIST = {CHAT: "choices", COMPLETIONS: "choices", EMBEDDINGS: "data", RESPONSES: "output"}
#: Only ``stream`` stays out of a Responses key: its answer echoes ``metadata`` and ``user``.
_RESPONSES_EXCLUDED = frozenset({"stream"})
_UNPINNED_VERSIONS = frozenset({"", "latest"})


class OpenAIProvider(ProviderSpec):
    name = "openai"
    semantic_shapes: ClassVar[Mapping[str, str]] = {CHAT: "messages", RESPONSES: "responses"}
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

    # ------------------------------------------------------------------ keys
    def excluded_fields_for(self, endpoint: str) -> frozenset[str]:
        return _RESPONSES_EXCLUDED if endpoint == RESPONSES else self.excluded_fields

    def key_body(self, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
        """``stream_options.include_usage`` stays out of a chat/legacy key: the stored stream
        always has the usage chunk, shown only to clients that ask for it."""
        options = body.get("stream_options")
        if endpoint not in (CHAT, COMPLETIONS) or not isinstance(options, dict):
            return body
        if "include_usage" not in options:
            return body
        rest = {k: v for k, v in options.items() if k != "include_usage"}
        kept = {k: v for k, v in body.items() if k != "stream_options"}
        if rest:
            kept["stream_options"] = rest
        return kept

    def never_cache(self, endpoint: str, body: Mapping[str, Any]) -> str | None:
        if endpoint != RESPONSES:
            return None
        if body.get("conversation") is not None:
            return "a Responses request in a conversation depends on the conversation's items"
        prompt = body.get("prompt")
        if prompt is not None:
            version = prompt.get("version") if isinstance(prompt, dict) else None
            if not isinstance(version, str) or version.strip().lower() in _UNPINNED_VERSIONS:
                return "a prompt reference without a version uses whatever version is current"
        return None

    def upstream_body(
        self, endpoint: str, body: dict[str, Any], want_stream: bool
    ) -> dict[str, Any] | None:
        if not want_stream or endpoint not in (CHAT, COMPLETIONS):
            return None
        return chat.with_usage_asked(body)

    def client_frames(
        self, endpoint: str, frames: list[Any], request_body: Mapping[str, Any]
    ) -> list[Any]:
        if endpoint not in (CHAT, COMPLETIONS) or chat.asks_usage(request_body):
            return frames
        return [f for f in frames if not chat.is_usage_frame(f)]

    # ------------------------------------------------------------------ answers
    def body_is_error(self, endpoint: str, response: Any) -> bool:
        """Not a storable answer: not an object, an ``error`` (OpenAI-compatible upstreams that
        answer errors with status 200; vLLM's ``"object": "error"``), an answer without its
        endpoint's list (or an empty ``choices``/``data``), a choice that ended in an error
        (OpenRouter), or a Responses answer that is not finished (``failed``, ``queued``…)."""
        if not isinstance(response, dict):
            return True
        if response.get("error") is not None or response.get("object") == "error":
            return True
        field = _ANSWER_LIST.get(endpoint)
        if field is None:
            return False
        items = response.get(field)
        if not isinstance(items, list) or (not items and endpoint != RESPONSES):
            return True
        if endpoint == RESPONSES:
            return response.get("status", "completed") not in responses.FINAL_EVENTS
        if endpoint in (CHAT, COMPLETIONS):
            return any(
                not isinstance(c, dict)
                or c.get("error") is not None
                or c.get("finish_reason") == "error"
                for c in items
            )
        return False

    def stream_finished(self, endpoint: str, events: list[SSEEvent]) -> bool:
        if not events:
            return False
        if endpoint == RESPONSES:
            return responses.stream_finished(events)
        if events[-1].data.strip() != "[DONE]":
            return False
        return not any(chat.is_error_event(e) for e in events[:-1])

    # ------------------------------------------------------------------ stream → full
    def events_to_response(self, endpoint: str, events: list[SSEEvent]) -> dict[str, Any] | None:
        if endpoint == RESPONSES:
            return responses.response_of(events)
        if endpoint not in (CHAT, COMPLETIONS):
            return None
        chunks = chat.chunks_of(events)
        if not chunks:
            return None
        if endpoint == CHAT:
            return chat.merge_chat(chunks)
        return chat.merge_completions(chunks)

    # ------------------------------------------------------------------ full → stream
    def response_to_events(
        self, endpoint: str, response: dict[str, Any], request_body: dict[str, Any]
    ) -> list[SSEEvent] | None:
        if endpoint == RESPONSES:
            return responses.response_events(response)
        if endpoint not in (CHAT, COMPLETIONS):
            return None
        choices = response.get("choices")
        if not isinstance(choices, list):
            return None
        include_usage = chat.asks_usage(request_body) and response.get("usage") is not None
        top = {k: v for k, v in response.items() if k not in chat.CHUNK_ONLY}
        if endpoint == CHAT:
            top["object"] = "chat.completion.chunk"
            bodies = chat.chat_chunk_choices(choices)
        else:
            top["object"] = response.get("object", "text_completion")
            bodies = chat.completion_chunk_choices(choices)
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
