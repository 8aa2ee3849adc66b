"""The operator commands (Click): export, import, warm, ls, show, rm, prune.

They parse and print; the work is in the other ``llm_cache.ops`` modules, imported when a
command runs so that ``llm-cache --help`` stays fast. Data goes to stdout (``export -``,
``ls``, ``show``); progress bars, counts and errors go to stderr.
"""

from __future__ import annotations

import os
import time
from typing import Any

import click
import orjson

from llm_cache.config import Config
from llm_cache.ops.shell import (
    DURATION_HELP,
    Failed,
    ago,
    check_readable,
    duration,
    err,
    filter_options,
    load_config,
    open_storage,
    size,
    stamp,
    warn_overflow,
    where,
)

# -- export / import / warm -------------------------------------------------------------------


@click.command("export", short_help="write entries to a JSON Lines file (.gz / .zst)")
@click.argument("path", default="-", metavar="[PATH|-]")
@filter_options
@click.option(
    "--since",
    metavar="DURATION",
    callback=duration,
    help=f"only entries stored within the last {DURATION_HELP}",
)
def export_cmd(path: str, provider: str | None, model: str | None, since: float | None) -> None:
    """Write entries to PATH as JSON Lines, one entry a line (stdout when PATH is - or absent).

    PATH ending in .gz or .zst is compressed with gzip or zstd. The file is written beside
    PATH and renamed into place when complete. Each line:
    {"format": "llm-cache-entry/1", "key", "request", "response", "metadata"}.
    """
    from llm_cache.ops.transfer import EntryFilter, export_entries

    config = load_config()
    flt = EntryFilter(provider=provider, model=model, since=since)
    with open_storage(config) as storage:
        try:
            result = export_entries(storage, path, flt)
        except OSError as exc:
            raise Failed(f"cannot write {path}: {exc}") from None
    target = "stdout" if path == "-" else path
    err(f"exported {result.written} entries from {where(config)} to {target}")
    if result.unreadable:
        shown = ", ".join(k[:16] for k in result.unreadable[:5])
        err(f"skipped {len(result.unreadable)} unreadable entries ({shown})")


@click.command("import", short_help="load a JSON Lines export into the configured backend")
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

    PATH may also be a folder of the pytest plugin's cassettes: their cacheable exchanges
    are imported, keyed from their requests.
    """
    from llm_cache.ops.files import spooled_input
    from llm_cache.ops.transfer import ImportFileError, ImportStorageError, import_file

    config = load_config()
    if path != "-" and os.path.isdir(path):
        _import_cassettes(config, path, skip_existing=skip_existing, dry_run=dry_run)
        return
    if path != "-":
        check_readable(path)
    with open_storage(config, writes=not dry_run) as storage, spooled_input(path) as source:
        try:
            result = import_file(
                storage,
                source,
                skip_invalid=skip_invalid,
                skip_existing=skip_existing,
                dry_run=dry_run,
            )
        except ImportFileError as exc:
            raise Failed(str(exc).replace(source, path)) from None
        except ImportStorageError as exc:
            raise Failed(str(exc)) from None
    for line, message in result.invalid[:20]:
        err(f"skipped {path}:{line}: {message}")
    if len(result.invalid) > 20:
        err(f"... and {len(result.invalid) - 20} more bad lines skipped")
    if dry_run:
        err(f"{path}: {result.imported} valid entries, {len(result.invalid)} bad lines")
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
    err(f"imported {result.imported} entries into {where(config)}{extra}")
    warn_overflow(storage, result.imported)


def _import_cassettes(config: Config, folder: str, *, skip_existing: bool, dry_run: bool) -> None:
    """``import FOLDER``: the pytest plugin's cassettes, when this version has its reader."""
    from llm_cache.ops.transfer import ImportFileError, ImportStorageError, import_cassettes

    with open_storage(config, writes=not dry_run) as storage:
        try:
            result = import_cassettes(storage, folder, skip_existing=skip_existing, dry_run=dry_run)
        except (ImportFileError, ImportStorageError) as exc:
            raise Failed(str(exc)) from None
    if dry_run:
        err(f"{folder}: {result.imported} cacheable exchanges in its cassettes")
        return
    kept = f" ({result.existing} already present, kept)" if result.existing else ""
    err(f"imported {result.imported} entries from cassettes into {where(config)}{kept}")
    warn_overflow(storage, result.imported)


@click.command(short_help="load an OpenAI Batch job's answers as entries")
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

    config = load_config()
    for path in batch:
        check_readable(path)
    try:
        plan = plan_openai_batch(batch[0], batch[1], config.openai_base_url)
    except (BatchFileError, OSError, EOFError) as exc:
        raise Failed(str(exc)) from None
    with open_storage(config, writes=True) as storage, progress("warming", len(plan.items)) as bar:
        try:
            result = import_items(storage, plan.items, bar)
        except ImportStorageError as exc:
            raise Failed(str(exc)) from None
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
    err(f"stored {result.imported} answers into {where(config)}{extra}")
    warn_overflow(storage, result.imported)


# -- inspect ------------------------------------------------------------------------------------


@click.command("ls", short_help="list entries, newest first")
@filter_options
@click.option("--limit", "-n", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--all", "show_all", is_flag=True, help="no limit")
@click.option("--json", "as_json", is_flag=True, help="print a JSON array (full keys)")
def ls_cmd(
    provider: str | None, model: str | None, limit: int, show_all: bool, as_json: bool
) -> None:
    """List entries, newest first: key (prefix), provider, model, endpoint, size, age, hits."""
    from llm_cache.ops.inspect import list_entries
    from llm_cache.ops.transfer import EntryFilter

    config = load_config()
    with open_storage(config) as storage:
        entries = list_entries(
            storage, EntryFilter(provider=provider, model=model), None if show_all else limit
        )
        total = storage.get_size()
    if as_json:
        click.echo(orjson.dumps(entries).decode())
        return
    if not entries:
        err(f"no entries in {where(config)}")
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
                size(row["size"]),
                ago(row["created"], now),
                ago(row["last_hit"], now),
                "-" if row["hits"] is None else str(row["hits"]),
            )
        )
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    for r in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    err(f"{len(entries)} shown of {total} entries in {where(config)}")


@click.command(short_help="show one entry: its request and its answer")
@click.argument("key")
@click.option("--json", "as_json", is_flag=True, help="print the export record as JSON")
def show(key: str, as_json: bool) -> None:
    """Show the entry under KEY (or a unique key prefix, 6+ characters): its request and answer.

    Nothing is counted: showing an entry is not a hit.
    """
    from llm_cache.cache.codec import CorruptValueError
    from llm_cache.ops.inspect import KeyNotFound, find_entry
    from llm_cache.ops.records import to_record

    config = load_config()
    with open_storage(config) as storage:
        try:
            entry = find_entry(storage, key)
        except KeyNotFound as exc:
            raise Failed(str(exc)) from None
    try:
        record = to_record(entry)
    except CorruptValueError as exc:
        raise Failed(f"entry {entry.key} is unreadable: {exc}") from None
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
        ("created", stamp(meta.get("created") or info.get("created"), now)),
        ("last hit", stamp(info.get("last_hit"), now)),
        ("hits", "-" if hits is None else hits),
        ("size", size(info.get("size"))),
        ("expires", stamp(info.get("expires"), now) if info.get("expires") else "never"),
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


@click.command(short_help="remove one entry")
@click.argument("key")
def rm(key: str) -> None:
    """Remove the entry under KEY (or a unique key prefix, 6+ characters)."""
    from llm_cache.ops.inspect import KeyNotFound, find_entry

    config = load_config()
    with open_storage(config) as storage:
        try:
            entry = find_entry(storage, key)
        except KeyNotFound as exc:
            raise Failed(str(exc)) from None
        if not storage.delete(entry.key):
            raise Failed(f"entry {entry.key} was removed meanwhile")
    err(f"removed {entry.key} from {where(config)}")


@click.command(short_help="remove entries stored longer ago than a duration")
@click.option(
    "--older-than",
    "older_than",
    required=True,
    metavar="DURATION",
    callback=duration,
    help=f"remove entries stored more than {DURATION_HELP} ago",
)
@click.option("--dry-run", is_flag=True, help="count what would be removed, remove nothing")
def prune(older_than: float, dry_run: bool) -> None:
    """Remove entries stored more than DURATION ago (e.g. --older-than 30d)."""
    from llm_cache.ops.inspect import prune as prune_entries

    config = load_config()
    with open_storage(config) as storage:
        result = prune_entries(storage, older_than, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    err(f"{verb} {result.removed} of {result.examined} entries from {where(config)}")


COMMANDS = (export_cmd, import_cmd, warm, ls_cmd, show, rm, prune)
