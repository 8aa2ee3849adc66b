"""Metrics across worker processes (``llm-cache serve --workers N``).

prometheus-client's multiprocess mode: each worker writes its counters to memory-mapped files
in ``PROMETHEUS_MULTIPROC_DIR`` and a scrape answered by any worker sums them all. The mode is
chosen when prometheus-client is imported, so the variable must be set before the workers
start; ``serve`` calls ``share_metrics_between_workers`` right before it spawns them.

A directory the user set is used as it is (they may want to keep or inspect it); otherwise a
fresh one is made for this run and removed when the server exits, so figures of an earlier run
never leak into this one.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

__all__ = ["share_metrics_between_workers"]

ENV = "PROMETHEUS_MULTIPROC_DIR"


def share_metrics_between_workers() -> str:
    """Set up (and return) the directory the workers share their metrics through."""
    path = os.environ.get(ENV)
    if path:
        os.makedirs(path, exist_ok=True)
        return path
    path = tempfile.mkdtemp(prefix="llm-cache-metrics-")
    os.environ[ENV] = path
    atexit.register(shutil.rmtree, path, True)
    return path
