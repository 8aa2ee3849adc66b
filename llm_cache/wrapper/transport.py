"""httpx2 transports that cache LLM calls in-process, under the official SDKs.

    from openai import OpenAI
    from llm_cache.wrapper.transport import httpx_client

    client = OpenAI(http_client=httpx_client())          # SDK objects come back native

The transport keys, stores and answers exactly as the proxy does (``llm_cache.exchange``), so
a transport and a proxy that share a storage share their entries: the proxy keys a call on its
upstream URL, and a client whose ``base_url`` is that upstream requests the same URL.

Cached: ``POST`` to an OpenAI endpoint (``…/chat/completions``, ``…/completions``,
``…/embeddings``, ``…/responses``) or to Anthropic's ``…/v1/messages``. Everything else passes
through untouched. Per-request controls are the proxy's: ``X-Cache-Bypass: true`` or a
``"_cache_bypass": true`` body field, ``Cache-Control: no-store``, ``X-Cache-TTL``; ``_cache_*``
body fields and ``X-Cache-*`` headers never reach the upstream. Answers carry ``x-cache-hit``
and ``x-cache-key``.

A streamed miss reaches the SDK chunk by chunk; it is stored once it completed (the body ended,
or it was closed after the provider's terminator event). Only complete 2xx answers are stored,
decoded from any ``Content-Encoding``; the SDK then gets the decoded body without that header.

Concurrent identical misses make one upstream call (single-flight, per transport; requests with
``no-store`` share only with each other, as in the proxy; ``X-Cache-Bypass`` requests always
make their own call). Waiting requests ("followers") are answered with ``x-cache-hit: false``,
as the proxy answers them: they were not served from storage but by the call they waited for.

- Sync transport, for requests without ``stream``: the first request (the leader) reads a 2xx
  JSON answer whole before returning it; followers (threads) wait for it, then answer from its
  stored form with ``render``, exactly as a hit would. Streamed requests are not shared: a
  follower would be held until the leader's caller finished reading the stream.
- Async transport, every cacheable request: the upstream call runs in its own task and every
  request of the key, the leader included, tails what it receives (``llm_cache.flight``, as in
  the proxy), so a streamed answer reaches each follower chunk by chunk. A follower that asked
  for the other kind (stream vs. full response) waits for the whole answer and converts it.

Followers of a leader that failed, or got a non-2xx or unstorable answer, make their own call.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any

import httpx2
import orjson

from llm_cache.cache.storage import CacheStorage
from llm_cache.config import Config
from llm_cache.engine import CacheEngine
from llm_cache.exchange import (
    JSON_TYPE,
    SSE_TYPE,
    BadRequest,
    answer_value,
    exchange_key,
    is_valid_value,
    read_controls,
    render,
)
from llm_cache.flight import Flight, FlightFailed, FlightTable
from llm_cache.providers import anthropic as anthropic_provider
from llm_cache.providers import openai as openai_provider
from llm_cache.providers.base import Provider

__all__ = ["AsyncCacheTransport", "CacheTransport", "async_httpx_client", "httpx_client"]

logger = logging.getLogger("llm_cache.transport")

OPENAI = openai_provider.PROVIDER
ANTHROPIC = anthropic_provider.PROVIDER
_OPENAI_ENDPOINTS = sorted(OPENAI.cached_endpoints, key=len, reverse=True)
_DROP_RESPONSE = frozenset({"content-encoding", "content-length", "transfer-encoding"})
_DROP_RESPONSE_RAW = frozenset(h.encode() for h in _DROP_RESPONSE)


def match_endpoint(
    method: str, path: str, has_anthropic_version: bool
) -> tuple[Provider, str] | None:
    """``(provider, endpoint)`` of a cached call, or ``None`` for a pass-through."""
    if method != "POST":
        return None
    path = path.rstrip("/")
    if path.endswith("/v1" + anthropic_provider.MESSAGES) or (
        has_anthropic_version and path.endswith(anthropic_provider.MESSAGES)
    ):
        return ANTHROPIC, anthropic_provider.MESSAGES
    for endpoint in _OPENAI_ENDPOINTS:
        if path.endswith(endpoint):
            return OPENAI, endpoint
    return None


class _Call:
    """One cacheable request, parsed: everything both transports need to serve it."""

    __slots__ = (
        "body",
        "bypass",
        "endpoint",
        "key",
        "outgoing",
        "provider",
        "store",
        "ttl",
        "want_stream",
    )

    def __init__(
        self,
        provider: Provider,
        endpoint: str,
        body: dict[str, Any],
        key: str,
        outgoing: httpx2.Request,
        store: bool,
        ttl: float | None,
        bypass: bool,
    ) -> None:
        self.provider, self.endpoint, self.body, self.key = provider, endpoint, body, key
        self.outgoing, self.store, self.ttl, self.bypass = outgoing, store, ttl, bypass
        self.want_stream = provider.is_stream_request(body)

    def metadata(self) -> dict[str, Any]:
        model = self.body.get("model")
        return {
            "provider": self.provider.name,
            "model": model if isinstance(model, str) else "",
            "endpoint": self.endpoint,
        }

    def value_of(self, status: int, content_type: str, data: bytes) -> dict[str, Any] | None:
        """Stored form of a complete answer, or ``None`` when it must not be stored."""
        return answer_value(self.provider, self.endpoint, status, content_type, data)

    @property
    def flight_key(self) -> str:
        """Who may share an upstream call: a no-store request only with other no-store ones."""
        return self.key if self.store else self.key + ":no-store"


class _Base:
    """What the sync and async transports share: parsing, keys, hits, response heads."""

    def __init__(
        self,
        storage: CacheStorage | None,
        mode: str | None,
        config: Config | None,
        ttl: float | None,
    ) -> None:
        if storage is None or mode is None or ttl is None:
            config = config if config is not None else Config()
        #: A storage passed in belongs to the caller (it may be shared); one we open, to us.
        self.owns_storage = storage is None
        if storage is None:
            assert config is not None
            storage = config.get_storage()
        self.engine = CacheEngine(
            storage,
            mode=mode if mode is not None else config.mode if config else "readwrite",
            ttl=ttl if ttl is not None else config.ttl if config else None,
        )

    @property
    def storage(self) -> CacheStorage:
        return self.engine.storage

    @staticmethod
    def _match(request: httpx2.Request) -> tuple[Provider, str] | None:
        has_version = "anthropic-version" in request.headers
        return match_endpoint(request.method, request.url.path, has_version)

    def _plan(
        self, request: httpx2.Request, raw: bytes, matched: tuple[Provider, str]
    ) -> _Call | httpx2.Response | None:
        """A ``_Call``, an immediate answer (400), or ``None`` to pass through."""
        headers = {k.lower(): v for k, v in request.headers.items()}
        provider, endpoint = matched
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            return None  # not ours to judge: let the upstream answer it
        if not isinstance(body, dict):
            return None
        try:
            controls = read_controls(body, raw, headers)
        except BadRequest as exc:
            return httpx2.Response(
                400,
                headers={"content-type": JSON_TYPE},
                content=provider.error_body(400, str(exc), "invalid_request_error"),
                request=request,
            )
        body, raw = controls.body, controls.raw
        key = exchange_key(provider, str(request.url), body, headers)
        own_headers = any(k.startswith("x-cache-") for k in headers)
        outgoing = request
        if controls.rewritten or own_headers:
            outgoing = httpx2.Request(
                request.method,
                request.url,
                headers=[
                    (k, v)
                    for k, v in request.headers.multi_items()
                    if not k.lower().startswith("x-cache-") and k.lower() != "content-length"
                ],
                content=raw,
                extensions=request.extensions,
            )
        store = self.engine.writes and not controls.no_store
        return _Call(provider, endpoint, body, key, outgoing, store, controls.ttl, controls.bypass)

    def _answer(
        self,
        call: _Call,
        value: dict[str, Any] | None,
        request: httpx2.Request,
        hit: str = "true",
    ) -> httpx2.Response | None:
        """The hit response for ``value``, or ``None`` (a miss); followers pass ``hit="false"``."""
        if value is None or not is_valid_value(value):
            return None
        rendered = render(
            value,
            want_stream=call.want_stream,
            provider=call.provider,
            endpoint=call.endpoint,
            request_body=call.body,
        )
        if rendered is None:
            return None
        content_type, payload = rendered
        return httpx2.Response(
            int(value.get("status", 200)),
            headers=[
                ("content-type", content_type),
                ("x-cache-hit", hit),
                ("x-cache-key", call.key),
            ],
            content=payload,
            request=request,
        )

    def _offline(self, call: _Call, request: httpx2.Request) -> httpx2.Response:
        message = (
            f"llm-cache is in offline mode and has no cached answer for this request "
            f"(key {call.key}). Run it once with LLM_CACHE_MODE=readwrite to record it."
        )
        return httpx2.Response(
            404,
            headers=[
                ("content-type", JSON_TYPE),
                ("x-should-retry", "false"),
                ("x-cache-hit", "false"),
                ("x-cache-key", call.key),
            ],
            content=call.provider.error_body(404, message, "cache_miss"),
            request=request,
        )

    @staticmethod
    def _miss_headers(
        response: httpx2.Response, call: _Call, decoded: bool
    ) -> list[tuple[str, str]]:
        headers = [
            (k, v)
            for k, v in response.headers.multi_items()
            if not (decoded and k.lower() in _DROP_RESPONSE)
        ]
        headers += [("x-cache-hit", "false"), ("x-cache-key", call.key)]
        return headers


# -- sync -------------------------------------------------------------------------------------


class CacheTransport(_Base, httpx2.BaseTransport):
    """Sync caching transport around ``transport`` (default: a new ``httpx2.HTTPTransport``).

    ``storage=None`` uses ``config.get_storage()``; ``mode``/``ttl`` default to the config's
    (``config=None`` reads the environment, as ``Config()`` does).
    """

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
        #: Single-flight: flight key → the call in progress.
        self._flights: dict[str, _SyncFlight] = {}
        self._flights_lock = threading.Lock()

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        engine = self.engine
        if not engine.reads and not engine.writes:
            return self.transport.handle_request(request)
        matched = self._match(request)
        if matched is None:
            return self.transport.handle_request(request)
        plan = self._plan(request, request.read(), matched)
        if plan is None:
            return self.transport.handle_request(request)
        if isinstance(plan, httpx2.Response):
            return plan
        call = plan
        if engine.reads and not call.bypass:
            hit = self._answer(call, engine.lookup_sync(call.key), request)
            if hit is not None:
                return hit
        if engine.offline:
            return self._offline(call, request)
        if call.bypass or call.want_stream:
            return self._miss(call, request, None)
        flight_key = call.flight_key
        with self._flights_lock:
            flight = self._flights.get(flight_key)
            leader = flight is None
            if flight is None:
                flight = self._flights[flight_key] = _SyncFlight()
        if not leader:
            flight.done.wait()
            shared = self._answer(call, flight.value, request, hit="false")
            return shared if shared is not None else self._miss(call, request, None)
        try:
            return self._miss(call, request, flight)
        finally:
            with self._flights_lock:
                if self._flights.get(flight_key) is flight:
                    del self._flights[flight_key]
            flight.done.set()

    def _miss(
        self, call: _Call, request: httpx2.Request, flight: _SyncFlight | None
    ) -> httpx2.Response:
        """The upstream call; a leader's ``flight`` gets the stored form of a 2xx JSON answer."""
        engine = self.engine
        response = self.transport.handle_request(call.outgoing)
        ok = 200 <= response.status_code < 300
        content_type = response.headers.get("content-type", "")
        if flight is not None and ok and content_type.startswith(JSON_TYPE):
            # Read it whole here, so followers wait for the upstream, never for our caller.
            try:
                data = response.read()
            finally:
                response.close()
            value = call.value_of(response.status_code, content_type, data)
            if value is not None:
                flight.value = value
                if call.store:
                    engine.store_sync(call.key, value, ttl=call.ttl, metadata=call.metadata())
            return httpx2.Response(
                response.status_code,
                headers=self._miss_headers(response, call, decoded=True),
                content=data,
                extensions=response.extensions,
                request=request,
            )
        if not call.store or not ok:
            return httpx2.Response(
                response.status_code,
                headers=self._miss_headers(response, call, decoded=False),
                stream=response.stream,
                extensions=response.extensions,
                request=request,
            )

        def store(value: dict[str, Any]) -> None:
            engine.store_sync(call.key, value, ttl=call.ttl, metadata=call.metadata())

        return httpx2.Response(
            response.status_code,
            headers=self._miss_headers(response, call, decoded=True),
            stream=_RecordingStream(response, call, store),
            extensions=response.extensions,
            request=request,
        )

    def close(self) -> None:
        """Close the inner transport, and the storage when this transport opened it."""
        self.transport.close()
        if self.owns_storage:
            self.engine.storage.close()


class _SyncFlight:
    """One upstream call that identical concurrent misses (threads) wait for."""

    __slots__ = ("done", "value")

    def __init__(self) -> None:
        self.done = threading.Event()
        #: The stored form of the leader's answer; ``None``: followers make their own call.
        self.value: dict[str, Any] | None = None


class _RecordingStream(httpx2.SyncByteStream):
    """The decoded upstream body, passed on chunk by chunk and stored when complete."""

    def __init__(
        self, response: httpx2.Response, call: _Call, store: Callable[[dict[str, Any]], None]
    ) -> None:
        self._response = response
        self._call = call
        self._store: Callable[[dict[str, Any]], None] | None = store
        self._chunks: list[bytes] = []
        self._content_type = response.headers.get("content-type", "")

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._response.iter_bytes():
            self._chunks.append(chunk)
            yield chunk
        self._finish(ended=True)

    def close(self) -> None:
        try:
            self._response.close()
        finally:
            self._finish(ended=False)

    def _finish(self, ended: bool) -> None:
        store, self._store = self._store, None
        if store is None:
            return
        data = b"".join(self._chunks)
        if not ended and not self._content_type.startswith("text/event-stream"):
            return  # a JSON body cut short
        # An SSE stream closed before the connection ended still counts when its terminator
        # arrived (the SDKs stop reading at ``[DONE]``); ``value_of`` checks exactly that.
        value = self._call.value_of(self._response.status_code, self._content_type, data)
        if value is not None:
            store(value)


# -- async ------------------------------------------------------------------------------------


class AsyncCacheTransport(_Base, httpx2.AsyncBaseTransport):
    """Async caching transport around ``transport`` (default: ``httpx2.AsyncHTTPTransport``)."""

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
        #: Single-flight tables, one per event loop (a flight's events belong to its loop).
        self._flight_tables: dict[asyncio.AbstractEventLoop, FlightTable] = {}

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        engine = self.engine
        if not engine.reads and not engine.writes:
            return await self.transport.handle_async_request(request)
        matched = self._match(request)
        if matched is None:
            return await self.transport.handle_async_request(request)
        plan = self._plan(request, await request.aread(), matched)
        if plan is None:
            return await self.transport.handle_async_request(request)
        if isinstance(plan, httpx2.Response):
            return plan
        call = plan
        if engine.reads and not call.bypass:
            hit = self._answer(call, await engine.lookup(call.key), request)
            if hit is not None:
                return hit
        if engine.offline:
            return self._offline(call, request)
        if call.bypass:
            return await self._miss(call, request)
        return await self._shared_miss(call, request)

    def _flight_table(self) -> FlightTable:
        loop = asyncio.get_running_loop()
        table = self._flight_tables.get(loop)
        if table is None:
            for closed in [other for other in self._flight_tables if other.is_closed()]:
                del self._flight_tables[closed]
            table = self._flight_tables[loop] = FlightTable()
        return table

    async def _shared_miss(self, call: _Call, request: httpx2.Request) -> httpx2.Response:
        """Join (or start) the upstream call for this key and answer from it."""
        table = self._flight_table()
        flight, leader = table.join(call.flight_key, lambda f: self._pump(f, call))
        tail = False
        try:
            try:
                await flight.wait_head()
            except FlightFailed as exc:
                if leader:
                    raise exc.cause from None
            else:
                assert flight.status is not None
                ok = 200 <= flight.status < 300
                tail = leader or (ok and flight.is_stream == call.want_stream)
                if not tail:
                    # Not an answer to tail as it comes: convert the finished one if it
                    # succeeded, else make a call of our own (below).
                    await flight.wait_done()
                    if ok and flight.value is not None:
                        shared = self._answer(call, flight.value, request, hit="false")
                        if shared is not None:
                            return shared
        finally:
            if not tail:
                table.leave(flight)
        if not tail:
            return await self._miss(call, request)
        assert flight.status is not None
        headers = [*flight.headers, (b"x-cache-hit", b"false"), (b"x-cache-key", call.key.encode())]
        store = functools.partial(self._store, call) if call.store else None
        return httpx2.Response(
            flight.status,
            headers=headers,
            stream=_FlightStream(flight, table, call, store),
            request=request,
        )

    async def _pump(self, flight: Flight, call: _Call) -> None:
        """The shared upstream call: publish what arrives, and the answer's stored form."""
        response = await self.transport.handle_async_request(call.outgoing)
        status = response.status_code
        content_type = response.headers.get("content-type", "")
        head = [(k, v) for k, v in response.headers.raw if k.lower() not in _DROP_RESPONSE_RAW]
        flight.publish_head(status, head, content_type.startswith(SSE_TYPE))
        try:
            async for chunk in response.aiter_bytes():
                flight.publish_chunk(chunk)
        finally:
            await response.aclose()
        value = call.value_of(status, content_type, b"".join(flight.chunks))
        flight.finish(value)

    async def _miss(self, call: _Call, request: httpx2.Request) -> httpx2.Response:
        """An upstream call of this request's own (bypass, or after a failed shared one)."""
        response = await self.transport.handle_async_request(call.outgoing)
        if not call.store or not 200 <= response.status_code < 300:
            return httpx2.Response(
                response.status_code,
                headers=self._miss_headers(response, call, decoded=False),
                stream=response.stream,
                extensions=response.extensions,
                request=request,
            )

        return httpx2.Response(
            response.status_code,
            headers=self._miss_headers(response, call, decoded=True),
            stream=_AsyncRecordingStream(response, call, functools.partial(self._store, call)),
            extensions=response.extensions,
            request=request,
        )

    async def _store(self, call: _Call, value: dict[str, Any]) -> None:
        await self.engine.store(call.key, value, ttl=call.ttl, metadata=call.metadata())

    async def aclose(self) -> None:
        """Close the inner transport, and the storage when this transport opened it."""
        await self.transport.aclose()
        if self.owns_storage:
            await self.engine.storage.aclose()


class _FlightStream(httpx2.AsyncByteStream):
    """A response body tailing a shared call; closing it leaves the flight.

    As with an unshared miss, the answer is stored by the reader's side: when a request has
    read it to the end, or closed a stream after its terminator event (the first one does).
    """

    def __init__(
        self,
        flight: Flight,
        table: FlightTable,
        call: _Call,
        store: Callable[[dict[str, Any]], Coroutine[Any, Any, None]] | None,
    ) -> None:
        self._flight = flight
        self._table: FlightTable | None = table
        self._call = call
        self._store = store
        self._seen = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        flight = self._flight
        async for chunk in flight.tail():
            self._seen += 1
            yield chunk
        if flight.error is not None:
            raise flight.error
        await self._keep(flight.value)

    async def aclose(self) -> None:
        flight = self._flight
        try:
            stored = self._store is None or flight.stored
            if flight.is_stream and not stored and self._seen and flight.status:
                content_type = next(
                    (v for k, v in flight.headers if k.lower() == b"content-type"), b""
                )
                data = b"".join(flight.chunks[: self._seen])
                await self._keep(
                    self._call.value_of(flight.status, content_type.decode("latin-1"), data)
                )
        finally:
            table, self._table = self._table, None
            if table is not None:
                table.leave(flight)

    async def _keep(self, value: dict[str, Any] | None) -> None:
        if value is not None and self._store is not None and not self._flight.stored:
            self._flight.stored = True
            await self._store(value)


class _AsyncRecordingStream(httpx2.AsyncByteStream):
    def __init__(
        self,
        response: httpx2.Response,
        call: _Call,
        store: Callable[[dict[str, Any]], Coroutine[Any, Any, None]],
    ) -> None:
        self._response = response
        self._call = call
        self._store: Callable[[dict[str, Any]], Coroutine[Any, Any, None]] | None = store
        self._chunks: list[bytes] = []
        self._content_type = response.headers.get("content-type", "")

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._response.aiter_bytes():
            self._chunks.append(chunk)
            yield chunk
        await self._finish(ended=True)

    async def aclose(self) -> None:
        try:
            await self._response.aclose()
        finally:
            await self._finish(ended=False)

    async def _finish(self, ended: bool) -> None:
        store, self._store = self._store, None
        if store is None:
            return
        if not ended and not self._content_type.startswith("text/event-stream"):
            return
        value = self._call.value_of(
            self._response.status_code, self._content_type, b"".join(self._chunks)
        )
        if value is not None:
            await store(value)


# -- helpers ----------------------------------------------------------------------------------


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
