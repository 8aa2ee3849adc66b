"""Shared helpers for the observability tests: scrape and parse ``/metrics``."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import httpx2
from prometheus_client.parser import text_string_to_metric_families

from llm_cache.cache.storage import CacheStorage
from llm_cache.engine.entry import Entry
from llm_cache.observability.storage_info import peek_sync


def scrape(base_url: str, token: str | None = None) -> dict[str, list[Any]]:
    """``/metrics`` parsed with prometheus_client's parser: sample name → samples."""
    headers = {"authorization": f"Bearer {token}"} if token else {}
    response = httpx2.get(f"{base_url}/metrics", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: dict[str, list[Any]] = defaultdict(list)
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[sample.name].append(sample)
    return samples


def value(samples: dict[str, list[Any]], name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    return sum(
        s.value
        for s in samples.get(name, [])
        if all(s.labels.get(k) == v for k, v in labels.items())
    )


def stored_entry(storage: CacheStorage, key: str) -> Entry:
    data = peek_sync(storage, key)
    assert data is not None, f"no entry {key}"
    return Entry.decode(data)
