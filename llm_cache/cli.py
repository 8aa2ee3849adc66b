"""``llm-cache``: run the proxy and look after the cache from a shell."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson

from llm_cache import __version__
from llm_cache.cache.storage import StorageError
from llm_cache.config import Config

_DESCRIPTION = """\
llm-cache: make repeated LLM API calls instant and free.

Settings come from LLM_CACHE_* environment variables and a .env file in the
working directory (see the README). The storage commands act on the backend
those settings name (SQLite at ./llm_cache.db by default).
"""

_EPILOG = """\
examples:
  llm-cache serve                      start the proxy on 127.0.0.1:8000
  llm-cache serve --port 9000 --workers 2
  llm-cache stats                      entries, hits, misses, hit rate
  llm-cache clear --yes                remove every entry
  llm-cache config                     the settings in force (secrets masked)

then point an SDK at the proxy:
  OpenAI(base_url="http://localhost:8000/v1")
  Anthropic(base_url="http://localhost:8000")
"""


def build_parser() -> argparse.ArgumentParser:
    from llm_cache.proxy.server import add_serve_arguments

    parser = argparse.ArgumentParser(
        prog="llm-cache",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"llm-cache {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the caching HTTP proxy")
    add_serve_arguments(serve)

    stats = sub.add_parser("stats", help="show entries, hits, misses and hit rate")
    stats.add_argument("--json", action="store_true", help="print JSON instead of a table")

    clear = sub.add_parser("clear", help="remove every cached entry and reset the counters")
    clear.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")

    sub.add_parser("config", help="print the settings in force (secrets masked)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        if args.command == "serve":
            from llm_cache.proxy.server import run_from_args

            run_from_args(args)
            return 0
        config = Config()
        if args.command == "config":
            print(orjson.dumps(config.to_dict(), option=orjson.OPT_INDENT_2).decode())
            return 0
        if args.command == "stats":
            return _stats(config, as_json=args.json)
        if args.command == "clear":
            return _clear(config, assume_yes=args.yes)
    except ValueError as exc:  # invalid settings name their variable
        print(f"llm-cache: {exc}", file=sys.stderr)
        return 2
    except StorageError as exc:  # a cache that cannot be read: say so, no traceback
        print(f"llm-cache: the cache cannot be used: {exc}", file=sys.stderr)
        return 1
    parser.error(f"unknown command {args.command}")
    return 2


def _where(config: Config) -> str:
    if config.backend == "sqlite":
        return f"sqlite ({config.sqlite_path})"
    if config.backend == "redis":
        where = config.to_dict()["redis_url"]
        return f"redis ({where or f'{config.redis_host}:{config.redis_port}/{config.redis_db}'})"
    return "memory (this process only; always empty from the command line)"


def _stats(config: Config, *, as_json: bool) -> int:
    storage = config.get_storage()
    try:
        stats: dict[str, Any] = storage.get_stats()
    finally:
        storage.close()
    if as_json:
        print(orjson.dumps(stats).decode())
        return 0
    print(f"backend   {_where(config)}")
    print(f"entries   {stats['size']} of {stats['max_size']}")
    print(f"hits      {stats['hits']}")
    print(f"misses    {stats['misses']}")
    print(f"hit rate  {stats['hit_rate']:.2f} %")
    return 0


def _clear(config: Config, *, assume_yes: bool) -> int:
    if not assume_yes:
        if not sys.stdin.isatty():
            print(
                "llm-cache: refusing to clear without --yes (no terminal to ask)", file=sys.stderr
            )
            return 1
        answer = input(f"Remove every entry from {_where(config)}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing removed")
            return 1
    storage = config.get_storage()
    try:
        size = storage.get_size()
        storage.clear()
    finally:
        storage.close()
    print(f"removed {size} entries from {_where(config)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
