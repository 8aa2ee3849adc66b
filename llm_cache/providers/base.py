"""The provider descriptor: everything the engine needs to know about one wire format.

A provider module defines one subclass of ``ProviderSpec`` and exposes one instance as
``PROVIDER``; the registry (``llm_cache.providers``) lists the modules. Nothing outside a
provider module and the registry line may know a provider's paths, fields or frames: routing,
keys, stream handling, conversions and error shapes all ask the descriptor.

What a descriptor declares:

* ``routes``: path patterns relative to the upstream's base URL (``/chat/completions``,
  ``/{version}/models/{model}:generateContent``), each naming the endpoint the cache keys and
  converts on, and whether the path itself says "stream" (Gemini, Bedrock) or the body does.
* ``passthrough_prefixes``: other paths of the provider, forwarded uncached by the proxy.
* ``framing``: the stream codec (SSE, NDJSON, AWS event-stream), see ``Framing``.
* key rules per endpoint: ``key_headers``, ``excluded_fields``, ``key_body``, ``key_query``;
  ``never_cache`` for requests whose answer depends on mutable server-side state.
* end of stream / errors: ``stream_finished``, ``body_is_error``.
* conversions both ways: ``events_to_response`` and ``response_to_events``.
* ``usage`` (normalized to input/output tokens), ``error_body`` (the provider's error shape).

The class is I/O-free; every method is pure.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import orjson

from llm_cache.providers.sse import SSEEvent, SSEParser

__all__ = [
    "DEFAULT_EXCLUDED_FIELDS",
    "SSE",
    "Frame",
    "FrameSplitter",
    "Framing",
    "Provider",
    "ProviderSpec",
    "RouteMatch",
    "RouteSpec",
    "SSEFraming",
    "UpstreamSigner",
    "Usage",
]

#: Body fields one stored answer serves for every value of: ``stream`` (the provider converts
#: between the two kinds), ``user`` and ``metadata`` (end-user tracking only, never in the output).
DEFAULT_EXCLUDED_FIELDS = frozenset({"stream", "user", "metadata"})

#: Query parameters that carry credentials: never in a key, a stored request or a log line.
CREDENTIAL_QUERY = frozenset({"key", "api_key", "api-key", "x-api-key"})


#: ``(method, url, headers, body) -> headers | None``: see ``ProviderSpec.upstream_signer``.
UpstreamSigner = Callable[[str, str, list[tuple[str, str]], bytes], "list[tuple[str, str]] | None"]


# -- framing ----------------------------------------------------------------------------------


class Frame(Protocol):
    """One unit of a stream: an SSE event, an NDJSON line, an event-stream message."""

    @property
    def event(self) -> str | None: ...

    @property
    def data(self) -> str: ...

    def json(self) -> Any: ...

    def encode(self) -> bytes: ...


class FrameSplitter(Protocol):
    """Cuts a byte stream into raw frames, each exactly as sent (for exact replay)."""

    def feed(self, chunk: bytes) -> list[bytes]: ...

    def finish(self) -> list[bytes]:
        """What is left at the end (an unterminated last frame), as one raw frame or none."""
        ...


class Framing(Protocol):
    """A stream codec: how frames look on the wire.

    ``splitter`` cuts the raw bytes into frames (stored and replayed byte for byte);
    ``decode`` reads one raw frame (``None`` for a frame that carries nothing, such as an SSE
    comment); ``encode`` spells frames made by a conversion.
    """

    name: str
    content_type: str

    def splitter(self) -> FrameSplitter: ...

    def decode(self, raw: bytes) -> Any | None: ...

    def encode(self, frames: Iterable[Any]) -> bytes: ...


class _SSESplitter:
    _END = re.compile(rb"\r\n\r\n|\n\n|\r\r|\n\r\n|\r\n\n")

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        buffer = self._buffer + chunk
        frames: list[bytes] = []
        start = 0
        for m in self._END.finditer(buffer):
            if m.start() < start:
                continue
            frames.append(buffer[start : m.end()])
            start = m.end()
        self._buffer = buffer[start:]
        return frames

    def finish(self) -> list[bytes]:
        rest, self._buffer = self._buffer, b""
        return [rest] if rest.strip() else []


class SSEFraming:
    """``text/event-stream``: frames end at a blank line."""

    name = "sse"
    content_type = "text/event-stream"

    def splitter(self) -> FrameSplitter:
        return _SSESplitter()

    def decode(self, raw: bytes) -> SSEEvent | None:
        parser = SSEParser()
        events = parser.feed(raw)
        events.extend(parser.finish())
        return events[0] if events else None

    def encode(self, frames: Iterable[Any]) -> bytes:
        return b"".join(f.encode() for f in frames)


SSE = SSEFraming()


# -- routes -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RouteSpec:
    """One cached route of a provider.

    ``pattern`` is relative to the upstream base URL; ``{name}`` matches one path segment part
    (no ``/``) and is returned as a path parameter. ``stream``: ``True``/``False`` when the path
    decides (``:streamGenerateContent``), ``None`` when the body does (``provider.wants_stream``).
    """

    pattern: str
    endpoint: str
    stream: bool | None = None
    regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        parts = re.split(r"(\{[a-zA-Z_]+\})", self.pattern)
        rx = "".join(
            f"(?P<{p[1:-1]}>[^/]+?)" if p.startswith("{") and p.endswith("}") else re.escape(p)
            for p in parts
        )
        object.__setattr__(self, "regex", re.compile(rx + "/?$"))

    @property
    def literal_length(self) -> int:
        """How specific the pattern is (longer literal text wins over shorter)."""
        return len(re.sub(r"\{[a-zA-Z_]+\}", "", self.pattern))


@dataclass(frozen=True)
class RouteMatch:
    """A request path matched to a provider's cached route."""

    provider: ProviderSpec
    route: RouteSpec
    params: Mapping[str, str]
    #: The part of the path before the pattern (kept in the key: another prefix, another API).
    prefix: str

    @property
    def endpoint(self) -> str:
        return self.route.endpoint


@dataclass(frozen=True, slots=True)
class Usage:
    """Token usage of one answer, normalized across providers."""

    input: int = 0
    output: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"input": self.input, "output": self.output}


# -- the descriptor ---------------------------------------------------------------------------


class ProviderSpec:
    """Defaults for an OpenAI-like JSON API with SSE streams; subclasses override what differs."""

    name: ClassVar[str] = "abstract"
    #: Provider id in the list-price table (genai-prices) for the savings figures; ``""``: the
    #: same as ``name``; ``None``: its models run locally and have no list price.
    price_provider: ClassVar[str | None] = ""
    routes: ClassVar[tuple[RouteSpec, ...]] = ()
    #: Proxy path prefix that maps onto the upstream base URL (OpenAI: ``/v1``, since its base
    #: URL ends in ``/v1``; most others: ``""``).
    mount: ClassVar[str] = ""
    #: ``Config`` attribute holding this provider's upstream base URL (``None``: unset, the
    #: provider is not served by the proxy until it is configured).
    base_url_setting: ClassVar[str] = ""
    #: Paths (relative to the upstream base) forwarded uncached to this provider by the proxy.
    passthrough_prefixes: ClassVar[tuple[str, ...]] = ()
    #: Request headers that change the output (lower-case); they enter the key.
    key_headers: ClassVar[tuple[str, ...]] = ()
    excluded_fields: ClassVar[frozenset[str]] = DEFAULT_EXCLUDED_FIELDS
    framing: ClassVar[Framing] = SSE
    #: Body field that asks for a stream (when the route does not decide).
    stream_field: ClassVar[str] = "stream"
    #: Value meaning "stream" when the field is absent (Ollama streams by default).
    stream_default: ClassVar[bool] = False
    #: Chat-style endpoints the semantic cache may answer, each with its body shape
    #: (``"messages"``, ``"responses"`` or ``"contents"``: see ``llm_cache.semantic.partition``).
    semantic_shapes: ClassVar[Mapping[str, str]] = {}

    # -- routes and keys ----------------------------------------------------------------------

    @property
    def cached_endpoints(self) -> frozenset[str]:
        return frozenset(r.endpoint for r in self.routes)

    def match(self, path: str) -> RouteMatch | None:
        """The cached route ``path`` (relative to the base URL, or ending with the pattern)
        names, most specific first; ``None`` for an uncached path."""
        for route in self._sorted_routes():
            m = route.regex.search(path)
            if m is not None:
                return RouteMatch(self, route, m.groupdict(), path[: m.start()])
        return None

    def _sorted_routes(self) -> tuple[RouteSpec, ...]:
        cached: tuple[RouteSpec, ...] | None = self.__dict__.get("_routes_sorted")
        if cached is None:
            cached = tuple(sorted(self.routes, key=lambda r: -r.literal_length))
            self.__dict__["_routes_sorted"] = cached
        return cached

    def prefers(self, headers: Mapping[str, str]) -> bool:
        """Whether an uncached path shared with other providers (``/v1/models``) belongs to
        this one, judging by the request headers (Anthropic: ``anthropic-version``)."""
        return False

    def excluded_fields_for(self, endpoint: str) -> frozenset[str]:
        """Body fields kept out of the key for ``endpoint``."""
        return self.excluded_fields

    def key_body(self, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
        """The body as it enters the key, once ``excluded_fields_for`` is out: a subclass may
        drop the part of a field one entry serves every value of (``stream_options.include_usage``).
        """
        return body

    def key_query(self, endpoint: str, query: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """Query parameters that enter the key: all but credentials (and, in subclasses,
        those that only pick the framing, such as Gemini's ``alt=sse``)."""
        return [(k, v) for k, v in query if k.lower() not in CREDENTIAL_QUERY]

    def is_stream_request(self, body: Mapping[str, Any]) -> bool:
        """Whether the body asks for a stream (for routes where the body decides)."""
        value = body.get(self.stream_field, self.stream_default)
        return value is True

    def wants_stream(self, match: RouteMatch, body: Mapping[str, Any]) -> bool:
        if match.route.stream is not None:
            return match.route.stream
        return self.is_stream_request(body)

    def batch_items(self, endpoint: str, body: Mapping[str, Any]) -> list[Any] | None:
        """The items of a batch request each cached on their own (embeddings with a list
        ``input``; partial hits send only the missing ones upstream), or ``None``."""
        return None

    def never_cache(self, endpoint: str, body: Mapping[str, Any]) -> str | None:
        """Why this request must be forwarded uncached (mutable server-side state), or None."""
        return None

    def never_cache_url(self, match: RouteMatch, url: str) -> str | None:
        """Why a request must be forwarded uncached judging by its URL (query included), or
        None (Gemini: a stream without ``alt=sse`` is a JSON array the cache does not keep)."""
        return None

    def upstream_signer(self, config: Any) -> UpstreamSigner | None:
        """Made once per proxy app: rewrites the headers of each upstream request (Bedrock
        re-signs with the proxy's AWS credentials). It returns ``None`` when it cannot
        authenticate the request (the proxy answers 401). ``None`` here: headers as they are."""
        return None

    def model(self, match: RouteMatch, body: Mapping[str, Any]) -> str:
        """The model a request asks for (path parameter or body field)."""
        for name in ("model", "modelId", "deployment"):
            if name in match.params:
                return match.params[name]
        model = body.get("model")
        return model if isinstance(model, str) else ""

    def upstream_body(
        self, endpoint: str, body: dict[str, Any], want_stream: bool
    ) -> dict[str, Any] | None:
        """A body to send upstream instead of the client's (e.g. asking for usage in a stream
        that will be stored); ``None`` sends the client's body unchanged."""
        return None

    def client_frames(
        self, endpoint: str, frames: list[Any], request_body: Mapping[str, Any]
    ) -> list[Any]:
        """The stored frames as this client should see them (e.g. without a usage frame it
        did not ask for). Default: unchanged. Called on whole lists of frames (a hit) and on
        the frames of each relayed chunk (a miss), so it must judge frame by frame."""
        return frames

    # -- answers ------------------------------------------------------------------------------

    def body_is_error(self, endpoint: str, response: Any) -> bool:
        """Whether a 2xx JSON body is in fact an error (never stored)."""
        return isinstance(response, dict) and "error" in response and len(response) <= 3

    def stream_finished(self, endpoint: str, events: list[Any]) -> bool:
        """Whether a recorded stream ended cleanly (end marker seen, no error frame)."""
        return bool(events)

    def events_to_response(self, endpoint: str, events: list[Any]) -> dict[str, Any] | None:
        """A finished stream merged into the full response; ``None``: unsupported."""
        return None

    def response_to_events(
        self, endpoint: str, response: dict[str, Any], request_body: dict[str, Any]
    ) -> list[Any] | None:
        """A full response spelled out as a valid stream for this request; ``None``: unsupported."""
        return None

    def usage(self, response: dict[str, Any]) -> dict[str, Any] | None:
        """The provider's own usage object of a full response, if present."""
        usage = response.get("usage")
        return usage if isinstance(usage, dict) else None

    def usage_tokens(self, endpoint: str, response: dict[str, Any]) -> Usage | None:
        """Input/output tokens of a full response (for savings)."""
        usage = self.usage(response)
        if usage is None:
            return None
        i = usage.get("input_tokens", usage.get("prompt_tokens", 0))
        o = usage.get("output_tokens", usage.get("completion_tokens", 0))
        return Usage(i if isinstance(i, int) else 0, o if isinstance(o, int) else 0)

    def error_body(self, status: int, message: str, error_type: str) -> bytes:
        """A JSON error body in the provider's error shape."""
        code = error_type if error_type == "cache_miss" else None
        return orjson.dumps(
            {"error": {"message": message, "type": error_type, "param": None, "code": code}}
        )

    @property
    def error_content_type(self) -> str:
        return "application/json"


#: Older name of the descriptor type (front ends and tests annotate with it).
Provider = ProviderSpec
