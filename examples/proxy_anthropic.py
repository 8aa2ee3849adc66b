"""The proxy with the Anthropic SDK: messages, streamed or not, cached.

Run: python examples/proxy_anthropic.py
"""

from __future__ import annotations

import tempfile

from _offline import FAKE_ANTHROPIC_KEY, proxy, simulated_upstream
from anthropic import Anthropic

with (
    tempfile.TemporaryDirectory() as tmp,
    simulated_upstream() as upstream,
    proxy(upstream, sqlite_path=f"{tmp}/cache.db") as url,
):
    client = Anthropic(base_url=url, api_key=FAKE_ANTHROPIC_KEY)  # the only change
    request = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 256,
        "messages": [{"role": "user", "content": "Name a colour."}],
    }

    with client.messages.stream(**request) as stream:  # a streamed miss, relayed event by event
        first = stream.get_final_message()
    raw = client.messages.with_raw_response.create(**request)  # same request, not streamed
    again = raw.parse()
    print(f"streamed: {first.content[0].text}")
    print(f"again:    X-Cache-Hit={raw.headers['x-cache-hit']}  {again.content[0].text}")
    assert raw.headers["x-cache-hit"] == "true" and again.id == first.id
