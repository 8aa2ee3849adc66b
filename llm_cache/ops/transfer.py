"""Export every entry of a storage to JSON Lines, and import such a file into any storage.

Import is two passes over the file: the first reads and checks every line (and counts them for
the progress bar), the second writes. A file with a bad line therefore imports nothing, and the
error names the line and what is wrong; ``skip_invalid`` imports the good lines and reports the
bad ones instead. Should the storage fail during the second pass, the error says how many
entries were written before it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from llm_cache.cache.codec import CorruptValueError
from llm_cache.cache.storage import BulkWriteError, CacheStorage, StoredEntry
from llm_cache.ops.files import open_lines, open_writer
from llm_cache.ops.progress import Progress, progress
from llm_cache.ops.records import (
    ImportItem,
    RecordError,
    describe,
    is_expired,
    item_from_exchange,
    parse_record,
    to_record,
)

MAX_REPORTED_ERRORS = 20
#: Entries per write: one SQLite transaction or one Redis round trip each.
BATCH_SIZE = 500
#: The first pass keeps parsed entries up to this many answer bytes, so the second pass does
#: not parse the file again (larger files are parsed twice, never held whole).
KEEP_PARSED_BYTES = 256 * 1024 * 1024


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
        if total_bad == 1 and errors[0][0] == 0:  # the file as a whole (unreadable, not ours)
            super().__init__(f"{path}: {errors[0][1]}; nothing imported")
            return
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
    good, bad, _ = _check(path, keep_bytes=0)
    return good, bad


def _check(
    path: str, keep_bytes: int = KEEP_PARSED_BYTES
) -> tuple[int, list[tuple[int, str]], list[ImportItem] | None]:
    """The first pass: every line parsed and checked. The parsed items are kept for the second
    pass while their answers add up to at most ``keep_bytes`` (``None`` beyond: re-parse)."""
    good, bad = 0, []
    kept: list[ImportItem] | None = [] if keep_bytes > 0 else None
    size = 0
    for number, line in _lines(path):
        try:
            item = parse_record(line)
        except RecordError as exc:
            bad.append((number, str(exc)))
            continue
        good += 1
        if kept is not None:
            size += len(item.blob)
            kept.append(item)
            if size > keep_bytes:
                kept = None
    return good, bad, kept


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


def _parsed(path: str, bad_lines: set[int]) -> Iterator[ImportItem]:
    for number, line in _lines(path):
        if number not in bad_lines:
            yield parse_record(line)


def import_file(
    storage: CacheStorage,
    path: str,
    *,
    skip_invalid: bool = False,
    skip_existing: bool = False,
    dry_run: bool = False,
    show_progress: bool | None = None,
    batch_size: int = BATCH_SIZE,
    on_batch: Callable[[int], Any] | None = None,
) -> ImportResult:
    """Load the records of ``path`` (a real file: stdin is spooled by the caller) into
    ``storage``, ``batch_size`` entries per write (``on_batch(imported so far)`` after each).
    Raises ``ImportFileError`` (nothing written) or ``ImportStorageError``."""
    good, bad, kept = _check(path)
    result = ImportResult(invalid=bad, dry_run=dry_run)
    if bad and not skip_invalid:
        raise ImportFileError(path, bad[:MAX_REPORTED_ERRORS], len(bad))
    if dry_run:
        result.imported = good
        return result
    items = kept if kept is not None else _parsed(path, {line for line, _ in bad})
    with progress("importing", good, enabled=show_progress) as bar:
        _store_all(storage, items, result, good, skip_existing, batch_size, bar, on_batch)
    return result


def _store_all(
    storage: CacheStorage,
    items: Iterable[ImportItem],
    result: ImportResult,
    total: int,
    skip_existing: bool,
    batch_size: int,
    bar: Progress,
    on_batch: Callable[[int], Any] | None = None,
) -> None:
    """Store ``items`` in batches (one transaction or round trip each), counting in ``result``;
    ``ImportStorageError`` with the number known to be stored when the storage fails."""
    now = time.time()
    batch: list[ImportItem] = []

    def flush() -> None:
        try:
            stored = storage.set_many_bytes(
                [
                    (i.key, i.blob, i.metadata, None if i.expires is None else i.expires - now)
                    for i in batch
                ]
            )
        except BulkWriteError as exc:
            result.imported += exc.stored
            raise ImportStorageError(result.imported, total, exc.cause) from exc
        except Exception as exc:
            raise ImportStorageError(result.imported, total, exc) from exc
        result.imported += stored
        result.rekeyed += sum(i.rekeyed for i in batch)
        bar.advance(len(batch))
        batch.clear()
        if on_batch is not None:
            on_batch(result.imported)

    for item in items:
        if is_expired(item, now):
            result.expired += 1
            bar.advance()
            continue
        if skip_existing:
            try:
                present = storage.peek_entry(item.key) is not None
            except Exception as exc:
                raise ImportStorageError(result.imported, total, exc) from exc
            if present:
                result.existing += 1
                bar.advance()
                continue
        batch.append(item)
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()


def import_items(
    storage: CacheStorage, items: list[ImportItem], bar: Progress | None = None
) -> ImportResult:
    """Store already-built items (``warm``), with the same accounting as ``import_file``."""
    result = ImportResult()
    with progress("storing", len(items), enabled=False) as silent:
        _store_all(storage, items, result, len(items), False, BATCH_SIZE, bar or silent)
    return result


def import_cassettes(
    storage: CacheStorage, folder: str, *, skip_existing: bool = False, dry_run: bool = False
) -> ImportResult:
    """Load the exchanges of the pytest plugin's cassettes under ``folder`` (or one cassette).

    Every exchange is converted before anything is written, so a bad one imports nothing.
    """
    from llm_cache.testing.cassette import CassetteError, iter_entries_from_cassettes

    if Path(folder).is_dir() and not any(Path(folder).rglob("*.json")):
        message = "holds no cassettes (*.json); give an export file or a cassette folder"
        raise ImportFileError(folder, [(0, message)], 1)
    items: list[ImportItem] = []
    bad: list[tuple[int, str]] = []
    try:
        for number, (request, response) in enumerate(iter_entries_from_cassettes(folder), 1):
            try:
                items.append(item_from_exchange(request, response))
            except RecordError as exc:
                bad.append((number, f"exchange #{number} ({request.get('url')}): {exc}"))
    except CassetteError as exc:  # names the file that is not a cassette
        raise ImportFileError(folder, [(0, str(exc))], 1) from exc
    if bad:
        raise ImportFileError(folder, bad[:MAX_REPORTED_ERRORS], len(bad))
    if dry_run:
        return ImportResult(imported=len(items), dry_run=True)
    result = ImportResult()
    with progress("importing", len(items)) as bar:
        _store_all(storage, items, result, len(items), skip_existing, BATCH_SIZE, bar)
    return result
