"""Config: SPEC defaults, every LLM_CACHE_* variable, validation, .env, masking, get_storage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from llm_cache.cache.memory_storage import MemoryStorage
from llm_cache.cache.sqlite_storage import SQLiteStorage
from llm_cache.config import Config


def config(env: dict[str, str] | None = None, **kwargs: Any) -> Config:
    """A config that sees only ``env``: neither the real environment nor a stray ./.env."""
    return Config(env=env or {}, dotenv_path=None, **kwargs)


def test_defaults_match_the_spec() -> None:
    c = config()
    assert c.backend == "sqlite"
    assert c.sqlite_path == "./llm_cache.db"
    assert c.redis_url is None
    assert (c.redis_host, c.redis_port, c.redis_db, c.redis_password) == (
        "localhost",
        6379,
        0,
        None,
    )
    assert c.redis_cluster is False
    assert c.max_size == 1000
    assert c.ttl is None
    assert (c.proxy_host, c.proxy_port) == ("127.0.0.1", 8000)
    assert c.openai_base_url == "https://api.openai.com/v1"
    assert c.anthropic_base_url == "https://api.anthropic.com"
    assert c.upstreams == {}
    assert c.admin_token is None
    assert c.mode == "readwrite"


@pytest.mark.parametrize(
    ("variable", "raw", "attribute", "expected"),
    [
        ("BACKEND", "memory", "backend", "memory"),
        ("BACKEND", " Redis ", "backend", "redis"),
        ("SQLITE_PATH", "/tmp/x/cache.db", "sqlite_path", "/tmp/x/cache.db"),
        (
            "REDIS_URL",
            "rediss://:pw@redis.example:6380/2",
            "redis_url",
            "rediss://:pw@redis.example:6380/2",
        ),
        ("REDIS_HOST", "cache.internal", "redis_host", "cache.internal"),
        ("REDIS_PORT", "6390", "redis_port", 6390),
        ("REDIS_DB", "3", "redis_db", 3),
        ("REDIS_PASSWORD", "s3cret", "redis_password", "s3cret"),
        ("REDIS_CLUSTER", "true", "redis_cluster", True),
        ("REDIS_CLUSTER", "1", "redis_cluster", True),
        ("REDIS_CLUSTER", "no", "redis_cluster", False),
        ("MAX_SIZE", "50000", "max_size", 50000),
        ("TTL", "3600", "ttl", 3600.0),
        ("TTL", "0.5", "ttl", 0.5),
        ("TTL", "", "ttl", None),
        ("PROXY_HOST", "0.0.0.0", "proxy_host", "0.0.0.0"),
        ("PROXY_PORT", "9000", "proxy_port", 9000),
        (
            "OPENAI_BASE_URL",
            "http://localhost:9000/v1/",
            "openai_base_url",
            "http://localhost:9000/v1",
        ),
        (
            "ANTHROPIC_BASE_URL",
            "http://127.0.0.1:9001",
            "anthropic_base_url",
            "http://127.0.0.1:9001",
        ),
        (
            "UPSTREAMS",
            "groq=https://api.groq.com/openai/v1, local=http://localhost:11434/v1",
            "upstreams",
            {"groq": "https://api.groq.com/openai/v1", "local": "http://localhost:11434/v1"},
        ),
        ("ADMIN_TOKEN", "tok", "admin_token", "tok"),
        ("MODE", "offline", "mode", "offline"),
        ("MODE", "READONLY", "mode", "readonly"),
        ("MODE", "record", "mode", "record"),
        ("MODE", "off", "mode", "off"),
        ("REDIS_NAMESPACE", "team-a:cache", "redis_namespace", "team-a:cache"),
        ("FLIGHT_LOCK_TTL", "7.5", "flight_lock_ttl", 7.5),
        ("MEMORY_TIER_SIZE", "256", "memory_tier_size", 256),
        ("MEMORY_TIER_TTL", "2", "memory_tier_ttl", 2.0),
        ("LOG_LEVEL", "DEBUG", "log_level", "debug"),
    ],
)
def test_each_variable_is_parsed(variable: str, raw: str, attribute: str, expected: Any) -> None:
    c = config({f"LLM_CACHE_{variable}": raw})
    assert getattr(c, attribute) == expected


@pytest.mark.parametrize(
    ("variable", "raw"),
    [
        ("BACKEND", "postgres"),
        ("BACKEND", ""),
        ("REDIS_URL", "http://redis:6379"),
        ("REDIS_URL", "redis://"),
        ("REDIS_PORT", "abc"),
        ("REDIS_PORT", "70000"),
        ("REDIS_PORT", "0"),
        ("REDIS_DB", "-1"),
        ("REDIS_CLUSTER", "maybe"),
        ("MAX_SIZE", "0"),
        ("MAX_SIZE", "ten"),
        ("MAX_SIZE", "1.5"),
        ("TTL", "0"),
        ("TTL", "-5"),
        ("TTL", "soon"),
        ("PROXY_PORT", "65536"),
        ("PROXY_PORT", "http"),
        ("OPENAI_BASE_URL", "api.openai.com/v1"),
        ("ANTHROPIC_BASE_URL", "ftp://anthropic"),
        ("UPSTREAMS", "groq"),
        ("UPSTREAMS", "groq=notaurl"),
        ("UPSTREAMS", "cache=http://x"),
        ("MODE", "sometimes"),
        ("REDIS_NAMESPACE", "a b"),
        ("REDIS_NAMESPACE", "{x}"),
        ("FLIGHT_LOCK_TTL", "0"),
        ("MEMORY_TIER_SIZE", "-1"),
        ("LOG_LEVEL", "loud"),
    ],
)
def test_invalid_values_raise_value_error_naming_the_variable(variable: str, raw: str) -> None:
    name = f"LLM_CACHE_{variable}"
    with pytest.raises(ValueError, match=name):
        config({name: raw})


def test_dotenv_is_read_and_the_environment_wins(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text(
        "# settings for the test\n"
        "LLM_CACHE_BACKEND=memory\n"
        "export LLM_CACHE_MAX_SIZE=42\n"
        'LLM_CACHE_ADMIN_TOKEN="quoted token"\n'
        "LLM_CACHE_TTL=60  # a minute\n"
        "LLM_CACHE_MODE=readonly\n",
        encoding="utf-8",
    )
    c = Config(env={"LLM_CACHE_MODE": "offline"}, dotenv_path=dotenv)
    assert c.backend == "memory"
    assert c.max_size == 42
    assert c.admin_token == "quoted token"
    assert c.ttl == 60.0
    assert c.mode == "offline"  # the real environment wins over .env


def test_missing_dotenv_is_fine(tmp_path: Path) -> None:
    assert Config(env={}, dotenv_path=tmp_path / "absent.env").backend == "sqlite"


def test_invalid_value_in_dotenv_names_the_variable(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("LLM_CACHE_MAX_SIZE=lots\n", encoding="utf-8")
    with pytest.raises(ValueError, match="LLM_CACHE_MAX_SIZE"):
        Config(env={}, dotenv_path=dotenv)


def test_keyword_overrides_win_and_unknown_ones_fail() -> None:
    c = config({"LLM_CACHE_MAX_SIZE": "5"}, max_size=7, backend="memory")
    assert (c.max_size, c.backend) == (7, "memory")
    with pytest.raises(TypeError):
        config(no_such_setting=1)


def test_to_dict_masks_secrets() -> None:
    c = config(
        {
            "LLM_CACHE_REDIS_PASSWORD": "pw-secret",
            "LLM_CACHE_ADMIN_TOKEN": "tok-secret",
            "LLM_CACHE_REDIS_URL": "redis://user:url-secret@redis.example:6379/0",
        }
    )
    d = c.to_dict()
    assert d["redis_password"] == "***"
    assert d["admin_token"] == "***"
    assert d["redis_url"] == "redis://user:***@redis.example:6379/0"
    for value in ("pw-secret", "tok-secret", "url-secret"):
        assert value not in str(d) and value not in repr(c)
    assert d["max_size"] == 1000 and d["backend"] == "sqlite"
    assert c.redis_password == "pw-secret"  # masking does not touch the config itself


def test_to_dict_masks_password_only_url_and_leaves_others() -> None:
    d = config({"LLM_CACHE_REDIS_URL": "rediss://:only-secret@h:6380"}).to_dict()
    assert d["redis_url"] == "rediss://:***@h:6380"
    plain = config({"LLM_CACHE_REDIS_URL": "redis://h:6379/1"}).to_dict()
    assert plain["redis_url"] == "redis://h:6379/1"
    assert plain["redis_password"] is None and plain["admin_token"] is None


def test_get_storage_memory() -> None:
    storage = config(
        {"LLM_CACHE_BACKEND": "memory", "LLM_CACHE_MAX_SIZE": "12", "LLM_CACHE_TTL": "30"}
    ).get_storage()
    assert isinstance(storage, MemoryStorage)
    assert (storage.max_size, storage.ttl) == (12, 30.0)


def test_get_storage_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "cache.db"
    storage = config({"LLM_CACHE_SQLITE_PATH": str(path), "LLM_CACHE_MAX_SIZE": "34"}).get_storage()
    try:
        assert isinstance(storage, SQLiteStorage)
        assert storage.max_size == 34 and storage.ttl is None
        storage.set("k", {"v": 1})
        assert storage.get("k") == {"v": 1}
        assert path.exists()
    finally:
        storage.close()


def test_repr_masks_secrets_too() -> None:
    c = config(
        {
            "LLM_CACHE_REDIS_URL": "redis://:hunter2@cache:6379/0",
            "LLM_CACHE_REDIS_PASSWORD": "pw-xyz",
            "LLM_CACHE_ADMIN_TOKEN": "tok-abc",
        }
    )
    text = repr(c)
    assert "hunter2" not in text and "pw-xyz" not in text and "tok-abc" not in text
    assert "redis://:***@cache:6379/0" in text
