"""Which recorded interaction answers a request: the cache's own key rules, applied to cassettes.

A request to an LLM endpoint the cache knows (OpenAI-style, Anthropic) matches a recording
when their cache keys are equal, exactly as a proxy hit would (``exchange_key``): same URL,
same output-affecting headers, same body but for the fields one answer serves for every value
of (``stream``, ``user``, ``metadata``). Any other request matches on method, URL, those
headers and its whole body. Credentials never enter either.

Everything here works on the cassette form of a request (``{"method", "url", "headers",
"body" | "text" | "body_base64"}``), so a live request and a recorded one go through the very
same code.
"""

from __future__ import annotations

from functools import cache
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from llm_cache.cache.key_generator import key_for, normalize_request_params
from llm_cache.engine.exchange import exchange_key
from llm_cache.providers import all_providers, match_path
from llm_cache.providers.base import RouteMatch

__all__ = ["comparable", "key_headers_for", "request_key", "route_of", "wants_stream"]


@cache
def _all_key_headers() -> tuple[str, ...]:
    names: list[str] = []
    for provider in all_providers():
        for header in provider.key_headers:
            if header not in names:
                names.append(header)
    return tuple(names)


def route_of(method: str, url: str, headers: dict[str, str]) -> RouteMatch | None:
    """The provider route when the cache keys this request (a ``POST`` to a cached route)."""
    if method.upper() != "POST":
        return None
    return match_path(urlsplit(url).path, headers)


def key_headers_for(route: RouteMatch | None) -> tuple[str, ...]:
    """Request headers worth recording: those that enter the key (lower-case names)."""
    return route.provider.key_headers if route is not None else _all_key_headers()


def request_key(request: dict[str, Any]) -> str:
    """The match key of a request in cassette form."""
    method = str(request["method"]).upper()
    url = str(request["url"])
    headers = {str(k).lower(): str(v) for k, v in (request.get("headers") or {}).items()}
    body = request.get("body")
    route = route_of(method, url, headers)
    if route is not None and isinstance(body, dict):
        return exchange_key(route, url, body, headers)
    return key_for({"method": method, "url": url, "headers": headers, "content": _content(request)})


def comparable(request: dict[str, Any]) -> dict[str, Any]:
    """What of a request decides its match, as one JSON value (the miss diff compares these)."""
    method = str(request["method"]).upper()
    url = str(request["url"])
    headers = {str(k).lower(): str(v) for k, v in (request.get("headers") or {}).items()}
    route = route_of(method, url, headers)
    parts = urlsplit(url)
    out: dict[str, Any] = {"method": method, "url": parts._replace(query="").geturl()}
    if parts.query:  # one field per parameter, so the diff names the one that changed
        out["query"] = dict(parse_qsl(parts.query, keep_blank_values=True))
    if route is not None:
        headers = {h: headers[h] for h in route.provider.key_headers if h in headers}
    if headers:
        out["headers"] = headers
    body = request.get("body")
    if route is not None and isinstance(body, dict):
        kept = normalize_request_params(body)
        for name in route.provider.excluded_fields_for(route.endpoint):
            kept.pop(name, None)
        out["body"] = kept
    else:
        out.update(_content(request))
    return out


def wants_stream(request: dict[str, Any]) -> bool | None:
    """Whether a keyed LLM request asks for a stream; ``None`` for other requests."""
    headers = {str(k).lower(): str(v) for k, v in (request.get("headers") or {}).items()}
    route = route_of(str(request["method"]), str(request["url"]), headers)
    body = request.get("body")
    if route is None or not isinstance(body, dict):
        return None
    return route.provider.wants_stream(route, body)


def _content(request: dict[str, Any]) -> dict[str, Any]:
    for name in ("body", "text", "body_base64"):
        if name in request:
            return {name: request[name]}
    return {}
