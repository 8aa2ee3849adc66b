"""Which upstream and endpoint a proxy path means, and whether it is cached."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from llm_cache.config import Config
from llm_cache.providers import anthropic as anthropic_provider
from llm_cache.providers import openai as openai_provider
from llm_cache.providers.base import Provider

OPENAI = openai_provider.PROVIDER
ANTHROPIC = anthropic_provider.PROVIDER


@dataclass(frozen=True)
class Upstream:
    """A named upstream: where to send, and whose wire format it speaks."""

    name: str
    base_url: str
    provider: Provider


@dataclass(frozen=True)
class Route:
    upstream: Upstream
    #: Path appended to the upstream base URL (``/chat/completions``; ``/v1/messages``).
    upstream_path: str
    #: The provider endpoint the cache keys on, or ``None`` for an uncached pass-through.
    endpoint: str | None

    @property
    def url(self) -> str:
        return self.upstream.base_url + self.upstream_path


class Router:
    """Maps request paths to routes per SPEC.

    ``/v1/messages`` goes to Anthropic; the OpenAI endpoints under ``/v1/`` go to the OpenAI
    upstream; ``/{name}/...`` goes to a named OpenAI-compatible upstream. Any other path under
    ``/v1/`` is forwarded uncached, to Anthropic when the client speaks its dialect (an
    ``anthropic-version`` header), else to OpenAI.
    """

    def __init__(self, config: Config) -> None:
        self.openai = Upstream("openai", config.openai_base_url, OPENAI)
        self.anthropic = Upstream("anthropic", config.anthropic_base_url, ANTHROPIC)
        self.named = {name: Upstream(name, url, OPENAI) for name, url in config.upstreams.items()}

    def resolve(self, path: str, headers: Iterable[tuple[bytes, bytes]]) -> Route | None:
        """The route for ``path``; ``headers`` (ASGI, lower-case names) are read only to pick
        the upstream of an uncached ``/v1/`` path."""
        if path.startswith("/v1/"):
            rest = path[3:]  # keeps the leading slash
            if rest in ANTHROPIC.cached_endpoints:
                return Route(self.anthropic, path, rest)
            if rest in OPENAI.cached_endpoints:
                return Route(self.openai, rest, rest)
            if any(k == b"anthropic-version" for k, _ in headers):
                return Route(self.anthropic, path, None)
            return Route(self.openai, rest, None)
        name, sep, rest = path[1:].partition("/")
        upstream = self.named.get(name)
        if upstream is None or not sep:
            return None
        rest = "/" + rest
        endpoint = rest if rest in upstream.provider.cached_endpoints else None
        return Route(upstream, rest, endpoint)
