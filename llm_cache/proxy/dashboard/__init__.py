"""``GET /dashboard``: one page a team lead keeps open, and the JSON it reads.

Everything is served by the proxy from this package (``static/``): no external script, font or
style, so the page works offline. Routes:

    GET    /dashboard                  the page (or the token form when a token is needed)
    POST   /dashboard/login            token form → cookie (HttpOnly, SameSite=Strict)
    POST   /dashboard/logout           forget the cookie
    GET    /dashboard/static/<file>    app.js, app.css
    GET    /dashboard/api/summary      figures: stats, savings, timeline, storage, health
    GET    /dashboard/api/entries      recent entries (``?q=`` searches model and text)
    GET    /dashboard/api/entry?key=   one entry: its request (no credentials) and answer
    DELETE /dashboard/api/entry?key=   delete it

With ``LLM_CACHE_ADMIN_TOKEN`` set, every route but the form needs the token: as
``Authorization: Bearer <token>`` or as the cookie the form sets. The cookie holds a hash of
the token, never the token itself.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

from llm_cache.proxy.dashboard.entries import EntryBrowser
from llm_cache.proxy.http import Receive, Scope, Send, read_body, send_bytes, send_json

__all__ = ["COOKIE", "Dashboard", "authorized"]

logger = logging.getLogger("llm_cache.dashboard")

COOKIE = "llm_cache_admin"
STATIC = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
#: The page may load only what the proxy serves (and run no inline script).
CSP = (
    b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    b"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


def cookie_value(token: str) -> str:
    """What the cookie holds: a hash of the token (a stolen cookie does not reveal it)."""
    return hashlib.sha256(f"llm-cache-dashboard\0{token}".encode()).hexdigest()


def authorized(scope: Scope, token: str | None) -> bool:
    """Whether the request carries the admin token (header or dashboard cookie)."""
    if token is None:
        return True
    headers = dict(scope["headers"])
    bearer = headers.get(b"authorization", b"")
    if hmac.compare_digest(bearer, f"Bearer {token}".encode()):
        return True
    cookies = headers.get(b"cookie", b"").decode("latin-1")
    for part in cookies.split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE and hmac.compare_digest(value.encode(), cookie_value(token).encode()):
            return True
    return False


def _static(name: str) -> bytes:
    return resources.files(__package__).joinpath("static").joinpath(name).read_bytes()


class Dashboard:
    """The dashboard routes of one proxy app."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.token: str | None = app.config.admin_token
        self.entries = EntryBrowser(app.storage, app.observability.recent)
        self.started = time.time()
        self._files: dict[str, bytes] = {}

    def _file(self, name: str) -> bytes:
        data = self._files.get(name)
        if data is None:
            data = self._files[name] = _static(name)
        return data

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        path, method = scope["path"].rstrip("/") or "/", scope["method"]
        if path == "/dashboard/login" and method == "POST":
            await self._login(receive, send)
            return
        if path == "/dashboard/logout" and method == "POST":
            await self._redirect(send, f"{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict")
            return
        if path.startswith("/dashboard/static/"):
            name = path.rsplit("/", 1)[1]
            if name in STATIC and method == "GET":
                await self._send(send, 200, STATIC[name], self._file(name), cache=True)
            else:
                await send_json(send, 404, _error("no such file", "not_found"))
            return
        if not authorized(scope, self.token):
            if path == "/dashboard":
                await self._send(send, 401, "text/html; charset=utf-8", self._login_page())
            else:
                await send_json(
                    send,
                    401,
                    _error("missing or wrong admin token", "unauthorized"),
                    [(b"www-authenticate", b"Bearer")],
                )
            return
        query = parse_qs(scope["query_string"].decode("latin-1"))
        try:
            if path == "/dashboard" and method == "GET":
                await self._send(send, 200, "text/html; charset=utf-8", self._file("index.html"))
            elif path == "/dashboard/api/summary" and method == "GET":
                await send_json(send, 200, await self.summary())
            elif path == "/dashboard/api/entries" and method == "GET":
                q = (query.get("q") or [""])[0]
                limit = _int((query.get("limit") or ["100"])[0], 100, 1, 500)
                await send_json(send, 200, await self.entries.list(q, limit))
            elif path == "/dashboard/api/entry" and method in ("GET", "DELETE"):
                key = (query.get("key") or [""])[0]
                if not key:
                    await send_json(send, 400, _error("the key query parameter is required"))
                elif method == "GET":
                    found = await self.entries.show(key)
                    if found is None:
                        await send_json(send, 404, _error("no entry with that key", "not_found"))
                    else:
                        await send_json(send, 200, found)
                elif await self.entries.delete(key):
                    await send_json(send, 200, {"status": "success", "message": "Entry deleted"})
                else:
                    await send_json(send, 404, _error("no entry with that key", "not_found"))
            else:
                await send_json(send, 404, _error(f"no route {method} {path}", "not_found"))
        except Exception as exc:
            logger.warning("dashboard call %s %s failed: %s", method, path, exc)
            await send_json(send, 503, _error(f"storage failed: {exc}", "storage_error"))

    async def summary(self) -> dict[str, Any]:
        """Every figure the page shows, in one call (polled every few seconds)."""
        app, obs = self.app, self.app.observability
        obs.start()  # sampling starts with the first look, if the lifespan did not start it
        health = await app.engine.health()
        try:
            stats: dict[str, Any] = await app.storage.aget_stats()
        except Exception as exc:
            stats = {"error": f"{type(exc).__name__}: {exc}"}
        from llm_cache.observability.storage_info import storage_bytes

        try:
            size_bytes = storage_bytes(app.storage)
        except OSError:
            size_bytes = None
        savings = obs.metrics.savings()
        by_status = savings.pop("requests_by_status")
        lookups = sum(by_status.get(k, 0) for k in ("hit", "semantic_hit", "miss", "coalesced"))
        hits = by_status.get("hit", 0) + by_status.get("semantic_hit", 0)
        return {
            "now": time.time(),
            "uptime_seconds": round(time.time() - self.started, 1),
            "version": _version(),
            "mode": app.engine.mode,
            "auth_required": self.token is not None,
            "workers": "all workers" if obs.metrics.shared_dir else "one process",
            "health": health,
            "storage": {
                "backend": stats.get("backend", health.get("backend")),
                "entries": stats.get("size", health.get("cache_size")),
                "max_size": stats.get("max_size", health.get("cache_max_size")),
                "bytes": size_bytes,
                "hits": stats.get("hits"),
                "misses": stats.get("misses"),
                "hit_rate": stats.get("hit_rate"),
                "error": stats.get("error"),
            },
            "requests_by_status": by_status,
            "hit_rate": round(100.0 * hits / lookups, 2) if lookups else None,
            "timeline": obs.timeline.points(current=by_status),
            "timeline_interval": obs.timeline.interval,
            **savings,
        }

    # -- token form ---------------------------------------------------------------------------

    async def _login(self, receive: Receive, send: Send) -> None:
        body = await read_body(receive, 4096)
        given = (parse_qs(body.decode("utf-8", "replace")).get("token") or [""])[0]
        if self.token is None:
            await self._redirect(send)
        elif hmac.compare_digest(given.encode(), self.token.encode()):
            await self._redirect(
                send,
                f"{COOKIE}={cookie_value(self.token)}; Path=/; HttpOnly; SameSite=Strict",
            )
        else:
            await self._send(
                send, 401, "text/html; charset=utf-8", self._login_page("Wrong token.")
            )

    def _login_page(self, error: str = "") -> bytes:
        page = self._file("login.html").decode()
        message = f'<p class="login-error" role="alert">{error}</p>' if error else ""
        return page.replace("<!--error-->", message).encode()

    async def _redirect(self, send: Send, cookie: str | None = None) -> None:
        headers = [(b"location", b"/dashboard"), (b"content-type", b"text/plain")]
        if cookie is not None:
            headers.append((b"set-cookie", cookie.encode()))
        await send_bytes(send, 303, headers, b"")

    async def _send(
        self, send: Send, status: int, content_type: str, body: bytes, cache: bool = False
    ) -> None:
        headers = [
            (b"content-type", content_type.encode()),
            (b"content-security-policy", CSP),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
            (b"cache-control", b"max-age=300" if cache else b"no-store"),
        ]
        await send_bytes(send, status, headers, body)


def _int(text: str, default: int, low: int, high: int) -> int:
    try:
        return max(low, min(high, int(text)))
    except ValueError:
        return default


def _version() -> str:
    from llm_cache import __version__

    return str(__version__)


def _error(message: str, kind: str = "invalid_request_error") -> dict[str, Any]:
    return {"error": {"message": message, "type": kind}}
