"""Wire formats, one module per provider."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llm_cache.providers.base import Provider

__all__ = ["PROVIDER_NAMES", "get_provider"]

PROVIDER_NAMES = ("openai", "anthropic")


def get_provider(name: str) -> Provider:
    """The ``PROVIDER`` object of a provider module, by name (case-insensitive)."""
    key = name.strip().lower()
    if key == "openai":
        from llm_cache.providers.openai import PROVIDER as openai_provider

        return openai_provider
    if key == "anthropic":
        from llm_cache.providers.anthropic import PROVIDER as anthropic_provider

        return anthropic_provider
    raise ValueError(f"unknown provider {name!r}; known: {', '.join(PROVIDER_NAMES)}")
