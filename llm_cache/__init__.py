"""llm-cache: a caching layer for LLM API calls (HTTP proxy, Python wrapper, httpx transport).

Public names are loaded lazily so that ``import llm_cache`` stays cheap and opens nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["Config", "LLMCacheWrapper", "__version__", "cached"]

if TYPE_CHECKING:
    from llm_cache.config import Config
    from llm_cache.wrapper.sdk import LLMCacheWrapper, cached

_LAZY = {
    "Config": "llm_cache.config",
    "LLMCacheWrapper": "llm_cache.wrapper.sdk",
    "cached": "llm_cache.wrapper.sdk",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'llm_cache' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
