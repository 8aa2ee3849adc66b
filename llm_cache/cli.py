"""``llm-cache``: run the proxy and look after the cache from a shell.

Click parses and prints; the work is in ``llm_cache.ops`` (export, import, warm, inspect).
Data goes to stdout (``export -``, ``ls``, ``show``); progress bars, counts and errors go to
stderr, so piping stays clean. Exit codes: 0 done, 1 the operation failed (bad file, key not
found, storage error), 2 bad usage or settings.
"""

from __future__ import annotations

import sys
from typing import Any

import click
import orjson

from llm_cache import __version__
from llm_cache.ops.commands import COMMANDS
from llm_cache.ops.shell import Failed, err, load_config, open_storage, where

_DESCRIPTION = """\
llm-cache: make repeated LLM API calls instant and free.

Settings come from LLM_CACHE_* environment variables and a .env file in the
working directory (see the README). The storage commands act on the backend
those settings name (SQLite at ./llm_cache.db by default).
"""

_EPILOG = """\b
examples:
  llm-cache serve                      start the proxy on 127.0.0.1:8000
  llm-cache serve --port 9000 --workers 2
  llm-cache stats                      entries, hits, misses, hit rate
  llm-cache ls --limit 20              the newest entries
  llm-cache export backup.jsonl.zst    every entry, zstd-compressed
  llm-cache import backup.jsonl.zst    into the configured backend (any)
  llm-cache prune --older-than 30d     remove entries stored over 30 days ago
  llm-cache clear --yes                remove every entry
  llm-cache config                     the settings in force (secrets masked)
  llm-cache calibrate pairs.jsonl      semantic cache precision/recall on your pairs

\b
then point an SDK at the proxy:
  OpenAI(base_url="http://localhost:8000/v1")
  Anthropic(base_url="http://localhost:8000")
"""


# -- the command group ------------------------------------------------------------------------


@click.group(
    help=_DESCRIPTION,
    epilog=_EPILOG,
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="llm-cache", message="%(prog)s %(version)s")
@click.pass_context
def cli(ctx: click.Context) -> None:
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


@cli.command(
    context_settings={"ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
    short_help="run the caching HTTP proxy (--host, --port, --workers)",
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def serve(args: tuple[str, ...]) -> None:
    """Run the caching HTTP proxy (see ``llm-cache serve --help``)."""
    import argparse

    from llm_cache.proxy.server import add_serve_arguments, run_from_args

    parser = argparse.ArgumentParser(
        prog="llm-cache serve",
        description="Run the caching HTTP proxy. Settings come from LLM_CACHE_* variables "
        "and ./.env; the flags override them.",
    )
    add_serve_arguments(parser)
    parsed = parser.parse_args(list(args))
    try:
        run_from_args(parsed)
    except ValueError as exc:
        raise Failed(str(exc), code=2) from None


@cli.command(short_help="show entries, hits, misses and hit rate")
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
def stats(as_json: bool) -> None:
    """Show entries, hits, misses and hit rate of the configured backend."""
    config = load_config()
    with open_storage(config) as storage:
        data: dict[str, Any] = storage.get_stats()
    from llm_cache.observability.report import add_proxy_savings, savings_lines

    add_proxy_savings(config, data)  # savings are counted by the running proxy
    if as_json:
        click.echo(orjson.dumps(data).decode())
        return
    click.echo(f"backend   {where(config)}")
    click.echo(f"entries   {data['size']} of {data['max_size']}")
    click.echo(f"hits      {data['hits']}")
    click.echo(f"misses    {data['misses']}")
    click.echo(f"hit rate  {data['hit_rate']:.2f} %")
    for line in savings_lines(data):
        click.echo(line)


@cli.command(short_help="remove every cached entry and reset the counters")
@click.option("--yes", "-y", "assume_yes", is_flag=True, help="do not ask for confirmation")
def clear(assume_yes: bool) -> None:
    """Remove every cached entry and reset the counters."""
    config = load_config()
    if not assume_yes:
        if not sys.stdin.isatty():
            raise Failed("refusing to clear without --yes (no terminal to ask)")
        answer = input(f"Remove every entry from {where(config)}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            click.echo("nothing removed")
            raise Failed("", code=1)
    with open_storage(config) as storage:
        size = storage.get_size()
        storage.clear()
    click.echo(f"removed {size} entries from {where(config)}")


@cli.command(short_help="print the settings in force (secrets masked)")
def config() -> None:
    """Print the settings in force as JSON (secrets masked)."""
    click.echo(orjson.dumps(load_config().to_dict(), option=orjson.OPT_INDENT_2).decode())


for _command in COMMANDS:
    cli.add_command(_command)


# -- semantic cache ---------------------------------------------------------------------------


@cli.command(short_help="measure the semantic cache on your own labelled question pairs")
@click.argument("file", metavar="FILE")
@click.option(
    "--embedder",
    default="local",
    show_default=True,
    help="local or local:minilm (upstream embedders: measure through the proxy)",
)
@click.option(
    "--max-false-hits",
    "max_false_hits",
    type=float,
    default=1.0,
    show_default=True,
    metavar="PERCENT",
    help="largest acceptable share of false hits",
)
@click.option("--no-guards", "no_guards", is_flag=True, help="similarity alone (to compare)")
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
def calibrate(
    file: str, embedder: str, max_false_hits: float, no_guards: bool, as_json: bool
) -> int:
    """Recall and false hits per threshold on FILE (JSON Lines, one pair a line:
    {"a": "...", "b": "...", "same": true|false, "kind": "optional group"}), and the lowest
    threshold that keeps false hits within --max-false-hits."""
    import argparse

    from llm_cache.semantic.calibrate import run

    return run(
        argparse.Namespace(
            file=file,
            embedder=embedder,
            max_false_hits=max_false_hits,
            no_guards=no_guards,
            json=as_json,
        )
    )


# -- entry point --------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 done, 1 failed, 2 bad usage/settings)."""
    try:
        code = cli.main(args=argv, prog_name="llm-cache", standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.Abort:
        err("aborted")
        return 1
    except KeyboardInterrupt:
        err("interrupted")
        return 130
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
