"""httpx2 transports that cache LLM calls in-process, under the official SDKs.

    from openai import OpenAI
    from llm_cache.wrapper.transport import httpx_client

    client = OpenAI(http_client=httpx_client())          # SDK objects come back native

Both transports are adapters around the engine's exchange sequence (``HttpCache``), the same
one the proxy runs: same keys, entries, single-flight, modes and errors, so a transport and a
proxy that share a storage share their entries. A request whose path ends with a provider's
cached route (``…/chat/completions``, ``…/v1/messages``, …) goes through the cache; anything
else passes through untouched. Answers carry ``x-cache-hit``, ``x-cache-key`` and
``x-cache-status``.

The sync transport runs the same async sequence on one background event loop per process
(``_LoopThread``): one source for both, no hand-written twin. Its upstream calls run the
wrapped sync transport in worker threads.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, TypeVar

import httpx2

from llm_cache.cache.storage import CacheStorage
from llm_cache.config import Config
from llm_cache.engine import CacheEngine
from llm_cache.engine.flight import FlightFailed
from llm_cache.engine.http_cache import Answer, CacheRequest, HttpCache, UpstreamResponse
from llm_cache.providers import match_path
from llm_cache.providers.base import ProviderSpec

__all__ = ["AsyncCacheTransport", "CacheTransport", "async_httpx_client", "httpx_client"]

T = TypeVar("T")
_DROP_REQUEST = frozenset({"content-length", "transfer-encoding", "connection", "host"})


def match_endpoint(
    method: str, path: str, has_anthropic_version: bool
) -> tuple[ProviderSpec, str] | None:
    """``(provider, endpoint)`` of a cached call, or ``None`` for a pass-through."""
    if method != "POST":
        return None
    headers = {"anthropic-version": "1"} if has_anthropic_version else {}
    match = match_path(path, headers)
    return (match.provider, match.endpoint) if match is not None else None


def _engine(
    storage: CacheStorage | None, mode: str | None, config: Config | None, ttl: float | None
) -> tuple[CacheEngine, bool, Config | None]:
    if storage is None or mode is None or ttl is None:
        config = config if config is not None else Config()
    owns = storage is None
    if storage is None:
        assert config is not None
        storage = config.get_storage()
    engine = CacheEngine(
        storage,
        mode=mode if mode is not None else config.mode if config else "readwrite",
        ttl=ttl if ttl is not None else config.ttl if config else None,
        flight_lock_ttl=config.flight_lock_ttl if config else 60.0,
    )
    return engine, owns, config


def _cache_request(request: httpx2.Request, body: bytes) -> CacheRequest | None:
    """The engine's view of ``request``; ``None`` when it is not a cached route."""
    if request.method != "POST":
        return None
    header_map = {k.lower(): v for k, v in request.headers.items()}
    match = match_path(request.url.path, header_map)
    if match is None:
        return None
    return CacheRequest(
        front_end="transport",
        method=request.method,
        url=str(request.url),
        path=request.url.path,
        headers=[
            (k, v)
            for k, v in request.headers.raw
            if k.decode("latin-1").lower() not in _DROP_REQUEST
        ],
        body=body,
        match=match,
        header_map=header_map,
    )


def _upstream_request(
    method: str,
    url: str,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    extensions: dict[str, Any],
) -> httpx2.Request:
    return httpx2.Request(method, url, headers=headers, content=body, extensions=extensions)


class _Base:
    def __init__(
        self,
        storage: CacheStorage | None,
        mode: str | None,
        config: Config | None,
        ttl: float | None,
    ) -> None:
        engine, self.owns_storage, config = _engine(storage, mode, config, ttl)
        self.cache = HttpCache(
            engine,
            isolate_by=config.isolate_by if config else "none",
            secret=config.secret if config else None,
        )

    @property
    def engine(self) -> CacheEngine:
        return self.cache.engine

    @property
    def storage(self) -> CacheStorage:
        return self.cache.engine.storage


# -- async ------------------------------------------------------------------------------------


class AsyncCacheTransport(_Base, httpx2.AsyncBaseTransport):
    """Async caching transport around ``transport`` (default: a new ``AsyncHTTPTransport``).

    ``storage=None`` uses ``config.get_storage()``; ``mode``/``ttl`` default to the config's
    (``config=None`` reads the environment, as ``Config()`` does).
    """

    def __init__(
        self,
        storage: CacheStorage | None = None,
        *,
        transport: httpx2.AsyncBaseTransport | None = None,
        mode: str | None = None,
        config: Config | None = None,
        ttl: float | None = None,
    ) -> None:
        super().__init__(storage, mode, config, ttl)
        self.transport = transport if transport is not None else httpx2.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if request.method != "POST":
            return await self.transport.handle_async_request(request)
        req = _cache_request(request, await request.aread())
        if req is None:
            return await self.transport.handle_async_request(request)
        extensions = dict(request.extensions)

        async def send_upstream(
            method: str, url: str, headers: list[tuple[bytes, bytes]], body: bytes
        ) -> UpstreamResponse:
            outgoing = _upstream_request(method, url, headers, body, extensions)
            raw = await self.transport.handle_async_request(outgoing)
            response = httpx2.Response(
                raw.status_code, headers=raw.headers, stream=raw.stream, request=outgoing
            )
            return UpstreamResponse(
                response.status_code,
                list(response.headers.raw),
                response.aiter_bytes(),
                response.aclose,
            )

        answer = await self.cache.handle(req, send_upstream)
        if answer.body is not None:
            await answer.aclose()
            return httpx2.Response(
                answer.status, headers=answer.headers, content=answer.body, request=request
            )
        return httpx2.Response(
            answer.status,
            headers=answer.headers,
            stream=_AsyncAnswerStream(answer),
            request=request,
        )

    async def aclose(self) -> None:
        """Close the inner transport, and the storage when this transport opened it."""
        await self.transport.aclose()
        if self.owns_storage:
            await self.storage.aclose()


class _AsyncAnswerStream(httpx2.AsyncByteStream):
    """A streamed answer; an upstream that broke off raises, so the SDK sees a failure."""

    def __init__(self, answer: Answer) -> None:
        self._answer = answer
        self._completed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        assert self._answer.stream is not None
        try:
            async for chunk in self._answer.stream:
                yield chunk
        except FlightFailed as exc:
            raise httpx2.RemoteProtocolError(f"the upstream broke off: {exc}") from exc
        self._completed = True

    async def aclose(self) -> None:
        await self._answer.aclose(completed=self._completed)


# -- sync -------------------------------------------------------------------------------------


class _LoopThread:
    """One event loop in a daemon thread, where sync callers run the async sequence."""

    _lock = threading.Lock()
    _instance: _LoopThread | None = None

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        thread = threading.Thread(target=self.loop.run_forever, name="llm-cache-loop", daemon=True)
        thread.start()

    @classmethod
    def get(cls) -> _LoopThread:
        with cls._lock:
            if cls._instance is None:
                cls._instance = _LoopThread()
            return cls._instance

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()


class CacheTransport(_Base, httpx2.BaseTransport):
    """Sync caching transport around ``transport`` (default: a new ``httpx2.HTTPTransport``)."""

    def __init__(
        self,
        storage: CacheStorage | None = None,
        *,
        transport: httpx2.BaseTransport | None = None,
        mode: str | None = None,
        config: Config | None = None,
        ttl: float | None = None,
    ) -> None:
        super().__init__(storage, mode, config, ttl)
        self.transport = transport if transport is not None else httpx2.HTTPTransport()

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        if request.method != "POST":
            return self.transport.handle_request(request)
        req = _cache_request(request, request.read())
        if req is None:
            return self.transport.handle_request(request)
        extensions = dict(request.extensions)
        inner = self.transport

        async def send_upstream(
            method: str, url: str, headers: list[tuple[bytes, bytes]], body: bytes
        ) -> UpstreamResponse:
            outgoing = _upstream_request(method, url, headers, body, extensions)
            raw = await asyncio.to_thread(inner.handle_request, outgoing)
            response = httpx2.Response(
                raw.status_code, headers=raw.headers, stream=raw.stream, request=outgoing
            )
            iterator = response.iter_bytes()

            async def chunks() -> AsyncIterator[bytes]:
                while True:
                    chunk = await asyncio.to_thread(next, iterator, None)
                    if chunk is None:
                        return
                    yield chunk

            async def close() -> None:
                await asyncio.to_thread(response.close)

            return UpstreamResponse(
                response.status_code, list(response.headers.raw), chunks(), close
            )

        bridge = _LoopThread.get()
        answer = bridge.run(self.cache.handle(req, send_upstream))
        if answer.body is not None:
            bridge.run(answer.aclose())
            return httpx2.Response(
                answer.status, headers=answer.headers, content=answer.body, request=request
            )
        return httpx2.Response(
            answer.status,
            headers=answer.headers,
            stream=_SyncAnswerStream(answer, bridge),
            request=request,
        )

    def close(self) -> None:
        """Close the inner transport, and the storage when this transport opened it."""
        self.transport.close()
        if self.owns_storage:
            self.storage.close()


class _SyncAnswerStream(httpx2.SyncByteStream):
    def __init__(self, answer: Answer, bridge: _LoopThread) -> None:
        self._answer = answer
        self._bridge = bridge
        self._completed = False

    def __iter__(self) -> Iterator[bytes]:
        stream = self._answer.stream
        assert stream is not None
        iterator = stream.__aiter__()
        while True:
            try:
                chunk = self._bridge.run(_next(iterator))
            except FlightFailed as exc:
                raise httpx2.RemoteProtocolError(f"the upstream broke off: {exc}") from exc
            if chunk is None:
                break
            yield chunk
        self._completed = True

    def close(self) -> None:
        self._bridge.run(self._answer.aclose(completed=self._completed))


async def _next(iterator: AsyncIterator[bytes]) -> bytes | None:
    try:
        return await iterator.__anext__()
    except StopAsyncIteration:
        return None


def httpx_client(
    storage: CacheStorage | None = None,
    *,
    transport: httpx2.BaseTransport | None = None,
    mode: str | None = None,
    config: Config | None = None,
    ttl: float | None = None,
    **client_kwargs: Any,
) -> httpx2.Client:
    """An ``httpx2.Client`` whose transport caches: ``OpenAI(http_client=httpx_client())``."""
    cache = CacheTransport(storage, transport=transport, mode=mode, config=config, ttl=ttl)
    return httpx2.Client(transport=cache, **client_kwargs)


def async_httpx_client(
    storage: CacheStorage | None = None,
    *,
    transport: httpx2.AsyncBaseTransport | None = None,
    mode: str | None = None,
    config: Config | None = None,
    ttl: float | None = None,
    **client_kwargs: Any,
) -> httpx2.AsyncClient:
    """An ``httpx2.AsyncClient`` whose transport caches (``AsyncAnthropic(http_client=...)``)."""
    cache = AsyncCacheTransport(storage, transport=transport, mode=mode, config=config, ttl=ttl)
    return httpx2.AsyncClient(transport=cache, **client_kwargs)
