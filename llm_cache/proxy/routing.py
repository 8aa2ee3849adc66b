"""Which upstream a proxy path goes to, and which cached route (if any) it is.

Reads the provider registry only: each provider says where it is mounted on the proxy
(``mount``), which ``Config`` attribute holds its upstream base URL, its cached route patterns
and its uncached path prefixes. Named OpenAI-compatible upstreams (``LLM_CACHE_UPSTREAMS``)
are served under ``/{name}/``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from llm_cache.config import Config
from llm_cache.providers import all_providers, get_provider
from llm_cache.providers.base import ProviderSpec, RouteMatch

__all__ = ["BadPath", "Route", "Router", "Upstream"]

_FORBIDDEN_IN_PATH = ("\x00", "\r", "\n")


class BadPath(ValueError):
    """A path the proxy refuses to forward (it could leave the upstream's base path)."""


@dataclass(frozen=True)
class Upstream:
    """A named upstream: where to send, and whose wire format it speaks."""

    name: str
    base_url: str
    provider: ProviderSpec


@dataclass(frozen=True)
class Route:
    upstream: Upstream
    #: Path appended to the upstream base URL.
    upstream_path: str
    #: The cached route, or ``None`` for an uncached pass-through.
    match: RouteMatch | None

    @property
    def url(self) -> str:
        return self.upstream.base_url + self.upstream_path

    @property
    def endpoint(self) -> str | None:
        return self.match.endpoint if self.match else None


class Router:
    """Maps request paths to routes, from the provider registry and the named upstreams."""

    def __init__(self, config: Config) -> None:
        self.upstreams: list[tuple[str, Upstream]] = []
        for provider in all_providers():
            base = (
                getattr(config, provider.base_url_setting, None)
                if provider.base_url_setting
                else None
            )
            if isinstance(base, str) and base:
                self.upstreams.append(
                    (provider.mount, Upstream(provider.name, base.rstrip("/"), provider))
                )
        self._cached_routes: dict[str, Route] = {}
        openai = get_provider("openai")
        self.named = {
            name: Upstream(name, url.rstrip("/"), openai) for name, url in config.upstreams.items()
        }

    def resolve(self, path: str, headers: Mapping[str, str]) -> Route | None:
        """The route for ``path`` (``BadPath`` for one that must not be forwarded);
        ``headers`` (lower-case names) only pick the upstream of a shared uncached path."""
        route = self._cached_routes.get(path)
        if route is not None:
            return route
        route = self._resolve(path, headers)
        if route is not None and route.match is not None and len(self._cached_routes) < 4096:
            self._cached_routes[path] = route  # cached routes do not depend on headers
        return route

    def _resolve(self, path: str, headers: Mapping[str, str]) -> Route | None:
        _check_path(path)
        best: Route | None = None
        best_rank = -1
        for mount, upstream in self.upstreams:
            if not path.startswith(mount + "/"):
                continue
            rest = path[len(mount) :]
            route = _cached_route(upstream, rest)
            if route is not None and route.match is not None:
                rank = route.match.route.literal_length
                if rank > best_rank:
                    best, best_rank = route, rank
        if best is not None:
            return best
        name, sep, rest = path[1:].partition("/")
        named = self.named.get(name)
        if named is not None and sep:
            rest = "/" + rest
            return _cached_route(named, rest) or Route(named, rest, None)
        candidates = [
            (mount, upstream)
            for mount, upstream in self.upstreams
            if any(path.startswith(mount + p) for p in upstream.provider.passthrough_prefixes)
        ]
        for mount, upstream in sorted(candidates, key=lambda c: not c[1].provider.prefers(headers)):
            return Route(upstream, path[len(mount) :], None)
        return None


def _cached_route(upstream: Upstream, rest: str) -> Route | None:
    m = upstream.provider.match(rest)
    if m is None or m.prefix:
        return None
    # Match again on the full upstream path, so the key sees what an httpx transport sees.
    full = upstream.provider.match(urlsplit(upstream.base_url).path + rest)
    return Route(upstream, rest, full or m)


def _check_path(path: str) -> None:
    """Refuse what could leave the upstream's base path or split the request line, whether
    written plainly or percent-encoded (the proxy forwards the path as it was sent)."""
    decoded = unquote(path)
    if any(c in decoded for c in _FORBIDDEN_IN_PATH):
        raise BadPath("the path contains a NUL, CR or LF character")
    for segment in decoded.split("/"):
        if segment in (".", "..") or segment.lower() in ("%2e", "%2e%2e", ".%2e", "%2e."):
            raise BadPath("the path contains a '.' or '..' segment")
