"""The public names SPEC.md promises, and what ``import llm_cache`` may not pull in."""

from __future__ import annotations

import inspect
import subprocess
import sys

import llm_cache


def test_exported_members() -> None:
    assert sorted(llm_cache.__all__) == ["Config", "LLMCacheWrapper", "__version__", "cached"]
    from llm_cache import Config, LLMCacheWrapper, cached

    assert callable(cached) and inspect.isclass(LLMCacheWrapper) and inspect.isclass(Config)
    assert sorted(dir(llm_cache)) == sorted(llm_cache.__all__)


def test_storage_classes() -> None:
    from llm_cache.cache.redis_storage import RedisStorage
    from llm_cache.cache.sqlite_storage import SQLiteStorage
    from llm_cache.cache.storage import CacheStorage

    assert issubclass(SQLiteStorage, CacheStorage)
    assert issubclass(RedisStorage, CacheStorage)
    for name in (
        "get",
        "set",
        "delete",
        "update_access_time",
        "get_lru_key",
        "get_size",
        "clear",
        "get_stats",
        "evict_lru",
        "is_full",
    ):
        assert callable(getattr(CacheStorage, name)), name
    params = inspect.signature(SQLiteStorage).parameters
    assert params["db_path"].default == "llm_cache.db"
    assert params["max_size"].default == 1000
    assert list(inspect.signature(RedisStorage).parameters)[:5] == [
        "host",
        "port",
        "db",
        "password",
        "max_size",
    ]


def test_wrapper_signatures() -> None:
    from llm_cache import Config, LLMCacheWrapper, cached

    params = inspect.signature(LLMCacheWrapper).parameters
    assert list(params)[:3] == ["storage", "enabled", "provider"]
    assert params["storage"].default is None
    assert params["enabled"].default is True
    assert params["provider"].default is None
    for name in ("wrap", "get_stats", "clear_cache", "disable", "enable", "__enter__", "__exit__"):
        assert callable(getattr(LLMCacheWrapper, name)), name
    cached_params = inspect.signature(cached).parameters
    assert {"provider", "storage", "key", "ignore"} <= set(cached_params)
    assert {"provider", "key", "ignore"} <= set(inspect.signature(LLMCacheWrapper.wrap).parameters)
    assert isinstance(inspect.getattr_static(LLMCacheWrapper, "forced_provider"), property)
    for name in ("get_storage", "to_dict"):
        assert callable(getattr(Config, name)), name


def test_transport_names() -> None:
    from llm_cache.wrapper.transport import (
        AsyncCacheTransport,
        CacheTransport,
        async_httpx_client,
        httpx_client,
    )

    params = inspect.signature(CacheTransport).parameters
    assert next(iter(params)) == "storage"
    assert {"transport", "mode", "config"} <= set(params)
    assert {"transport", "mode", "config"} <= set(inspect.signature(AsyncCacheTransport).parameters)
    assert callable(httpx_client) and callable(async_httpx_client)


def test_compat_handler() -> None:
    from llm_cache.proxy.management import handle_compat

    params = list(inspect.signature(handle_compat).parameters)
    assert params == ["scope", "send", "storage", "admin"]
    assert inspect.iscoroutinefunction(handle_compat)


def test_import_is_light() -> None:
    code = (
        "import sys, llm_cache\n"
        "heavy = [m for m in ('starlette', 'uvicorn', 'httpx2', 'httpx', 'openai', 'anthropic',"
        " 'redis', 'llm_cache.wrapper.sdk', 'llm_cache.proxy.server') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_wrapper_import_does_not_load_the_http_stack() -> None:
    code = (
        "import sys\n"
        "from llm_cache import LLMCacheWrapper, cached\n"
        "heavy = [m for m in ('starlette', 'uvicorn', 'httpx2') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
