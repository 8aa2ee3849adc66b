"""What a wrapper key covers (issue 10): code, closure and global data, SDK client settings,
bound instances; what cannot be keyed is refused; ``key=`` and ``ignore=``; values that only
round-trip as JSON; objects that are both sync and async iterators."""

from __future__ import annotations

import dataclasses
import enum
import os
import sqlite3
import subprocess
import sys
import textwrap
import types
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pydantic
import pytest

from llm_cache import LLMCacheWrapper, cached
from llm_cache.cache.memory_storage import MemoryStorage
from llm_cache.wrapper.sdk import CacheWarning
from tests.conftest import Upstream


@pytest.fixture
def storage() -> MemoryStorage:
    return MemoryStorage(max_size=1000)


@pytest.fixture
def wrapper(storage: MemoryStorage) -> LLMCacheWrapper:
    return LLMCacheWrapper(storage=storage)


# -- case 1: two scripts on one SQLite file; an edited body misses ----------------------------

SCRIPT = """\
import sys
from llm_cache import cached
from llm_cache.cache.sqlite_storage import SQLiteStorage

MODEL = sys.argv[2]

@cached(storage=SQLiteStorage(sys.argv[1]))
def ask(text):
    return {body}

print(ask("hello"), ask.cache_wrapper.hits)
"""


def run_script(tmp_path: Path, name: str, body: str, db: Path, model: str = "m") -> list[str]:
    script = tmp_path / name
    script.write_text(SCRIPT.format(body=body))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_CACHE_")}
    done = subprocess.run(
        [sys.executable, str(script), str(db), model],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=env,
        check=True,
    )
    return done.stdout.split()


def test_two_scripts_on_one_file_never_share_an_answer(tmp_path: Path) -> None:
    db = tmp_path / "shared.db"
    first = run_script(tmp_path, "a.py", '"first prompt: " + text', db)
    second = run_script(tmp_path, "b.py", '"second prompt: " + text', db)
    assert first == ["first", "prompt:", "hello", "0"]
    assert second == ["second", "prompt:", "hello", "0"]  # today: the first script's answer
    # the same script again is a hit; an edited body is not
    assert run_script(tmp_path, "a.py", '"first prompt: " + text', db)[-1] == "1"
    edited = run_script(tmp_path, "a.py", '"first prompt, edited: " + text', db)
    assert edited == ["first", "prompt,", "edited:", "hello", "0"]


def test_a_module_global_changed_between_runs_misses(tmp_path: Path) -> None:
    db = tmp_path / "shared.db"
    body = 'MODEL + ": " + text'
    assert run_script(tmp_path, "g.py", body, db, model="small") == ["small:", "hello", "0"]
    assert run_script(tmp_path, "g.py", body, db, model="large") == ["large:", "hello", "0"]
    assert run_script(tmp_path, "g.py", body, db, model="small") == ["small:", "hello", "1"]


def test_a_module_global_rebound_in_the_process_misses(wrapper: LLMCacheWrapper) -> None:
    module = types.ModuleType("notebook_cell")
    exec(  # a notebook: the cell with MODEL is run again with another value
        textwrap.dedent(
            """
            MODEL = "small"
            def ask(text):
                return MODEL + ":" + text
            """
        ),
        module.__dict__,
    )
    ask = wrapper.wrap(module.ask)
    assert ask("q") == "small:q"
    assert ask("q") == "small:q"
    module.MODEL = "large"
    assert ask("q") == "large:q"
    assert wrapper.hits == 1


# -- case 2: closures from one factory --------------------------------------------------------


@dataclasses.dataclass
class Settings:
    model: str
    temperature: float = 0.0


class Tone(enum.Enum):
    FORMAL = "formal"
    CASUAL = "casual"


def deep(leaf: int) -> dict[str, Any]:
    return {"a": {"b": {"c": {"d": {"e": {"f": leaf}}}}}}


CAPTURES: dict[str, tuple[Any, Any]] = {
    "dataclass": (Settings("small"), Settings("large")),
    "enum": (Tone.FORMAL, Tone.CASUAL),
    "frozenset": (frozenset({"a"}), frozenset({"b"})),
    "function": (str.upper, str.lower),
    "list of 70": (list(range(70)), [*range(69), 1000]),
    "dict 6 deep": (deep(1), deep(2)),
    "sdk client": (
        openai.OpenAI(api_key="sk-a", base_url="http://127.0.0.1:9/one/v1"),
        openai.OpenAI(api_key="sk-a", base_url="http://127.0.0.1:9/two/v1"),
    ),
}


def describe(value: Any) -> str:
    """An answer that depends on the captured value, as an LLM call's would."""
    if callable(value) and not isinstance(value, openai.OpenAI):
        return str(value("Text"))
    if isinstance(value, openai.OpenAI):
        return str(value.base_url)
    return repr(value)


@pytest.mark.parametrize("name", list(CAPTURES))
def test_closures_from_one_factory_capturing_different_data_differ(
    wrapper: LLMCacheWrapper, name: str
) -> None:
    def make(config: Any) -> Callable[[str], str]:
        @wrapper.wrap
        def ask(q: str) -> str:
            return f"{describe(config)}|{q}"

        return ask

    one, two = CAPTURES[name]
    assert make(one)("q") == f"{describe(one)}|q"
    assert make(two)("q") == f"{describe(two)}|q"  # today: the first closure's answer
    assert make(one)("q") == f"{describe(one)}|q"
    assert wrapper.hits == 1


# -- case 3: state the function keeps ---------------------------------------------------------


def test_a_captured_call_log_does_not_stop_hits(wrapper: LLMCacheWrapper) -> None:
    log: list[str] = []

    @wrapper.wrap
    def ask(q: str) -> str:
        log.append(q)
        return q.upper()

    assert [ask("q") for _ in range(3)] == ["Q", "Q", "Q"]
    assert log == ["q"]  # hits from the second identical call
    assert ask("r") == "R"
    assert log == ["q", "r"]


def test_a_nonlocal_counter_does_not_stop_hits(wrapper: LLMCacheWrapper) -> None:
    calls = 0

    @wrapper.wrap
    def ask(q: str) -> str:
        nonlocal calls
        calls += 1
        return q.upper()

    assert [ask("q") for _ in range(3)] == ["Q", "Q", "Q"]
    assert calls == 1


def test_a_global_counter_does_not_stop_hits(wrapper: LLMCacheWrapper) -> None:
    module = types.ModuleType("counting")
    exec(
        "CALLS = 0\ndef ask(q):\n    global CALLS\n    CALLS += 1\n    return q * 2\n",
        module.__dict__,
    )
    ask = wrapper.wrap(module.ask)
    assert [ask("q") for _ in range(3)] == ["qq", "qq", "qq"]
    assert module.CALLS == 1


# -- case 4: bound instances are keyed by all their state --------------------------------------


class Agent(pydantic.BaseModel):
    name: str
    _persona: str = pydantic.PrivateAttr(default="helpful")

    def ask(self, q: str) -> str:
        return f"{self._persona}:{q}"


@dataclasses.dataclass
class Prompter:
    style: dataclasses.InitVar[str]

    def __post_init__(self, style: str) -> None:
        self.prefix = style.upper()

    def ask(self, q: str) -> str:
        return f"{self.prefix}:{q}"


def test_a_pydantic_private_attribute_is_in_the_key(wrapper: LLMCacheWrapper) -> None:
    plain, pirate = Agent(name="a"), Agent(name="a")
    pirate._persona = "pirate"
    assert wrapper.wrap(plain.ask)("q") == "helpful:q"
    assert wrapper.wrap(pirate.ask)("q") == "pirate:q"  # today: "helpful:q"
    assert wrapper.wrap(Agent(name="a").ask)("q") == "helpful:q"
    assert wrapper.hits == 1


def test_a_method_decorated_in_its_class_keys_self(wrapper: LLMCacheWrapper) -> None:
    class Bot(pydantic.BaseModel):
        _persona: str = pydantic.PrivateAttr(default="helpful")

        @wrapper.wrap
        def ask(self, q: str) -> str:
            return f"{self._persona}:{q}"

    pirate = Bot()
    pirate._persona = "pirate"
    assert Bot().ask("q") == "helpful:q"
    assert pirate.ask("q") == "pirate:q"
    assert Bot().ask("q") == "helpful:q"
    assert wrapper.hits == 1


def test_a_dataclass_attribute_derived_from_an_initvar_is_in_the_key(
    wrapper: LLMCacheWrapper,
) -> None:
    assert wrapper.wrap(Prompter("formal").ask)("q") == "FORMAL:q"
    assert wrapper.wrap(Prompter("casual").ask)("q") == "CASUAL:q"  # today: "FORMAL:q"


# -- case 5: SDK client settings ----------------------------------------------------------------


def chat(content: str) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}]}


def test_sdk_methods_key_beta_headers_default_query_and_api_version(
    upstream: Upstream, wrapper: LLMCacheWrapper
) -> None:
    base = f"{upstream.url}/v1"

    def client(**kw: Any) -> openai.OpenAI:
        return openai.OpenAI(base_url=base, api_key=kw.pop("api_key", "sk-1"), max_retries=0, **kw)

    plain = wrapper.wrap(client().chat.completions.create)
    other_key = wrapper.wrap(client(api_key="sk-2").chat.completions.create)
    beta = wrapper.wrap(
        client(default_headers={"OpenAI-Beta": "assistants=v2"}).chat.completions.create
    )
    query = wrapper.wrap(client(default_query={"tier": "b"}).chat.completions.create)
    args = chat("hello")
    keys = {f.__cache_key__(**args) for f in (plain, beta, query)}  # type: ignore[attr-defined]
    assert len(keys) == 3  # today: one key
    assert other_key.__cache_key__(**args) == plain.__cache_key__(**args)  # type: ignore[attr-defined]
    plain(**args)
    beta(**args)
    query(**args)
    assert upstream.fake.count("/chat/completions") == 3  # each went upstream
    other_key(**args)
    assert upstream.fake.count("/chat/completions") == 3  # the API key is not in the key

    def azure(version: str) -> Any:
        c = openai.AzureOpenAI(azure_endpoint=upstream.url, api_version=version, api_key="k")
        return wrapper.wrap(c.chat.completions.create)

    old, new = azure("2024-02-01"), azure("2025-03-01-preview")
    assert old.__cache_key__(**args) != new.__cache_key__(**args)
    assert old.__cache_key__(**args) == azure("2024-02-01").__cache_key__(**args)


# -- refusals and steering --------------------------------------------------------------------


def test_what_cannot_be_keyed_is_refused_with_one_warning_naming_it(
    wrapper: LLMCacheWrapper,
) -> None:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE t (v TEXT)")
    db.execute("INSERT INTO t VALUES ('from the database')")

    @wrapper.wrap
    def ask(q: str) -> str:
        return f"{db.execute('SELECT v FROM t').fetchone()[0]}:{q}"

    with pytest.warns(CacheWarning, match=r"closure variable 'db' \(sqlite3:Connection\)"):
        assert ask("q") == "from the database:q"
    db.execute("UPDATE t SET v = 'changed'")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per function
        assert ask("q") == "changed:q"
    assert wrapper.get_stats()["size"] == 0


def test_key_function_replaces_arguments_and_read_data(wrapper: LLMCacheWrapper) -> None:
    db = sqlite3.connect(":memory:")
    seen: list[str] = []

    def ask(q: str, verbose: bool = False) -> str:
        seen.append(q)
        assert db is not None
        return q.upper()

    keyed = wrapper.wrap(ask, key=lambda q, verbose=False: q.strip().lower())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert keyed("Hello") == "HELLO"
        assert keyed(" hello ", verbose=True) == "HELLO"  # same key
    assert seen == ["Hello"]


def test_ignore_leaves_arguments_and_read_names_out(wrapper: LLMCacheWrapper) -> None:
    seen: list[str] = []
    handle = sqlite3.connect(":memory:")

    def ask(q: str, verbose: bool = False) -> str:
        seen.append(q)
        assert handle is not None
        return q.upper()

    steered = wrapper.wrap(ask, ignore=("verbose", "handle"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert steered("q") == "Q"
        assert steered("q", verbose=True) == "Q"
    assert seen == ["q"]
    with pytest.raises(ValueError, match="no argument, global or closure variable"):
        wrapper.wrap(ask, ignore=("nothing_like_it",))


def test_cached_decorator_takes_key_and_ignore(storage: MemoryStorage) -> None:
    seen: list[str] = []

    @cached(storage=storage, ignore=("request_id",))
    def ask(q: str, request_id: str) -> str:
        seen.append(q)
        return q

    assert ask("q", "id-1") == ask("q", "id-2") == "q"
    assert seen == ["q"]

    @cached(storage=storage, key=lambda q: len(q))
    def size(q: str) -> int:
        seen.append(q)
        return len(q)

    assert size("ab") == size("cd") == 2
    assert seen == ["q", "ab"]


def test_an_edited_helper_function_changes_the_key(wrapper: LLMCacheWrapper) -> None:
    namespace: dict[str, Any] = {}
    exec("def helper(q):\n    return q + '!'\ndef ask(q):\n    return helper(q)\n", namespace)
    ask = wrapper.wrap(namespace["ask"])
    key = ask.__cache_key__("q")  # type: ignore[attr-defined]
    exec("def helper(q):\n    return q + '?'\n", namespace)  # the helper is redefined
    assert ask.__cache_key__("q") != key  # type: ignore[attr-defined]
    assert ask("q") == "q?"


# -- case 6: an object both sync and async iterable, from a sync function ----------------------


class BothWays:
    """Stand-in for litellm's ``CustomStreamWrapper``: a sync *and* an async iterator."""

    def __init__(self, items: list[str]) -> None:
        self._items = iter(items)

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        return next(self._items)

    def __aiter__(self) -> AsyncIterator[str]:
        return self

    async def __anext__(self) -> str:
        try:
            return next(self._items)
        except StopIteration:
            raise StopAsyncIteration from None


def test_a_sync_function_returning_a_both_ways_stream(wrapper: LLMCacheWrapper) -> None:
    seen: list[str] = []

    @wrapper.wrap
    def completion(q: str) -> BothWays:
        seen.append(q)
        return BothWays([q, "a", "b"])

    assert list(completion("x")) == ["x", "a", "b"]  # today: TypeError
    assert list(completion("x")) == ["x", "a", "b"]
    assert seen == ["x"]


async def test_a_both_ways_stream_read_asynchronously(wrapper: LLMCacheWrapper) -> None:
    seen: list[str] = []

    @wrapper.wrap
    def completion(q: str) -> BothWays:
        seen.append(q)
        return BothWays([q, "a"])

    assert [c async for c in completion("y")] == ["y", "a"]
    assert [c async for c in completion("y")] == ["y", "a"]  # replayed both ways
    assert list(completion("y")) == ["y", "a"]
    assert seen == ["y"]


# -- case 7: values whose JSON form round-trips -------------------------------------------------


class LiteLLMLikeResponse(pydantic.BaseModel):
    """Stand-in shaped like litellm's ``ModelResponse``: extra fields, private attributes and
    an attribute set outside the fields (``_response_ms``)."""

    model_config = pydantic.ConfigDict(extra="allow")
    id: str
    model: str
    choices: list[dict[str, Any]]
    _hidden_params: dict[str, Any] = pydantic.PrivateAttr(default_factory=dict)

    def __init__(self, **data: Any) -> None:
        super().__init__(**data)
        self._hidden_params = {"custom_llm_provider": "openai", "response_cost": 0.00012}
        object.__setattr__(self, "_response_ms", 12.5)


class User(pydantic.BaseModel):
    name: str
    age: int | None = None


def instructor_like_subclass() -> type[User]:
    """instructor builds response models at run time (``Partial[User]``); not importable."""
    return pydantic.create_model("PartialUser", __base__=User)


class CompletionResponseLike(pydantic.BaseModel):
    """Stand-in shaped like llama-index's ``CompletionResponse`` (``raw`` holds the SDK's
    own response object in an ``Any`` field)."""

    text: str
    additional_kwargs: dict[str, Any] = pydantic.Field(default_factory=dict)
    raw: Any = None
    delta: str | None = None


CHAT_COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-4o-mini",
    "choices": [
        {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Hi"}}
    ],
}


def test_a_model_with_private_state_is_cached(wrapper: LLMCacheWrapper) -> None:
    seen: list[str] = []

    @wrapper.wrap
    def completion(q: str) -> LiteLLMLikeResponse:
        seen.append(q)
        return LiteLLMLikeResponse(id="r1", model="m", choices=[{"text": q}], usage={"n": 3})

    first = completion("q")
    second = completion("q")
    assert seen == ["q"]  # today: never cached
    assert type(second) is LiteLLMLikeResponse and second == first
    assert second._hidden_params == first._hidden_params
    assert second.__dict__["_response_ms"] == 12.5
    assert second.usage == {"n": 3}  # type: ignore[attr-defined]


def test_a_run_time_subclass_comes_back_as_its_nearest_importable_class(
    wrapper: LLMCacheWrapper,
) -> None:
    seen: list[str] = []
    partial_user = instructor_like_subclass()

    def extract(text: str) -> User:
        seen.append(text)
        return partial_user(name=text, age=3)

    extract = wrapper.wrap(extract, ignore=("partial_user",))
    first = extract("ann")
    second = extract("ann")
    assert seen == ["ann"]  # today: never cached
    assert type(first) is partial_user and type(second) is User
    assert second.model_dump() == first.model_dump()


def test_an_sdk_object_inside_an_any_field_is_cached(wrapper: LLMCacheWrapper) -> None:
    from openai.types.chat import ChatCompletion

    seen: list[str] = []

    @wrapper.wrap
    def complete(prompt: str) -> CompletionResponseLike:
        seen.append(prompt)
        raw = ChatCompletion.model_validate(CHAT_COMPLETION)
        return CompletionResponseLike(text="Hi", raw=raw)

    first, second = complete("p"), complete("p")
    assert seen == ["p"]  # today: never cached
    assert second == first
    assert type(second.raw) is ChatCompletion


def test_real_litellm_when_installed(
    wrapper: LLMCacheWrapper, monkeypatch: pytest.MonkeyPatch
) -> None:
    """litellm itself (not a dev dependency: skipped when absent), offline (``mock_response``)."""
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no price list download
    litellm = pytest.importorskip("litellm")
    seen: list[str] = []

    def complete(q: str, stream: bool = False) -> Any:
        seen.append(q)
        messages = [{"role": "user", "content": q}]
        return litellm.completion(
            model="gpt-4o-mini", messages=messages, mock_response=f"echo {q}", stream=stream
        )

    complete = wrapper.wrap(complete)
    first, second = complete("x"), complete("x")
    assert type(second) is type(first) and second == first
    assert second._hidden_params == first._hidden_params
    chunks = [c.choices[0].delta.content for c in complete("y", stream=True)]
    again = [c.choices[0].delta.content for c in complete("y", stream=True)]
    assert again == chunks and seen == ["x", "y"]


def test_real_instructor_partial_when_installed(wrapper: LLMCacheWrapper) -> None:
    instructor = pytest.importorskip("instructor")
    partial_user = instructor.Partial[User]
    seen: list[str] = []

    def extract(name: str) -> Any:
        seen.append(name)
        return partial_user(name=name)

    extract = wrapper.wrap(extract, ignore=("partial_user",))
    assert extract("ann").model_dump() == extract("ann").model_dump()
    assert seen == ["ann"]


def test_real_packages_when_installed(wrapper: LLMCacheWrapper) -> None:
    """The same three with the real libraries (not dev dependencies: skipped when absent)."""
    llama = pytest.importorskip("llama_index.core.base.llms.types")
    from openai.types.chat import ChatCompletion

    raw = ChatCompletion.model_validate(CHAT_COMPLETION)
    seen: list[int] = []

    @wrapper.wrap
    def complete(n: int) -> Any:
        seen.append(n)
        return llama.CompletionResponse(text="Hi", raw=raw)

    assert complete(1) == complete(1)
    assert seen == [1]


def test_environment_variables_read_by_name_are_in_the_key(
    wrapper: LLMCacheWrapper, monkeypatch: pytest.MonkeyPatch
) -> None:
    def ask(q: str) -> str:
        return f"{os.environ.get('WRAPPER_TEST_MODEL')}:{q}"

    ask = wrapper.wrap(ask)
    monkeypatch.setenv("WRAPPER_TEST_MODEL", "small")
    assert ask("q") == "small:q"
    monkeypatch.setenv("WRAPPER_TEST_MODEL", "large")
    # os.environ is the same object: the value is read again only for a new wrapper (a new run)
    assert wrapper.wrap(ask.__wrapped__)("q") == "large:q"  # type: ignore[attr-defined]


def test_credentials_in_the_environment_stay_out_of_the_key(
    wrapper: LLMCacheWrapper, monkeypatch: pytest.MonkeyPatch
) -> None:
    def ask(q: str) -> str:
        assert os.environ.get("WRAPPER_TEST_API_KEY") is not None
        return q

    monkeypatch.setenv("WRAPPER_TEST_API_KEY", "sk-one")
    one = wrapper.wrap(ask).__cache_key__("q")  # type: ignore[attr-defined]
    monkeypatch.setenv("WRAPPER_TEST_API_KEY", "sk-two")
    assert wrapper.wrap(ask).__cache_key__("q") == one  # type: ignore[attr-defined]


def test_functions_from_installed_packages_key_by_name_code_and_version() -> None:
    from llm_cache.wrapper.calls import Canonicalizer

    node = Canonicalizer().value(openai.OpenAI.__init__, "f")
    assert node["version"] == openai.__version__
    assert "globals" not in node  # the package's module state is its own


def test_a_class_attribute_rebound_changes_the_key(wrapper: LLMCacheWrapper) -> None:
    class Bot:
        persona = "helpful"

        def ask(self, q: str) -> str:
            return f"{self.persona}:{q}"

    ask = wrapper.wrap(Bot().ask)
    assert ask("q") == "helpful:q"
    assert ask("q") == "helpful:q"
    Bot.persona = "pirate"
    assert ask("q") == "pirate:q"
    assert wrapper.hits == 1


async def test_an_async_function_returning_a_both_ways_stream(wrapper: LLMCacheWrapper) -> None:
    """litellm's ``acompletion(stream=True)`` returns the same both-ways object."""
    seen: list[str] = []

    @wrapper.wrap
    async def acompletion(q: str) -> BothWays:
        seen.append(q)
        return BothWays([q, "b"])

    assert [c async for c in await acompletion("z")] == ["z", "b"]
    replay = await acompletion("z")
    assert [c async for c in replay] == ["z", "b"]
    assert seen == ["z"]


def test_a_both_ways_stream_closed_early_is_not_stored(wrapper: LLMCacheWrapper) -> None:
    @wrapper.wrap
    def completion(q: str) -> BothWays:
        return BothWays([q, "a", "b"])

    stream = completion("x")
    assert next(iter(stream)) == "x"
    stream.close()  # type: ignore[attr-defined]
    assert wrapper.get_stats()["size"] == 0


def test_dict_order_is_in_the_key_of_a_function_but_not_of_an_sdk_call(
    wrapper: LLMCacheWrapper,
) -> None:
    @wrapper.wrap
    def prompt(options: dict[str, str]) -> str:
        return "; ".join(f"{k}={v}" for k, v in options.items())  # the order shows

    assert prompt({"tone": "dry", "length": "short"}) == "tone=dry; length=short"
    assert prompt({"length": "short", "tone": "dry"}) == "length=short; tone=dry"

    client = openai.OpenAI(api_key="sk-x", base_url="http://127.0.0.1:9/v1")
    create = wrapper.wrap(client.chat.completions.create)
    one = create.__cache_key__(model="m", messages=[{"role": "user", "content": "hi"}])  # type: ignore[attr-defined]
    two = create.__cache_key__(model="m", messages=[{"content": "hi", "role": "user"}])  # type: ignore[attr-defined]
    assert one == two  # a JSON body: key order means nothing


def test_partials_and_decorators_are_keyed_with_what_they_add(wrapper: LLMCacheWrapper) -> None:
    import functools

    def ask(style: str, q: str) -> str:
        return f"{style}:{q}"

    formal = wrapper.wrap(functools.partial(ask, "formal"))
    casual = wrapper.wrap(functools.partial(ask, "casual"))
    assert formal("q") == "formal:q"
    assert casual("q") == "casual:q"  # the partial's own argument is in the key

    def shout(suffix: str) -> Callable[[Callable[[str], str]], Callable[[str], str]]:
        def decorate(f: Callable[[str], str]) -> Callable[[str], str]:
            @functools.wraps(f)
            def inner(q: str) -> str:
                return f(q) + suffix

            return inner

        return decorate

    def base(q: str) -> str:
        return q

    assert wrapper.wrap(shout("!")(base))("q") == "q!"
    assert wrapper.wrap(shout("?")(base))("q") == "q?"  # the decorator's data counts too


def test_module_level_sdk_settings_are_in_the_key(
    wrapper: LLMCacheWrapper, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``openai.base_url = ...`` then ``openai.chat.completions.create`` (the module client)."""

    def ask(q: str) -> Any:
        return openai.chat.completions.create(model="m", messages=[{"role": "user", "content": q}])

    monkeypatch.setattr(openai, "base_url", "http://127.0.0.1:9/one/v1")
    one = wrapper.wrap(ask).__cache_key__("q")  # type: ignore[attr-defined]
    monkeypatch.setattr(openai, "base_url", "http://127.0.0.1:9/two/v1")
    assert wrapper.wrap(ask).__cache_key__("q") != one  # type: ignore[attr-defined]
    monkeypatch.setattr(openai, "api_key", "sk-other")
    two = wrapper.wrap(ask).__cache_key__("q")  # type: ignore[attr-defined]
    monkeypatch.setattr(openai, "api_key", "sk-third")
    assert wrapper.wrap(ask).__cache_key__("q") == two  # type: ignore[attr-defined]
