"""The Python wrapper: cache any callable, here an OpenAI SDK method, in-process.

Run: python examples/wrapper.py
"""

from __future__ import annotations

import tempfile

from _offline import FAKE_OPENAI_KEY, simulated_upstream
from openai import OpenAI
from openai.types.chat import ChatCompletion

from llm_cache import LLMCacheWrapper, cached
from llm_cache.cache.sqlite_storage import SQLiteStorage

with tempfile.TemporaryDirectory() as tmp, simulated_upstream() as upstream:
    client = OpenAI(base_url=f"{upstream}/v1", api_key=FAKE_OPENAI_KEY)

    with LLMCacheWrapper(storage=SQLiteStorage(f"{tmp}/cache.db")) as cache:
        create = cache.wrap(client.chat.completions.create)
        question = [{"role": "user", "content": "What is 6 x 7?"}]
        first = create(model="gpt-4o-mini", messages=question)
        second = create(model="gpt-4o-mini", messages=question)  # from the cache
        assert isinstance(second, ChatCompletion) and second.id == first.id
        print(second.choices[0].message.content)
        print("stats:", cache.get_stats())
        assert cache.get_stats()["hits"] == 1

    # Any function, sync or async: the key covers the function and all its arguments.
    calls = []

    @cached(storage=SQLiteStorage(f"{tmp}/functions.db"))
    def slow_square(n: int) -> int:
        calls.append(n)
        return n * n

    assert [slow_square(12), slow_square(12), slow_square(13)] == [144, 144, 169]
    assert calls == [12, 13]
    print("slow_square ran", len(calls), "times for 3 calls")
