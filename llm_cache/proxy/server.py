"""The caching HTTP proxy: an ASGI adapter around the engine's exchange sequence.

``create_app(config)`` builds it; ``main()`` serves it on uvicorn. Every request under an
upstream becomes an engine ``CacheRequest``; the engine answers it (from storage, from a shared
upstream call, or by forwarding it uncached) and this module only reads bodies, watches for the
client leaving and writes the answer back.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import weakref
from typing import Any

import httpx2

from llm_cache.cache.storage import CacheStorage
from llm_cache.config import Config
from llm_cache.engine import CacheEngine
from llm_cache.engine.events import ExchangeEvent, ProcessCounters
from llm_cache.engine.flight import FlightFailed
from llm_cache.engine.http_cache import (
    Answer,
    CacheRequest,
    ClientGone,
    HttpCache,
    SendUpstream,
    UpstreamResponse,
)
from llm_cache.observability.hub import Observability  # observability
from llm_cache.providers import get_provider
from llm_cache.providers.base import ProviderSpec
from llm_cache.proxy.dashboard import Dashboard, authorized  # observability
from llm_cache.proxy.http import (
    BodyTooLarge,
    ClientWatch,
    Headers,
    Receive,
    Scope,
    Send,
    forward_request_headers,
    header_dict,
    read_body,
    send_bytes,
    send_stream,
)
from llm_cache.proxy.management import admin_credential, handle_compat, handle_management
from llm_cache.proxy.routing import BadPath, Router, Upstream
from llm_cache.semantic.cache import semantic_cache_for

logger = logging.getLogger("llm_cache.proxy")

UPSTREAM_LIMITS = httpx2.Limits(max_connections=1000, max_keepalive_connections=200)
MAX_HEADERS = 200


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
        self.semantic = semantic_cache_for(  # None unless LLM_CACHE_SEMANTIC=true
            config, self.storage, lambda name: self._client(Upstream(name, "", self._openai))
        )
        self.cache = HttpCache(
            self.engine, isolate_by=config.isolate_by, secret=config.secret, semantic=self.semantic
        )
        self.counters = ProcessCounters()
        self.cache.bus.subscribe(self.counters)
        # observability: metrics, request log, dashboard (subscribe to self.cache.bus)
        self.observability = Observability(self.cache, self.engine, self.storage)
        self.dashboard = Dashboard(self)
        self.router = Router(config)
        self._timeout = httpx2.Timeout(
            connect=10.0, read=config.upstream_read_timeout, write=60.0, pool=60.0
        )
        #: One pooled client per upstream and event loop (an app may be driven from several).
        self._clients: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[str, httpx2.AsyncClient]
        ] = weakref.WeakKeyDictionary()
        self._admin = admin_credential(config.admin_token)
        #: Per upstream, a provider's request signer (Bedrock: SigV4 with our credentials).
        self._signers = {
            up.name: signer
            for _, up in self.router.upstreams
            if (signer := up.provider.upstream_signer(config)) is not None
        }
        self._openai = get_provider("openai")

    @property
    def flights(self) -> Any:
        return self.cache.flights

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
                self.observability.start()  # observability
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def aclose(self) -> None:
        await self.observability.aclose()  # observability
        for clients in list(self._clients.values()):
            for client in clients.values():
                with contextlib.suppress(Exception):  # a client of a loop that is gone
                    await client.aclose()
        self._clients.clear()
        if self.semantic is not None:
            await self.semantic.aclose()
        try:
            await self.storage.aclose()
        except Exception:
            logger.exception("closing the cache storage failed")

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        if path == "/health":
            await _send_json(send, 200, await self.engine.health())
            return
        if path.startswith("/dashboard"):  # observability
            await self.dashboard.handle(scope, receive, send)
            return
        if path == "/metrics":  # observability
            await self._metrics(scope, send)
            return
        if (path == "/" or path.startswith("/cache/")) and await handle_compat(
            scope, send, self.storage, self._admin
        ):
            return
        if path.startswith("/cache/"):
            extra = {
                "mode": self.engine.mode,
                "in_flight": len(self.cache.flights),
                **self.counters.snapshot(),
                **self.observability.stats_fields(),  # observability: savings, all workers
            }
            if self.semantic is not None:
                extra["semantic"] = self.semantic.stats()
            await handle_management(scope, send, self.storage, self._admin, extra)
            return
        if len(scope["headers"]) > MAX_HEADERS:
            await self._refuse(
                send, self._openai, 431, f"more than {MAX_HEADERS} request headers", scope=scope
            )
            return
        headers = header_dict(scope["headers"])
        # Route on the path as sent, escapes kept: a Bedrock model ARN's %2F must reach the
        # upstream as it came, not as a path separator.
        if raw_path := scope.get("raw_path"):
            path = raw_path.decode("latin-1")
        try:
            route = self.router.resolve(path, headers)
        except BadPath as exc:
            await self._refuse(send, self._openai, 400, f"{exc}; refused", scope=scope)
            return
        if route is None:
            await self._refuse(
                send, self._openai, 404, f"no route for {path}", "not_found", scope=scope
            )
            return
        provider = route.match.provider if route.match else route.upstream.provider
        try:
            raw = await read_body(receive, self.config.max_body_bytes)
        except BodyTooLarge as exc:
            await self._refuse(
                send, provider, 413, str(exc), "request_too_large", scope=scope, routed=True
            )
            return
        except ConnectionAbortedError:
            return
        query = scope["query_string"]
        request = CacheRequest(
            front_end="proxy",
            method=scope["method"],
            url=route.url + (f"?{query.decode('latin-1')}" if query else ""),
            path=path,
            headers=scope["headers"],  # filtered when sent upstream (a hit never needs it)
            body=raw,
            match=route.match,
            header_map=headers,
        )
        watch = ClientWatch(receive)
        try:
            try:
                answer = await self.cache.handle(
                    request, self._sender(route.upstream), watch.future
                )
            except ClientGone:
                return
            await self._send_answer(send, watch, answer)
        finally:
            watch.cancel()

    async def _metrics(self, scope: Scope, send: Send) -> None:
        """``GET /metrics`` (observability): Prometheus text, admin token applies."""
        from llm_cache.observability.metrics import CONTENT_TYPE

        if not authorized(scope, self.config.admin_token):
            body = b'{"error": {"message": "missing or wrong admin token", "type": "unauthorized"}}'
            await send_bytes(send, 401, [(b"content-type", b"application/json")], body)
            return
        text = await self.observability.metrics.render(self.storage)
        await send_bytes(send, 200, [(b"content-type", CONTENT_TYPE.encode())], text)

    async def _send_answer(self, send: Send, watch: ClientWatch, answer: Answer) -> None:
        completed = False
        try:
            if answer.body is not None:
                await send_bytes(send, answer.status, answer.headers, answer.body)
                completed = True
            elif answer.stream is not None:
                completed = await send_stream(
                    send, watch, answer.status, answer.headers, answer.stream
                )
        except FlightFailed:
            # The upstream broke off mid-answer: end without the final chunk, so the client
            # sees an aborted response, never a clean (truncated) one.
            logger.warning("upstream broke off mid-answer; aborting the response")
        except OSError:
            pass  # the client went away
        finally:
            await answer.aclose(completed=completed)

    async def _refuse(
        self,
        send: Send,
        provider: ProviderSpec,
        status: int,
        message: str,
        kind: str = "",
        *,
        scope: Scope | None = None,
        routed: bool = False,
    ) -> None:
        await send_bytes(
            send,
            status,
            [(b"content-type", b"application/json")],
            provider.error_body(status, message, kind or "invalid_request_error"),
        )
        if scope is not None:  # observability: a refused request is logged and counted too
            self.cache.bus.emit(
                ExchangeEvent(
                    "proxy",
                    scope["method"],
                    scope["path"],
                    provider=provider.name if routed else "",
                    http_status=status,
                    error=message,
                )
            )

    # -- upstream calls -----------------------------------------------------------------------

    def _sender(self, upstream: Upstream) -> SendUpstream:
        signer = self._signers.get(upstream.name)

        async def send_upstream(
            method: str, url: str, headers: Headers, body: bytes
        ) -> UpstreamResponse:
            headers = forward_request_headers(headers)
            if signer is not None:
                # Off the event loop: the first call reads the AWS credential chain (files,
                # SSO, instance metadata) and refreshable credentials may refresh.
                signed = await asyncio.to_thread(
                    signer,
                    method,
                    url,
                    [(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers],
                    body,
                )
                if signed is None:
                    return _unauthenticated(upstream.provider)
                headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in signed]
            client = self._client(upstream)
            request = client.build_request(method, url, content=body or None, headers=headers)
            response = await client.send(request, stream=True)
            return UpstreamResponse(
                response.status_code,
                list(response.headers.raw),
                response.aiter_bytes(),
                response.aclose,
            )

        return send_upstream

    def _client(self, upstream: Upstream) -> httpx2.AsyncClient:
        loop = asyncio.get_running_loop()
        clients = self._clients.get(loop)
        if clients is None:
            clients = self._clients[loop] = {}
        client = clients.get(upstream.name)
        if client is None:
            client = clients[upstream.name] = httpx2.AsyncClient(
                timeout=self._timeout,
                limits=UPSTREAM_LIMITS,
                headers={"accept-encoding": "gzip, deflate"},
                follow_redirects=False,
            )
        return client


def _unauthenticated(provider: ProviderSpec) -> UpstreamResponse:
    """401 in the provider's shape: the proxy cannot authenticate this request upstream."""
    body = provider.error_body(
        401,
        "llm-cache cannot authenticate this request upstream: it has no credentials of its own "
        "for this provider and the request carries no API key it can forward.",
        "authentication_error",
    )

    async def chunks() -> Any:
        yield body

    async def close() -> None:
        return None

    return UpstreamResponse(401, [(b"content-type", b"application/json")], chunks(), close)


async def _send_json(send: Send, status: int, payload: Any) -> None:
    import orjson

    await send_bytes(send, status, [(b"content-type", b"application/json")], orjson.dumps(payload))


def create_app(config: Config | None = None, storage: CacheStorage | None = None) -> ProxyApp:
    """The proxy as an ASGI app; ``storage`` overrides the configured backend (tests, embedding)."""
    return ProxyApp(config if config is not None else Config(), storage)


class LazyApp:
    """The module-level ``app``: ``uvicorn llm_cache.proxy.server:app`` works, and importing
    this module still opens no file and no connection (the proxy is built from ``Config()`` on
    the first ASGI call)."""

    def __init__(self) -> None:
        self._app: ProxyApp | None = None

    @property
    def proxy(self) -> ProxyApp:
        if self._app is None:
            self._app = create_app(Config())
        return self._app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.proxy(scope, receive, send)


app = LazyApp()


def app_factory() -> ProxyApp:
    """For ``uvicorn --factory`` and worker processes: configuration from the environment."""
    return create_app(Config())


def serve(config: Config, *, workers: int = 1, access_log: bool = False) -> None:
    """Run the proxy on uvicorn (uvloop + httptools when available)."""
    import logging.config

    import uvicorn

    from llm_cache.observability.request_log import logging_config

    # observability: one format (text or JSON) for our lines and uvicorn's, in every worker;
    # the HTTP client's lines (full URLs) stay below info.
    log_config = logging_config(config.log_level, config.log_format)
    logging.config.dictConfig(log_config)
    options: dict[str, Any] = {
        "log_config": log_config,
        "host": config.proxy_host,
        "port": config.proxy_port,
        "loop": "auto",
        "http": "auto",
        "log_level": config.log_level,
        "access_log": access_log,
        "lifespan": "on",
        "interface": "asgi3",
    }
    if not config.admin_token and config.proxy_host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning(
            "serving on %s without LLM_CACHE_ADMIN_TOKEN: anyone who can reach this address "
            "can read stats and clear or delete cache entries; set LLM_CACHE_ADMIN_TOKEN",
            config.proxy_host,
        )
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
        from llm_cache.observability.workers import share_metrics_between_workers

        share_metrics_between_workers()  # observability: /metrics sums every worker
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
