"""The httpx transport: the SDK's own HTTP layer cached in-process; SDK objects stay native.

Run: python examples/transport.py
"""

from __future__ import annotations

import tempfile

from _offline import FAKE_ANTHROPIC_KEY, FAKE_OPENAI_KEY, simulated_upstream
from anthropic import Anthropic
from openai import OpenAI

from llm_cache.cache.sqlite_storage import SQLiteStorage
from llm_cache.wrapper.transport import httpx_client

with tempfile.TemporaryDirectory() as tmp, simulated_upstream() as upstream:
    storage = SQLiteStorage(f"{tmp}/cache.db")  # a proxy on this file would share the entries
    openai = OpenAI(base_url=f"{upstream}/v1", api_key=FAKE_OPENAI_KEY,
                    http_client=httpx_client(storage))  # fmt: skip
    anthropic = Anthropic(base_url=upstream, api_key=FAKE_ANTHROPIC_KEY,
                          http_client=httpx_client(storage))  # fmt: skip

    for _ in range(2):
        raw = openai.embeddings.with_raw_response.create(
            model="text-embedding-3-small", input="cache me"
        )
        print("embeddings   x-cache-hit:", raw.headers["x-cache-hit"])
    assert raw.headers["x-cache-hit"] == "true"

    for _ in range(2):
        raw = anthropic.messages.with_raw_response.create(
            model="claude-sonnet-4-6",
            max_tokens=64,
            messages=[{"role": "user", "content": "Hello"}],
        )
        print("messages     x-cache-hit:", raw.headers["x-cache-hit"], raw.parse().content[0].text)
    assert raw.headers["x-cache-hit"] == "true"
    print("entries stored:", storage.get_size())
    storage.close()
