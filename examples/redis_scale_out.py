"""Scale out with Redis: two proxy replicas share one cache.

    LLM_CACHE_REDIS_URL=redis://127.0.0.1:6379/0 python examples/redis_scale_out.py

Uses a namespace of its own and removes only its own keys at the end.
"""

from __future__ import annotations

import os
import uuid

import httpx2
from _offline import FAKE_OPENAI_KEY, proxy, simulated_upstream
from openai import OpenAI

from llm_cache.cache.redis_storage import RedisStorage

redis_url = os.environ.get("LLM_CACHE_REDIS_URL", "redis://127.0.0.1:6379/0")
namespace = f"llm-cache-example-{uuid.uuid4().hex[:8]}"
shared = {"backend": "redis", "redis_url": redis_url, "redis_namespace": namespace}

try:
    with (
        simulated_upstream() as upstream,
        proxy(upstream, **shared) as replica_a,
        proxy(upstream, **shared) as replica_b,
    ):
        question = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi!"}]}
        for name, url in (("replica A", replica_a), ("replica B", replica_b)):
            client = OpenAI(base_url=f"{url}/v1", api_key=FAKE_OPENAI_KEY)
            raw = client.chat.completions.with_raw_response.create(**question)
            print(f"{name}: X-Cache-Hit={raw.headers['x-cache-hit']}")
        assert raw.headers["x-cache-hit"] == "true"  # B answered from what A stored

        stats = httpx2.get(f"{replica_b}/cache/stats").json()  # the counters live in Redis
        print(f"shared stats: {stats['hits']} hit, {stats['misses']} miss")
        assert (stats["hits"], stats["misses"]) == (1, 1)
finally:
    RedisStorage(url=redis_url, namespace=namespace).clear()  # this namespace's keys only
