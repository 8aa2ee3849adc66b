"""Streams a wrapped call returns: recorded as they pass, replayed on a hit.

A returned iterator (an SDK ``Stream``, a generator) is passed through chunk by chunk and stored
only when it was consumed to the end; closing it early or an error stores nothing. An object
that is both a sync and an async iterator (litellm's ``CustomStreamWrapper``) is recorded and
replayed as both, whichever way the caller iterates it.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

from llm_cache.wrapper.values import UnstorableValue, dump_checked

StoreSync = Callable[[dict[str, Any]], None]
StoreAsync = Callable[[dict[str, Any]], Awaitable[Any]]


def is_async_iterator(value: object) -> bool:
    return hasattr(type(value), "__anext__")


def is_iterator(value: object) -> bool:
    return hasattr(type(value), "__next__") and hasattr(type(value), "__iter__")


class Chunks:
    """Stored forms of a stream's chunks as they pass; ``None`` once one cannot be stored."""

    __slots__ = ("chunks", "version", "warn")

    def __init__(self, version: int, warn: Callable[[str], None]) -> None:
        self.version = version
        self.warn = warn
        self.chunks: list[Any] | None = []

    def add(self, item: Any) -> None:
        if self.chunks is None:
            return
        try:
            self.chunks.append(dump_checked(item))
        except UnstorableValue as exc:
            self.chunks = None
            self.warn(f"a stream chunk cannot be cached ({exc}); the stream is not stored")

    def value(self, flavour: str) -> dict[str, Any] | None:
        """The stored entry; ``flavour`` is ``sync``, ``async`` or ``dual``."""
        if self.chunks is None:
            return None
        return {
            "v": self.version,
            "kind": "stream",
            "async": flavour != "sync",
            "dual": flavour == "dual",
            "chunks": self.chunks,
        }


def replay(chunks: list[Any], *, is_async: bool, dual: bool) -> Any:
    if dual:
        return DualReplay(chunks)
    return AsyncReplay(chunks) if is_async else Replay(chunks)


class Replay:
    """A cache hit of a stream: an iterator over restored chunks (closable, a context manager)."""

    def __init__(self, chunks: list[Any]) -> None:
        self._it = iter(chunks)

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        return next(self._it)

    def close(self) -> None:
        self._it = iter(())

    def __enter__(self) -> Replay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncReplay:
    """A cache hit of an async stream."""

    def __init__(self, chunks: list[Any]) -> None:
        self._it = iter(chunks)

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        try:
            return next(self._it)
        except StopIteration:
            raise StopAsyncIteration from None

    async def close(self) -> None:
        self._it = iter(())

    aclose = close

    async def __aenter__(self) -> AsyncReplay:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class DualReplay(Replay):
    """A cache hit of a stream that was both a sync and an async iterator."""

    def __aiter__(self) -> AsyncIterator[Any]:
        return self  # type: ignore[return-value]

    async def __anext__(self) -> Any:
        try:
            return next(self._it)
        except StopIteration:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        self.close()

    async def __aenter__(self) -> DualReplay:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class Recorder:
    """Passes a sync stream through; stores its chunks when (and only when) it is exhausted.

    Other attributes (an SDK ``Stream``'s ``response``) are the wrapped stream's.
    """

    _flavour = "sync"

    def __init__(self, inner: Any, sink: Chunks, done: StoreSync) -> None:
        self._inner = inner
        self._sink: Chunks | None = sink
        self._done = done

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        try:
            item = next(self._inner)
        except StopIteration:
            sink, self._sink = self._sink, None
            if sink is not None and (value := sink.value(self._flavour)) is not None:
                self._done(value)
            raise
        except BaseException:
            self._sink = None
            raise
        if self._sink is not None:
            self._sink.add(item)
        return item

    def close(self) -> None:
        self._sink = None
        close = getattr(self._inner, "close", None)
        if callable(close):
            close()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class AsyncRecorder:
    """The async counterpart of ``Recorder`` (an SDK ``AsyncStream``, an async generator)."""

    _flavour = "async"

    def __init__(self, inner: Any, sink: Chunks, done: StoreAsync) -> None:
        self._inner = inner
        self._sink: Chunks | None = sink
        self._adone = done

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        try:
            item = await self._inner.__anext__()
        except StopAsyncIteration:
            sink, self._sink = self._sink, None
            if sink is not None and (value := sink.value(self._flavour)) is not None:
                await self._adone(value)
            raise
        except BaseException:
            self._sink = None
            raise
        if self._sink is not None:
            self._sink.add(item)
        return item

    async def aclose(self) -> None:
        self._sink = None
        for name in ("aclose", "close"):
            method = getattr(self._inner, name, None)
            if callable(method):
                result = method()
                if inspect.isawaitable(result):
                    await result
                return

    async def __aenter__(self) -> AsyncRecorder:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class AsyncOnlyRecorder(AsyncRecorder):
    """An async stream: ``close()`` is a coroutine too (as on an SDK ``AsyncStream``)."""

    async def close(self) -> None:
        await self.aclose()


class DualRecorder(Recorder, AsyncRecorder):
    """A stream that is both a sync and an async iterator: recorded whichever way it is read."""

    _flavour = "dual"

    def __init__(self, inner: Any, sink: Chunks, done: StoreSync, adone: StoreAsync) -> None:
        Recorder.__init__(self, inner, sink, done)
        self._adone = adone

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def record(result: Any, sink: Chunks, store: StoreSync, astore: StoreAsync) -> Any | None:
    """A recorder around ``result`` when it is a stream, else ``None``."""
    if is_async_iterator(result) and is_iterator(result):
        return DualRecorder(result, sink, store, astore)
    if is_async_iterator(result):
        return AsyncOnlyRecorder(result, sink, astore)
    if is_iterator(result):
        return Recorder(result, sink, store)
    return None
