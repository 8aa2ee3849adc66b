"""In-process front ends: the callable wrapper (``sdk``) and the httpx2 transport (``transport``).

Names load lazily, so importing the wrapper never pulls in the HTTP stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "AsyncCacheTransport",
    "CacheTransport",
    "CacheWarning",
    "LLMCacheWrapper",
    "OfflineCacheMiss",
    "async_httpx_client",
    "cached",
    "httpx_client",
]

if TYPE_CHECKING:
    from llm_cache.wrapper.sdk import CacheWarning, LLMCacheWrapper, OfflineCacheMiss, cached
    from llm_cache.wrapper.transport import (
        AsyncCacheTransport,
        CacheTransport,
        async_httpx_client,
        httpx_client,
    )

_SDK = frozenset({"CacheWarning", "LLMCacheWrapper", "OfflineCacheMiss", "cached"})


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'llm_cache.wrapper' has no attribute {name!r}")
    import importlib

    module = "llm_cache.wrapper.sdk" if name in _SDK else "llm_cache.wrapper.transport"
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
