"""Wire formats, one module per provider, and the registry: the only source routing reads.

Adding a provider is one module (a ``ProviderSpec`` subclass exposed as ``PROVIDER``) and one
line in ``PROVIDER_MODULES``.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llm_cache.providers.base import ProviderSpec, RouteMatch

__all__ = ["PROVIDER_MODULES", "PROVIDER_NAMES", "all_providers", "get_provider", "match_path"]

#: Registry: module names under ``llm_cache.providers``, in routing priority order.
PROVIDER_MODULES: tuple[str, ...] = (
    "openai",
    "anthropic",
    "gemini",
    "ollama",
    "cohere",
    "azure",
    "bedrock",
)

PROVIDER_NAMES = PROVIDER_MODULES


@cache
def all_providers() -> tuple[ProviderSpec, ...]:
    """Every registered provider's descriptor, in registry order."""
    return tuple(
        importlib.import_module(f"llm_cache.providers.{name}").PROVIDER for name in PROVIDER_MODULES
    )


def get_provider(name: str) -> ProviderSpec:
    """The ``PROVIDER`` object of a provider module, by name (case-insensitive)."""
    key = name.strip().lower()
    for provider in all_providers():
        if provider.name == key:
            return provider
    raise ValueError(f"unknown provider {name!r}; known: {', '.join(PROVIDER_NAMES)}")


def match_path(path: str, headers: Mapping[str, str] | None = None) -> RouteMatch | None:
    """The cached route a full URL path ends with, across providers (httpx transports, which
    see any base URL): the most specific pattern wins; on a tie, a provider that ``prefers``
    the request's headers, then registry order."""
    best: RouteMatch | None = None
    best_rank: tuple[int, int] = (-1, -1)
    for provider in all_providers():
        m = provider.match(path)
        if m is None:
            continue
        rank = (m.route.literal_length, 1 if headers and provider.prefers(headers) else 0)
        if rank > best_rank:
            best, best_rank = m, rank
    return best
