"""Every script in ``examples/`` runs, offline, against the project's simulated upstream.

Each example asserts what it shows (a hit where it says one), so a run that ends normally is
one where the example's claims held; the test also checks the lines it prints. The scripts run
in this process (``runpy``, as ``__main__``), so the SDK imports are paid once; one of them
also runs as its own process from another directory, as a user would start it.
"""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

EXPECTED = {
    "proxy_openai.py": ["second: X-Cache-Hit=true", "streamed from the cache:"],
    "proxy_anthropic.py": ["again:    X-Cache-Hit=true"],
    "wrapper.py": ["'hits': 1", "slow_square ran 2 times for 3 calls"],
    "transport.py": ["embeddings   x-cache-hit: true", "messages     x-cache-hit: true"],
    "redis_scale_out.py": ["replica B: X-Cache-Hit=true", "shared stats: 1 hit, 1 miss"],
    "export_import.py": ["exported 1 entries", "imported 1 entries", "X-Cache-Hit = true"],
}


def test_every_example_is_tested() -> None:
    scripts = {p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("_")}
    assert scripts == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs(
    name: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if name == "redis_scale_out.py":
        monkeypatch.setenv("LLM_CACHE_REDIS_URL", request.getfixturevalue("redis_server_url"))
    monkeypatch.chdir(tmp_path)  # examples must not depend on the working directory
    monkeypatch.syspath_prepend(str(EXAMPLES))  # what `python examples/x.py` puts first
    runpy.run_path(str(EXAMPLES / name), run_name="__main__")
    out = capsys.readouterr().out
    for line in EXPECTED[name]:
        assert line in out, f"{name} did not print {line!r}:\n{out}"


def test_an_example_runs_as_its_own_process(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_CACHE_")}
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "proxy_anthropic.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == 0, result.stderr
    assert "again:    X-Cache-Hit=true" in result.stdout
