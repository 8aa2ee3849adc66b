"""The management API under ``/cache/*``: stats, clear, delete one entry (SPEC "Management"),
plus what the original llm-caching project answered (SPEC "Compatibility"): ``GET /``, and
``DELETE /cache/clear`` and ``POST /cache/delete/{key}`` as aliases.

``handle_compat`` answers the original's routes and tells the caller whether it did; the proxy
calls it first (``if await handle_compat(scope, send, storage, admin): return``).
"""

from __future__ import annotations

import hmac
import logging
from typing import Any
from urllib.parse import parse_qs, unquote

from llm_cache import __version__
from llm_cache.cache.storage import CacheStorage
from llm_cache.proxy.http import Scope, Send, send_json

logger = logging.getLogger("llm_cache.proxy")

#: What ``GET /`` lists (the original's ``endpoints`` names, plus ours).
ENDPOINTS = {
    "openai_chat": "/v1/chat/completions",
    "openai_completions": "/v1/completions",
    "openai_embeddings": "/v1/embeddings",
    "openai_responses": "/v1/responses",
    "anthropic_messages": "/v1/messages",
    "health": "/health",
    "stats": "/cache/stats",
    "clear": "/cache/clear",
    "delete": "/cache/entry?key=<key>",
}
_DELETE_PREFIX = "/cache/delete/"


def admin_credential(token: str | None) -> bytes | None:
    """The exact ``Authorization`` header value management calls must carry, if any."""
    return f"Bearer {token}".encode() if token else None


async def handle_compat(
    scope: Scope, send: Send, storage: CacheStorage, admin: bytes | None
) -> bool:
    """Answer ``GET /`` and the original's management routes; ``False`` for any other call.

    ``GET /`` is open (a description, like ``/health``); the ``/cache/*`` aliases need the admin
    token like every management call.
    """
    path, method = scope["path"], scope["method"]
    if path == "/" and method in ("GET", "HEAD"):
        await send_json(send, 200, describe())
        return True
    if not _is_alias(path, method):
        return False
    if await _refused(scope, send, admin):
        return True
    try:
        await _answer_alias(path, send, storage)
    except Exception as exc:
        logger.warning("management call %s %s failed: %s", method, path, exc)
        await send_json(send, 503, _error(f"storage failed: {exc}", "storage_error"))
    return True


def describe() -> dict[str, Any]:
    """The ``GET /`` body: the original's fields (``name``, ``version``, ``status``,
    ``endpoints``) and ``routes``, every route the proxy serves."""
    return {
        "name": "llm-cache",
        "description": "LLM Cache Proxy: caches LLM API calls",
        "version": __version__,
        "status": "running",
        "endpoints": ENDPOINTS,
        "routes": [
            "POST /v1/chat/completions",
            "POST /v1/completions",
            "POST /v1/embeddings",
            "POST /v1/responses",
            "POST /v1/messages",
            "POST /{upstream}/... (LLM_CACHE_UPSTREAMS)",
            "GET /health",
            "GET /cache/stats",
            "POST /cache/clear",
            "DELETE /cache/entry?key=<key>",
            "DELETE /cache/clear (alias)",
            "POST /cache/delete/{key} (alias)",
        ],
    }


def _is_alias(path: str, method: str) -> bool:
    if path == "/cache/clear" and method == "DELETE":
        return True
    return path.startswith(_DELETE_PREFIX) and len(path) > len(_DELETE_PREFIX) and method == "POST"


async def _answer_alias(path: str, send: Send, storage: CacheStorage) -> None:
    if path == "/cache/clear":
        await _clear(send, storage, original=True)
        return
    key = unquote(path[len(_DELETE_PREFIX) :])
    if await storage.adelete(key):
        body = {"status": "success", "message": "Cache entry deleted", "key": key}
        await send_json(send, 200, body)
    else:
        error = _error("no entry with that key", "not_found")
        error["detail"] = "Cache entry not found"  # the original's (FastAPI) error field
        await send_json(send, 404, error)


async def _clear(send: Send, storage: CacheStorage, *, original: bool = False) -> None:
    """SPEC's answer; the original's alias also says how many entries went."""
    removed = await storage.aget_size() if original else 0
    await storage.aclear()
    body: dict[str, Any] = {"status": "success", "message": "Cache cleared"}
    if original:
        body["entries_removed"] = removed
    await send_json(send, 200, body)


async def _refused(scope: Scope, send: Send, admin: bytes | None) -> bool:
    """Answer 401 (and return ``True``) when an admin token is set and not given."""
    if admin is None:
        return False
    given = dict(scope["headers"]).get(b"authorization", b"")
    if hmac.compare_digest(given, admin):  # constant time: no token timing oracle
        return False
    await send_json(
        send,
        401,
        _error("missing or wrong admin token (Authorization: Bearer <token>)", "unauthorized"),
        [(b"www-authenticate", b"Bearer")],
    )
    return True


async def handle_management(
    scope: Scope,
    send: Send,
    storage: CacheStorage,
    admin: bytes | None,
    stats_extra: dict[str, Any],
) -> None:
    """Answer one ``/cache/*`` call. ``stats_extra`` joins the ``/cache/stats`` body."""
    if await _refused(scope, send, admin):
        return
    path, method = scope["path"], scope["method"]
    try:
        if path == "/cache/stats" and method == "GET":
            stats = await storage.aget_stats()
            stats.update(stats_extra)
            await send_json(send, 200, stats)
        elif path == "/cache/clear" and method == "POST":
            await _clear(send, storage)
        elif path == "/cache/entry" and method == "DELETE":
            keys = parse_qs(scope["query_string"].decode("latin-1")).get("key")
            if not keys:
                await send_json(send, 400, _error("the key query parameter is required"))
            elif await storage.adelete(keys[0]):
                await send_json(send, 200, {"status": "success", "message": "Entry deleted"})
            else:
                await send_json(send, 404, _error("no entry with that key", "not_found"))
        elif _is_alias(path, method):
            await _answer_alias(path, send, storage)
        else:
            await send_json(send, 404, _error(f"no management route {method} {path}", "not_found"))
    except Exception as exc:
        logger.warning("management call %s %s failed: %s", method, path, exc)
        await send_json(send, 503, _error(f"storage failed: {exc}", "storage_error"))


def _error(message: str, kind: str = "invalid_request_error") -> dict[str, Any]:
    return {"error": {"message": message, "type": kind}}
