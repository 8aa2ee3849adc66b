"""Export a cache to a compressed JSON Lines file and import it into another backend.

    python examples/export_import.py

The same as, on a shell:
    LLM_CACHE_SQLITE_PATH=a.db llm-cache export backup.jsonl.zst
    LLM_CACHE_SQLITE_PATH=b.db llm-cache import backup.jsonl.zst
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

from _offline import FAKE_OPENAI_KEY, proxy, simulated_upstream
from openai import OpenAI


def llm_cache(*args: str, db: str) -> str:
    """Run the ``llm-cache`` command on the SQLite file ``db``; its stderr has the counts."""
    env = {**os.environ, "LLM_CACHE_BACKEND": "sqlite", "LLM_CACHE_SQLITE_PATH": db}
    done = subprocess.run(
        [sys.executable, "-m", "llm_cache", *args], env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        sys.exit(f"llm-cache {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout + done.stderr


question = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Tell me a fact."}]}

with tempfile.TemporaryDirectory() as tmp, simulated_upstream() as upstream:
    source, target, backup = f"{tmp}/a.db", f"{tmp}/b.db", f"{tmp}/backup.jsonl.zst"
    with proxy(upstream, sqlite_path=source) as url:  # fill the first cache
        client = OpenAI(base_url=f"{url}/v1", api_key=FAKE_OPENAI_KEY)
        original = client.chat.completions.create(**question)

    print(llm_cache("ls", db=source), end="")
    print(llm_cache("export", backup, db=source), end="")
    print(llm_cache("import", backup, db=target), end="")

    # A proxy on the imported copy, offline: a miss would be an error, so this is a hit.
    with proxy(upstream, sqlite_path=target, mode="offline") as url:
        client = OpenAI(base_url=f"{url}/v1", api_key=FAKE_OPENAI_KEY)
        raw = client.chat.completions.with_raw_response.create(**question)
    print("from the imported copy: X-Cache-Hit =", raw.headers["x-cache-hit"])
    assert raw.headers["x-cache-hit"] == "true" and raw.parse().id == original.id
