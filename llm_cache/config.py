"""Settings: read once from the environment (and ``./.env``), validated, passed down.

Nothing here is a module-level global: ``Config()`` reads the environment when it is built, and
keyword arguments override it, so tests build the config they need instead of patching.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from llm_cache.cache.storage import CacheStorage

ENV_PREFIX = "LLM_CACHE_"
BACKENDS = ("sqlite", "redis", "memory")
MODES = ("readwrite", "readonly", "offline", "record", "off")
SECRET_FIELDS = frozenset({"redis_password", "admin_token", "secret"})
#: The original project's nested ``to_dict()`` sections.
_SECTIONS = frozenset({"sqlite", "redis", "proxy"})
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


def read_dotenv(path: Path) -> dict[str, str]:
    """Parse a ``.env`` file: ``KEY=value`` lines, ``#`` comments, optional quotes/``export``."""
    values: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return values
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        if line.startswith("export "):
            line = line[len("export ") :]
        name, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        values[name.strip()] = value
    return values


def _parse_bool(name: str, raw: str) -> bool:
    low = raw.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError(f"{name} must be true or false, got {raw!r}")


def _parse_int(name: str, raw: str, minimum: int | None) -> int:
    """An integer setting; ``minimum=None`` leaves the range check to ``_validate``."""
    try:
        value = int(raw.strip())
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return value


def _parse_ttl(name: str, raw: str) -> float | None:
    if not raw.strip():
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not value > 0:
        raise ValueError(f"{name} must be a positive number of seconds, got {raw!r}")
    return value


def _check_url(name: str, value: str, schemes: tuple[str, ...]) -> str:
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.netloc:
        raise ValueError(f"{name} must be a {' or '.join(schemes)} URL, got {value!r}")
    return value.rstrip("/")


def _parse_upstreams(name: str, raw: str) -> dict[str, str]:
    upstreams: dict[str, str] = {}
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        label, sep, url = item.partition("=")
        label = label.strip()
        if not sep or not label or not label.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"{name} entries must look like name=url, got {item!r}")
        if label in ("v1", "cache", "health"):
            raise ValueError(f"{name}: {label!r} is reserved and cannot name an upstream")
        upstreams[label] = _check_url(name, url.strip(), ("http", "https"))
    return upstreams


@dataclass
class Config:
    """Every ``LLM_CACHE_*`` setting (SPEC.md). ``Config(max_size=10)`` overrides one."""

    backend: str = "sqlite"
    sqlite_path: str = "./llm_cache.db"
    redis_url: str | None = None
    redis_host: str = "localhost"
    redis_port: int = 6379
    redis_db: int = 0
    redis_password: str | None = field(default=None, repr=False)
    redis_cluster: bool = False
    redis_namespace: str = "llm_cache"
    max_size: int = 1000
    ttl: float | None = None
    proxy_host: str = "127.0.0.1"
    proxy_port: int = 8000
    openai_base_url: str = "https://api.openai.com/v1"
    anthropic_base_url: str = "https://api.anthropic.com"
    upstreams: dict[str, str] = field(default_factory=dict)
    admin_token: str | None = field(default=None, repr=False)
    mode: str = "readwrite"
    log_level: str = "info"
    #: ``text`` or ``json`` (every log line one JSON object) -- observability
    log_format: str = "text"
    memory_tier_size: int = 0
    memory_tier_ttl: float = 5.0
    flight_lock_ttl: float = 60.0
    # More providers (SPEC round 2). None: the provider is not served until it is set.
    gemini_base_url: str = "https://generativelanguage.googleapis.com"
    ollama_base_url: str = "http://127.0.0.1:11434"
    cohere_base_url: str = "https://api.cohere.com"
    azure_openai_base_url: str | None = None
    bedrock_base_url: str | None = None  # default: from aws_region
    aws_region: str | None = None
    # -- engine limits (issue 8/9) --
    upstream_read_timeout: float = 600.0
    max_body_bytes: int = 32 * 1024 * 1024
    # -- tenants (issue 15) --
    isolate_by: str = "none"
    secret: str | None = field(default=None, repr=False)
    # semantic cache (llm_cache/semantic): opt-in; threshold None = the calibrated default
    semantic: bool = False
    semantic_threshold: float | None = None
    semantic_embedder: str = "local"

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        dotenv_path: str | Path | None = ".env",
        **overrides: Any,
    ) -> None:
        """Read ``env`` (default ``os.environ``) over ``dotenv_path``, then apply ``overrides``."""
        source: dict[str, str] = {}
        if dotenv_path is not None:
            source.update(read_dotenv(Path(dotenv_path)))
        source.update(os.environ if env is None else env)
        for f in fields(self):
            default = f.default_factory() if callable(f.default_factory) else f.default
            setattr(self, f.name, default)
        self._load(source)
        for name, value in overrides.items():
            if name not in {f.name for f in fields(self)}:
                raise TypeError(f"unknown setting {name!r}")
            setattr(self, name, value)
        self._validate()

    def _load(self, env: Mapping[str, str]) -> None:
        def get(suffix: str) -> str | None:
            value = env.get(ENV_PREFIX + suffix)
            return None if value is None else value.strip()

        p = ENV_PREFIX
        if (v := get("BACKEND")) is not None:
            self.backend = v.lower()
        if v := get("SQLITE_PATH"):
            self.sqlite_path = v
        if v := get("REDIS_URL"):
            self.redis_url = v
        if v := get("REDIS_HOST"):
            self.redis_host = v
        if (v := get("REDIS_PORT")) is not None:
            self.redis_port = _parse_int(p + "REDIS_PORT", v, 1)
        if (v := get("REDIS_DB")) is not None:
            self.redis_db = _parse_int(p + "REDIS_DB", v, 0)
        if v := get("REDIS_PASSWORD"):
            self.redis_password = v
        if (v := get("REDIS_CLUSTER")) is not None:
            self.redis_cluster = _parse_bool(p + "REDIS_CLUSTER", v)
        if (v := get("MAX_SIZE")) is not None:
            self.max_size = _parse_int(p + "MAX_SIZE", v, None)
        if (v := get("TTL")) is not None:
            self.ttl = _parse_ttl(p + "TTL", v)
        if v := get("PROXY_HOST"):
            self.proxy_host = v
        if (v := get("PROXY_PORT")) is not None:
            try:
                self.proxy_port = int(v)
            except ValueError:
                raise ValueError(
                    f"Invalid {p}PROXY_PORT: {v!r}. Must be a whole number between 0 and 65535 "
                    "(0 picks a free port)"
                ) from None
        if v := get("OPENAI_BASE_URL"):
            self.openai_base_url = v
        if v := get("ANTHROPIC_BASE_URL"):
            self.anthropic_base_url = v
        if (v := get("UPSTREAMS")) is not None:
            self.upstreams = _parse_upstreams(p + "UPSTREAMS", v)
        if v := get("ADMIN_TOKEN"):
            self.admin_token = v
        if (v := get("MODE")) is not None:
            self.mode = v.lower()
        if v := get("LOG_LEVEL"):
            self.log_level = v.lower()
        if v := get("LOG_FORMAT"):
            self.log_format = v.lower()
        if v := get("REDIS_NAMESPACE"):
            if not all(c.isalnum() or c in "-_.:" for c in v):
                raise ValueError(
                    f"{p}REDIS_NAMESPACE may hold letters, digits and - _ . : only, got {v!r}"
                )
            self.redis_namespace = v
        if v := get("FLIGHT_LOCK_TTL"):
            lock_ttl = _parse_ttl(p + "FLIGHT_LOCK_TTL", v)
            if lock_ttl is not None:
                self.flight_lock_ttl = lock_ttl
        if v := get("UPSTREAM_READ_TIMEOUT"):
            read_timeout = _parse_ttl(p + "UPSTREAM_READ_TIMEOUT", v)
            if read_timeout is not None:
                self.upstream_read_timeout = read_timeout
        if (v := get("MAX_BODY_BYTES")) is not None:
            self.max_body_bytes = _parse_int(p + "MAX_BODY_BYTES", v, 1)
        if (v := get("ISOLATE_BY")) is not None:
            self.isolate_by = v.lower() or "none"
        if v := get("SECRET"):
            self.secret = v
        if (v := get("MEMORY_TIER_SIZE")) is not None:
            self.memory_tier_size = _parse_int(p + "MEMORY_TIER_SIZE", v, 0)
        if v := get("MEMORY_TIER_TTL"):
            tier_ttl = _parse_ttl(p + "MEMORY_TIER_TTL", v)
            if tier_ttl is not None:
                self.memory_tier_ttl = tier_ttl
        self._load_provider_settings(env, get)
        self._load_semantic(env)

    def _load_semantic(self, env: Mapping[str, str]) -> None:
        """``LLM_CACHE_SEMANTIC``, ``_SEMANTIC_THRESHOLD``, ``_SEMANTIC_EMBEDDER``."""
        p = ENV_PREFIX
        if (v := env.get(p + "SEMANTIC")) is not None:
            self.semantic = _parse_bool(p + "SEMANTIC", v)
        if (v := env.get(p + "SEMANTIC_THRESHOLD")) is not None and v.strip():
            try:
                self.semantic_threshold = float(v)
            except ValueError:
                raise ValueError(
                    f"{p}SEMANTIC_THRESHOLD must be a number between 0 and 1, got {v!r}"
                ) from None
        if (v := env.get(p + "SEMANTIC_EMBEDDER")) is not None and v.strip():
            self.semantic_embedder = v.strip()

    def _validate_semantic(self) -> None:
        p = ENV_PREFIX
        t = self.semantic_threshold
        if t is not None and not 0.0 <= t <= 1.0:
            raise ValueError(f"{p}SEMANTIC_THRESHOLD must be between 0 and 1, got {t!r}")
        from llm_cache.semantic.settings import parse_embedder_spec

        parse_embedder_spec(self.semantic_embedder)

    def _load_provider_settings(self, env: Mapping[str, str], get: Any) -> None:
        """Upstreams of the round-2 providers; the AWS region falls back to AWS's own."""
        for name in ("GEMINI", "OLLAMA", "COHERE", "AZURE_OPENAI", "BEDROCK"):
            if v := get(f"{name}_BASE_URL"):
                setattr(self, f"{name.lower()}_base_url", v)
        region = get("AWS_REGION") or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
        if region and region.strip():
            self.aws_region = region.strip()

    def _validate(self) -> None:
        p = ENV_PREFIX
        # The first words of these three are the original project's (users match on them).
        if self.backend not in BACKENDS:
            raise ValueError(
                f"Invalid {p}BACKEND: {self.backend!r}. Must be one of {', '.join(BACKENDS)}"
            )
        if not isinstance(self.max_size, int) or self.max_size <= 0:
            raise ValueError(
                f"{p}MAX_SIZE must be positive, got {self.max_size!r} "
                "(the most entries kept, at least 1)"
            )
        if not isinstance(self.proxy_port, int) or not 0 <= self.proxy_port <= 65535:
            raise ValueError(
                f"Invalid {p}PROXY_PORT: {self.proxy_port!r}. Must be between 0 and 65535 "
                "(0 picks a free port)"
            )
        if self.mode not in MODES:
            raise ValueError(f"{p}MODE must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.redis_url:
            self.redis_url = _check_url(p + "REDIS_URL", self.redis_url, ("redis", "rediss"))
        if self.redis_port > 65535:
            raise ValueError(f"{p}REDIS_PORT must be at most 65535, got {self.redis_port}")
        self.openai_base_url = _check_url(
            p + "OPENAI_BASE_URL", self.openai_base_url, ("http", "https")
        )
        self.anthropic_base_url = _check_url(
            p + "ANTHROPIC_BASE_URL", self.anthropic_base_url, ("http", "https")
        )
        if self.log_level not in ("critical", "error", "warning", "info", "debug"):
            raise ValueError(f"{p}LOG_LEVEL must be a logging level name, got {self.log_level!r}")
        if self.log_format not in ("text", "json"):
            raise ValueError(f"{p}LOG_FORMAT must be text or json, got {self.log_format!r}")
        if self.isolate_by not in ("none", "api_key"):
            raise ValueError(f"{p}ISOLATE_BY must be none or api_key, got {self.isolate_by!r}")
        if self.memory_tier_size < 0:
            raise ValueError(f"{p}MEMORY_TIER_SIZE must be at least 0, got {self.memory_tier_size}")
        if not self.memory_tier_ttl > 0:
            raise ValueError(
                f"{p}MEMORY_TIER_TTL must be a positive number of seconds, "
                f"got {self.memory_tier_ttl!r}"
            )
        self._validate_provider_settings()
        self._validate_semantic()

    def _validate_provider_settings(self) -> None:
        p = ENV_PREFIX
        for name in ("gemini", "ollama", "cohere", "azure_openai", "bedrock"):
            attr = f"{name}_base_url"
            value = getattr(self, attr)
            if value is not None:
                setattr(self, attr, _check_url(p + attr.upper(), value, ("http", "https")))
        if self.aws_region is not None and not all(
            c.isalnum() or c == "-" for c in self.aws_region
        ):
            raise ValueError(f"{p}AWS_REGION must look like us-east-1, got {self.aws_region!r}")
        if self.bedrock_base_url is None and self.aws_region:
            self.bedrock_base_url = f"https://bedrock-runtime.{self.aws_region}.amazonaws.com"

    def __repr__(self) -> str:
        """Like the dataclass repr, but from ``to_dict()``: no secret ever reaches a log line."""
        items = self.to_dict().items()
        return "Config(" + ", ".join(f"{k}={v!r}" for k, v in items if k not in _SECTIONS) + ")"

    def to_dict(self) -> dict[str, Any]:
        """All settings, with secrets (and a password inside the Redis URL) shown as ``***``.

        Also the original project's nested sections, which its users read:
        ``{"sqlite": {"path"}, "redis": {"host", "port", "db", "password"},
        "proxy": {"host", "port"}}``.
        """
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in SECRET_FIELDS and value:
                value = "***"
            elif f.name == "upstreams":
                value = dict(value)
            out[f.name] = value
        if self.redis_url:
            out["redis_url"] = _mask_url_password(self.redis_url)
        # An upstream URL may carry a password (https://user:secret@host) or a query key.
        for name, value in list(out.items()):
            if name.endswith("_base_url") and isinstance(value, str):
                out[name] = _mask_url_password(value)
        out["upstreams"] = {k: _mask_url_password(v) for k, v in self.upstreams.items()}
        out["sqlite"] = {"path": self.sqlite_path}
        out["redis"] = {
            "host": self.redis_host,
            "port": self.redis_port,
            "db": self.redis_db,
            "password": "***" if self.redis_password else None,
        }
        out["proxy"] = {"host": self.proxy_host, "port": self.proxy_port}
        return out

    def get_storage(self) -> CacheStorage:
        """Build the configured backend (imports it lazily: optional extras fail only here).

        With ``memory_tier_size`` > 0 a SQLite or Redis backend gets an in-process LRU of that
        many entries in front (:class:`~llm_cache.cache.tiered_storage.TieredStorage`), each kept
        at most ``memory_tier_ttl`` seconds.
        """
        backend = self._backend_storage()
        if self.memory_tier_size > 0 and self.backend != "memory":
            from llm_cache.cache.tiered_storage import TieredStorage

            return TieredStorage(backend, size=self.memory_tier_size, ttl=self.memory_tier_ttl)
        return backend

    def _backend_storage(self) -> CacheStorage:
        if self.backend == "memory":
            from llm_cache.cache.memory_storage import MemoryStorage

            return MemoryStorage(max_size=self.max_size, ttl=self.ttl)
        if self.backend == "sqlite":
            from llm_cache.cache.sqlite_storage import SQLiteStorage

            return SQLiteStorage(db_path=self.sqlite_path, max_size=self.max_size, ttl=self.ttl)
        from llm_cache.cache.redis_storage import RedisStorage

        return RedisStorage.from_config(self)


def _mask_url_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is not None:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        parts = parts._replace(netloc=netloc)
    if parts.query:
        query = "&".join(
            f"{k}=***" if k.lower() in ("key", "api_key", "api-key") else f"{k}={v}"
            for k, _, v in (item.partition("=") for item in parts.query.split("&"))
        )
        parts = parts._replace(query=query)
    return parts.geturl()
