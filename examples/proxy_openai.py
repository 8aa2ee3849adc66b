"""The proxy with the OpenAI SDK: the second identical call is a hit, streams included.

Run: python examples/proxy_openai.py
"""

from __future__ import annotations

import tempfile

from _offline import FAKE_OPENAI_KEY, proxy, simulated_upstream
from openai import OpenAI

with (
    tempfile.TemporaryDirectory() as tmp,
    simulated_upstream() as upstream,
    proxy(upstream, sqlite_path=f"{tmp}/cache.db") as url,
):
    client = OpenAI(base_url=f"{url}/v1", api_key=FAKE_OPENAI_KEY)  # the only change
    messages = [{"role": "user", "content": "Name three primes."}]

    for attempt in ("first", "second"):
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=messages
        )
        reply = raw.parse()  # a native ChatCompletion, hit or not
        hit = raw.headers["x-cache-hit"]
        print(f"{attempt}: X-Cache-Hit={hit}  {reply.choices[0].message.content}")
    assert raw.headers["x-cache-hit"] == "true"

    # The same request streamed is answered from the stored (non-streamed) answer.
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == reply.choices[0].message.content
    print("streamed from the cache:", text)
