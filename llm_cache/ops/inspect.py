"""Look inside a cache: list entries, find one by a key prefix, show it, prune old ones."""

from __future__ import annotations

import heapq
import time
from dataclasses import dataclass
from typing import Any

from llm_cache.cache.storage import CacheStorage, StoredEntry
from llm_cache.ops.progress import progress
from llm_cache.ops.records import describe
from llm_cache.ops.transfer import EntryFilter

MIN_PREFIX = 6


class KeyNotFound(LookupError):
    """No entry, or several entries, match the key (prefix) given."""


def list_entries(
    storage: CacheStorage, flt: EntryFilter | None = None, limit: int | None = None
) -> list[dict[str, Any]]:
    """Rows (``entry_row``) of the entries ``flt`` accepts, newest answer first, at most
    ``limit`` (kept in a heap of that size, so a big cache is never held whole)."""
    flt = flt or EntryFilter()
    now = time.time()
    rows = (entry_row(e) for e in storage.iter_entries() if flt.accepts(e, now))

    def created(row: dict[str, Any]) -> float:
        return float(row["created"] or 0.0)

    if limit is not None:
        return heapq.nlargest(limit, rows, key=created)
    return sorted(rows, key=created, reverse=True)


def entry_row(entry: StoredEntry) -> dict[str, Any]:
    """One entry as a flat JSON-able row (``ls --json``)."""
    info = entry.info
    return {
        "key": entry.key,
        **describe(entry),
        "size": info.get("size", len(entry.data)),
        "last_hit": info.get("last_hit"),
        "hits": info.get("hits"),
        "expires": info.get("expires"),
    }


def find_entry(storage: CacheStorage, key: str) -> StoredEntry:
    """The entry under ``key``, or the one entry whose key starts with it (like git's short
    hashes, at least ``MIN_PREFIX`` characters); ``KeyNotFound`` otherwise."""
    entry = storage.peek_entry(key)
    if entry is not None:
        return entry
    if len(key) >= 64:  # a whole key: nothing to complete
        raise KeyNotFound(f"no entry with key {key!r}")
    if len(key) < MIN_PREFIX:
        raise KeyNotFound(f"no entry with key {key!r} (a prefix needs {MIN_PREFIX}+ characters)")
    matches = [e for e in storage.iter_entries() if e.key.startswith(key)]
    if not matches:
        raise KeyNotFound(f"no entry with a key starting with {key!r}")
    if len(matches) > 1:
        shown = ", ".join(sorted(e.key[:16] for e in matches)[:5])
        raise KeyNotFound(f"{len(matches)} keys start with {key!r} ({shown}...); give more of it")
    return matches[0]


@dataclass(slots=True)
class PruneResult:
    removed: int = 0
    examined: int = 0


def prune(
    storage: CacheStorage,
    older_than: float,
    *,
    dry_run: bool = False,
    show_progress: bool | None = None,
) -> PruneResult:
    """Remove entries created more than ``older_than`` seconds ago."""
    cutoff = time.time() - older_than
    result = PruneResult()
    with progress("pruning", storage.get_size(), enabled=show_progress) as bar:
        for entry in storage.iter_entries():
            result.examined += 1
            bar.advance()
            created = describe(entry)["created"]
            old = created is not None and created < cutoff
            if old and (dry_run or storage.delete(entry.key)):
                result.removed += 1
    return result
