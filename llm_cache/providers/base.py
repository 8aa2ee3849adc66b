"""What every provider module offers: the ``Provider`` protocol and shared helpers.

A provider is I/O-free. It names the endpoints the cache serves, the request headers and body
fields that enter (or stay out of) the key, its error shape, and how to convert between a finished
stream and a full response. Each provider module exposes one ``PROVIDER`` object.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from llm_cache.providers.sse import SSEEvent

__all__ = ["DEFAULT_EXCLUDED_FIELDS", "Provider"]

#: Body fields one stored answer serves for every value of: ``stream`` (the provider converts
#: between the two kinds), ``user`` and ``metadata`` (end-user tracking only, never in the output).
DEFAULT_EXCLUDED_FIELDS = frozenset({"stream", "user", "metadata"})


@runtime_checkable
class Provider(Protocol):
    name: str
    cached_endpoints: frozenset[str]
    key_headers: tuple[str, ...]
    excluded_fields: frozenset[str]

    def is_stream_request(self, body: dict[str, Any]) -> bool:
        """Whether the request asks for an SSE stream."""
        ...

    def error_body(self, status: int, message: str, error_type: str) -> bytes:
        """A JSON error body in the provider's error shape."""
        ...

    def events_to_response(self, endpoint: str, events: list[SSEEvent]) -> dict[str, Any] | None:
        """A finished stream merged into the full (non-stream) response; ``None``: unsupported."""
        ...

    def response_to_events(
        self, endpoint: str, response: dict[str, Any], request_body: dict[str, Any]
    ) -> list[SSEEvent] | None:
        """A full response spelled out as a valid stream for this request; ``None``: unsupported."""
        ...

    def stream_finished(self, endpoint: str, events: list[SSEEvent]) -> bool:
        """Whether a recorded stream ended cleanly (terminator seen, no error event)."""
        ...

    def usage(self, response: dict[str, Any]) -> dict[str, Any] | None:
        """Token usage of a full response, if present."""
        ...
