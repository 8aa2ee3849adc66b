"""``llm-cache``: run the proxy and look after the cache from a shell.

Click parses and prints; the work is in ``llm_cache.ops`` (export, import, warm, inspect).
Data goes to stdout (``export -``, ``ls``, ``show``); progress bars, counts and errors go to
stderr, so piping stays clean. Exit codes: 0 done, 1 the operation failed (bad file, key not
found, storage error), 2 bad usage or settings.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any, TypeVar

import click
import orjson

from llm_cache import __version__
from llm_cache.cache.storage import CacheStorage, StorageError
from llm_cache.config import Config

F = TypeVar("F", bound=Callable[..., Any])

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

_DURATION_HELP = "DURATION such as 90s, 15m, 12h, 7d, 2w"


class _Failed(click.ClickException):
    """An operation failed with a message for the user (exit code 1, or ``code``)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = code  # type: ignore[misc]  # per instance: 1 or 2

    def show(self, file: Any = None) -> None:
        if self.message:
            click.echo(f"llm-cache: {self.message}", err=True)


def _err(message: str) -> None:
    click.echo(message, err=True)


# -- shared plumbing --------------------------------------------------------------------------


def _config() -> Config:
    try:
        return Config()
    except ValueError as exc:  # invalid settings name their variable
        raise _Failed(str(exc), code=2) from None


def _where(config: Config) -> str:
    if config.backend == "sqlite":
        return f"sqlite ({config.sqlite_path})"
    if config.backend == "redis":
        where = config.to_dict()["redis_url"]
        return f"redis ({where or f'{config.redis_host}:{config.redis_port}/{config.redis_db}'})"
    return "memory (this process only; always empty from the command line)"


@contextmanager
def _storage(config: Config, *, writes: bool = False) -> Iterator[CacheStorage]:
    """The configured storage, closed afterwards; storage failures become a clear message."""
    if writes and config.backend == "memory":
        raise _Failed(
            "LLM_CACHE_BACKEND=memory lives inside one process: writing to it from the "
            "command line would be lost at exit. Use sqlite or redis.",
            code=2,
        )
    try:
        storage = config.get_storage()
    except StorageError as exc:
        raise _Failed(f"the cache cannot be used: {_where(config)}: {exc}") from None
    try:
        storage.health_check()  # an unreachable backend fails here, before any work
        yield storage
    except StorageError as exc:
        raise _Failed(
            f"the cache cannot be used: storage error on {_where(config)}: {exc}"
        ) from None
    finally:
        with suppress(StorageError):
            storage.close()


def _duration(option: str) -> Callable[[click.Context, click.Parameter, Any], float | None]:
    def convert(ctx: click.Context, param: click.Parameter, value: Any) -> float | None:
        if value is None:
            return None
        from llm_cache.ops.durations import parse_duration

        try:
            return parse_duration(str(value))
        except ValueError as exc:
            raise click.BadParameter(str(exc), ctx=ctx, param=param) from None

    return convert


def _filter_options(fn: F) -> F:
    fn = click.option("--model", metavar="M", help="only entries for model M (exact name)")(fn)
    return click.option("--provider", metavar="P", help="only entries of provider P (openai...)")(
        fn
    )


def _ago(ts: float | None, now: float) -> str:
    if ts is None:
        return "-"
    delta = max(0.0, now - ts)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if delta >= size:
            return f"{int(delta // size)}{unit} ago"
    return f"{int(delta)}s ago"


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "kB", "MB"):
        if value < 1000 or unit == "MB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"  # pragma: no cover


def _stamp(ts: float | None, now: float) -> str:
    if ts is None:
        return "-"
    text = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))
    return f"{text} ({_ago(ts, now)})" if ts <= now else text


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
        raise _Failed(str(exc), code=2) from None


@cli.command(short_help="show entries, hits, misses and hit rate")
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
def stats(as_json: bool) -> None:
    """Show entries, hits, misses and hit rate of the configured backend."""
    config = _config()
    with _storage(config) as storage:
        data: dict[str, Any] = storage.get_stats()
    from llm_cache.observability.report import add_proxy_savings, savings_lines

    add_proxy_savings(config, data)  # savings are counted by the running proxy
    if as_json:
        click.echo(orjson.dumps(data).decode())
        return
    click.echo(f"backend   {_where(config)}")
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
    config = _config()
    if not assume_yes:
        if not sys.stdin.isatty():
            raise _Failed("refusing to clear without --yes (no terminal to ask)")
        answer = input(f"Remove every entry from {_where(config)}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            click.echo("nothing removed")
            raise _Failed("", code=1)
    with _storage(config) as storage:
        size = storage.get_size()
        storage.clear()
    click.echo(f"removed {size} entries from {_where(config)}")


@cli.command(short_help="print the settings in force (secrets masked)")
def config() -> None:
    """Print the settings in force as JSON (secrets masked)."""
    click.echo(orjson.dumps(_config().to_dict(), option=orjson.OPT_INDENT_2).decode())


# -- export / import / warm -------------------------------------------------------------------


@cli.command("export", short_help="write entries to a JSON Lines file (.gz / .zst)")
@click.argument("path", default="-", metavar="[PATH|-]")
@_filter_options
@click.option(
    "--since",
    metavar="DURATION",
    callback=_duration("--since"),
    help=f"only entries stored within the last {_DURATION_HELP}",
)
def export_cmd(path: str, provider: str | None, model: str | None, since: float | None) -> None:
    """Write entries to PATH as JSON Lines, one entry a line (stdout when PATH is - or absent).

    PATH ending in .gz or .zst is compressed with gzip or zstd. The file is written beside
    PATH and renamed into place when complete. Each line:
    {"format": "llm-cache-entry/1", "key", "request", "response", "metadata"}.
    """
    from llm_cache.ops.transfer import EntryFilter, export_entries

    config = _config()
    flt = EntryFilter(provider=provider, model=model, since=since)
    with _storage(config) as storage:
        try:
            result = export_entries(storage, path, flt)
        except OSError as exc:
            raise _Failed(f"cannot write {path}: {exc}") from None
    target = "stdout" if path == "-" else path
    _err(f"exported {result.written} entries from {_where(config)} to {target}")
    if result.unreadable:
        shown = ", ".join(k[:16] for k in result.unreadable[:5])
        _err(f"skipped {len(result.unreadable)} unreadable entries ({shown})")


@cli.command("import", short_help="load a JSON Lines export into the configured backend")
@click.argument("path", metavar="PATH|-")
@click.option("--skip-invalid", is_flag=True, help="import the good lines, report the bad ones")
@click.option("--skip-existing", is_flag=True, help="keep entries already present")
@click.option("--dry-run", is_flag=True, help="check the file, store nothing")
def import_cmd(path: str, skip_invalid: bool, skip_existing: bool, dry_run: bool) -> None:
    """Load an export (plain, .gz or .zst; - for stdin) into the configured backend.

    Any backend can be loaded from an export of any backend. Entries whose key rules changed
    since the export are re-keyed from their stored request; entries past their expiry are
    skipped. The whole file is checked first: if a line is bad, nothing is imported and every
    bad line is named (--skip-invalid imports the rest instead).
    """
    from llm_cache.ops.files import spooled_input
    from llm_cache.ops.transfer import ImportFileError, ImportStorageError, import_file

    config = _config()
    if path != "-":
        _check_readable(path)
    with _storage(config, writes=not dry_run) as storage, spooled_input(path) as source:
        try:
            result = import_file(
                storage,
                source,
                skip_invalid=skip_invalid,
                skip_existing=skip_existing,
                dry_run=dry_run,
            )
        except ImportFileError as exc:
            raise _Failed(str(exc).replace(source, path)) from None
        except ImportStorageError as exc:
            raise _Failed(str(exc)) from None
    for line, message in result.invalid[:20]:
        _err(f"skipped {path}:{line}: {message}")
    if len(result.invalid) > 20:
        _err(f"... and {len(result.invalid) - 20} more bad lines skipped")
    if dry_run:
        _err(f"{path}: {result.imported} valid entries, {len(result.invalid)} bad lines")
        return
    details = [
        f"{n} {what}"
        for n, what in (
            (result.rekeyed, "re-keyed under the current key rules"),
            (result.expired, "expired, skipped"),
            (result.existing, "already present, kept"),
            (len(result.invalid), "bad lines skipped"),
        )
        if n
    ]
    extra = f" ({'; '.join(details)})" if details else ""
    _err(f"imported {result.imported} entries into {_where(config)}{extra}")
    _warn_overflow(storage, result.imported)


def _check_readable(path: str) -> None:
    import os

    if os.path.isdir(path):
        raise _Failed(f"{path} is a directory; give an export file (.jsonl, .jsonl.gz, .zst)")
    if not os.path.exists(path):
        raise _Failed(f"{path}: no such file")


def _warn_overflow(storage: CacheStorage, written: int) -> None:
    if written > storage.max_size:
        _err(
            f"warning: {written} entries written but LLM_CACHE_MAX_SIZE is {storage.max_size}: "
            "the least recently used were evicted"
        )


@cli.command(short_help="load an OpenAI Batch job's answers as entries")
@click.option(
    "--openai-batch",
    "batch",
    nargs=2,
    required=True,
    metavar="INPUT.jsonl OUTPUT.jsonl",
    help="the Batch job's input file and its output file",
)
def warm(batch: tuple[str, str]) -> None:
    """Store the answers of an OpenAI Batch API job, so the same requests made later (through
    the proxy or the httpx transport, with the configured OpenAI upstream) are hits."""
    from llm_cache.ops.progress import progress
    from llm_cache.ops.transfer import ImportStorageError, import_items
    from llm_cache.ops.warm import BatchFileError, plan_openai_batch

    config = _config()
    for path in batch:
        _check_readable(path)
    try:
        plan = plan_openai_batch(batch[0], batch[1], config.openai_base_url)
    except (BatchFileError, OSError, EOFError) as exc:
        raise _Failed(str(exc)) from None
    with _storage(config, writes=True) as storage, progress("warming", len(plan.items)) as bar:
        try:
            result = import_items(storage, plan.items, bar)
        except ImportStorageError as exc:
            raise _Failed(str(exc)) from None
    details = [
        f"{n} {what}"
        for n, what in (
            (plan.failed, "failed in the batch, skipped"),
            (plan.unanswered, "requests without a result"),
            (plan.unknown, "results without a request"),
            (len(plan.unsupported), "on endpoints the cache does not serve"),
        )
        if n
    ]
    extra = f" ({'; '.join(details)})" if details else ""
    _err(f"stored {result.imported} answers into {_where(config)}{extra}")
    _warn_overflow(storage, result.imported)


# -- inspect ------------------------------------------------------------------------------------


@cli.command("ls", short_help="list entries, newest first")
@_filter_options
@click.option("--limit", "-n", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--all", "show_all", is_flag=True, help="no limit")
@click.option("--json", "as_json", is_flag=True, help="print a JSON array (full keys)")
def ls_cmd(
    provider: str | None, model: str | None, limit: int, show_all: bool, as_json: bool
) -> None:
    """List entries, newest first: key (prefix), provider, model, endpoint, size, age, hits."""
    from llm_cache.ops.inspect import list_entries
    from llm_cache.ops.transfer import EntryFilter

    config = _config()
    with _storage(config) as storage:
        entries = list_entries(
            storage, EntryFilter(provider=provider, model=model), None if show_all else limit
        )
        total = storage.get_size()
    if as_json:
        click.echo(orjson.dumps(entries).decode())
        return
    if not entries:
        _err(f"no entries in {_where(config)}")
        return
    now = time.time()
    rows = [("KEY", "PROVIDER", "MODEL", "ENDPOINT", "SIZE", "CREATED", "LAST HIT", "HITS")]
    for row in entries:
        rows.append(
            (
                row["key"][:16],
                row["provider"] or "-",
                row["model"] or "-",
                row["endpoint"] or "-",
                _size(row["size"]),
                _ago(row["created"], now),
                _ago(row["last_hit"], now),
                "-" if row["hits"] is None else str(row["hits"]),
            )
        )
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    for r in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    _err(f"{len(entries)} shown of {total} entries in {_where(config)}")


@cli.command(short_help="show one entry: its request and its answer")
@click.argument("key")
@click.option("--json", "as_json", is_flag=True, help="print the export record as JSON")
def show(key: str, as_json: bool) -> None:
    """Show the entry under KEY (or a unique key prefix, 6+ characters): its request and answer.

    Nothing is counted: showing an entry is not a hit.
    """
    from llm_cache.cache.codec import CorruptValueError
    from llm_cache.ops.inspect import KeyNotFound, find_entry
    from llm_cache.ops.records import to_record

    config = _config()
    with _storage(config) as storage:
        try:
            entry = find_entry(storage, key)
        except KeyNotFound as exc:
            raise _Failed(str(exc)) from None
    try:
        record = to_record(entry)
    except CorruptValueError as exc:
        raise _Failed(f"entry {entry.key} is unreadable: {exc}") from None
    if as_json:
        click.echo(orjson.dumps(record, option=orjson.OPT_INDENT_2).decode())
        return
    _print_entry(record, entry.info)


def _print_entry(record: dict[str, Any], info: Any) -> None:
    now = time.time()
    meta = record.get("metadata") or {}
    hits = info.get("hits")
    for label, value in (
        ("key", record["key"]),
        ("provider", meta.get("provider") or "-"),
        ("endpoint", meta.get("endpoint") or "-"),
        ("model", meta.get("model") or "-"),
        ("created", _stamp(meta.get("created") or info.get("created"), now)),
        ("last hit", _stamp(info.get("last_hit"), now)),
        ("hits", "-" if hits is None else hits),
        ("size", _size(info.get("size"))),
        ("expires", _stamp(info.get("expires"), now) if info.get("expires") else "never"),
    ):
        click.echo(f"{label:<9} {value}")
    click.echo("\nrequest")
    request = record.get("request")
    if request is None:
        click.echo("  (not recorded: this entry keeps only its answer)")
    else:
        click.echo(orjson.dumps(request, option=orjson.OPT_INDENT_2).decode())
    response = record["response"]
    if "value" in response:
        click.echo("\nvalue (a cached function result)")
        click.echo(orjson.dumps(response["value"], option=orjson.OPT_INDENT_2).decode())
        return
    click.echo(f"\nresponse  {response.get('status')} {response.get('content_type')}")
    if "events" in response:
        for event in response["events"]:
            data = str(event.get("data", "")).rstrip("\n")
            click.echo(f"[{float(event.get('t') or 0):7.3f}s] {data}")
    elif "body" in response:
        click.echo(orjson.dumps(response["body"], option=orjson.OPT_INDENT_2).decode())
    else:
        click.echo(response.get("body_text", ""))


@cli.command(short_help="remove one entry")
@click.argument("key")
def rm(key: str) -> None:
    """Remove the entry under KEY (or a unique key prefix, 6+ characters)."""
    from llm_cache.ops.inspect import KeyNotFound, find_entry

    config = _config()
    with _storage(config) as storage:
        try:
            entry = find_entry(storage, key)
        except KeyNotFound as exc:
            raise _Failed(str(exc)) from None
        if not storage.delete(entry.key):
            raise _Failed(f"entry {entry.key} was removed meanwhile")
    _err(f"removed {entry.key} from {_where(config)}")


@cli.command(short_help="remove entries stored longer ago than a duration")
@click.option(
    "--older-than",
    "older_than",
    required=True,
    metavar="DURATION",
    callback=_duration("--older-than"),
    help=f"remove entries stored more than {_DURATION_HELP} ago",
)
@click.option("--dry-run", is_flag=True, help="count what would be removed, remove nothing")
def prune(older_than: float, dry_run: bool) -> None:
    """Remove entries stored more than DURATION ago (e.g. --older-than 30d)."""
    from llm_cache.ops.inspect import prune as prune_entries

    config = _config()
    with _storage(config) as storage:
        result = prune_entries(storage, older_than, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    _err(f"{verb} {result.removed} of {result.examined} entries from {_where(config)}")


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
        _err("aborted")
        return 1
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
