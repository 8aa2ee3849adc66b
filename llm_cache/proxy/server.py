"""The caching HTTP proxy: an ASGI app in front of OpenAI- and Anthropic-style upstreams.

``create_app(config)`` builds it; ``main()`` serves it on uvicorn. Cached routes go through
key → lookup → (miss: single-flight → upstream) → store; every other path under an upstream is
forwarded as is.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Mapping
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
    parse_body,
    read_controls,
    render,
)
from llm_cache.flight import Flight, FlightFailed, FlightTable
from llm_cache.providers.base import Provider
from llm_cache.proxy.http import (
    Headers,
    Receive,
    Scope,
    Send,
    cache_headers,
    forward_request_headers,
    forward_response_headers,
    header_dict,
    read_body,
    send_bytes,
    send_json,
    send_stream,
)
from llm_cache.proxy.management import admin_credential, handle_management
from llm_cache.proxy.routing import OPENAI, Route, Router, Upstream

logger = logging.getLogger("llm_cache.proxy")

#: No read timeout: a long generation may take minutes between bytes of a reasoning model.
UPSTREAM_TIMEOUT = httpx2.Timeout(connect=10.0, read=None, write=60.0, pool=60.0)
UPSTREAM_LIMITS = httpx2.Limits(max_connections=1000, max_keepalive_connections=200)
#: How often a request re-tries to claim a cross-process call before making its own.
_CLAIM_ATTEMPTS = 3


class ProxyApp:
    """The ASGI application. One instance per worker process."""

    def __init__(self, config: Config, storage: CacheStorage | None = None) -> None:
        self.config = config
        self.storage = storage if storage is not None else config.get_storage()
        self.engine = CacheEngine(
            self.storage,
            mode=config.mode,
            ttl=config.ttl,
            flight_lock_ttl=config.flight_lock_ttl,
        )
        self.router = Router(config)
        self.flights = FlightTable()
        self._clients: dict[str, httpx2.AsyncClient] = {}
        self._admin = admin_credential(config.admin_token)

    # -- ASGI entry ---------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()
        try:
            await self.storage.aclose()
        except Exception:
            logger.exception("closing the cache storage failed")

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        if path == "/health":
            await send_json(send, 200, await self.engine.health())
            return
        if path.startswith("/cache/"):
            extra = {"mode": self.engine.mode, "in_flight": len(self.flights)}
            await handle_management(scope, send, self.storage, self._admin, extra)
            return
        route = self.router.resolve(path, scope["headers"])
        if route is None:
            await send_json(send, 404, _error(OPENAI, 404, f"no route for {path}", "not_found"))
            return
        try:
            if route.endpoint is not None and scope["method"] == "POST":
                await self._cached(scope, receive, send, route, route.endpoint)
            else:
                await self._passthrough(scope, receive, send, route)
        except ConnectionAbortedError:
            pass  # the client left; nothing to answer

    # -- cached routes ------------------------------------------------------------------------

    async def _cached(
        self, scope: Scope, receive: Receive, send: Send, route: Route, endpoint: str
    ) -> None:
        provider = route.upstream.provider
        raw = await read_body(receive)
        headers = header_dict(scope["headers"])
        try:
            controls = read_controls(parse_body(raw), raw, headers)
        except BadRequest as exc:
            await send_bytes(
                send,
                400,
                [(b"content-type", b"application/json")],
                provider.error_body(400, str(exc), "invalid_request_error"),
            )
            return
        body, raw, ttl = controls.body, controls.raw, controls.ttl
        url = route.url + (
            f"?{scope['query_string'].decode('latin-1')}" if scope["query_string"] else ""
        )
        key = exchange_key(provider, url, body, headers)
        want_stream = provider.is_stream_request(body)
        engine = self.engine

        if engine.reads and not controls.bypass:
            value = await engine.lookup(key)
            if value is not None and is_valid_value(value):
                rendered = render(
                    value,
                    want_stream=want_stream,
                    provider=provider,
                    endpoint=endpoint,
                    request_body=body,
                )
                if rendered is not None:
                    content_type, payload = rendered
                    await send_bytes(
                        send,
                        int(value.get("status", 200)),
                        [(b"content-type", content_type.encode()), *cache_headers(True, key)],
                        payload,
                    )
                    return
        if engine.offline:
            await self._offline_miss(send, provider, key)
            return
        store = engine.writes and not controls.no_store
        outgoing = forward_request_headers(scope["headers"])
        request = _UpstreamCall(route, endpoint, url, outgoing, raw, key, store, ttl, body)
        await self._answer_miss(scope, receive, send, request, want_stream)

    async def _answer_miss(
        self, scope: Scope, receive: Receive, send: Send, call: _UpstreamCall, want_stream: bool
    ) -> None:
        flight_key = call.key if call.store else call.key + ":no-store"
        flight, leader = self.flights.join(flight_key, lambda f: self._pump(f, call))
        try:
            try:
                await flight.wait_head()
            except FlightFailed as exc:
                await self._upstream_failed(send, call, exc.cause)
                return
            assert flight.status is not None
            ok = 200 <= flight.status < 300
            # The request that started the call relays what the upstream sent, as it came.
            # Anyone else (a follower, or the starter when another process stored the answer
            # meanwhile) takes a successful answer of its own kind as it streams; otherwise it
            # waits for the stored value and converts it, or makes its own call.
            as_sent = leader and not flight.from_cache
            if not as_sent and (not ok or flight.is_stream != want_stream):
                await flight.wait_done()
                if ok and flight.value is not None:
                    rendered = render(
                        flight.value,
                        want_stream=want_stream,
                        provider=call.route.upstream.provider,
                        endpoint=call.endpoint,
                        request_body=call.body,
                    )
                    if rendered is not None:
                        content_type, payload = rendered
                        head = [
                            (b"content-type", content_type.encode()),
                            *cache_headers(False, call.key),
                        ]
                        await send_bytes(send, flight.status, head, payload)
                        return
                await self._answer_alone(scope, receive, send, call)
                return
            await self._relay(scope, receive, send, flight, call.key)
        finally:
            self.flights.leave(flight)

    async def _answer_alone(
        self, scope: Scope, receive: Receive, send: Send, call: _UpstreamCall
    ) -> None:
        """One upstream call of this request's own, outside single-flight."""
        flight = Flight()
        task = asyncio.ensure_future(self._pump(flight, call))
        try:
            try:
                await flight.wait_head()
            except FlightFailed as exc:
                await self._upstream_failed(send, call, exc.cause)
                return
            await self._relay(scope, receive, send, flight, call.key)
        finally:
            if not task.done():
                task.cancel()

    async def _relay(
        self, scope: Scope, receive: Receive, send: Send, flight: Flight, key: str
    ) -> None:
        assert flight.status is not None
        headers = [*flight.headers, *cache_headers(flight.from_cache, key)]
        if flight.is_stream:
            await send_stream(send, receive, flight.status, headers, flight.tail())
            return
        await flight.wait_done()
        if flight.error is not None and not flight.chunks:
            await self._upstream_failed(send, None, flight.error)
            return
        await send_bytes(send, flight.status, headers, b"".join(flight.chunks))

    async def _pump(self, flight: Flight, call: _UpstreamCall) -> None:
        """Make the upstream call (once across processes when the backend can lock), publish
        what arrives, store a complete success."""
        engine = self.engine
        claim: str | bool = True
        for _ in range(_CLAIM_ATTEMPTS if call.store else 0):
            claim = await engine.lock_flight(call.key)
            if claim is not False:
                break
            # Another process is making this very call: wait for its answer. If it ended
            # without one (an error, or the holder died and its lock expired), claim again,
            # so that many waiting replicas still make one call.
            await engine.wait_flight(call.key)
            value = await engine.lookup(call.key)
            if value is not None and is_valid_value(value):
                _publish_value(flight, value)
                return
        try:
            await self._call_upstream(flight, call)
        finally:
            await engine.unlock_flight(call.key, claim)

    async def _call_upstream(self, flight: Flight, call: _UpstreamCall) -> None:
        client = self._client(call.route.upstream)
        request = client.build_request("POST", call.url, content=call.raw, headers=call.headers)
        response = await client.send(request, stream=True)
        try:
            content_type = response.headers.get("content-type", "")
            is_stream = content_type.startswith("text/event-stream")
            flight.publish_head(
                response.status_code, forward_response_headers(response.headers.raw), is_stream
            )
            async for chunk in response.aiter_bytes():
                flight.publish_chunk(chunk)
        finally:
            await response.aclose()
        status = response.status_code
        value = answer_value(
            call.route.upstream.provider,
            call.endpoint,
            status,
            content_type,
            b"".join(flight.chunks),
        )
        flight.finish(value)
        if value is not None and call.store:
            model = call.body.get("model")
            await self.engine.store(
                call.key,
                value,
                ttl=call.ttl,
                metadata={
                    "provider": call.route.upstream.name,
                    "model": model if isinstance(model, str) else "",
                    "endpoint": call.endpoint,
                },
            )

    async def _offline_miss(self, send: Send, provider: Provider, key: str) -> None:
        message = (
            f"llm-cache is in offline mode and has no cached answer for this request "
            f"(key {key}). Run it once with LLM_CACHE_MODE=readwrite to record it."
        )
        await send_bytes(
            send,
            404,
            [
                (b"content-type", b"application/json"),
                (b"x-should-retry", b"false"),
                *cache_headers(False, key),
            ],
            provider.error_body(404, message, "cache_miss"),
        )

    async def _upstream_failed(
        self, send: Send, call: _UpstreamCall | None, cause: BaseException
    ) -> None:
        provider = call.route.upstream.provider if call else OPENAI
        if isinstance(cause, ConnectionAbortedError):
            return
        name = call.route.upstream.name if call else "upstream"
        logger.warning("upstream %s failed: %s: %s", name, type(cause).__name__, cause)
        status = 504 if isinstance(cause, httpx2.TimeoutException) else 502
        message = f"llm-cache could not reach the {name} upstream: {type(cause).__name__}: {cause}"
        extra = cache_headers(False, call.key) if call else []
        await send_bytes(
            send,
            status,
            [(b"content-type", b"application/json"), *extra],
            provider.error_body(status, message, "upstream_error"),
        )

    # -- uncached routes ----------------------------------------------------------------------

    async def _passthrough(self, scope: Scope, receive: Receive, send: Send, route: Route) -> None:
        client = self._client(route.upstream)
        raw = await read_body(receive)
        url = route.url + (
            f"?{scope['query_string'].decode('latin-1')}" if scope["query_string"] else ""
        )
        request = client.build_request(
            scope["method"],
            url,
            content=raw or None,
            headers=forward_request_headers(scope["headers"]),
        )
        try:
            response = await client.send(request, stream=True)
        except httpx2.HTTPError as exc:
            await self._upstream_failed(send, None, exc)
            return
        try:
            await send_stream(
                send,
                receive,
                response.status_code,
                forward_response_headers(response.headers.raw),
                response.aiter_bytes(),
            )
        finally:
            await response.aclose()

    def _client(self, upstream: Upstream) -> httpx2.AsyncClient:
        client = self._clients.get(upstream.name)
        if client is None:
            client = self._clients[upstream.name] = httpx2.AsyncClient(
                timeout=UPSTREAM_TIMEOUT,
                limits=UPSTREAM_LIMITS,
                headers={"accept-encoding": "gzip, deflate"},
                follow_redirects=False,
            )
        return client

    # -- management API -----------------------------------------------------------------------


class _UpstreamCall:
    """Everything the pump needs to make (and store) one upstream call."""

    __slots__ = ("body", "endpoint", "headers", "key", "raw", "route", "store", "ttl", "url")

    def __init__(
        self,
        route: Route,
        endpoint: str,
        url: str,
        headers: Headers,
        raw: bytes,
        key: str,
        store: bool,
        ttl: float | None,
        body: Mapping[str, Any],
    ) -> None:
        self.route, self.endpoint, self.url, self.headers = route, endpoint, url, headers
        self.raw, self.key, self.store, self.ttl, self.body = raw, key, store, ttl, body


def _publish_value(flight: Flight, value: dict[str, Any]) -> None:
    """Answer a flight from a stored value, as if the upstream had just sent it."""
    stream = value.get("stream")
    payload = stream if isinstance(stream, str) else str(value.get("body", ""))
    content_type = str(value.get("content_type") or JSON_TYPE)
    flight.from_cache = True
    flight.publish_head(
        int(value.get("status", 200)),
        [(b"content-type", content_type.encode())],
        isinstance(stream, str),
    )
    flight.publish_chunk(payload.encode("utf-8"))
    flight.finish(value)


def _error(provider: Provider, status: int, message: str, kind: str) -> Any:
    return orjson.loads(provider.error_body(status, message, kind))


def create_app(config: Config | None = None, storage: CacheStorage | None = None) -> ProxyApp:
    """The proxy as an ASGI app; ``storage`` overrides the configured backend (tests, embedding)."""
    return ProxyApp(config if config is not None else Config(), storage)


def app_factory() -> ProxyApp:
    """For ``uvicorn --factory`` and worker processes: configuration from the environment."""
    return create_app(Config())


def serve(config: Config, *, workers: int = 1, access_log: bool = False) -> None:
    """Run the proxy on uvicorn (uvloop + httptools when available)."""
    import uvicorn

    logging.basicConfig(
        level=config.log_level.upper(), format="%(levelname)s %(name)s: %(message)s"
    )
    options: dict[str, Any] = {
        "host": config.proxy_host,
        "port": config.proxy_port,
        "loop": "auto",
        "http": "auto",
        "log_level": config.log_level,
        "access_log": access_log,
        "lifespan": "on",
        "interface": "asgi3",
    }
    logger.info(
        "llm-cache proxy on http://%s:%s (backend %s, mode %s)",
        config.proxy_host,
        config.proxy_port,
        config.backend,
        config.mode,
    )
    if workers > 1:
        # Each worker builds its own app from the environment; pass bind overrides through it.
        import os

        os.environ["LLM_CACHE_PROXY_HOST"] = config.proxy_host
        os.environ["LLM_CACHE_PROXY_PORT"] = str(config.proxy_port)
        uvicorn.run("llm_cache.proxy.server:app_factory", factory=True, workers=workers, **options)
    else:
        uvicorn.run(create_app(config), **options)


def main(argv: list[str] | None = None) -> None:
    """``python -m llm_cache.proxy.server`` / ``llm-caching-proxy``."""
    parser = argparse.ArgumentParser(
        prog="llm-caching-proxy",
        description="Run the llm-cache HTTP proxy. Settings come from LLM_CACHE_* variables "
        "and ./.env; the flags override them.",
    )
    add_serve_arguments(parser)
    args = parser.parse_args(argv)
    run_from_args(args)


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="bind address (LLM_CACHE_PROXY_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="bind port (LLM_CACHE_PROXY_PORT, default 8000)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--access-log", action="store_true", help="log every request")


def run_from_args(args: argparse.Namespace) -> None:
    overrides: dict[str, Any] = {}
    if args.host:
        overrides["proxy_host"] = args.host
    if args.port is not None:
        overrides["proxy_port"] = args.port
    config = Config(**overrides)
    if args.workers > 1 and config.backend == "memory":
        logger.warning(
            "the memory backend is per process: %s workers will not share entries", args.workers
        )
    serve(config, workers=max(1, args.workers), access_log=args.access_log)


if __name__ == "__main__":
    main()
