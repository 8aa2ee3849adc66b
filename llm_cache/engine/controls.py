"""Per-request cache controls: ours, standard ``Cache-Control``, and other gateways' aliases.

Read once for every front end (SPEC "Per-request controls"). People arrive from Cloudflare AI
Gateway, Portkey, Helicone and LiteLLM with those tools' cache headers in their code; the
aliases map onto our controls and, like ours, never reach the upstream.

=================================  ==========================================================
ours                               aliases
=================================  ==========================================================
``X-Cache-Bypass: true``,          ``Cache-Control: no-cache``, ``cf-aig-skip-cache: true``,
``"_cache_bypass": true``          ``x-portkey-cache-force-refresh: true``,
                                   LiteLLM ``"cache": {"no-cache": true}``
``Cache-Control: no-store``        LiteLLM ``"cache": {"no-store": true}``
``X-Cache-TTL: N``                 ``cf-aig-cache-ttl: N``, LiteLLM ``"cache": {"ttl": N}``
``Cache-Control: max-age=N``       LiteLLM ``"cache": {"s-maxage": N}``
``Cache-Control: only-if-cached``  (none)
``X-Cache-Namespace: name``        ``x-portkey-cache-namespace``, ``Helicone-Cache-Seed``,
                                   LiteLLM ``"cache": {"namespace": name}``
``X-Cache-Bucket-Size: N``         ``Helicone-Cache-Bucket-Max-Size``
=================================  ==========================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from llm_cache.cache.codec import dumps_exact

__all__ = ["ALIAS_HEADER_PREFIXES", "BadControl", "Controls", "read_controls"]

CONTROL_PREFIX = "_cache_"
_TRUE = ("1", "true", "yes", "on")
MAX_BUCKET = 20

#: Request headers that are cache controls of other gateways: removed before forwarding.
ALIAS_HEADER_PREFIXES = (
    b"cf-aig-skip-cache",
    b"cf-aig-cache-ttl",
    b"x-portkey-cache-",
    b"helicone-cache-",
)


class BadControl(ValueError):
    """A control with a value that makes no sense (answered 400)."""


@dataclass(slots=True)
class Controls:
    """A request's cache controls. ``body``/``raw`` are what goes upstream: our ``_cache_*``
    fields and LiteLLM's ``cache`` object removed (``raw`` re-serialized only then)."""

    body: dict[str, Any]
    raw: bytes
    bypass: bool = False
    no_store: bool = False
    ttl: float | None = None
    max_age: float | None = None
    only_if_cached: bool = False
    namespace: str = ""
    bucket_size: int = 1
    rewritten: bool = False


def _seconds(name: str, raw: Any, *, zero_ok: bool = False) -> float:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise BadControl(f"{name} must be a number of seconds, got {raw!r}") from None
    if value != value or value == float("inf") or value < 0 or (value == 0 and not zero_ok):
        raise BadControl(f"{name} must be a positive number of seconds, got {raw!r}")
    return value


def _directives(header: str) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if name:
            out[name.strip().lower()] = value.strip().strip('"') if sep else None
    return out


def read_controls(body: dict[str, Any], raw: bytes, headers: Mapping[str, str]) -> Controls:
    """Every control of a request, from headers (lower-case names) and body fields."""
    c = Controls(body, raw)
    directives = _directives(headers.get("cache-control", ""))
    litellm = body.get("cache") if isinstance(body.get("cache"), dict) else None

    c.bypass = (
        headers.get("x-cache-bypass", "").lower() in _TRUE
        or body.get("_cache_bypass") is True
        or "no-cache" in directives
        or headers.get("cf-aig-skip-cache", "").lower() in _TRUE
        or headers.get("x-portkey-cache-force-refresh", "").lower() in _TRUE
        or bool(litellm and litellm.get("no-cache") is True)
    )
    c.no_store = "no-store" in directives or bool(litellm and litellm.get("no-store") is True)
    c.only_if_cached = "only-if-cached" in directives

    ttl = headers.get("x-cache-ttl") or headers.get("cf-aig-cache-ttl")
    if ttl is not None and ttl.strip():
        c.ttl = _seconds("X-Cache-TTL", ttl)
    elif litellm and litellm.get("ttl") is not None:
        c.ttl = _seconds("cache.ttl", litellm["ttl"])

    if "max-age" in directives:
        c.max_age = _seconds("Cache-Control max-age", directives["max-age"], zero_ok=True)
    elif litellm and litellm.get("s-maxage") is not None:
        c.max_age = _seconds("cache.s-maxage", litellm["s-maxage"], zero_ok=True)

    namespace = (
        headers.get("x-cache-namespace")
        or headers.get("x-portkey-cache-namespace")
        or headers.get("helicone-cache-seed")
        or (litellm.get("namespace") if litellm else None)
    )
    if namespace is not None:
        if not isinstance(namespace, str) or len(namespace) > 256:
            raise BadControl("the cache namespace must be a string of at most 256 characters")
        c.namespace = namespace.strip()

    bucket = headers.get("x-cache-bucket-size") or headers.get("helicone-cache-bucket-max-size")
    if bucket is not None and bucket.strip():
        try:
            c.bucket_size = int(bucket)
        except ValueError:
            raise BadControl(f"X-Cache-Bucket-Size must be an integer, got {bucket!r}") from None
        if not 1 <= c.bucket_size <= MAX_BUCKET:
            raise BadControl(f"X-Cache-Bucket-Size must be 1 to {MAX_BUCKET}, got {bucket!r}")

    drop_litellm = litellm is not None
    if drop_litellm or any(k.startswith(CONTROL_PREFIX) for k in body):
        c.body = {
            k: v
            for k, v in body.items()
            if not k.startswith(CONTROL_PREFIX) and not (drop_litellm and k == "cache")
        }
        c.raw = dumps_exact(c.body)
        c.rewritten = True
    return c
