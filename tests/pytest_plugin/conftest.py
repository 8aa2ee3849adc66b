"""Real pytest sessions in a subprocess, on a user's test module, against the simulated upstream.

``sandbox`` copies ``samples/sample_sdks.py`` into a fresh folder as ``test_app.py`` and runs
``python -m pytest`` there (the plugin loads through its ``pytest11`` entry point, as for a
user). ``upstream_server`` is a simulated upstream of the test's own, which the test can stop
to prove a replay never reaches the network.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fake_upstream import FakeUpstream, create_fake_upstream
from tests.servers import run_server

SAMPLES = Path(__file__).parent / "samples"
#: Shaped like a real OpenAI project key, so a leak would also trip the key-shape scan.
API_KEY = "sk-proj-" + secrets.token_hex(24)


class UpstreamServer:
    """A simulated upstream running until ``stop()`` (or the end of the test)."""

    def __init__(self, fake: Any = None) -> None:
        self.fake: FakeUpstream = fake if fake is not None else create_fake_upstream()
        self._stack = ExitStack()
        self.url: str = self._stack.enter_context(run_server(self.fake.app))

    def stop(self) -> None:
        self._stack.close()


@pytest.fixture
def upstream_server() -> Iterator[UpstreamServer]:
    server = UpstreamServer()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Run:
    returncode: int
    output: str
    results: dict[str, dict[str, Any]]

    def assert_passed(self) -> None:
        assert self.returncode == 0, self.output


class Sandbox:
    """A folder holding a user's test module, and ``run`` to run pytest on it."""

    def __init__(
        self, root: Path, upstream: UpstreamServer, sample: str = "sample_sdks.py"
    ) -> None:
        self.root = root
        self.upstream = upstream
        self.test_file = root / "test_app.py"
        shutil.copy(SAMPLES / sample, self.test_file)
        self.cassettes = root / "cassettes" / "test_app"

    def cassette(self, test: str) -> Path:
        return self.cassettes / f"{test}.json"

    def load(self, test: str) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.cassette(test).read_text(encoding="utf-8"))
        return document

    def run(
        self, *args: str, env: dict[str, str] | None = None, tests: tuple[str, ...] = ()
    ) -> Run:
        out = self.root / "results.jsonl"
        out.unlink(missing_ok=True)
        environ = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("LLM_CACHE_", "PYTEST_")) and k != "CI"
        }
        environ.update(
            FAKE_UPSTREAM_URL=self.upstream.url,
            FAKE_API_KEY=API_KEY,
            SAMPLE_OUT=str(out),
            PYTHONDONTWRITEBYTECODE="1",
        )
        environ.update(env or {})
        targets = [f"test_app.py::{t}" for t in tests] or ["test_app.py"]
        command = [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            # two slow plugins of the dev environment, unrelated to this one (~8 s per start)
            "-p",
            "no:hypothesispytest",
            "-p",
            "no:langsmith_plugin",
            "-o",
            "asyncio_default_fixture_loop_scope=function",
            "-q",
            *targets,
            *args,
        ]
        done = subprocess.run(
            command,
            cwd=self.root,
            env=environ,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        results: dict[str, dict[str, Any]] = {}
        if out.exists():
            for line in out.read_text(encoding="utf-8").splitlines():
                item = json.loads(line)
                results[item.pop("test")] = item
        return Run(done.returncode, done.stdout + done.stderr, results)


@pytest.fixture
def sandbox(tmp_path: Path, upstream_server: UpstreamServer) -> Sandbox:
    return Sandbox(tmp_path, upstream_server)
