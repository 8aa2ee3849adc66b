"""Export every entry of a storage to JSON Lines, and import such a file into any storage.

Import is two passes over the file: the first reads and checks every line (and counts them for
the progress bar), the second writes. A file with a bad line therefore imports nothing, and the
error names the line and what is wrong; ``skip_invalid`` imports the good lines and reports the
bad ones instead. Should the storage fail during the second pass, the error says how many
entries were written before it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from llm_cache.cache.codec import CorruptValueError
from llm_cache.cache.storage import CacheStorage, StoredEntry
from llm_cache.ops.files import open_lines, open_writer
from llm_cache.ops.progress import Progress, progress
from llm_cache.ops.records import (
    ImportItem,
    RecordError,
    describe,
    is_expired,
    parse_record,
    to_record,
)

MAX_REPORTED_ERRORS = 20


@dataclass(frozen=True, slots=True)
class EntryFilter:
    """Which entries a command acts on: provider, model, created within ``since`` seconds."""

    provider: str | None = None
    model: str | None = None
    since: float | None = None

    def accepts(self, entry: StoredEntry, now: float) -> bool:
        facts = describe(entry) if self.since is not None or self.model else entry.info
        if self.provider and (facts.get("provider") or "").lower() != self.provider.lower():
            return False
        if self.model and (facts.get("model") or "") != self.model:
            return False
        if self.since is not None:
            created = facts.get("created")
            if created is None or created < now - self.since:
                return False
        return True


@dataclass(slots=True)
class ExportResult:
    written: int = 0
    unreadable: list[str] = field(default_factory=list)


def export_entries(
    storage: CacheStorage,
    path: str,
    flt: EntryFilter | None = None,
    *,
    show_progress: bool | None = None,
) -> ExportResult:
    """Write the entries ``flt`` accepts to ``path`` (``-``: stdout), one record a line."""
    flt = flt or EntryFilter()
    result = ExportResult()
    now = time.time()
    with (
        progress("exporting", storage.get_size(), enabled=show_progress) as bar,
        open_writer(path) as out,
    ):
        for entry in storage.iter_entries():
            bar.advance()
            if not flt.accepts(entry, now):
                continue
            try:
                record = to_record(entry)
            except CorruptValueError:
                result.unreadable.append(entry.key)
                continue
            out.write(orjson.dumps(record))
            result.written += 1
    return result


class ImportFileError(ValueError):
    """The file has bad lines; nothing was imported. ``errors``: ``(line, message)`` pairs."""

    def __init__(self, path: str, errors: list[tuple[int, str]], total_bad: int) -> None:
        self.path, self.errors, self.total_bad = path, errors, total_bad
        shown = "\n".join(f"  {path}:{line}: {msg}" for line, msg in errors)
        more = total_bad - len(errors)
        tail = f"\n  ... and {more} more bad lines" if more > 0 else ""
        super().__init__(f"{total_bad} bad lines in {path}; nothing imported:\n{shown}{tail}")


class ImportStorageError(RuntimeError):
    """The storage failed part-way: ``written`` entries had been imported before it."""

    def __init__(self, written: int, total: int, cause: BaseException) -> None:
        self.written, self.total = written, total
        what = (
            f"after {written} of {total} entries were imported (those {written} stay imported)"
            if written
            else f"before any of the {total} entries was imported"
        )
        super().__init__(f"the storage failed {what}: {type(cause).__name__}: {cause}")


@dataclass(slots=True)
class ImportResult:
    imported: int = 0
    rekeyed: int = 0
    expired: int = 0
    existing: int = 0
    #: ``(line, message)`` of lines skipped with ``skip_invalid``.
    invalid: list[tuple[int, str]] = field(default_factory=list)
    dry_run: bool = False


def check_file(path: str) -> tuple[int, list[tuple[int, str]]]:
    """``(good lines, [(line, error)...])`` of an export file, without storing anything."""
    good, bad = 0, []
    for number, line in _lines(path):
        try:
            parse_record(line)
        except RecordError as exc:
            bad.append((number, str(exc)))
        else:
            good += 1
    return good, bad


def _lines(path: str) -> Iterator[tuple[int, bytes]]:
    try:
        with open_lines(path) as lines:
            yield from lines
    except (OSError, EOFError) as exc:  # unreadable file, corrupt gzip / zstd stream
        raise ImportFileError(path, [(0, f"cannot read the file: {exc}")], 1) from exc
    except Exception as exc:  # zstandard raises its own ZstdError
        if type(exc).__module__.startswith("zstandard") or "zstd" in type(exc).__name__.lower():
            raise ImportFileError(path, [(0, f"cannot read the file: {exc}")], 1) from exc
        raise


def import_file(
    storage: CacheStorage,
    path: str,
    *,
    skip_invalid: bool = False,
    skip_existing: bool = False,
    dry_run: bool = False,
    show_progress: bool | None = None,
    on_item: Callable[[ImportItem], Any] | None = None,
) -> ImportResult:
    """Load the records of ``path`` (a real file: stdin is spooled by the caller) into
    ``storage``. Raises ``ImportFileError`` (nothing written) or ``ImportStorageError``."""
    good, bad = check_file(path)
    result = ImportResult(invalid=bad, dry_run=dry_run)
    if bad and not skip_invalid:
        raise ImportFileError(path, bad[:MAX_REPORTED_ERRORS], len(bad))
    if dry_run:
        result.imported = good
        return result
    bad_lines = {line for line, _ in bad}
    now = time.time()
    with progress("importing", good, enabled=show_progress) as bar:
        for number, line in _lines(path):
            if number in bad_lines:
                continue
            item = parse_record(line)
            _store(storage, item, result, now, skip_existing, good)
            if on_item is not None:
                on_item(item)
            bar.advance()
    return result


def _store(
    storage: CacheStorage,
    item: ImportItem,
    result: ImportResult,
    now: float,
    skip_existing: bool,
    total: int,
) -> None:
    if is_expired(item, now):
        result.expired += 1
        return
    try:
        if skip_existing and storage.peek_entry(item.key) is not None:
            result.existing += 1
            return
        ttl = None if item.expires is None else item.expires - now
        storage.set_bytes(item.key, item.blob, item.metadata, ttl)
    except Exception as exc:
        raise ImportStorageError(result.imported, total, exc) from exc
    result.imported += 1
    result.rekeyed += item.rekeyed


def import_items(
    storage: CacheStorage, items: list[ImportItem], bar: Progress | None = None
) -> ImportResult:
    """Store already-built items (``warm``), with the same accounting as ``import_file``."""
    result = ImportResult()
    now = time.time()
    for item in items:
        _store(storage, item, result, now, False, len(items))
        if bar is not None:
            bar.advance()
    return result
