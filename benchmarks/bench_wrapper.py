"""Hit overhead of the callable wrapper and of the httpx2 transport, per call.

    .venv/bin/python benchmarks/bench_wrapper.py [--n 20000]

Compared against a plain function returning the same object (wrapper) and against an SDK client
whose transport returns the same bytes without any cache (transport). A wrapper hit on an SDK
object has to rebuild it (pydantic); that part is measured on its own, and the wrapper's own
overhead is reported without it (targets: ≤ 50 µs memory, ≤ 150 µs SQLite).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import openai
import orjson
from openai.types.chat import ChatCompletion

from llm_cache import LLMCacheWrapper
from llm_cache.cache.memory_storage import MemoryStorage
from llm_cache.cache.sqlite_storage import SQLiteStorage
from llm_cache.cache.storage import CacheStorage
from llm_cache.wrapper.transport import httpx_client
from llm_cache.wrapper.values import dump_checked, load

MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Summarize the plot of Hamlet in three sentences."},
]
TEXT = (
    "Prince Hamlet seeks revenge on his uncle Claudius, who murdered Hamlet's father and married "
    "his mother. Hamlet feigns madness, stages a play to confirm the guilt, and accidentally kills "
    "Polonius. The tragedy ends in a duel where nearly everyone, Hamlet included, dies."
)
COMPLETION: dict[str, Any] = {
    "id": "chatcmpl-bench0001",
    "object": "chat.completion",
    "created": 1_700_000_000,
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": TEXT, "refusal": None, "annotations": []},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {
        "prompt_tokens": 28,
        "completion_tokens": 62,
        "total_tokens": 90,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    },
    "service_tier": "default",
    "system_fingerprint": "fp_bench",
}
BODY = orjson.dumps(COMPLETION)


def per_call_us(fn: Callable[[], Any], n: int, repeats: int = 5) -> float:
    """Median over ``repeats`` runs of the mean time per call, in microseconds."""
    for _ in range(min(n, 200)):
        fn()  # warm up
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        runs.append((time.perf_counter() - start) / n * 1e6)
    return statistics.median(runs)


def sdk_completion() -> ChatCompletion:
    from openai._models import construct_type

    return construct_type(value=COMPLETION, type_=ChatCompletion)  # type: ignore[no-any-return]


def wrapper_rows(
    name: str, storage: CacheStorage, n: int, rebuild: float
) -> list[tuple[str, float, str]]:
    completion = sdk_completion()
    plain_dict = orjson.loads(BODY)

    def plain(messages: list[dict[str, str]], model: str = "gpt-4o-mini") -> ChatCompletion:
        return completion

    def plain_json(messages: list[dict[str, str]], model: str = "gpt-4o-mini") -> dict[str, Any]:
        return plain_dict

    wrapper = LLMCacheWrapper(storage=storage)
    cached_model = wrapper.wrap(plain)
    cached_json = wrapper.wrap(plain_json)
    cached_model(MESSAGES)
    cached_json(MESSAGES)
    base = per_call_us(lambda: plain(MESSAGES), n)
    model_hit = per_call_us(lambda: cached_model(MESSAGES), n)
    json_hit = per_call_us(lambda: cached_json(MESSAGES), n)
    assert wrapper.get_stats()["hit_rate"] > 99
    overhead = model_hit - base
    return [
        (f"wrapper hit, {name}, ChatCompletion", overhead, f"{model_hit:.1f} µs/call in all"),
        ("  of which not the pydantic rebuild", overhead - rebuild, "the target figure"),
        (f"wrapper hit, {name}, same data as a dict", json_hit - base, "no model to rebuild"),
    ]


def transport_rows(name: str, storage: CacheStorage, n: int) -> list[tuple[str, float, str]]:
    def answer(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "application/json"}, content=BODY)

    mock = httpx2.MockTransport(answer)
    direct = openai.OpenAI(
        api_key="sk-bench",
        base_url="http://bench.invalid/v1",
        http_client=httpx2.Client(transport=mock),
    )
    cached = openai.OpenAI(
        api_key="sk-bench",
        base_url="http://bench.invalid/v1",
        http_client=httpx_client(storage, transport=mock),
    )

    def call(client: openai.OpenAI) -> Callable[[], Any]:
        return lambda: client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]

    call(cached)()  # store
    base = per_call_us(call(direct), max(n // 10, 200))
    hit = per_call_us(call(cached), max(n // 10, 200))
    return [(f"transport hit, {name}", hit - base, f"{hit:8.1f} µs vs {base:.1f} µs SDK+mock")]


def pydantic_rows(n: int) -> list[tuple[str, float, str]]:
    completion = sdk_completion()
    data = dump_checked(completion)["v"]
    validate = per_call_us(lambda: ChatCompletion.model_validate(data), n)
    construct = per_call_us(lambda: ChatCompletion.construct(**data), n)
    full_load = per_call_us(
        lambda: load({"__t": "pydantic", "cls": data and _path(), "v": data}), n
    )
    return [
        ("pydantic: model_validate (used)", validate, "nested models, validated"),
        ("pydantic: SDK construct (lax fallback)", construct, "recursive, no validation"),
        ("values.load of the ChatCompletion", full_load, "class lookup + validate"),
    ]


def _path() -> str:
    return f"{ChatCompletion.__module__}:{ChatCompletion.__qualname__}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=20000, help="calls per measurement")
    args = parser.parse_args()
    rows: list[tuple[str, float, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        memory = MemoryStorage(max_size=10_000)
        sqlite = SQLiteStorage(db_path=str(Path(tmp) / "bench.db"), max_size=10_000)
        pydantic = pydantic_rows(args.n)
        rebuild = pydantic[2][1]
        rows += wrapper_rows("memory", memory, args.n, rebuild)
        rows += wrapper_rows("SQLite", sqlite, args.n, rebuild)
        rows += transport_rows("memory", MemoryStorage(max_size=10_000), args.n)
        rows += transport_rows("SQLite", sqlite, args.n)
        rows += pydantic
        sqlite.close()
    width = max(len(r[0]) for r in rows)
    print(f"{'measurement':<{width}}  {'µs/call':>9}  note")
    print("-" * (width + 40))
    for label, value, note in rows:
        print(f"{label:<{width}}  {value:9.1f}  {note}")
    print()
    print("wrapper/transport rows: overhead over the uncached baseline (plain function, or the")
    print("SDK on a mock transport returning the same bytes). Targets: wrapper hit without the")
    print("pydantic rebuild ≤ 50 µs (memory), ≤ 150 µs (SQLite).")


if __name__ == "__main__":
    main()
