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
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any

import httpx2
import orjson

from llm_cache.cache.storage import CacheStorage
from llm_cache.config import Config
from llm_cache.engine import CacheEngine
from llm_cache.exchange import (
    JSON_TYPE,
    BadRequest,
    answer_value,
    exchange_key,
    is_valid_value,
    read_controls,
    render,
)
from llm_cache.providers import anthropic as anthropic_provider
from llm_cache.providers import openai as openai_provider
from llm_cache.providers.base import Provider

__all__ = ["AsyncCacheTransport", "CacheTransport", "async_httpx_client", "httpx_client"]

logger = logging.getLogger("llm_cache.transport")

OPENAI = openai_provider.PROVIDER
ANTHROPIC = anthropic_provider.PROVIDER
_OPENAI_ENDPOINTS = sorted(OPENAI.cached_endpoints, key=len, reverse=True)
_DROP_RESPONSE = frozenset({"content-encoding", "content-length", "transfer-encoding"})


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
        self, call: _Call, value: dict[str, Any] | None, request: httpx2.Request
    ) -> httpx2.Response | None:
        """The hit response for ``value``, or ``None`` (a miss)."""
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
                ("x-cache-hit", "true"),
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
        response = self.transport.handle_request(call.outgoing)
        if not call.store or not 200 <= response.status_code < 300:
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
        response = await self.transport.handle_async_request(call.outgoing)
        if not call.store or not 200 <= response.status_code < 300:
            return httpx2.Response(
                response.status_code,
                headers=self._miss_headers(response, call, decoded=False),
                stream=response.stream,
                extensions=response.extensions,
                request=request,
            )

        async def store(value: dict[str, Any]) -> None:
            await engine.store(call.key, value, ttl=call.ttl, metadata=call.metadata())

        return httpx2.Response(
            response.status_code,
            headers=self._miss_headers(response, call, decoded=True),
            stream=_AsyncRecordingStream(response, call, store),
            extensions=response.extensions,
            request=request,
        )

    async def aclose(self) -> None:
        """Close the inner transport, and the storage when this transport opened it."""
        await self.transport.aclose()
        if self.owns_storage:
            await self.engine.storage.aclose()


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
