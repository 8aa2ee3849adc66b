"""The command line's plumbing, shared by ``llm_cache.cli`` and ``llm_cache.ops.commands``:
settings, the storage (closed afterwards, its failures turned into one clear line), options
and the small formatters of listings. Exit codes: 1 the operation failed, 2 bad usage/settings.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any, TypeVar

import click

from llm_cache.cache.storage import CacheStorage, StorageError
from llm_cache.config import Config

F = TypeVar("F", bound=Callable[..., Any])

DURATION_HELP = "DURATION such as 90s, 15m, 12h, 7d, 2w"


class Failed(click.ClickException):
    """An operation failed with a message for the user (exit code 1, or ``code``)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = code  # type: ignore[misc]  # per instance: 1 or 2

    def show(self, file: Any = None) -> None:
        if self.message:
            click.echo(f"llm-cache: {self.message}", err=True)


def err(message: str) -> None:
    click.echo(message, err=True)


# -- shared plumbing --------------------------------------------------------------------------


def load_config() -> Config:
    try:
        return Config()
    except ValueError as exc:  # invalid settings name their variable
        raise Failed(str(exc), code=2) from None


def where(config: Config) -> str:
    if config.backend == "sqlite":
        return f"sqlite ({config.sqlite_path})"
    if config.backend == "redis":
        where = config.to_dict()["redis_url"]
        return f"redis ({where or f'{config.redis_host}:{config.redis_port}/{config.redis_db}'})"
    return "memory (this process only; always empty from the command line)"


@contextmanager
def open_storage(config: Config, *, writes: bool = False) -> Iterator[CacheStorage]:
    """The configured storage, closed afterwards; storage failures become a clear message."""
    if writes and config.backend == "memory":
        raise Failed(
            "LLM_CACHE_BACKEND=memory lives inside one process: writing to it from the "
            "command line would be lost at exit. Use sqlite or redis.",
            code=2,
        )
    try:
        storage = config.get_storage()
    except StorageError as exc:
        raise Failed(f"the cache cannot be used: {where(config)}: {exc}") from None
    try:
        storage.health_check()  # an unreachable backend fails here, before any work
        yield storage
    except StorageError as exc:
        raise Failed(f"the cache cannot be used: storage error on {where(config)}: {exc}") from None
    finally:
        with suppress(StorageError):
            storage.close()


def duration(ctx: click.Context, param: click.Parameter, value: Any) -> float | None:
    """Click callback: a ``--since`` / ``--older-than`` value in seconds (``7d`` -> 604800)."""
    if value is None:
        return None
    from llm_cache.ops.durations import parse_duration

    try:
        return parse_duration(str(value))
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


def filter_options(fn: F) -> F:
    fn = click.option("--model", metavar="M", help="only entries for model M (exact name)")(fn)
    return click.option("--provider", metavar="P", help="only entries of provider P (openai...)")(
        fn
    )


def ago(ts: float | None, now: float) -> str:
    if ts is None:
        return "-"
    delta = max(0.0, now - ts)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if delta >= size:
            return f"{int(delta // size)}{unit} ago"
    return f"{int(delta)}s ago"


def size(n: int | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "kB", "MB"):
        if value < 1000 or unit == "MB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"  # pragma: no cover


def stamp(ts: float | None, now: float) -> str:
    if ts is None:
        return "-"
    text = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))
    return f"{text} ({ago(ts, now)})" if ts <= now else text


def check_readable(path: str) -> None:
    if os.path.isdir(path):
        raise Failed(f"{path} is a directory; give an export file (.jsonl, .jsonl.gz, .zst)")
    if not os.path.exists(path):
        raise Failed(f"{path}: no such file")


def warn_overflow(storage: CacheStorage, written: int) -> None:
    if written > storage.max_size:
        err(
            f"warning: {written} entries written but LLM_CACHE_MAX_SIZE is {storage.max_size}: "
            "the least recently used were evicted"
        )
