"""LLMCacheWrapper / @cached on plain callables: keys, values, streams, controls, stats."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

import llm_cache.wrapper.sdk as sdk
from llm_cache import LLMCacheWrapper, cached
from llm_cache.cache.memory_storage import MemoryStorage
from llm_cache.cache.sqlite_storage import SQLiteStorage
from llm_cache.cache.storage import CacheStorage
from llm_cache.wrapper.sdk import CacheWarning, OfflineCacheMiss, detect_provider


@pytest.fixture
def storage() -> MemoryStorage:
    return MemoryStorage(max_size=100)


@pytest.fixture
def wrapper(storage: MemoryStorage) -> LLMCacheWrapper:
    return LLMCacheWrapper(storage=storage)


class Counter:
    def __init__(self) -> None:
        self.calls: list[Any] = []

    def __call__(self, *args: Any) -> None:
        self.calls.append(args)

    def __len__(self) -> int:
        return len(self.calls)


# -- keys -------------------------------------------------------------------------------------


def test_different_arguments_give_different_answers(wrapper: LLMCacheWrapper) -> None:
    seen = Counter()

    @wrapper.wrap
    def ask(question: str) -> str:
        seen(question)
        return f"answer to {question}"

    assert ask("What is 2+2?") == "answer to What is 2+2?"
    assert ask("Capital of France?") == "answer to Capital of France?"
    assert ask("What is 2+2?") == "answer to What is 2+2?"
    assert ask(question="Capital of France?") == "answer to Capital of France?"
    assert seen.calls == [("What is 2+2?",), ("Capital of France?",)]


def test_positional_keyword_and_defaults_are_one_call(wrapper: LLMCacheWrapper) -> None:
    seen = Counter()

    @wrapper.wrap
    def complete(prompt: str, temperature: float = 0.0, *, model: str = "m") -> str:
        seen(prompt, temperature, model)
        return prompt

    complete("p")
    complete("p", 0.0)
    complete(prompt="p", temperature=0.0, model="m")
    assert len(seen) == 1
    complete("p", 0.5)
    complete("p", model="other")
    assert len(seen) == 3


def test_function_identity_is_in_the_key(wrapper: LLMCacheWrapper) -> None:
    first = wrapper.wrap(lambda x: ("first", x))

    def second(x: int) -> tuple[str, int]:
        return ("second", x)

    second_cached = wrapper.wrap(second)
    assert first(1) == ("first", 1)
    assert second_cached(1) == ("second", 1)
    assert first.__cache_key__(1) != second_cached.__cache_key__(1)


def test_cache_key_matches_the_stored_entry(
    wrapper: LLMCacheWrapper, storage: MemoryStorage
) -> None:
    @wrapper.wrap
    def f(a: int, b: int = 2) -> int:
        return a + b

    key = f.__cache_key__(1)
    assert len(key) == 64
    assert key == f.__cache_key__(a=1, b=2)
    assert storage.get(key) is None
    f(1)
    assert storage.get(key) is not None


def test_wrong_arguments_raise_the_functions_own_error(wrapper: LLMCacheWrapper) -> None:
    @wrapper.wrap
    def f(a: int) -> int:
        return a

    with pytest.raises(TypeError):
        f(1, 2)


def test_arguments_without_a_canonical_form_are_not_cached(wrapper: LLMCacheWrapper) -> None:
    seen = Counter()

    class Thing:  # its state is a database connection: no key form
        def __init__(self) -> None:
            self.db = sqlite3.connect(":memory:")

    @wrapper.wrap
    def f(thing: Thing) -> int:
        seen(thing)
        return 1

    with pytest.warns(CacheWarning, match=r"argument 'thing'\.db \(sqlite3:Connection\)"):
        assert f(Thing()) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once per function only
        assert f(Thing()) == 1
    assert len(seen) == 2


def test_methods_key_on_their_instance_when_it_has_a_canonical_form(
    wrapper: LLMCacheWrapper,
) -> None:
    seen = Counter()

    @dataclasses.dataclass
    class Service:
        model: str

        def ask(self, q: str) -> str:
            seen(self.model, q)
            return f"{self.model}:{q}"

    a, b = Service("a"), Service("b")
    ask_a, ask_b = wrapper.wrap(a.ask), wrapper.wrap(b.ask)
    assert ask_a("q") == "a:q"
    assert ask_b("q") == "b:q"
    assert ask_a("q") == "a:q"
    assert len(seen) == 2


# -- values -----------------------------------------------------------------------------------


def test_none_is_cached(wrapper: LLMCacheWrapper) -> None:
    seen = Counter()

    @wrapper.wrap
    def nothing(x: int) -> None:
        seen(x)

    assert nothing(1) is None
    assert nothing(1) is None
    assert len(seen) == 1
    assert wrapper.get_stats()["hits"] == 1


def test_callers_get_fresh_copies(wrapper: LLMCacheWrapper) -> None:
    @wrapper.wrap
    def data() -> dict[str, Any]:
        return {"items": [1, 2], "nested": {"k": "v"}}

    first = data()
    first["items"].append(3)  # mutating the miss result...
    second = data()
    assert second == {"items": [1, 2], "nested": {"k": "v"}}
    second["nested"]["k"] = "changed"  # ...or a hit result...
    assert data() == {"items": [1, 2], "nested": {"k": "v"}}  # ...never changes the cache
    assert data() is not data()


@dataclasses.dataclass
class Result:
    text: str
    scores: tuple[float, ...]


def test_types_are_preserved(wrapper: LLMCacheWrapper) -> None:
    @wrapper.wrap
    def f() -> tuple[Result, set[int], bytes]:
        return (Result("t", (0.5, 1.0)), {1, 2}, b"raw")

    first, second = f(), f()
    assert first == second
    assert type(second) is tuple
    assert type(second[0]) is Result and type(second[0].scores) is tuple
    assert wrapper.get_stats()["hits"] == 1


def test_classes_defined_inside_functions_are_not_restored(wrapper: LLMCacheWrapper) -> None:
    @dataclasses.dataclass
    class Local:
        x: int

    @wrapper.wrap
    def f() -> Local:
        return Local(1)

    with pytest.warns(CacheWarning, match="cannot be restored"):
        assert f() == Local(1)
    assert wrapper.get_stats()["size"] == 0


def test_unserializable_value_warns_once_and_is_not_cached(wrapper: LLMCacheWrapper) -> None:
    seen = Counter()

    class Handle:
        pass

    @wrapper.wrap
    def f() -> Handle:
        seen()
        return Handle()

    with pytest.warns(CacheWarning, match="cannot be cached safely"):
        assert isinstance(f(), Handle)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert isinstance(f(), Handle)
    assert len(seen) == 2
    assert wrapper.get_stats()["size"] == 0


def test_corrupt_entry_is_a_miss(wrapper: LLMCacheWrapper, storage: MemoryStorage) -> None:
    seen = Counter()

    @wrapper.wrap
    def f() -> int:
        seen()
        return 1

    storage.set(f.__cache_key__(), {"v": 1, "kind": "value", "data": {"__t": "pickle"}})
    assert f() == 1
    assert f() == 1
    assert len(seen) == 1


# -- streams ----------------------------------------------------------------------------------


def test_generator_is_passed_through_and_replayed(wrapper: LLMCacheWrapper) -> None:
    seen = Counter()

    @wrapper.wrap
    def tokens(n: int) -> Iterator[tuple[int, str]]:
        seen(n)
        for i in range(n):
            yield (i, f"t{i}")

    first = tokens(3)
    assert not isinstance(first, list)
    assert list(first) == [(0, "t0"), (1, "t1"), (2, "t2")]
    replay = tokens(3)
    assert list(replay) == [(0, "t0"), (1, "t1"), (2, "t2")]
    assert len(seen) == 1


def test_a_stream_consumed_halfway_is_not_stored(wrapper: LLMCacheWrapper) -> None:
    seen = Counter()

    @wrapper.wrap
    def tokens() -> Iterator[int]:
        seen()
        yield from range(4)

    it = tokens()
    assert [next(it), next(it)] == [0, 1]
    del it
    closed = tokens()
    next(closed)
    closed.close()
    with tokens() as managed:  # context manager, closed early
        next(managed)
    assert wrapper.get_stats()["size"] == 0
    assert list(tokens()) == [0, 1, 2, 3]
    assert list(tokens()) == [0, 1, 2, 3]
    assert len(seen) == 4


def test_a_stream_that_fails_is_not_stored(wrapper: LLMCacheWrapper) -> None:
    @wrapper.wrap
    def broken() -> Iterator[int]:
        yield 1
        raise ConnectionError("dropped")

    with pytest.raises(ConnectionError):
        list(broken())
    assert wrapper.get_stats()["size"] == 0


def test_stream_with_unserializable_chunk_is_not_stored(wrapper: LLMCacheWrapper) -> None:
    marker = object()

    def mixed() -> Iterator[Any]:
        yield 1
        yield marker

    mixed = wrapper.wrap(mixed, ignore=("marker",))

    with pytest.warns(CacheWarning, match="stream is not stored"):
        assert list(mixed()) == [1, marker]
    assert wrapper.get_stats()["size"] == 0


async def test_async_function(wrapper: LLMCacheWrapper) -> None:
    seen = Counter()

    @wrapper.wrap
    async def ask(q: str) -> dict[str, str]:
        seen(q)
        await asyncio.sleep(0)
        return {"a": q}

    assert asyncio.iscoroutinefunction(ask)
    assert await ask("x") == {"a": "x"}
    assert await ask("x") == {"a": "x"}
    assert await ask("y") == {"a": "y"}
    assert len(seen) == 2


async def test_async_generator_function(wrapper: LLMCacheWrapper) -> None:
    seen = Counter()

    @wrapper.wrap
    async def tokens(n: int) -> AsyncIterator[str]:
        seen(n)
        for i in range(n):
            yield f"t{i}"

    half = tokens(4)
    assert await half.__anext__() == "t0"
    await half.aclose()
    assert wrapper.get_stats()["size"] == 0
    assert [t async for t in tokens(4)] == ["t0", "t1", "t2", "t3"]
    assert [t async for t in tokens(4)] == ["t0", "t1", "t2", "t3"]
    assert len(seen) == 2


async def test_async_function_returning_an_async_iterator(wrapper: LLMCacheWrapper) -> None:
    seen = Counter()

    class Chunks:
        def __init__(self, items: list[int]) -> None:
            self.items = iter(items)
            self.closed = False

        def __aiter__(self) -> Chunks:
            return self

        async def __anext__(self) -> int:
            try:
                return next(self.items)
            except StopIteration:
                raise StopAsyncIteration from None

        async def close(self) -> None:
            self.closed = True

    @wrapper.wrap
    async def stream(n: int) -> Chunks:
        seen(n)
        return Chunks(list(range(n)))

    first = await stream(3)
    assert await first.__anext__() == 0
    await first.close()  # closed early: nothing stored, the inner stream closed
    assert first.closed
    assert [c async for c in await stream(3)] == [0, 1, 2]
    replay = await stream(3)
    assert [c async for c in replay] == [0, 1, 2]
    assert len(seen) == 2


# -- controls ---------------------------------------------------------------------------------


def test_bypass_forces_a_fresh_call_and_stores_it(wrapper: LLMCacheWrapper) -> None:
    values = iter(range(100))

    def fresh(x: int) -> int:
        return next(values)

    fresh = wrapper.wrap(fresh, ignore=("values",))  # an iterator has no key form

    assert fresh(1) == 0
    assert fresh(1) == 0
    assert fresh(1, _cache_bypass=True) == 1  # not passed to the function
    assert fresh(1) == 1  # the fresh answer was stored
    assert fresh.__cache_key__(1, _cache_bypass=True) == fresh.__cache_key__(1)


async def test_bypass_async(wrapper: LLMCacheWrapper) -> None:
    values = iter(range(100))

    async def fresh() -> int:
        return next(values)

    fresh = wrapper.wrap(fresh, ignore=("values",))

    assert await fresh() == 0
    assert await fresh(_cache_bypass=True) == 1
    assert await fresh() == 1


def test_disable_and_enable(wrapper: LLMCacheWrapper) -> None:
    seen = Counter()

    @wrapper.wrap
    def f() -> int:
        seen()
        return 1

    f()
    wrapper.disable()
    f()
    f()
    assert len(seen) == 3
    wrapper.enable()
    f()
    assert len(seen) == 3
    assert LLMCacheWrapper(storage=MemoryStorage(), enabled=False).enabled is False


def test_stats_and_clear(wrapper: LLMCacheWrapper) -> None:
    @wrapper.wrap
    def f(x: int) -> int:
        return x

    for x in (1, 1, 1, 2):
        f(x)
    stats = wrapper.get_stats()
    assert stats["hits"] == 2
    assert stats["misses"] == 2
    assert stats["hit_rate"] == 50.0
    assert stats["size"] == 2
    assert stats["max_size"] == 100
    f(1)
    assert wrapper.get_stats()["hit_rate"] == 60.0
    wrapper.clear_cache()
    stats = wrapper.get_stats()
    assert (stats["size"], stats["hits"], stats["misses"], stats["hit_rate"]) == (0, 0, 0, 0.0)


def test_hit_rate_has_two_decimals(wrapper: LLMCacheWrapper) -> None:
    @wrapper.wrap
    def f(x: int) -> int:
        return x

    f(1), f(1), f(2)
    assert wrapper.get_stats()["hit_rate"] == 33.33


def test_context_manager_closes_the_storage(tmp_path: Path) -> None:
    closed: list[bool] = []

    class Tracked(MemoryStorage):
        def close(self) -> None:
            closed.append(True)

    with LLMCacheWrapper(storage=Tracked()) as w:
        assert w.wrap(lambda: 1)() == 1
    assert closed == [True]


def test_sqlite_entries_are_shared_between_wrappers(tmp_path: Path) -> None:
    seen: list[str] = []

    def ask(q: str) -> dict[str, Any]:
        seen.append(q)  # changed in place: the function's own state, not in the key
        return {"answer": q, "n": (1, 2)}

    path = str(tmp_path / "c.db")
    with LLMCacheWrapper(storage=SQLiteStorage(db_path=path)) as first:
        assert first.wrap(ask)("q") == {"answer": "q", "n": (1, 2)}
    with LLMCacheWrapper(storage=SQLiteStorage(db_path=path)) as second:
        assert second.wrap(ask)("q") == {"answer": "q", "n": (1, 2)}
        assert second.get_stats()["hits"] == 1
    assert len(seen) == 1


def test_storage_defaults_to_the_configuration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LLM_CACHE_BACKEND", "sqlite")
    monkeypatch.setenv("LLM_CACHE_SQLITE_PATH", str(tmp_path / "conf.db"))
    w = LLMCacheWrapper()
    assert not (tmp_path / "conf.db").exists()  # nothing opened before the first use
    assert w.wrap(lambda: 5)() == 5
    assert isinstance(w.storage, SQLiteStorage)
    w.close()
    assert (tmp_path / "conf.db").exists()


@pytest.mark.parametrize("mode", ["readonly", "offline", "record", "off"])
def test_modes(mode: str) -> None:
    storage = MemoryStorage()
    seen: list[int] = []

    def f(x: int) -> int:
        seen.append(x)
        return x * 10

    LLMCacheWrapper(storage=storage).wrap(f)(1)  # recorded once in readwrite
    w = LLMCacheWrapper(storage=storage, mode=mode)
    g = w.wrap(f)
    if mode == "offline":
        assert g(1) == 10
        with pytest.raises(OfflineCacheMiss):
            g(2)
        assert len(seen) == 1
    elif mode == "readonly":
        assert g(1) == 10 and g(2) == 20 and g(2) == 20
        assert len(seen) == 3 and storage.get_size() == 1
    elif mode == "record":
        assert g(1) == 10
        assert len(seen) == 2
    else:
        assert g(1) == 10 and g(2) == 20
        assert len(seen) == 3 and storage.get_size() == 1


def test_failing_storage_fails_open() -> None:
    class Broken(MemoryStorage):
        def get_bytes(self, key: str) -> bytes | None:
            raise ConnectionError("down")

        def set_bytes(self, *args: Any, **kwargs: Any) -> None:
            raise ConnectionError("down")

    w = LLMCacheWrapper(storage=Broken())
    assert w.wrap(lambda: 1)() == 1


# -- decorator and providers ------------------------------------------------------------------


def test_cached_decorator_forms(storage: MemoryStorage, monkeypatch: pytest.MonkeyPatch) -> None:
    default = LLMCacheWrapper(storage=MemoryStorage())
    monkeypatch.setattr(sdk, "_default", default)
    seen = Counter()

    @cached
    def plain(x: int) -> int:
        seen(x)
        return x

    @cached(provider="anthropic", storage=storage)
    def configured(x: int) -> int:
        seen(x)
        return x

    assert plain(1) == plain(1) == 1
    assert configured(2) == configured(2) == 2
    assert len(seen) == 2
    assert plain.cache_wrapper is default  # type: ignore[attr-defined]
    assert configured.cache_provider == "anthropic"  # type: ignore[attr-defined]
    assert storage.get_size() == 1 and default.get_stats()["size"] == 1


def test_cached_with_only_a_provider_uses_the_default_wrapper(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    default = LLMCacheWrapper(storage=MemoryStorage())
    monkeypatch.setattr(sdk, "_default", default)

    @cached(provider="mistral")
    def f() -> int:
        return 1

    assert f() == 1
    assert f.cache_wrapper is default  # type: ignore[attr-defined]
    assert f.cache_provider == "mistral"  # type: ignore[attr-defined]


def test_wrapped_function_keeps_its_name_and_doc(wrapper: LLMCacheWrapper) -> None:
    def documented(x: int) -> int:
        """Doc."""
        return x

    w = wrapper.wrap(documented)
    assert w.__name__ == "documented"
    assert w.__doc__ == "Doc."
    assert w.__wrapped__ is documented  # type: ignore[attr-defined]


def test_provider_detection() -> None:
    import openai

    def uses_openai_module() -> Any:
        return openai.OpenAI

    def ask_claude() -> None:
        pass

    def plain() -> None:
        pass

    client = openai.OpenAI(api_key="sk-test", base_url="http://127.0.0.1:9/v1")
    assert detect_provider(client.chat.completions.create) == "openai"
    assert detect_provider(uses_openai_module) == "openai"
    assert detect_provider(ask_claude) == "anthropic"
    assert detect_provider(plain) == "unknown"
    assert detect_provider(openai.OpenAI) == "openai"
    w = LLMCacheWrapper(storage=MemoryStorage(), provider="cohere")
    assert w.wrap(plain).cache_provider == "cohere"  # type: ignore[attr-defined]
    assert w.wrap(plain, provider="google").cache_provider == "google"  # type: ignore[attr-defined]


def test_metadata_records_provider_and_model(monkeypatch: pytest.MonkeyPatch) -> None:
    recorded: list[Any] = []

    class Spy(MemoryStorage):
        def set_bytes(self, key: str, data: bytes, metadata: Any = None, ttl: Any = None) -> None:
            recorded.append(metadata)
            super().set_bytes(key, data, metadata, ttl)

    w = LLMCacheWrapper(storage=Spy(), provider="openai")

    @w.wrap
    def chat(model: str, prompt: str) -> str:
        return prompt

    chat("gpt-x", "hi")
    assert recorded[0]["provider"] == "openai"
    assert recorded[0]["model"] == "gpt-x"


def test_storage_is_a_cache_storage(wrapper: LLMCacheWrapper) -> None:
    assert isinstance(wrapper.storage, CacheStorage)


def test_closures_from_one_factory_are_told_apart_by_what_they_capture(
    wrapper: LLMCacheWrapper,
) -> None:
    import openai

    # an SDK client enters the key by its settings, not by its identity or API key
    client = openai.OpenAI(api_key="sk-x", base_url="http://127.0.0.1:9/v1")

    def make(model: str) -> Any:
        @wrapper.wrap
        def ask(q: str) -> str:
            assert client is not None
            return f"{model}:{q}"

        return ask

    small, large = make("small"), make("large")
    assert small("q") == "small:q"
    assert large("q") == "large:q"
    assert make("small")("q") == "small:q"
    assert wrapper.get_stats()["hits"] == 1


def test_an_unopenable_sqlite_file_serves_uncached(tmp_path: Path) -> None:
    path = tmp_path / "cache.db"
    path.mkdir()  # a directory where the file should be
    seen: list[int] = []
    wrapper = LLMCacheWrapper(storage=SQLiteStorage(path))

    @wrapper.wrap
    def double(x: int) -> int:
        seen.append(x)
        return 2 * x

    assert double(2) == double(2) == 4
    assert seen == [2, 2]
    stats = wrapper.get_stats()
    assert stats["size"] is None and "cannot open" in stats["error"]
