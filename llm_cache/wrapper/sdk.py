"""Cache any callable: ``LLMCacheWrapper(...).wrap(func)`` and ``@cached``.

The key covers the function's name and code, the data it reads from its closure and module
globals, and every bound argument, defaults applied (``calls.py`` says exactly how); what has
no key form makes the call run uncached with one ``CacheWarning`` naming it. ``key=`` (a
function of the call's arguments) and ``ignore=`` (argument or global/closure names) steer it.
A wrapped SDK method (``client.chat.completions.create``) keys on its arguments plus the
client's provider, base URL, answer-changing headers and default query, never on its API key.
Values are stored as tagged JSON (``values.py``), never pickled. A returned iterator or async
iterator (an SDK ``Stream``/``AsyncStream``, a generator) is passed through chunk by chunk and
stored only when it was consumed to the end; a hit replays equal chunks (``streams.py``).

Concurrent identical misses run the function once (single-flight, per wrapper): the first
caller (the leader) runs it; callers with the same key that miss meanwhile wait, then get a
fresh copy restored from the leader's stored value. Threads wait on a ``threading.Event``,
``async def`` callers on an ``asyncio.Future`` of their own event loop. When the leader raises,
returns a stream (an iterator), or returns a value with no stored form, each waiting caller
runs the function itself. Calls with ``_cache_bypass=True`` and modes that store nothing
(``readonly``) stay out of it: they always run the function.

The sync path calls the engine's sync methods directly (no event loop per call); ``async def``
functions use the async ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import threading
import warnings
from collections.abc import AsyncIterator, Callable, Iterable
from types import MethodType, ModuleType, TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, cast, overload

import orjson

from llm_cache.cache.key_generator import CREDENTIAL_FIELDS, _is_plain, hash_payload
from llm_cache.cache.storage import StorageError, hit_rate_percent
from llm_cache.engine import CacheEngine
from llm_cache.wrapper.calls import (
    Canonicalizer,
    FunctionIdentity,
    Unkeyable,
    code_names,
    inspect_unwrap,
    sdk_client_of,
)
from llm_cache.wrapper.streams import Chunks, record, replay
from llm_cache.wrapper.values import UnstorableValue, dump_checked, load

if TYPE_CHECKING:
    from llm_cache.cache.storage import CacheStorage

__all__ = [
    "CacheWarning",
    "LLMCacheWrapper",
    "OfflineCacheMiss",
    "cached",
    "detect_provider",
]

logger = logging.getLogger("llm_cache.wrapper")

F = TypeVar("F", bound=Callable[..., Any])

VALUE_VERSION = 1
#: Version of what a wrapper key covers (v2: code, closure and globals, SDK client settings).
KEY_VERSION = 2
BYPASS_ARG = "_cache_bypass"

#: Top-level package → provider name.
_PROVIDER_PACKAGES = {
    "openai": "openai",
    "anthropic": "anthropic",
    "cohere": "cohere",
    "google": "google",
    "vertexai": "google",
    "mistralai": "mistral",
    "mistral": "mistral",
    "huggingface_hub": "huggingface",
    "transformers": "huggingface",
}
#: Words in a function's name that give its provider away (last resort).
_PROVIDER_WORDS = (
    ("openai", "openai"),
    ("gpt", "openai"),
    ("anthropic", "anthropic"),
    ("claude", "anthropic"),
    ("cohere", "cohere"),
    ("gemini", "google"),
    ("google", "google"),
    ("mistral", "mistral"),
    ("huggingface", "huggingface"),
)
#: SDK-method arguments that never change the answer.
_SDK_IGNORED_ARGS = frozenset({"timeout"})


class CacheWarning(UserWarning):
    """A call could not be cached (its arguments or value have no safe stored form)."""


class OfflineCacheMiss(LookupError):
    """Mode ``offline``: the call has no cached answer and must not be made."""


# -- provider detection ---------------------------------------------------------------------


def _provider_of_module(name: object) -> str | None:
    if not isinstance(name, str):
        return None
    return _PROVIDER_PACKAGES.get(name.partition(".")[0])


def _module_of(obj: object) -> object:
    if isinstance(obj, ModuleType):
        return obj.__name__
    if inspect.isclass(obj) or inspect.isroutine(obj):
        return getattr(obj, "__module__", None)
    return type(obj).__module__


def detect_provider(func: Callable[..., Any]) -> str:
    """The provider behind ``func``: its bound SDK client, its module, what its body uses.

    ``openai``, ``anthropic``, ``cohere``, ``google``, ``mistral``, ``huggingface``, else
    ``unknown``.
    """
    owner = getattr(func, "__self__", None)
    if owner is not None and not isinstance(owner, ModuleType):
        for obj in (getattr(owner, "_client", None), owner):
            if obj is not None and (p := _provider_of_module(type(obj).__module__)):
                return p
    if p := _provider_of_module(getattr(func, "__module__", None)):
        return p
    target = inspect.unwrap(getattr(func, "__func__", func))
    code = getattr(target, "__code__", None)
    namespace = getattr(target, "__globals__", None)
    used: list[object] = []
    if code is not None and isinstance(namespace, dict):
        used += [namespace[name] for name in code.co_names if name in namespace]
    for cell in getattr(target, "__closure__", None) or ():
        with contextlib.suppress(ValueError):  # an empty cell
            used.append(cell.cell_contents)
    for obj in used:
        if p := _provider_of_module(_module_of(obj)):
            return p
    lowered = str(getattr(func, "__qualname__", getattr(func, "__name__", ""))).lower()
    for word, provider in _PROVIDER_WORDS:
        if word in lowered:
            return provider
    return "unknown"


def _is_async(func: Callable[..., Any]) -> bool:
    if inspect.iscoroutinefunction(func):
        return True
    if inspect.iscoroutinefunction(inspect.unwrap(getattr(func, "__func__", func))):
        return True
    call = type(func).__dict__.get("__call__")
    return not inspect.isroutine(func) and inspect.iscoroutinefunction(call)


def _is_sentinel(value: object) -> bool:
    """The SDKs' "not given" markers (``openai.omit``, ``NOT_GIVEN``): an absent argument."""
    name = type(value).__name__
    return name == "Omit" or name == "NotGiven"


# -- per-function state ---------------------------------------------------------------------


class _Function:
    """What the wrapper knows about one wrapped callable: its name, identity and key rules."""

    def __init__(
        self,
        owner: LLMCacheWrapper,
        func: Callable[..., Any],
        provider: str | None,
        key: Callable[..., Any] | None = None,
        ignore: Iterable[str] = (),
    ):
        self.owner = owner
        self.func = func
        self.provider = provider or owner.provider or detect_provider(func)
        self.key_fn = key
        self.ignore = frozenset((ignore,) if isinstance(ignore, str) else ignore)
        self.warned = False
        try:
            self.signature: inspect.Signature | None = inspect.signature(func)
        except (TypeError, ValueError):
            self.signature = None
        bound_self = getattr(func, "__self__", None)
        if isinstance(func, MethodType) or (
            bound_self is not None and not isinstance(bound_self, (ModuleType, type))
        ):
            cls = type(bound_self)
            self.name = f"{cls.__module__}.{cls.__qualname__}.{getattr(func, '__name__', '?')}"
            #: A bound method's instance is keyed at each call, like an argument.
            self.bound_self: Any = bound_self
        else:
            module = getattr(func, "__module__", None) or "?"
            qualname = getattr(func, "__qualname__", None) or type(func).__qualname__
            self.name = f"{module}.{qualname}"
            self.bound_self = None
        self.sdk = sdk_client_of(bound_self) is not None
        #: An SDK resource's key form is fixed (its client's settings are set at construction).
        self.self_form: Any = (
            Canonicalizer().value(bound_self, "the method's instance") if self.sdk else None
        )
        self._check_ignore()
        self.identity = FunctionIdentity(func, self.ignore, code_only=key is not None)
        self.metadata_base = {"provider": self.provider, "endpoint": self.name}

    def _check_ignore(self) -> None:
        """``ignore`` may only name arguments, or globals/closure variables the code reads."""
        if not self.ignore:
            return
        known: set[str] = set()
        if self.signature is not None:
            known.update(self.signature.parameters)
            if any(p.kind is p.VAR_KEYWORD for p in self.signature.parameters.values()):
                return  # any name may arrive as a keyword argument
        target = inspect_unwrap(getattr(self.func, "__func__", self.func))
        code = getattr(target, "__code__", None)
        if code is not None:
            read, written, _ = code_names(code)
            known.update(read, written, code.co_freevars)
        else:
            return  # nothing to check against
        unknown = sorted(self.ignore - known)
        if unknown:
            raise ValueError(
                f"ignore={unknown!r}: {self.name} has no argument, global or closure variable "
                "of that name"
            )

    # -- keys ---------------------------------------------------------------------------------

    def arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """Bound arguments with defaults; raises ``TypeError`` when the call does not bind."""
        if self.signature is None:
            return {"args": args, "kwargs": kwargs}
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        out: dict[str, Any] = {}
        for name, value in bound.arguments.items():
            if _is_sentinel(value) or name in self.ignore:
                continue
            if self.ignore and isinstance(value, dict) and self._is_var_keyword(name):
                value = {k: v for k, v in value.items() if k not in self.ignore}
            if self.sdk:
                if name in _SDK_IGNORED_ARGS:
                    continue
                if name == "extra_headers" and isinstance(value, dict):
                    value = {
                        k: v
                        for k, v in value.items()
                        if k.lower() not in CREDENTIAL_FIELDS and k.lower() != "x-api-key"
                    } or None
            out[name] = value
        return out

    def _is_var_keyword(self, name: str) -> bool:
        param = self.signature.parameters.get(name) if self.signature is not None else None
        return param is not None and param.kind is param.VAR_KEYWORD

    def key(self, arguments: dict[str, Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        """The cache key; raises ``Unkeyable`` naming what has no key form."""
        material: dict[str, Any] = {
            "wrapper": KEY_VERSION,
            "fn": self.name,
            "id": self.identity.digest(),
        }
        ordered = not self.sdk  # an SDK call's arguments become JSON, where order means nothing
        if self.key_fn is not None:
            _put(material, "custom", self.key_fn(*args, **kwargs), "the value of key=", ordered)
        else:
            _put(material, "args", arguments, "argument", ordered)
        if self.self_form is not None:
            material["self"] = self.self_form
        elif self.bound_self is not None:
            material["self"] = Canonicalizer().value(self.bound_self, "the method's instance")
        # every part is JSON-native by now: orjson's output is the canonical form (in insertion
        # order: two dicts that iterate differently are different arguments to a function)
        option = 0 if ordered else orjson.OPT_SORT_KEYS
        return hash_payload(orjson.dumps(material, option=option))

    def metadata(self, arguments: dict[str, Any]) -> dict[str, Any]:
        model = arguments.get("model")
        if isinstance(model, str):
            return {**self.metadata_base, "model": model}
        return self.metadata_base

    def warn(self, message: str) -> None:
        if self.warned:
            return
        self.warned = True
        warnings.warn(f"llm-cache: {self.name}: {message}", CacheWarning, stacklevel=4)

    # -- the miss side ------------------------------------------------------------------------

    def stored_value(self, value: Any) -> dict[str, Any] | None:
        try:
            data = dump_checked(value)
        except UnstorableValue as exc:
            self.warn(f"{exc}; the value is returned uncached")
            return None
        return {"v": VALUE_VERSION, "kind": "value", "data": data}

    def chunk_sink(self) -> Chunks:
        return Chunks(VALUE_VERSION, self.warn)


def _put(material: dict[str, Any], name: str, value: Any, what: str, ordered: bool) -> None:
    """Plain JSON data goes in as it is (orjson's fast path); anything else in its key form,
    under another name so the two can never look alike."""
    if _is_plain(value):
        material[name] = value
        return
    canon = Canonicalizer(ordered=ordered)
    if isinstance(value, dict):
        material["t" + name] = {str(k): canon.value(v, f"{what} {k!r}") for k, v in value.items()}
    else:
        material["t" + name] = canon.value(value, what)


def _restore(stored: dict[str, Any]) -> Any:
    """The value (or replay stream) a stored entry stands for; ``ValueError`` if unusable."""
    if stored.get("v") != VALUE_VERSION:
        raise ValueError("not a wrapper entry of this version")
    kind = stored.get("kind")
    if kind == "value":
        return load(stored.get("data"))
    if kind == "stream":
        chunks = [load(c) for c in stored.get("chunks") or ()]
        return replay(chunks, is_async=bool(stored.get("async")), dual=bool(stored.get("dual")))
    raise ValueError(f"unknown wrapper entry kind {kind!r}")


# -- single-flight ----------------------------------------------------------------------------


class _Flight:
    """One running sync call that identical concurrent misses wait for."""

    __slots__ = ("done", "owner", "value")

    def __init__(self) -> None:
        self.done = threading.Event()
        #: The leader's thread: a call of the same key from inside it must not wait on itself.
        self.owner = threading.get_ident()
        #: The leader's stored value; ``None`` when followers must call for themselves.
        self.value: dict[str, Any] | None = None


#: (loop, key) → (the leader's task, the future of its stored value).
_AsyncFlights = dict[
    tuple[asyncio.AbstractEventLoop, str],
    tuple["asyncio.Task[Any] | None", "asyncio.Future[dict[str, Any] | None]"],
]


def _shared(fn: _Function, key: str, value: dict[str, Any] | None) -> tuple[bool, Any]:
    """``(True, fresh copy)`` of a leader's value, or ``(False, None)``: call for yourself."""
    if value is None:
        return False, None
    try:
        return True, _restore(value)
    except Exception as exc:  # pragma: no cover - the leader has just made this value
        logger.warning("unusable shared value %s for %s: %s", key, fn.name, exc)
        return False, None


# -- the wrapper ------------------------------------------------------------------------------


class LLMCacheWrapper:
    """Caches calls of wrapped callables in one storage backend.

    ``storage=None`` uses ``Config().get_storage()`` (built on first use, so creating a wrapper
    opens nothing). ``provider`` overrides provider detection for every wrapped function.
    ``mode``/``ttl`` default to the configuration's when the storage comes from it, else to
    ``readwrite`` and no TTL.
    """

    def __init__(
        self,
        storage: CacheStorage | None = None,
        enabled: bool = True,
        provider: str | None = None,
        *,
        mode: str | None = None,
        ttl: float | None = None,
    ) -> None:
        self._storage = storage
        self.enabled = enabled
        self.provider = provider
        self._mode = mode
        self._ttl = ttl
        self._engine: CacheEngine | None = None
        self._lock = threading.Lock()
        #: Single-flight: key → the sync call in progress; (loop, key) → the async one.
        self._flights: dict[str, _Flight] = {}
        self._aflights: _AsyncFlights = {}
        self._flights_lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def forced_provider(self) -> str | None:
        """The provider given to the constructor (the original project's attribute name)."""
        return self.provider

    @forced_provider.setter
    def forced_provider(self, value: str | None) -> None:
        self.provider = value

    # -- storage and engine (lazy) ------------------------------------------------------------

    @property
    def engine(self) -> CacheEngine:
        engine = self._engine
        if engine is None:
            with self._lock:
                if self._engine is None:
                    mode, ttl = self._mode, self._ttl
                    if self._storage is None or mode is None:
                        from llm_cache.config import Config

                        config = Config()
                        if self._storage is None:
                            self._storage = config.get_storage()
                            ttl = config.ttl if ttl is None else ttl
                        mode = config.mode if mode is None else mode
                    self._engine = CacheEngine(self._storage, mode=mode, ttl=ttl)
                engine = self._engine
        return engine

    @property
    def storage(self) -> CacheStorage:
        return self.engine.storage

    # -- wrapping -----------------------------------------------------------------------------

    def wrap(
        self,
        func: F,
        *,
        provider: str | None = None,
        key: Callable[..., Any] | None = None,
        ignore: Iterable[str] = (),
    ) -> F:
        """A caching version of ``func`` (sync, ``async def``, or returning a stream).

        ``key``: called with the call's arguments, its value stands for them (and for the data
        the function reads) in the key; the function's code still counts. ``ignore``: names of
        arguments, or of globals/closure variables the function reads, left out of the key.
        """
        fn = _Function(self, func, provider, key, ignore)
        wrapper: Callable[..., Any]
        if inspect.isasyncgenfunction(func):
            wrapper = self._wrap_async_gen(fn)
        elif _is_async(func):
            wrapper = self._wrap_async(fn)
        else:
            wrapper = self._wrap_sync(fn)
        with contextlib.suppress(AttributeError, TypeError):
            functools.update_wrapper(wrapper, func)

        def cache_key(*args: Any, **kwargs: Any) -> str:
            kwargs.pop(BYPASS_ARG, None)
            return fn.key(fn.arguments(args, kwargs), args, kwargs)

        wrapper.__cache_key__ = cache_key  # type: ignore[attr-defined]
        wrapper.cache_wrapper = self  # type: ignore[attr-defined]
        wrapper.cache_provider = fn.provider  # type: ignore[attr-defined]
        return cast(F, wrapper)

    __call__ = wrap

    def _prepare(
        self, fn: _Function, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[str, dict[str, Any]] | None:
        """``(key, arguments)`` for a cacheable call, or ``None`` to call straight through."""
        try:
            arguments = fn.arguments(args, kwargs)
        except TypeError:
            return None  # the call itself will raise the right error
        try:
            return fn.key(arguments, args, kwargs), arguments
        except Unkeyable as exc:
            fn.warn(f"{exc}; the call is not cached (pass key= or ignore= to steer the key)")
            return None

    def _wrap_sync(self, fn: _Function) -> Callable[..., Any]:
        func = fn.func

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            bypass = kwargs.pop(BYPASS_ARG, False) is True
            if not self.enabled:
                return func(*args, **kwargs)
            engine = self.engine
            if not engine.reads and not engine.writes:
                return func(*args, **kwargs)
            prepared = self._prepare(fn, args, kwargs)
            if prepared is None:
                return func(*args, **kwargs)
            key, arguments = prepared
            if engine.reads and not bypass:
                found, result = self._answer(fn, key, engine.lookup_sync(key))
                if found:
                    return result
            if not engine.writes:
                return func(*args, **kwargs)
            if bypass:
                return self._miss_sync(fn, key, arguments, args, kwargs, None)
            with self._flights_lock:
                flight = self._flights.get(key)
                leader = flight is None
                if flight is None:
                    flight = self._flights[key] = _Flight()
            if not leader:
                if flight.owner == threading.get_ident():  # the leader calls itself
                    return self._miss_sync(fn, key, arguments, args, kwargs, None)
                flight.done.wait()
                found, result = _shared(fn, key, flight.value)
                if found:
                    return result
                return self._miss_sync(fn, key, arguments, args, kwargs, None)
            try:
                return self._miss_sync(fn, key, arguments, args, kwargs, flight)
            finally:
                with self._flights_lock:
                    if self._flights.get(key) is flight:
                        del self._flights[key]
                flight.done.set()

        return wrapper

    def _miss_sync(
        self,
        fn: _Function,
        key: str,
        arguments: dict[str, Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        flight: _Flight | None,
    ) -> Any:
        """Run a sync miss and store its answer; a leader's ``flight`` gets the stored value."""
        engine = self.engine
        result = fn.func(*args, **kwargs)
        metadata = fn.metadata(arguments)

        def store(value: dict[str, Any]) -> None:
            engine.store_sync(key, value, metadata=metadata)

        async def astore(value: dict[str, Any]) -> None:
            await engine.store(key, value, metadata=metadata)

        recorder = record(result, fn.chunk_sink(), store, astore)
        if recorder is not None:
            return recorder
        value = fn.stored_value(result)
        if value is not None:
            if flight is not None:
                flight.value = value
            store(value)
        return result

    def _answer(self, fn: _Function, key: str, stored: dict[str, Any] | None) -> tuple[bool, Any]:
        """``(True, value)`` for a usable stored entry; else count the miss and ``(False, None)``.

        Raises ``OfflineCacheMiss`` on a miss in offline mode (the call must not run).
        """
        if stored is not None:
            try:
                result = _restore(stored)
            except Exception as exc:
                logger.warning("unusable cache entry %s for %s: %s", key, fn.name, exc)
            else:
                self.hits += 1
                return True, result
        self.misses += 1
        if self.engine.offline:
            raise OfflineCacheMiss(f"no cached answer for {fn.name} (key {key})")
        return False, None

    def _wrap_async(self, fn: _Function) -> Callable[..., Any]:
        func = fn.func

        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            bypass = kwargs.pop(BYPASS_ARG, False) is True
            if not self.enabled:
                return await func(*args, **kwargs)
            engine = self.engine
            if not engine.reads and not engine.writes:
                return await func(*args, **kwargs)
            prepared = self._prepare(fn, args, kwargs)
            if prepared is None:
                return await func(*args, **kwargs)
            key, arguments = prepared
            if engine.reads and not bypass:
                found, result = self._answer(fn, key, await engine.lookup(key))
                if found:
                    return result
            if not engine.writes:
                return await func(*args, **kwargs)
            if bypass:
                return await self._miss_async(fn, key, arguments, args, kwargs, None)
            slot = (asyncio.get_running_loop(), key)
            task = asyncio.current_task()
            with self._flights_lock:
                entry = self._aflights.get(slot)
                leader = entry is None
                if entry is None:
                    entry = self._aflights[slot] = (task, slot[0].create_future())
            owner, future = entry
            if not leader and owner is task:  # the leader awaits itself
                return await self._miss_async(fn, key, arguments, args, kwargs, None)
            if not leader:
                # shield: a follower cancelled while waiting must not cancel the shared future
                found, result = _shared(fn, key, await asyncio.shield(future))
                if found:
                    return result
                return await self._miss_async(fn, key, arguments, args, kwargs, None)
            shared: list[dict[str, Any] | None] = [None]
            try:
                return await self._miss_async(fn, key, arguments, args, kwargs, shared)
            finally:
                with self._flights_lock:
                    if self._aflights.get(slot) is entry:
                        del self._aflights[slot]
                if not future.done():
                    future.set_result(shared[0])

        return wrapper

    async def _miss_async(
        self,
        fn: _Function,
        key: str,
        arguments: dict[str, Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        shared: list[dict[str, Any] | None] | None,
    ) -> Any:
        """Run an async miss and store its answer; a leader's ``shared[0]`` gets the value."""
        engine = self.engine
        result = await fn.func(*args, **kwargs)
        metadata = fn.metadata(arguments)

        async def store(value: dict[str, Any]) -> None:
            await engine.store(key, value, metadata=metadata)

        def store_sync(value: dict[str, Any]) -> None:
            engine.store_sync(key, value, metadata=metadata)

        recorder = record(result, fn.chunk_sink(), store_sync, store)
        if recorder is not None:
            return recorder
        value = fn.stored_value(result)
        if value is not None:
            if shared is not None:
                shared[0] = value
            await store(value)
        return result

    def _wrap_async_gen(self, fn: _Function) -> Callable[..., Any]:
        func = fn.func

        async def wrapper(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            bypass = kwargs.pop(BYPASS_ARG, False) is True
            engine = self.engine
            prepared = None
            if self.enabled and (engine.reads or engine.writes):
                prepared = self._prepare(fn, args, kwargs)
            if prepared is None:
                async with contextlib.aclosing(func(*args, **kwargs)) as gen:
                    async for item in gen:
                        yield item
                return
            key, arguments = prepared
            if engine.reads and not bypass:
                stored = await engine.lookup(key)
                if stored is not None and stored.get("kind") == "stream":
                    try:
                        chunks = [load(c) for c in stored.get("chunks") or ()]
                    except Exception as exc:
                        logger.warning("unusable cache entry %s for %s: %s", key, fn.name, exc)
                    else:
                        self.hits += 1
                        for chunk in chunks:
                            yield chunk
                        return
                self.misses += 1
                if engine.offline:
                    raise OfflineCacheMiss(f"no cached answer for {fn.name} (key {key})")
            sink = fn.chunk_sink()
            async with contextlib.aclosing(func(*args, **kwargs)) as gen:
                async for item in gen:
                    sink.add(item)
                    yield item
            value = sink.value("async")
            if value is not None and engine.writes:
                await engine.store(key, value, metadata=fn.metadata(arguments))

        return wrapper

    # -- controls -----------------------------------------------------------------------------

    def enable(self) -> None:
        self.enabled = True

    def disable(self) -> None:
        """Calls go straight to the wrapped functions (nothing looked up or stored)."""
        self.enabled = False

    def get_stats(self) -> dict[str, Any]:
        """This wrapper's ``hits``/``misses``/``hit_rate`` (percent) and the storage's size.

        A failing storage gives ``size`` ``None`` and its ``error``: the counters still count.
        """
        storage = self.storage
        stats: dict[str, Any] = {
            "hits": self.hits,
            "misses": self.misses,
            "total_requests": self.hits + self.misses,
            "hit_rate": hit_rate_percent(self.hits, self.misses),
            "size": None,
            "max_size": storage.max_size,
            "backend": storage.backend_name,
            "enabled": self.enabled,
            "mode": self.engine.mode,
        }
        try:
            stats["size"] = storage.get_size()
        except StorageError as exc:
            stats["error"] = str(exc)
        return stats

    def clear_cache(self) -> None:
        """Remove every entry of the storage and reset the counters."""
        self.storage.clear()
        self.hits = self.misses = 0

    def close(self) -> None:
        """Close the storage (when one was opened)."""
        if self._engine is not None:
            self._engine.storage.close()
        elif self._storage is not None:
            self._storage.close()

    async def aclose(self) -> None:
        if self._engine is not None:
            await self._engine.storage.aclose()
        elif self._storage is not None:
            await self._storage.aclose()

    def __enter__(self) -> LLMCacheWrapper:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> LLMCacheWrapper:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


# -- @cached ----------------------------------------------------------------------------------

_default: LLMCacheWrapper | None = None
_default_lock = threading.Lock()


def _default_wrapper() -> LLMCacheWrapper:
    """One wrapper per process for ``@cached`` without a storage (its storage opens lazily)."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = LLMCacheWrapper()
    return _default


@overload
def cached(func: F, /) -> F: ...


@overload
def cached(
    *,
    provider: str | None = None,
    storage: CacheStorage | None = None,
    key: Callable[..., Any] | None = None,
    ignore: Iterable[str] = (),
) -> Callable[[F], F]: ...


def cached(
    func: F | None = None,
    /,
    *,
    provider: str | None = None,
    storage: CacheStorage | None = None,
    key: Callable[..., Any] | None = None,
    ignore: Iterable[str] = (),
) -> F | Callable[[F], F]:
    """Decorator: ``@cached`` or ``@cached(provider="openai", storage=SQLiteStorage(...))``.

    ``key=lambda text, **kw: text`` keys calls by what it returns (plus the function's code);
    ``ignore=("verbose",)`` leaves arguments (or globals/closure variables) out of the key.
    """
    wrapper = LLMCacheWrapper(storage) if storage is not None else _default_wrapper()

    def decorate(f: F) -> F:
        return wrapper.wrap(f, provider=provider, key=key, ignore=ignore)

    if func is not None:
        return decorate(func)
    return decorate
